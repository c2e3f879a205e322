"""Recomputing a module in the backward pass without running its BatchNorm statistics twice.

``torch.utils.checkpoint`` runs the module's forward again during backward. A BatchNorm in
training mode would then update its running statistics a second time, and voxnas'
:class:`~voxnas.search_spaces.layers.BatchNorm3d` (which normalises by running statistics
when a channel has few values) would also normalise by different numbers than the first
forward did, so the gradients would change. :func:`checkpointed` snapshots the BatchNorm
buffers at the first forward, puts them back for the recomputation (which therefore computes
exactly what the first forward computed) and afterwards restores the buffers the training
has moved on to.

``torch.utils.checkpoint`` re-enters ``torch.autocast`` for the recomputation by itself; the
memory model's meta-device emulation of it
(:class:`~voxnas.search_spaces.memory_trace.Bf16Autocast`) is re-entered here, and nothing
else (no other mode or device context of the forward is replayed).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from voxnas.search_spaces.memory_trace import Bf16Autocast

__all__ = ["checkpointed"]


def _buffers(module: nn.Module) -> list[torch.Tensor]:
    return [
        b
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        for b in m.buffers()
    ]


def _contexts(module: nn.Module):
    buffers = _buffers(module)
    before: list[torch.Tensor] = []
    emulated = [False]

    @contextlib.contextmanager
    def first_forward() -> Iterator[None]:
        before[:] = [b.clone() for b in buffers]
        emulated[0] = Bf16Autocast.active()
        yield

    @contextlib.contextmanager
    def recompute() -> Iterator[None]:
        now = [b.clone() for b in buffers]
        with torch.no_grad():
            for b, old in zip(buffers, before):
                b.copy_(old)
        try:
            # no weight cache: each recomputation casts as it goes
            with Bf16Autocast(cache=False) if emulated[0] else contextlib.nullcontext():
                yield
        finally:
            with torch.no_grad():
                for b, cur in zip(buffers, now):
                    b.copy_(cur)

    return first_forward(), recompute()


def checkpointed(module: nn.Module, fn: Callable[..., torch.Tensor], *args) -> torch.Tensor:
    """``fn(*args)`` (a computation of ``module``) keeping only its inputs for backward; the
    rest is recomputed there, with ``module``'s BatchNorm statistics as they were."""
    return checkpoint(fn, *args, use_reentrant=False, context_fn=lambda: _contexts(module))
