"""The real peak memory of a training step, to check :mod:`voxnas.search_spaces.memory`
against: the trainables' own step (``engine.train_step``, ``search.bilevel_step`` with the
config's gradient clipping and ``arch_first``) and optimisers
(:func:`~voxnas.trainables.footprint.make_optimizers`), measured on the CPU from the allocator
events the profiler records (:func:`~voxnas.search_spaces.memory_trace.allocator_peak`), on
CUDA from ``torch.cuda.max_memory_allocated``. Both report the peak of the whole step: the
tensors alive before it (weights, buffers, optimiser state) plus the most the step allocated
on top of them."""

from __future__ import annotations

import torch
from torch import nn

from voxnas.config import Config
from voxnas.search_spaces.memory import state_bytes
from voxnas.search_spaces.memory_trace import allocator_peak
from voxnas.trainables.engine import train_step
from voxnas.trainables.footprint import make_optimizers
from voxnas.trainables.losses import make_loss
from voxnas.trainables.search import bilevel_step

__all__ = ["live_state_bytes", "measured_step_peak", "run_step"]


def live_state_bytes(model: nn.Module, optimizers: tuple[torch.optim.Optimizer, ...]) -> int:
    """Bytes of the distinct storages held by the model and its optimisers (grads included)."""
    tensors = [*model.parameters(), *model.buffers()]
    tensors += [p.grad for p in model.parameters() if p.grad is not None]
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values()) + state_bytes(optimizers)


def _batch(cfg: Config, in_ch: int, out_ch: int, patch, device) -> tuple[torch.Tensor, ...]:
    x = torch.randn(cfg.patch.batch_size, in_ch, *patch, device=device)
    if cfg.data.target == "brats_regions":
        return x, torch.zeros(cfg.patch.batch_size, out_ch, *patch, device=device)
    y = torch.zeros(cfg.patch.batch_size, *patch, dtype=torch.long, device=device)
    return x, y


def run_step(cfg: Config, model, kind: str, patch, optimizers, amp: bool = True) -> None:
    """One training step as the trainables run it (search: a bilevel step, the arch step
    included; retrain: a weight step) on a fresh random batch."""
    device = next(model.parameters()).device
    in_ch, out_ch = model_channels(model)
    loss = make_loss(cfg.loss.name, cfg.loss.dice_eps)
    batch = _batch(cfg, in_ch, out_ch, patch, device)
    if kind == "search":
        w_opt, a_opt = optimizers
        s = cfg.search
        bilevel_step(
            model, w_opt, a_opt, loss, batch, batch, True, s.arch_first,
            s.weight_optim.grad_clip, device, amp,
        )  # fmt: skip
    else:
        params = [p for p in model.parameters() if p.requires_grad]
        train_step(
            model, optimizers[0], params, loss, batch, device, cfg.retrain.optim.grad_clip, amp
        )


def model_channels(model: nn.Module) -> tuple[int, int]:
    """(in, out) channels of a voxnas network (its first and last convolutions)."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv3d)]
    return convs[0].in_channels, convs[-1].out_channels


def measured_step_peak(
    cfg: Config, model: nn.Module, kind: str, precision: str = "fp32", warmup: int = 1
) -> int:
    """Peak bytes of one real ``kind`` step of ``model`` at the config's patch (after
    ``warmup`` steps, so that the optimiser state exists), on the model's device.

    Raises:
        ValueError: ``precision="bf16"`` off CUDA (the CPU would measure fp32: the trainables
            autocast on CUDA only).
    """
    device = next(model.parameters()).device
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    if precision == "bf16" and device.type != "cuda":
        raise ValueError(
            f"measured_step_peak: bf16 needs a CUDA model (this one is on {device}): the "
            "trainables autocast on CUDA only, so the CPU would measure an fp32 step"
        )
    model.train()
    optimizers = make_optimizers(cfg, model, kind)
    patch = cfg.patch.search if kind == "search" else cfg.patch.train

    def step() -> None:
        run_step(cfg, model, kind, patch, optimizers, amp=precision == "bf16")

    for _ in range(warmup):
        step()
    if not (kind == "search" and cfg.search.arch_first):
        # the step's first act (a weight step's zero_grad); done here because the profiler
        # does not see frees of blocks allocated before it started. An arch-first step keeps
        # them: its arch step runs with the last weight step's gradients held
        for p in model.parameters():
            p.grad = None
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated()
    return live_state_bytes(model, optimizers) + allocator_peak(step)
