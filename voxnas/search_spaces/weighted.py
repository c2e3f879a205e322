"""``w * op(x)`` without a pass of its own: the weight folded into the op's last scaling.

A MixedOp multiplies every candidate's output by its alpha weight. Most candidates end in an
affine layer, a norm (+ ReLU) or a squeeze-and-excitation scaling, so the weight can ride on
that layer's scale instead of costing a read and a write of the whole output forward and three
passes backward (``mul``'s two gradients and the reduction for the weight's):

- ``w * norm(y) = norm'(y)`` with the affine weight and bias multiplied by ``w``
  (GroupNorm, voxnas' BatchNorm3d: any ``w``);
- ``w * relu(norm(y)) = relu(norm'(y))`` for ``w >= 0`` (softmax rows; the caller checks);
- ``w * (x * s) = x * (s * w)`` for squeeze-and-excitation's per-channel scale ``s``.

Everything else is multiplied as before. The results equal ``w * op(x)`` up to float rounding
(a product of three factors associated differently), and so do the gradients: for the
weight's, autograd goes through the small affine tensors instead of the large output. A folded
``nn.Sequential`` is run module by module: forward hooks on the candidate container itself do
not run, its children's do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["weighted"]


def _scaled(module: nn.Module, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor | None:
    """``w * module(x)`` folded, or None when ``module`` is not a scaling layer."""
    if hasattr(module, "scaled"):  # layers.BatchNorm3d, ops.SqueezeExcite
        return module.scaled(x, w)
    if isinstance(module, nn.GroupNorm):
        weight = w.expand(x.shape[1]) if module.weight is None else module.weight * w
        bias = None if module.bias is None else module.bias * w
        return F.group_norm(x, module.num_groups, weight, bias, module.eps)
    return None


def weighted(op: nn.Module, x: torch.Tensor, w: torch.Tensor, start: int = 0) -> torch.Tensor:
    """``w * op(x)`` (``w`` a 0-d tensor >= 0), folded into ``op``'s last scaling layer when
    ``op`` ends in one (nested ``nn.Sequential``s are followed to their last module). With
    ``start``, ``op`` is an ``nn.Sequential`` and ``x`` the output of its first ``start``
    modules (run elsewhere: :mod:`voxnas.search_spaces.shared_head`)."""
    if start:
        modules = list(op)[start:]
    else:
        out = _scaled(op, x, w)
        if out is not None:
            return out
        if not (isinstance(op, nn.Sequential) and len(op) > 0):
            return w * op(x)
        modules = list(op)
    *body, last = modules
    relu = isinstance(last, nn.ReLU) and len(body) > 0
    if relu:  # w * relu(z) = relu(w * z) for w >= 0
        *body, last = body
    for module in body:
        x = module(x)
    out = _scaled(last, x, w)
    if out is None:
        out = weighted(last, x, w)
        return F.relu(out) if relu else out
    # a norm's or a scaling's output is not saved for its backward: ReLU may overwrite it
    return F.relu(out, inplace=True) if relu else out
