"""Parameter count and forward+backward FLOPs without running the model for real: the model
and its input live on the ``meta`` device (no memory, no arithmetic) while PyTorch's
FlopCounterMode counts the FLOPs of every aten op of one forward and backward pass."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["model_cost"]


def model_cost(
    build: Callable[[], nn.Module], in_channels: int, patch: tuple[int, int, int], batch: int = 1
) -> dict[str, float]:
    """``{"params": n, "alphas": n, "gflops_fwd": f, "gflops_fwd_bwd": f}`` for one batch."""
    with torch.device("meta"):
        model = build()
    arch = {id(p) for p in getattr(model, "arch_parameters", list)()}
    params = sum(p.numel() for p in model.parameters() if id(p) not in arch)
    alphas = sum(p.numel() for p in model.parameters() if id(p) in arch)
    x = torch.zeros((batch, in_channels, *patch), device="meta")
    counter = FlopCounterMode(display=False)
    with counter:
        out = model(x)
    fwd = counter.get_total_flops()
    with counter:
        out = model(x)
        out.sum().backward()
    return {
        "params": float(params),
        "alphas": float(alphas),
        "gflops_fwd": fwd / 1e9,
        "gflops_fwd_bwd": counter.get_total_flops() / 1e9,
    }
