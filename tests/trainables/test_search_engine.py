"""The bilevel search works (planted optimum), resumes bit-for-bit, and runs on real data."""

import numpy as np
import pytest
import torch
from tiny import TINY_NAS3D, TINY_VNAS
from torch import nn

from voxnas.config import load_config
from voxnas.search_spaces.mixed import MixedOp
from voxnas.trainables.engine import MemoryReporter, MemoryTracker
from voxnas.trainables.search import bilevel_step, run_search_fold


class Planted(nn.Module):
    """One searchable layer over the V-NAS kernel families, single channel, linear."""

    def __init__(self):
        super().__init__()
        self.op = MixedOp(
            {
                "2d": nn.Conv3d(1, 1, (3, 3, 1), padding=(1, 1, 0), bias=False),
                "3d": nn.Conv3d(1, 1, 3, padding=1, bias=False),
                "p3d": nn.Sequential(
                    nn.Conv3d(1, 1, (3, 3, 1), padding=(1, 1, 0), bias=False),
                    nn.Conv3d(1, 1, (1, 1, 3), padding=(0, 0, 1), bias=False),
                ),
            }
        )
        self.alpha = nn.Parameter(torch.zeros(3))

    def arch_parameters(self):
        return [self.alpha]

    def weight_parameters(self):
        return [p for n, p in self.named_parameters() if n != "alpha"]

    def forward(self, x):
        return self.op(x, torch.softmax(self.alpha, 0))


def _planted_search(seed: int) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    # a random non-separable 3x3x3 filter: only the 3D op can represent it (2D sees no other
    # slice, P3D is a rank-1 in-plane x through-plane product)
    kernel = torch.randn(1, 1, 3, 3, 3, generator=g)
    torch.manual_seed(seed)
    model = Planted()
    # weights learn slower than alphas: once the mixture fits exactly the loss is 0 and
    # alphas stop moving, so they need time to tell the ops apart first
    w_opt = torch.optim.SGD(model.weight_parameters(), lr=0.01, momentum=0.9)
    a_opt = torch.optim.Adam(model.arch_parameters(), lr=0.02, betas=(0.5, 0.999))

    def batch():
        x = torch.randn(4, 1, 10, 10, 10, generator=g)
        return x, torch.nn.functional.conv3d(x, kernel, padding=1)

    loss = nn.functional.mse_loss
    for it in range(150):
        bilevel_step(model, w_opt, a_opt, loss, batch(), batch(), update_arch=it >= 20)
    return torch.softmax(model.alpha.detach(), 0).numpy()


def test_planted_optimum_found_in_9_of_10_seeds():
    wins = [int(np.argmax(_planted_search(seed)) == 1) for seed in range(10)]
    assert sum(wins) >= 9, wins


def _tiny_cfg(tmp_path, space="vnas", **extra):
    if space == "vnas":
        sets = [
            *TINY_VNAS,
            "patch.batch_size=2",
            "search.epochs=4",
            "search.iterations_per_epoch=2",
            "search.warmup_epochs=1",
            "search.arch_optim.lr=0.05",
        ]
        path = "configs/demo.yaml"
    else:
        sets = [
            *TINY_NAS3D,
            "search.epochs=6",
            "search.iterations_per_epoch=2",
            "search.stop_count=3",
            "search.arch_optim.lr=0.05",
        ]
        path = "configs/nas3dunet_brats.yaml"
    sets += [f"workdir={tmp_path}"] + [f"{k}={v}" for k, v in extra.items()]
    return load_config(path, sets)


