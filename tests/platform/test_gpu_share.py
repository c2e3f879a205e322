"""``ray.gpus_per_trial: auto`` on fake GPU sizes: no Ray, no CUDA."""

import pytest

from tests.tiny import ROOT
from voxnas.config import ConfigError, load_config
from voxnas.platform.gpu_share import gpu_fraction, gpus_per_trial
from voxnas.trainables.footprint import trial_bytes

GIB = 2**30


@pytest.mark.parametrize(
    ("needed_gib", "per_gpu_gib", "share"),
    [
        (10, 80, 0.1666),  # 68 GiB usable (15% kept free): 6 trials
        (30, 80, 0.5),
        (50, 80, 1.0),
        (1, 16, 0.0769),  # 13.6 GiB usable: 13 trials
    ],
)
def test_gpu_fraction_packs_trials(needed_gib, per_gpu_gib, share):
    got = gpu_fraction(needed_gib * GIB, per_gpu_gib * GIB)
    assert got == share
    assert got * round(1 / got) <= 1.0


def test_gpu_fraction_error_names_sizes_and_remedies():
    with pytest.raises(ConfigError) as err:
        gpu_fraction(int(20.5 * GIB), 16 * GIB)
    msg = str(err.value)
    for part in ("20.5 GiB", "16.0 GiB", "13.6 GiB usable", "patch", "model.width",
                 "memory_lean", "bf16"):  # fmt: skip
        assert part in msg, part


def test_gpus_per_trial_auto_from_the_model():
    cfg = load_config(ROOT / "configs" / "demo.yaml", ["ray.gpus_per_trial=auto"])
    assert gpus_per_trial(cfg, "search", None, "fp32") == 0.0  # no GPUs: none
    needed = trial_bytes(cfg, "search", "fp32")
    per_gpu = int(needed * 4.5 / 0.85)  # room for four trials
    assert gpus_per_trial(cfg, "search", per_gpu, "fp32") == 0.25
    with pytest.raises(ConfigError, match="one search trial"):
        gpus_per_trial(cfg, "search", needed, "fp32")  # headroom leaves too little


def test_gpus_per_trial_number_is_kept():
    cfg = load_config(ROOT / "configs" / "demo.yaml", ["ray.gpus_per_trial=0.5"])
    assert gpus_per_trial(cfg, "search", 16 * GIB, "fp32") == 0.5
    assert gpus_per_trial(cfg, "search", None, "fp32") == 0.0
    with pytest.raises(ConfigError, match="gpus_per_trial"):
        load_config(ROOT / "configs" / "demo.yaml", ["ray.gpus_per_trial=most"])
