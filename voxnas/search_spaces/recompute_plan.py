"""Which MixedOps a memory-lean supernet recomputes: the memory it needs freed, for the least
recomputation.

Recomputing a MixedOp in backward (:mod:`voxnas.search_spaces.recompute`) frees what its
candidates keep for backward, at the price of one more forward of them. Not every MixedOp
has to: :func:`mixed_op_costs` measures, per MixedOp, the bytes its candidates keep for
backward (fp32, and bf16 autocast emulated) and its forward FLOPs (forwards on the ``meta``
device: no memory, no arithmetic), and :func:`pick` takes the MixedOps that keep the most
first until the bytes asked for are freed: the fewest recomputations for the memory freed
(each has a fixed cost on top of its arithmetic: a CPU step spends milliseconds per small
MixedOp in dispatch). The caller checks the result with the memory model and asks for more
when a step's peak did not fall enough (``trainables/lean_plan.py``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from voxnas.search_spaces.memory_trace import Bf16Autocast, LiveBytes
from voxnas.search_spaces.mixed import MixedOp

__all__ = ["MixedOpCost", "mixed_op_costs", "pick", "searched_mixed_ops"]


@dataclass(frozen=True)
class MixedOpCost:
    """One MixedOp: its name in the model, the bytes its candidates keep for backward (one
    figure per precision scanned: fp32, bf16 autocast), and the FLOPs of one forward of its
    candidates (what recomputing it costs)."""

    name: str
    kept: tuple[int, ...]
    flops: int


def searched_mixed_ops(model: nn.Module) -> dict[str, MixedOp]:
    """The MixedOps with more than one candidate (a fixed network's have one), by name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, MixedOp) and len(m.ops) > 1}


def _kept(model: nn.Module, x: torch.Tensor, autocast, counter) -> dict[str, int]:
    mixed = searched_mixed_ops(model)
    before: dict[str, int] = {}
    kept: dict[str, int] = {}
    tracer = LiveBytes([*model.parameters(), *model.buffers(), x])

    def pre(name):
        def hook(module, args):
            before[name] = tracer.live

        return hook

    def post(name):
        def hook(module, args, out):
            kept[name] = max(tracer.live - before[name] - out.untyped_storage().nbytes(), 0)

        return hook

    handles = []
    for n, m in mixed.items():
        handles += [m.register_forward_pre_hook(pre(n)), m.register_forward_hook(post(n))]
    try:
        with torch.enable_grad(), counter, autocast(), tracer:
            model(x)
    finally:
        for h in handles:
            h.remove()
    return kept


def mixed_op_costs(
    model: nn.Module, x: torch.Tensor, precisions: tuple[str, ...] = ("fp32",)
) -> list[MixedOpCost]:
    """Per MixedOp with more than one candidate, in module order: per precision (``fp32``,
    ``bf16``: CUDA autocast emulated), the bytes alive after its forward that were not before
    it, less its output (what its candidates keep for backward), and its forward FLOPs.
    ``model`` and ``x`` on the ``meta`` device; the model's ``memory_lean`` flags are ignored
    (the forward keeps every activation) and put back."""
    mixed = searched_mixed_ops(model)
    lean = {n: m.memory_lean for n, m in mixed.items()}
    counter = FlopCounterMode(display=False)
    try:
        for m in mixed.values():
            m.memory_lean = False
        kept = []
        for precision in precisions:
            autocast = Bf16Autocast if precision == "bf16" else contextlib.nullcontext
            counting = counter if not kept else contextlib.nullcontext()
            kept.append(_kept(model, x, autocast, counting))
    finally:
        for n, m in mixed.items():
            m.memory_lean = lean[n]
    counts = {k.split(".", 1)[-1]: v for k, v in counter.get_flop_counts().items()}
    return [
        MixedOpCost(n, tuple(k.get(n, 0) for k in kept), sum(counts.get(n, {}).values()))
        for n in mixed
    ]


def pick(costs: list[MixedOpCost], free: tuple[int, ...]) -> list[str]:
    """The names of the MixedOps to recompute to free at least ``free[i]`` bytes of each
    precision ``i``: those keeping the most (first precision) first, the cheaper to recompute
    among equals, until they add up; all when they do not."""
    order = sorted(costs, key=lambda c: (-c.kept[0], c.flops, c.name))
    out, freed = [], [0] * len(free)
    for c in order:
        if all(f >= need for f, need in zip(freed, free)):
            break
        out.append(c.name)
        freed = [f + k for f, k in zip(freed, c.kept)]
    return out
