"""Losses and targets. Logits are ``(B, K, X, Y, Z)``; labels are class indices ``(B, X, Y, Z)``.

- ``ce``: cross-entropy over softmax classes (seed 000).
- ``dice``: seed 002 eq. 3, the weighted multi-class Dice on sigmoid outputs,
  ``1 - 1/K sum_h (eps + 2 sum Y Yhat) / (eps + sum Y + sum Yhat)``, eps = 1e-6.
- ``dice_ce``: MONAI's DiceCELoss (softmax Dice + cross-entropy), for single-label targets.

BraTS regions from label values 0/1/2/4: WT = {1, 2, 4}, TC = {1, 4}, ET = {4}.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from voxnas.data.layouts import BRATS_REGIONS

__all__ = ["BRATS_REGIONS", "make_loss", "make_target", "regions_from_indices", "soft_dice_loss"]


def regions_from_indices(labels: torch.Tensor, label_values: Sequence[int]) -> torch.Tensor:
    """Class indices -> ``(B, 3, ...)`` float WT/TC/ET masks (label values as in BraTS)."""
    values = torch.as_tensor(list(label_values), device=labels.device)[labels.long()]
    return torch.stack(
        [torch.isin(values, torch.tensor(v, device=labels.device)) for v in BRATS_REGIONS.values()],
        dim=1,
    ).float()


def make_target(labels: torch.Tensor, target: str, label_values: Sequence[int]) -> torch.Tensor:
    return (
        regions_from_indices(labels, label_values) if target == "brats_regions" else labels.long()
    )


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Seed 002 eq. 3 on sigmoid probabilities; sums run over the batch and the patch."""
    prob = torch.sigmoid(logits.float())
    dims = (0, *range(2, prob.ndim))
    inter = (prob * target).sum(dims)
    denom = prob.sum(dims) + target.sum(dims)
    return 1.0 - ((eps + 2.0 * inter) / (eps + denom)).mean()


def make_loss(
    name: str, dice_eps: float = 1e-6
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if name == "ce":
        return lambda logits, target: F.cross_entropy(logits.float(), target)
    if name == "dice":
        return lambda logits, target: soft_dice_loss(logits, target, dice_eps)
    if name == "dice_ce":
        from monai.losses import DiceCELoss

        loss = DiceCELoss(to_onehot_y=True, softmax=True)
        return lambda logits, target: loss(logits.float(), target[:, None])
    raise ValueError(f"unknown loss {name!r} (ce, dice, dice_ce)")
