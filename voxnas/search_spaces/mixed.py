"""``MixedOp``: the softmax-weighted sum of candidate ops (DARTS relaxation).

Memory-lean (``memory_lean = True``, :func:`set_memory_lean`): the candidates' activations
are not kept for backward but recomputed there (one extra forward of the candidates), so a
supernet holds little more than its MixedOps' inputs and outputs; the results and gradients
are the same (:mod:`voxnas.search_spaces.recompute`).

On CPU (float weights >= 0, as softmax rows are) each candidate's weight is folded into its
last norm or scaling layer (:mod:`voxnas.search_spaces.weighted`) and the weighted outputs are
summed into one buffer, instead of a multiplication pass per candidate and a new tensor per
addition, and candidates that open with the same conv + BatchNorm + ReLU run that opening as
one call (:mod:`voxnas.search_spaces.shared_head`), and a network whose MixedOps read one input
can run their same-kind candidates as one convolution (:func:`stack_edges`,
:mod:`voxnas.search_spaces.edge_stack`); :func:`darts_sum` restores the plain
DARTS sum (the reference, for tests and benchmarks), which other devices run.

The architecture weights are not stored here: the network owns its alphas as
``nn.Parameter``s and passes ``softmax(alpha)`` rows in, so one alpha row can drive several
MixedOps (V-NAS: every layer of a dense block shares the block's beta).
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection

import torch
from torch import nn

from voxnas.search_spaces.edge_stack import edge_groups, stacked_edges, stacking
from voxnas.search_spaces.recompute import checkpointed
from voxnas.search_spaces.shared_head import head_groups, shared_heads
from voxnas.search_spaces.switches import Switch
from voxnas.search_spaces.weighted import weighted

__all__ = ["MixedOp", "SearchableNet", "darts_sum", "edge_groups", "set_memory_lean", "stack_edges"]

_FOLDED = Switch("voxnas_folded_mixing")


def darts_sum() -> contextlib.AbstractContextManager[None]:
    """Mix by the plain ``sum(w * op(x))`` on every device (the reference)."""
    return _FOLDED.off()


def _folds(x: torch.Tensor, weights: torch.Tensor) -> bool:
    return (
        _FOLDED.on()
        and x.device.type == "cpu"
        and weights.device.type == "cpu"
        and weights.dtype.is_floating_point
        and bool((weights >= 0).all())
    )


class SearchableNet(nn.Module):
    """A network whose parameters split into architecture (alphas) and weights."""

    def arch_parameters(self) -> list[nn.Parameter]:
        return []

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]


class MixedOp(nn.Module):
    """Candidates by name; ``forward(x, weights)`` mixes them, a single-op MixedOp is plain."""

    def __init__(self, ops: dict[str, nn.Module]):
        super().__init__()
        if not ops:
            raise ValueError("MixedOp needs at least one candidate op")
        self.names = tuple(ops)
        self.ops = nn.ModuleList(ops.values())
        self.memory_lean = False
        self.head_groups = head_groups(self.ops)

    def forward(
        self,
        x: torch.Tensor,
        weights: torch.Tensor | None = None,
        given: dict[int, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``sum(w * op(x))``; ``given`` maps candidate indices to their ``w * op(x)``
        computed elsewhere (:func:`stack_edges`)."""
        if len(self.ops) == 1:  # a fixed network's chosen op: no mixing, no alpha
            return self.ops[0](x)
        if self.memory_lean and torch.is_grad_enabled():
            return checkpointed(self, self.mix, x, weights)
        return self.mix(x, weights, given)

    def mix(
        self, x: torch.Tensor, weights: torch.Tensor, given: dict[int, torch.Tensor] | None = None
    ) -> torch.Tensor:
        if not _folds(x, weights):
            return sum(w * op(x) for w, op in zip(weights, self.ops))
        total = None
        given = given or {}
        heads = shared_heads(self.ops, self.head_groups, x) if self.head_groups else {}
        for i, (w, op) in enumerate(zip(weights, self.ops)):
            if i in given:
                y = given[i]
            elif i in heads:
                y = weighted(op, heads[i], w, 1)
            else:
                y = weighted(op, x, w)
            if i == 0:
                total = y
            elif i == 1:
                total = total + y
            else:  # total is this loop's own sum: nothing saved it for backward
                total.add_(y)
        return total


def stack_edges(
    mixed: list[MixedOp], groups, x: torch.Tensor, weights: list[torch.Tensor]
) -> list[dict[int, torch.Tensor]]:
    """For MixedOps that all read ``x`` (with softmax rows ``weights``): per MixedOp, the
    ``given`` outputs of its candidates that :mod:`voxnas.search_spaces.edge_stack` runs as one
    convolution with other MixedOps' (``groups`` from :func:`edge_groups` over their ops).
    Empty where the folded mixing does not run or a MixedOp recomputes (memory-lean)."""
    out: list[dict[int, torch.Tensor]] = [{} for _ in mixed]
    if not groups or not stacking():
        return out
    if any(m.memory_lean for m in mixed) or not all(_folds(x, w) for w in weights):
        return out
    for (e, i), y in stacked_edges([list(m.ops) for m in mixed], groups, x, weights).items():
        out[e][i] = y
    return out


def set_memory_lean(model: nn.Module, on: bool | Collection[str] = True) -> nn.Module:
    """Switch the MixedOps of ``model`` to recomputing their candidates in backward: every
    one (``True``), none (``False``), or those named in ``on`` (names in ``model``)."""
    names = None if isinstance(on, bool) else set(on)
    for name, m in model.named_modules():
        if isinstance(m, MixedOp):
            m.memory_lean = on if names is None else name in names
    return model
