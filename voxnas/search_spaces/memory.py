"""Peak memory of one training step, modelled on the ``meta`` device (no memory, no arithmetic).

The step is the one the trainables run (``trainables.engine.train_step``, batch of the given
patch), replayed under :class:`~voxnas.search_spaces.memory_trace.LiveBytes`:

- ``retrain``: gradients set to None, forward, loss, backward.
- ``search`` (first-order DARTS, ``trainables.search.bilevel_step``): a weight step as above,
  then an architecture step whose backward runs while the weight gradients of the weight step
  are still held (only the alphas' optimiser clears its gradients). That second backward is
  the search step's peak, and the only part replayed (the weight gradients put in place).

Persistent state is added in closed form: weights and buffers, optimiser state (SGD with
momentum 1x the weights, Adam/AdamW 2x; the alphas' AdamW 2x the alphas). The peak counts
every tensor an op returns while it is alive: activations saved for backward, gradients,
temporaries between ops. It does not see workspace inside a kernel (cuDNN's, oneDNN's), the
CUDA context (~0.3-0.5 GiB per process) or allocator rounding/fragmentation.

``precision="bf16"`` models CUDA bf16 autocast
(:class:`~voxnas.search_spaces.memory_trace.Bf16Autocast`): weights, gradients and optimiser
state stay fp32; convolutions save bf16 inputs and one bf16 copy of each weight per forward;
GroupNorm, softmax and the loss run in fp32 as autocast makes them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from voxnas.search_spaces.memory_trace import Bf16Autocast, LiveBytes

__all__ = ["StepMemory", "optimizer_slots", "run_step", "step_memory"]

# optimiser state per parameter, in parameter-sized tensors
_SLOTS = {"sgd": 1, "adam": 2, "adamw": 2, "none": 0}


def optimizer_slots(name: str) -> int:
    """State tensors per parameter: SGD with momentum 1, Adam/AdamW 2."""
    try:
        return _SLOTS[name]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r} ({', '.join(_SLOTS)})") from None


@dataclass(frozen=True)
class StepMemory:
    """Bytes of one training step: persistent state and the peak of the step's allocations."""

    weights: int  # parameters (alphas included) and buffers
    gradients: int  # gradients held when the step starts (search: the weight step's)
    optimizer: int  # optimiser state
    step_peak: int  # activations, new gradients and temporaries at the step's peak

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.step_peak

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "total": self.total}


def _params(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    arch = list(getattr(model, "arch_parameters", list)())
    ids = {id(a) for a in arch}
    return [p for p in model.parameters() if id(p) not in ids], arch


def _one_step(model, x, loss_fn, params, autocast, optimizer=None, recompute=None) -> None:
    for p in params:
        p.grad = None  # zero_grad(set_to_none=True) of this step's optimiser
    with autocast():
        loss = loss_fn(model(x))
    with recompute() if recompute else contextlib.nullcontext():
        loss.backward()
    if optimizer is not None:
        optimizer.step()


def run_step(
    model: nn.Module,
    x: torch.Tensor,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    kind: str,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    optimizers: tuple[torch.optim.Optimizer, ...] = (),
) -> None:
    """One ``search`` (weight step + arch step) or ``retrain`` step, as the trainables run it:
    ``autocast()`` around forward and loss, backward outside. ``optimizers`` (weights,
    alphas) are stepped when given; the model leaves them out (their state is closed form)."""
    if kind not in ("search", "retrain"):
        raise ValueError(f"kind must be 'search' or 'retrain', got {kind!r}")
    weights, arch = _params(model)
    groups = [weights, arch] if kind == "search" and arch else [weights]
    for i, params in enumerate(groups):
        opt = optimizers[i] if i < len(optimizers) else None
        _one_step(model, x, loss_fn, params, autocast, opt)


def step_memory(
    build: Callable[[], nn.Module],
    in_channels: int,
    patch: tuple[int, int, int],
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    kind: str = "search",
    precision: str = "fp32",
    optimizer: str = "sgd",
    batch: int = 1,
) -> StepMemory:
    """Model the peak memory of one training step of ``build()`` on ``patch``.

    Args:
        build: makes the network (called under the meta device).
        in_channels: input channels.
        patch: ``(X, Y, Z)`` patch size.
        loss_fn: logits -> scalar loss (it makes its own target, on the logits' device).
        kind: ``search`` (weight step then arch step) or ``retrain``.
        precision: ``fp32`` or ``bf16`` (CUDA bf16 autocast; weights stay fp32).
        optimizer: the weights' optimiser, ``sgd`` (momentum) or ``adam``.
        batch: patches per step.
    """
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    if kind not in ("search", "retrain"):
        raise ValueError(f"kind must be 'search' or 'retrain', got {kind!r}")
    with torch.device("meta"):
        model = build()
    model.train()
    weights, arch = _params(model)
    size = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    w_bytes = sum(p.numel() * p.element_size() for p in weights)
    a_bytes = sum(a.numel() * a.element_size() for a in arch)
    opt = optimizer_slots(optimizer) * w_bytes + (2 * a_bytes if kind == "search" else 0)
    search = kind == "search" and bool(arch)
    if search:
        # the arch step's backward, with the weight step's gradients still held, is the
        # search step's peak: replay only that (half the time), gradients in place
        for p in weights:
            p.grad = torch.zeros_like(p)
    bf16 = precision == "bf16"
    autocast = Bf16Autocast if bf16 else contextlib.nullcontext
    # memory-lean recomputation in backward runs under its forward's autocast state
    recompute = (lambda: Bf16Autocast(cache=False)) if bf16 else None
    tracer = LiveBytes()
    with tracer:  # the batch is part of the step: made inside, so counted
        x = torch.zeros((batch, in_channels, *patch), device="meta")
        _one_step(model, x, loss_fn, arch if search else weights, autocast, None, recompute)
    grads = w_bytes if search else 0
    return StepMemory(weights=size, gradients=grads, optimizer=opt, step_peak=tracer.peak)
