"""Peak memory of one training step, modelled on the ``meta`` device (no memory, no arithmetic).

The step is the one the trainables run (``trainables.engine.train_step``, batch of the given
patch), replayed under :class:`~voxnas.search_spaces.memory_trace.LiveBytes` with the
optimisers the trainables build (the caller passes their factories in: this module sits
below ``trainables``):

- ``retrain``: gradients set to None, forward, loss, backward, optimiser step.
- ``search`` (first-order DARTS, ``trainables.search.bilevel_step``): a weight step as above
  and an architecture step. Only the alphas' optimiser clears its gradients, so the arch
  step's backward runs while weight gradients are held (those of this iteration's weight step,
  or with ``arch_first`` those of the previous one): that backward is the search step's peak
  and the only one replayed (weight gradients put in place; it accumulates into them).

Two phases of a step can be its peak, and the larger is taken:

1. backward: persistent state plus every tensor an op returns while it is alive
   (activations saved for backward, new gradients, temporaries between ops);
2. the weights' optimiser step: persistent state, all weight gradients, and the step's own
   temporaries. Traced with ``foreach`` kernels as CUDA runs them by default (SGD/Adam with
   weight decay allocate a weight-sized copy of the gradients, Adam a weight-sized
   denominator): with small activations this phase is the peak.

Optimiser state (SGD's momentum buffers, none at momentum 0; Adam's two moments) is created
by one untraced step of the real optimisers and counted as it is. Not seen: workspace inside a
kernel (cuDNN's, oneDNN's), the CUDA context (~0.3-0.5 GiB per process; see
``platform/gpu_share.py``) or allocator rounding/fragmentation.

``precision="bf16"`` models CUDA bf16 autocast
(:class:`~voxnas.search_spaces.memory_trace.Bf16Autocast`): weights, gradients and optimiser
state stay fp32; convolutions save bf16 inputs and one bf16 copy of each weight per forward;
GroupNorm, softmax and the loss run in fp32 as autocast makes them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from voxnas.search_spaces.memory_trace import Bf16Autocast, LiveBytes
from voxnas.search_spaces.mixed import SearchableNet

__all__ = ["GIB", "StepMemory", "state_bytes", "step_memory"]

GIB = 2**30

Optimizers = tuple[torch.optim.Optimizer, ...]


@dataclass(frozen=True)
class StepMemory:
    """Bytes of one training step: persistent state and the peaks of its two phases."""

    weights: int  # parameters (alphas included) and buffers
    gradients: int  # gradients held when the backward starts (search: the weight step's)
    optimizer: int  # optimiser state
    step_peak: int  # backward phase: activations, new gradients and temporaries at its peak
    optimizer_step: int = 0  # optimiser step phase: all weight gradients + its temporaries

    @property
    def total(self) -> int:
        phase = max(self.gradients + self.step_peak, self.optimizer_step)
        return self.weights + self.optimizer + phase

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "total": self.total}


def _nbytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages of ``tensors``."""
    storages = {id(t.untyped_storage()): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


def _state(optimizers: Optimizers) -> list[torch.Tensor]:
    return [
        v
        for opt in optimizers
        for state in opt.state.values()
        for v in state.values()
        if isinstance(v, torch.Tensor)
    ]


def state_bytes(optimizers: Optimizers) -> int:
    """Bytes of the optimisers' state tensors (momentum buffers, Adam's moments)."""
    return _nbytes(_state(optimizers))


def _one_step(model, x, loss_fn, params, autocast) -> None:
    for p in params:
        p.grad = None  # zero_grad(set_to_none=True) of this step's optimiser
    with autocast():
        loss = loss_fn(model(x))
    loss.backward()


def step_memory(
    build: Callable[[], nn.Module],
    in_channels: int,
    patch: tuple[int, int, int],
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    kind: str = "search",
    precision: str = "fp32",
    make_optimizers: Callable[[nn.Module], Optimizers] | None = None,
    batch: int = 1,
    foreach: bool = True,
) -> StepMemory:
    """Model the peak memory of one training step of ``build()`` on ``patch``.

    Args:
        build: makes the network (called under the meta device).
        in_channels: input channels.
        patch: ``(X, Y, Z)`` patch size.
        loss_fn: logits -> scalar loss (it makes its own target, on the logits' device).
        kind: ``search`` (weight step then arch step) or ``retrain``.
        precision: ``fp32`` or ``bf16`` (CUDA bf16 autocast; weights stay fp32).
        make_optimizers: model -> (weights' optimiser, alphas' optimiser for ``search``), as
            the trainables build them; None: no optimiser (no state, no step).
        batch: patches per step.
        foreach: trace the optimiser step with ``foreach`` kernels (CUDA's default; the CPU
            runs the per-tensor loop, with much smaller temporaries).
    """
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    if kind not in ("search", "retrain"):
        raise ValueError(f"kind must be 'search' or 'retrain', got {kind!r}")
    with torch.device("meta"):
        model = build()
    model.train()
    searchable = isinstance(model, SearchableNet)
    arch = model.arch_parameters() if searchable else []
    weights = model.weight_parameters() if searchable else list(model.parameters())
    search = kind == "search" and bool(arch)
    trained = weights + (arch if search else [])
    size = _nbytes([*model.parameters(), *model.buffers()])
    w_bytes = _nbytes(weights)

    # optimiser state, as the real optimisers create it (one step on zero gradients), then the
    # weights' optimiser step with every weight gradient held
    opts = tuple(make_optimizers(model)) if make_optimizers else ()
    for opt in opts:
        for group in opt.param_groups:
            group["foreach"] = foreach
    for p in trained:
        p.grad = torch.zeros_like(p)
    for opt in opts:
        opt.step()
    state = _state(opts)
    old = [*model.parameters(), *model.buffers(), *(p.grad for p in trained), *state]
    opt_step = 0
    if opts:
        tracer = LiveBytes(old)
        with tracer:
            opts[0].step()
        opt_step = w_bytes + tracer.peak

    # the backward phase: search replays the arch step (weight gradients held), retrain a
    # whole step from gradients set to None
    if not search:
        for p in trained:
            p.grad = None
    held = [p.grad for p in weights if p.grad is not None]
    bf16 = precision == "bf16"
    autocast = Bf16Autocast if bf16 else contextlib.nullcontext
    tracer = LiveBytes([*model.parameters(), *model.buffers(), *held])
    with tracer:  # the batch is part of the step: made inside, so counted
        x = torch.zeros((batch, in_channels, *patch), device="meta")
        _one_step(model, x, loss_fn, arch if search else weights, autocast)
    return StepMemory(
        weights=size,
        gradients=_nbytes(held),
        optimizer=_nbytes(state),
        step_peak=tracer.peak,
        optimizer_step=opt_step,
    )
