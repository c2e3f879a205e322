"""Metrics against hand-computed answers, anisotropic spacing, empty masks; losses."""

import math

import numpy as np
import pytest
import torch

from voxnas.evaluation.metrics import (
    compute_dice,
    compute_hd95,
    compute_sensitivity,
    compute_specificity,
    format_summary,
    summarize,
)
from voxnas.trainables.losses import make_loss, regions_from_indices, soft_dice_loss


def _masks():
    gt = np.zeros((10, 10, 10), bool)
    gt[2:6, 2:6, 2:6] = True  # 64 voxels
    pred = np.zeros_like(gt)
    pred[3:7, 2:6, 2:6] = True  # shifted by one along x: overlap 48
    return pred, gt


def test_dice_sensitivity_specificity_hand_computed():
    pred, gt = _masks()
    assert compute_dice(pred, gt) == pytest.approx(2 * 48 / 128)
    assert compute_sensitivity(pred, gt) == pytest.approx(48 / 64)
    # background 936 voxels, false positives 16
    assert compute_specificity(pred, gt) == pytest.approx((1000 - 64 - 16) / 936)


def test_hd95_shift_with_anisotropic_spacing():
    pred, gt = _masks()
    assert compute_hd95(pred, gt, (1.0, 1.0, 1.0)) == pytest.approx(1.0)
    assert compute_hd95(pred, gt, (2.5, 0.8, 0.8)) == pytest.approx(2.5)  # shift along x
    shifted = np.zeros_like(gt)
    shifted[2:6, 2:6, 4:8] = True  # shift by 2 along z, 3 mm slices
    assert compute_hd95(shifted, gt, (0.8, 0.8, 3.0)) == pytest.approx(6.0)


def test_hd95_single_outlier_is_ignored_by_the_percentile():
    gt = np.zeros((40, 40, 40), bool)
    gt[5:35, 5:35, 5:35] = True
    pred = gt.copy()
    pred[0, 0, 0] = True  # one far voxel: the max distance sees it, the 95th percentile not
    assert compute_hd95(pred, gt, (1, 1, 1)) == pytest.approx(0.0)
    assert compute_hd95(pred, gt, (1, 1, 1), percentile=100) == pytest.approx(math.sqrt(75))


def test_hd95_matches_monai():
    from monai.metrics import compute_hausdorff_distance

    rng = np.random.default_rng(0)
    from scipy.ndimage import gaussian_filter

    a = gaussian_filter(rng.normal(size=(24, 24, 16)), 3) > 0.02
    b = gaussian_filter(rng.normal(size=(24, 24, 16)), 3) > 0.02
    spacing = (0.8, 0.8, 2.5)
    ours = compute_hd95(a, b, spacing)
    theirs = compute_hausdorff_distance(
        torch.from_numpy(a)[None, None].float(),
        torch.from_numpy(b)[None, None].float(),
        percentile=95,
        spacing=spacing,
    )
    assert ours == pytest.approx(float(theirs), rel=1e-3)


def test_empty_masks_brats_convention():
    empty = np.zeros((240, 240, 155), bool)
    some = empty.copy()
    some[100:110, 100:110, 70:80] = True
    assert compute_dice(empty, empty) == 1.0 and compute_hd95(empty, empty, (1, 1, 1)) == 0.0
    assert compute_sensitivity(empty, empty) == 1.0
    assert compute_dice(some, empty) == 0.0 and compute_dice(empty, some) == 0.0
    assert compute_hd95(some, empty, (1, 1, 1)) == pytest.approx(373.13, abs=0.01)
    assert compute_hd95(empty, some, (1, 1, 1)) == pytest.approx(373.13, abs=0.01)
    assert compute_sensitivity(empty, some) == 0.0 and compute_sensitivity(some, empty) == 1.0
    assert compute_specificity(np.ones(5, bool), np.ones(5, bool)) == 1.0


def test_summary_like_the_papers_tables():
    rows = [
        {"case": "a", "dice/organ": 0.9},
        {"case": "b", "dice/organ": 0.7},
        {"case": "c", "dice/organ": 0.8},
    ]
    s = summarize(rows)["dice/organ"]
    assert s["mean"] == pytest.approx(0.8) and s["median"] == pytest.approx(0.8)
    assert s["std"] == pytest.approx(np.std([0.9, 0.7, 0.8]))
    assert (s["max"], s["min"], s["n"]) == (0.9, 0.7, 3)
    table = format_summary(summarize(rows))
    assert "| dice/organ | 80.00% +- 8.16% | 90.00% | 70.00% | 80.00% | 3 |" in table


def test_regions_and_weighted_dice_eq3():
    labels = torch.tensor([[0, 1, 2, 3]])  # indices of label values 0, 1, 2, 4
    r = regions_from_indices(labels, [0, 1, 2, 4])
    assert r[0, :, :].tolist() == [[0, 1, 1, 1], [0, 1, 0, 1], [0, 0, 0, 1]]  # WT, TC, ET
    logits = torch.tensor([[[10.0, 10.0], [-10.0, 10.0], [-10.0, -10.0]]])  # (1, 3, 2)
    target = torch.tensor([[[1.0, 1.0], [0.0, 1.0], [0.0, 1.0]]])
    p = torch.sigmoid(logits)
    per = [
        (1e-6 + 2 * (p[0, h] * target[0, h]).sum()) / (1e-6 + p[0, h].sum() + target[0, h].sum())
        for h in range(3)
    ]
    assert float(soft_dice_loss(logits, target)) == pytest.approx(1 - float(sum(per)) / 3)
    from monai.losses import DiceLoss

    monai = DiceLoss(sigmoid=True, smooth_nr=1e-6, smooth_dr=1e-6, batch=True)
    x, t = torch.randn(2, 3, 4, 4, 4), (torch.rand(2, 3, 4, 4, 4) > 0.5).float()
    assert float(soft_dice_loss(x, t)) == pytest.approx(float(monai(x, t)), abs=1e-5)


@pytest.mark.parametrize("name", ["ce", "dice_ce"])
def test_softmax_losses_decrease_toward_the_truth(name):
    loss = make_loss(name)
    target = torch.randint(0, 3, (1, 4, 4, 4))
    good = torch.nn.functional.one_hot(target, 3).movedim(-1, 1).float() * 8
    assert float(loss(good, target)) < float(loss(torch.zeros(1, 3, 4, 4, 4), target))
