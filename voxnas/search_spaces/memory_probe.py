"""The real peak memory of a training step, to check :mod:`voxnas.search_spaces.memory`
against: on the CPU from the allocator events the profiler records
(:func:`~voxnas.search_spaces.memory_trace.allocator_peak`), on CUDA from
``torch.cuda.max_memory_allocated``. Both report the peak of the whole step: the tensors
alive before it (weights, buffers, optimiser state, last step's gradients) plus the most the
step allocated on top of them."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from voxnas.search_spaces.memory import run_step
from voxnas.search_spaces.memory_trace import allocator_peak

__all__ = ["live_state_bytes", "measured_step_peak"]


def live_state_bytes(model: nn.Module, optimizers: tuple[torch.optim.Optimizer, ...]) -> int:
    """Bytes of the distinct storages held by the model and its optimisers (grads included)."""
    tensors = [*model.parameters(), *model.buffers()]
    tensors += [p.grad for p in model.parameters() if p.grad is not None]
    for opt in optimizers:
        for state in opt.state.values():
            tensors += [v for v in state.values() if isinstance(v, torch.Tensor)]
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


def measured_step_peak(
    model: nn.Module,
    make_input: Callable[[], torch.Tensor],
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    kind: str,
    optimizers: tuple[torch.optim.Optimizer, ...],
    precision: str = "fp32",
    warmup: int = 1,
) -> int:
    """Peak bytes of one real training step (after ``warmup`` steps, so that the optimiser
    state exists), on the model's device. ``precision="bf16"`` needs CUDA (real autocast)."""
    device = next(model.parameters()).device
    model.train()

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16")

    def step() -> None:
        run_step(model, make_input(), loss_fn, kind, autocast, optimizers)

    for _ in range(warmup):
        step()
    for p in model.parameters():
        p.grad = None  # the step's first act; the profiler cannot see frees of older blocks
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated()
    return live_state_bytes(model, optimizers) + allocator_peak(step)
