"""``ray.gpus_per_trial: auto`` on fake GPU sizes: no Ray cluster, no CUDA."""

import pytest

from tests.tiny import ROOT
from voxnas.config import ConfigError, load_config
from voxnas.platform import gpu_share
from voxnas.platform.gpu_info import GpuInfo
from voxnas.platform.gpu_share import (
    MAX_TRIALS_PER_GPU,
    PER_PROCESS_BYTES,
    gpu_fraction,
    gpus_per_trial,
)
from voxnas.search_spaces.memory import GIB
from voxnas.trainables import footprint

DEMO = ROOT / "configs" / "demo.yaml"
MIB = 2**20


@pytest.mark.parametrize(
    ("needed_gib", "per_gpu_gib", "share"),
    [
        (10, 80, 0.1666),  # 68 GiB usable (15% kept free), 10.5 GiB a trial: 6 trials
        (30, 80, 0.5),
        (50, 80, 1.0),
        (1, 16, 0.1111),  # 13.6 GiB usable, 1.5 GiB a trial (the process' context): 9
    ],
)
def test_gpu_fraction_packs_trials(needed_gib, per_gpu_gib, share):
    got = gpu_fraction(needed_gib * GIB, per_gpu_gib * GIB)
    assert got == share
    assert got * round(1 / got) <= 1.0


def test_gpu_fraction_counts_each_process_and_is_never_zero():
    # a tiny model on a 141 GiB GPU: 1 MiB a trial would be k = 119,000 (share 0.0 at
    # Ray's 4 decimals); each process' CUDA context and the cap keep it sensible
    share = gpu_fraction(MIB, 141 * GIB)
    assert share > 0 and round(1 / share) == MAX_TRIALS_PER_GPU
    assert gpu_fraction(MIB, 141 * GIB, max_trials=10**6) == pytest.approx(1 / 239, abs=1e-4)
    # 4 trials of 3.5 GiB would fit without the contexts (14 <= 0.85 * 16.5), not with them
    assert gpu_fraction(int(3.5 * GIB), int(16.5 * GIB)) == 0.3333
    assert PER_PROCESS_BYTES >= 0.3 * GIB


def test_gpu_fraction_error_names_sizes_and_remedies():
    with pytest.raises(ConfigError) as err:
        gpu_fraction(int(20.5 * GIB), 16 * GIB)
    msg = str(err.value)
    for part in ("20.5 GiB", "16.0 GiB", "13.6 GiB usable", "CUDA context", "patch",
                 "model.width", "memory_lean", "bf16"):  # fmt: skip
        assert part in msg, part


def _fake_sizes(monkeypatch, sizes: dict[str, int]) -> list:
    """footprint.step_bytes answering from ``sizes`` (by architecture name), recording calls."""
    calls = []

    def step_bytes(cfg, spec, patch, kind, precision="fp32", foreach=True):
        name = spec if isinstance(spec, str) else spec.name
        calls.append((name, kind, tuple(patch)))
        return sizes[name]

    monkeypatch.setattr(footprint, "step_bytes", step_bytes)
    return calls


def test_retrain_stage_sized_by_its_largest_job(monkeypatch):
    """``mix`` in retrain.extra_rows is a whole supernet (frozen alphas): it sizes the stage,
    as a retrain step (weights only) at the train patch."""
    calls = _fake_sizes(monkeypatch, {"3D/3D": 2 * GIB, "mix": 5 * GIB, "2D/2D": GIB})
    cfg = load_config(DEMO, ["ray.gpus_per_trial=auto", "retrain.extra_rows=[mix, 2D/2D]"])
    assert footprint.trial_bytes(cfg, "retrain", "bf16") == 5 * GIB
    assert ("mix", "retrain", tuple(cfg.patch.train)) in calls
    # the jobs' own architectures, when the stage knows them
    assert footprint.trial_bytes(cfg, "retrain", "bf16", ["2D/2D"]) == GIB
    share = gpus_per_trial(cfg, "retrain", 24 * GIB, "bf16")
    assert share == gpu_fraction(5 * GIB, 24 * GIB)  # 20.4 GiB usable, 5.5 a trial: 3


