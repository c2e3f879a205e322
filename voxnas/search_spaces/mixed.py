"""``MixedOp``: the softmax-weighted sum of candidate ops (DARTS relaxation).

Memory-lean (``memory_lean = True``, :func:`set_memory_lean`): the candidates' activations
are not kept for backward but recomputed there (one extra forward of the candidates), so a
supernet holds little more than its MixedOps' inputs and outputs; the results and gradients
are the same (:mod:`voxnas.search_spaces.recompute`).

The architecture weights are not stored here: the network owns its alphas as
``nn.Parameter``s and passes ``softmax(alpha)`` rows in, so one alpha row can drive several
MixedOps (V-NAS: every layer of a dense block shares the block's beta).
"""

from __future__ import annotations

import torch
from torch import nn

from voxnas.search_spaces.recompute import checkpointed

__all__ = ["MixedOp", "SearchableNet", "set_memory_lean"]


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

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        if len(self.ops) == 1:  # a fixed network's chosen op: no mixing, no alpha
            return self.ops[0](x)
        if self.memory_lean and torch.is_grad_enabled():
            return checkpointed(self, self.mix, x, weights)
        return self.mix(x, weights)

    def mix(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return sum(w * op(x) for w, op in zip(weights, self.ops))


def set_memory_lean(model: nn.Module, on: bool = True) -> nn.Module:
    """Switch every MixedOp of ``model`` to recomputing its candidates in backward."""
    for m in model.modules():
        if isinstance(m, MixedOp):
            m.memory_lean = on
    return model
