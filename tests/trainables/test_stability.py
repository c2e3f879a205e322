"""The causes of the demo's diverging search, each pinned by a test that fails without its fix."""

import numpy as np
import pytest
import torch
from torch import nn

from voxnas.config import ArchOptimConfig
from voxnas.search_spaces.layers import BatchNorm3d
from voxnas.trainables.search import NonFiniteLossError, check_finite, make_arch_optimizer


def test_batchnorm_with_plenty_of_values_is_plain_batchnorm():
    torch.manual_seed(0)
    ours, ref = BatchNorm3d(4), nn.BatchNorm3d(4)
    x = torch.randn(1, 4, 4, 4, 4)  # 64 values per channel
    torch.testing.assert_close(ours(x), ref(x))
    torch.testing.assert_close(ours.running_var, ref.running_var)


def test_batchnorm_over_two_values_has_bounded_gradients():
    """Batch statistics of two nearly equal values amplify their difference ~1/sqrt(eps):
    plain BN's input gradient explodes, ours normalises with running statistics."""
    x = torch.tensor([0.0, 1e-3]).view(1, 1, 1, 1, 2).repeat(1, 3, 1, 1, 1)
    w = torch.tensor([1.0, -1.0]).view(1, 1, 1, 1, 2)
    grads = {}
    for name, bn in (("plain", nn.BatchNorm3d(3)), ("ours", BatchNorm3d(3))):
        xi = x.clone().requires_grad_(True)
        (bn(xi) * w).sum().backward()
        grads[name] = xi.grad.abs().max().item()
    assert grads["plain"] > 100 and grads["ours"] < 2, grads


def test_batchnorm_updates_running_statistics_in_the_small_case():
    bn = BatchNorm3d(2)
    x = torch.full((1, 2, 1, 1, 2), 3.0)
    bn(x)
    assert torch.allclose(bn.running_mean, torch.full((2,), 0.3))
    assert int(bn.num_batches_tracked) == 1


def test_alpha_weight_decay_does_not_drag_small_gradients_back_to_uniform():
    """With coupled L2 (plain Adam), tiny loss gradients are swamped by ``wd * alpha`` and
    Adam's normalisation turns that into full-size steps back to zero; decoupled decay
    (AdamW) shrinks by ``lr * wd`` a step only."""
    cfg = ArchOptimConfig(lr=0.03, weight_decay=1e-3)

    def after(optim_cls) -> float:
        alpha = nn.Parameter(torch.tensor([1.0, 0.0, 0.0]))
        opt = optim_cls([alpha])
        for _ in range(200):
            opt.zero_grad()
            alpha.grad = torch.tensor([-1e-5, 5e-6, 5e-6])  # a weak, consistent signal
            opt.step()
        return float(alpha.detach()[0] - alpha.detach()[1])

    coupled = after(
        lambda p: torch.optim.Adam(p, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    )
    ours = after(lambda p: make_arch_optimizer(p, cfg))
    assert ours > 5 and coupled < 1, (ours, coupled)


def test_non_finite_loss_names_where():
    assert check_finite(0.5, "x") == 0.5
    for bad in (float("nan"), float("inf")):
        with pytest.raises(NonFiniteLossError, match="search fold 2 epoch 7 train: loss is"):
            check_finite(bad, "search fold 2 epoch 7 train")
    assert np.isfinite(check_finite(1e30, "big but finite"))


def test_recalibration_averages_statistics_over_the_batches_and_restores_momentum():
    from voxnas.search_spaces.layers import recalibrate_batchnorm

    net = nn.Sequential(nn.Conv3d(1, 2, 1), BatchNorm3d(2)).eval()
    xs = [torch.full((1, 1, 4, 4, 4), float(v)) + torch.randn(1, 1, 4, 4, 4) for v in (0, 2, 4)]
    assert recalibrate_batchnorm(net, iter(xs)) == 1
    bn = net[1]
    with torch.no_grad():
        means = torch.stack([net[0](x).mean(dim=(0, 2, 3, 4)) for x in xs]).mean(0)
    torch.testing.assert_close(bn.running_mean, means)
    assert bn.momentum == 0.1 and not net.training