@pytest.mark.integration
@pytest.mark.parametrize("space", ["vnas", "nas3dunet"])
def test_resume_gives_the_same_alphas_and_genotype(space, tmp_path):
    cfg = _tiny_cfg(tmp_path / "a", space)
    straight = run_search_fold(cfg, 0, resume=False, log=lambda s: None)
    cfg_b = _tiny_cfg(tmp_path / "b", space)
    part = run_search_fold(cfg_b, 0, stop_after_epochs=2, log=lambda s: None)
    assert not part.complete and part.epochs_run == 2
    resumed = run_search_fold(cfg_b, 0, resume=True, log=lambda s: None)
    assert resumed.genotype == straight.genotype
    for k in straight.alphas:
        np.testing.assert_allclose(resumed.alphas[k], straight.alphas[k], rtol=1e-5, atol=1e-6)
    assert [h["epoch"] for h in resumed.history] == [h["epoch"] for h in straight.history]


@pytest.mark.integration
def test_search_reports_and_tracks_every_epoch(tmp_path):
    cfg = _tiny_cfg(tmp_path)
    rep, trk = MemoryReporter(), MemoryTracker()
    res = run_search_fold(cfg, 1, rep, trk, log=lambda s: None)
    assert [r["epoch"] for r in rep.results] == [0, 1, 2, 3]
    assert all(np.isfinite(r["train_loss"]) and 0 <= r["val_dice"] <= 1 for r in rep.results)
    assert "arch_loss" not in rep.results[0]  # warm-up: no alpha updates, no NaN placeholder
    assert np.isfinite(rep.results[-1]["arch_loss"])
    assert set(trk.metrics["arch_loss"]) == {1, 2, 3}  # epoch 0 is the warm-up: not logged
    assert all(np.isfinite(v) for m in trk.metrics.values() for v in m.values())
    tops = trk.metrics["alpha_top_mean"]
    assert all(1 / 3 - 1e-6 <= p <= 1 for p in tops.values()) and tops[3] > tops[0]
    assert set(trk.metrics["alpha/enc07/p3d"]) == {0, 1, 2, 3}
    assert len(trk.texts["genotypes.jsonl"].splitlines()) == 4
    # alphas moved away from uniform after the warm-up
    assert not np.allclose(res.alphas["encoder"], 0)


@pytest.mark.integration
def test_nas3d_stop_rule(tmp_path):
    # warm-up epochs leave the alphas untouched and are not counted: NC = 1 stops at the
    # first epoch that updates alphas (epoch 2), after 2 trained epochs, not at epoch 0
    cfg = _tiny_cfg(tmp_path, "nas3dunet", **{"search.warmup_epochs": 2, "search.stop_count": 1})
    res = run_search_fold(cfg, 0, log=lambda s: None)
    assert res.stopped_by_count and res.epochs_run == 2 == len(res.history)
    # a warm-up longer than the search counts nothing: NE epochs, the alphas' own structure
    cfg = _tiny_cfg(tmp_path / "w", "nas3dunet", **{"search.warmup_epochs": 100})
    res = run_search_fold(cfg, 0, log=lambda s: None)
    assert not res.stopped_by_count and res.epochs_run == 6
    cfg = _tiny_cfg(tmp_path / "n", "nas3dunet", **{"search.stop_count": 50})
    res = run_search_fold(cfg, 0, log=lambda s: None)
    assert not res.stopped_by_count and res.epochs_run == 6  # NE epochs, most common wins


@pytest.mark.integration
def test_a_diverging_search_stops_with_an_error_naming_fold_and_epoch(tmp_path):
    from voxnas.trainables.search import NonFiniteLossError

    cfg = _tiny_cfg(
        tmp_path, **{"search.weight_optim.lr": 1e30, "search.weight_optim.grad_clip": 1e30}
    )
    with pytest.raises(
        NonFiniteLossError, match=r"search fold 0 epoch \d+ (train|val|arch): loss is"
    ):
        run_search_fold(cfg, 0, log=lambda s: None)


def test_fold_out_of_range(tmp_path):
    from voxnas.data.splits import SplitError

    with pytest.raises(SplitError, match="fold 5 does not exist"):
        run_search_fold(_tiny_cfg(tmp_path), 5, log=lambda s: None)
