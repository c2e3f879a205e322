"""Recomputing a module in the backward pass without running its BatchNorm statistics twice.

``torch.utils.checkpoint`` runs the module's forward again during backward. A BatchNorm in
training mode would then update its running statistics a second time, and voxnas'
:class:`~voxnas.search_spaces.layers.BatchNorm3d` (which normalises by running statistics
when a channel has few values) would also normalise by different numbers than the first
forward did, so the gradients would change. :func:`checkpointed` snapshots the BatchNorm
buffers at the first forward, puts them back for the recomputation (which therefore computes
exactly what the first forward computed) and afterwards restores the buffers the training
has moved on to.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.overrides import _get_current_function_mode_stack
from torch.utils.checkpoint import checkpoint

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
    modes: list = []

    @contextlib.contextmanager
    def first_forward() -> Iterator[None]:
        before[:] = [b.clone() for b in buffers]
        # torch function modes (the memory model's bf16 autocast emulation) are re-entered
        # for the recomputation, as checkpoint itself does for torch.autocast
        modes[:] = _get_current_function_mode_stack()
        yield

    @contextlib.contextmanager
    def recompute() -> Iterator[None]:
        now = [b.clone() for b in buffers]
        with torch.no_grad():
            for b, old in zip(buffers, before):
                b.copy_(old)
        try:
            with contextlib.ExitStack() as stack:
                for mode in modes:
                    stack.enter_context(mode)
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