@pytest.mark.parametrize("key", ["patch.batch_size", "model.width", "search.weight_optim.name"])
def test_gpus_per_trial_auto_refuses_sampled_sizes(key):
    values = '["sgd", "adam"]' if key.endswith("name") else "[1, 2]"
    hp = f'ray.hp_space={{"{key}": {{"values": {values}}}}}'
    cfg = load_config(DEMO, ["ray.gpus_per_trial=auto", hp])
    with pytest.raises(ConfigError, match=rf"hp_space samples {key}"):
        gpus_per_trial(cfg, "search", 80 * GIB, "bf16")
    fixed = load_config(DEMO, ["ray.gpus_per_trial=0.25", hp])
    assert gpus_per_trial(fixed, "search", 80 * GIB, "bf16") == 0.25


def test_gpus_per_trial_auto_from_the_model(monkeypatch):
    _fake_sizes(monkeypatch, {"vnas-supernet": 3 * GIB})
    cfg = load_config(DEMO, ["ray.gpus_per_trial=auto"])
    per_gpu = int((3 * GIB + PER_PROCESS_BYTES) * 4.5 / 0.85)  # room for four trials
    assert gpus_per_trial(cfg, "search", per_gpu, "fp32") == 0.25
    with pytest.raises(ConfigError, match="one search trial"):
        gpus_per_trial(cfg, "search", 3 * GIB, "fp32")  # headroom leaves too little


def test_gpus_per_trial_number_is_kept():
    cfg = load_config(DEMO, ["ray.gpus_per_trial=0.5"])
    assert gpus_per_trial(cfg, "search", 16 * GIB, "fp32") == 0.5
    with pytest.raises(ConfigError, match="gpus_per_trial"):
        load_config(DEMO, ["ray.gpus_per_trial=most"])


@pytest.mark.parametrize(("precision", "bf16_gib", "suggested"),
                         [("fp32", 4, True), ("fp32", 12, False), ("bf16", 10, False)])  # fmt: skip
def test_bf16_suggested_only_when_it_is_smaller(monkeypatch, precision, bf16_gib, suggested):
    from voxnas.trainables import footprint as fp

    sizes = {"fp32": 10 * GIB, "bf16": bf16_gib * GIB}
    monkeypatch.setattr(fp, "trial_bytes", lambda cfg, stage, p, archs=None: sizes[p])
    cfg = load_config(DEMO, ["ray.gpus_per_trial=auto"])
    with pytest.raises(ConfigError) as err:
        gpus_per_trial(cfg, "search", 8 * GIB, precision)
    assert ("bf16 autocast" in str(err.value)) == suggested


def _tune(monkeypatch, cluster_gpus: bool, gpu: GpuInfo | None):
    pytest.importorskip("ray")
    from voxnas.platform import tune

    monkeypatch.setattr(tune, "_has_gpus", lambda: cluster_gpus)
    monkeypatch.setattr(tune, "local_gpu", lambda: gpu)
    return tune


def test_trial_gpus_auto_sizes_the_local_gpu(monkeypatch, capsys):
    _fake_sizes(monkeypatch, {"vnas-supernet": 3 * GIB})
    h200 = GpuInfo("NVIDIA H200", 141 * GIB, True, "nvml")
    tune = _tune(monkeypatch, True, h200)
    cfg = load_config(DEMO, ["ray.gpus_per_trial=auto"])
    assert tune._trial_gpus(cfg, "search") == gpu_fraction(3 * GIB, 141 * GIB)
    out = capsys.readouterr().out
    assert "bf16" in out and "NVIDIA H200, 141.0 GiB (read via nvml)" in out


def test_trial_gpus_without_a_driver_gpu_gives_one_and_says_why(monkeypatch, capsys):
    tune = _tune(monkeypatch, True, None)
    cfg = load_config(DEMO, ["ray.gpus_per_trial=auto"])
    assert tune._trial_gpus(cfg, "search") == 1.0
    assert "driver sees none to size" in capsys.readouterr().out


def test_trial_gpus_cpu_only_cluster_gets_none(monkeypatch):
    tune = _tune(monkeypatch, False, GpuInfo("x", 80 * GIB, True, "nvml"))
    for setting in ("auto", "0.5"):
        cfg = load_config(DEMO, [f"ray.gpus_per_trial={setting}"])
        assert tune._trial_gpus(cfg, "retrain") == 0.0
    assert gpu_share.HEADROOM == 0.15
