from pathlib import Path

import pytest
from pydantic import ValidationError

from voxnas.config import ConfigError, flatten_config, load_config

CONFIGS = sorted(Path(__file__).parent.parent.joinpath("configs").glob("*.yaml"))


def test_defaults_are_the_papers_numbers():
    cfg = load_config(None)
    w, a = cfg.search.weight_optim, cfg.search.arch_optim
    assert (w.name, w.lr, w.momentum, w.weight_decay, w.poly_power) == ("sgd", 0.05, 0.9, 5e-4, 0.9)
    assert (a.lr, a.weight_decay) == (3e-4, 1e-3)
    assert cfg.search.warmup_epochs == 20
    assert cfg.search.epochs * cfg.search.iterations_per_epoch == 40_000
    assert cfg.data.ct_window == (-100.0, 240.0)
    assert cfg.split.folds == 4 and cfg.split.train_val_ratio == (2, 1)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert cfg.name == path.stem


def test_paper_configs():
    nih = load_config("configs/vnas_nih.yaml")
    assert nih.patch.train == (96, 96, 64) and nih.patch.test == (64, 64, 64)
    brats = load_config("configs/nas3dunet_brats.yaml")
    assert brats.patch.search == (64, 64, 64) and brats.patch.train == (128, 128, 128)
    assert brats.split.folds == 5 and brats.split.train_val_ratio == (4, 1)
    assert (brats.data.mri_xi, brats.data.mri_lambda, brats.loss.dice_eps) == (100.0, 0.1, 1e-6)
    assert brats.search.stop_count == 40 and brats.search.epochs == 200
    for name in ("vnas_msd_lung", "vnas_msd_pancreas"):
        assert load_config(f"configs/{name}.yaml").patch.train == (64, 64, 64)


def test_overrides_apply_and_parse_yaml_values():
    cfg = load_config(
        "configs/demo.yaml", ["search.epochs=3", "patch.train=[64, 32, 16]", "data.root=/x"]
    )
    assert cfg.search.epochs == 3 and cfg.patch.train == (64, 32, 16)
    assert str(cfg.data.root) == "/x"


def test_unknown_key_is_one_clear_error():
    with pytest.raises(ConfigError, match=r"search\.epoch: Extra inputs are not permitted"):
        load_config(None, ["search.epoch=3"])


def test_bad_value_names_the_key():
    with pytest.raises(ConfigError, match=r"patch\.foreground_ratio"):
        load_config(None, ["patch.foreground_ratio=2"])
    with pytest.raises(ConfigError, match="expected section.key=value"):
        load_config(None, ["search.epochs"])


def test_config_is_frozen():
    cfg = load_config(None)
    with pytest.raises(ValidationError, match="frozen"):
        cfg.seed = 3  # type: ignore[misc]


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)


def test_flatten():
    flat = flatten_config(load_config(None))
    assert flat["search.weight_optim.lr"] == "0.05"


@pytest.mark.parametrize(
    "override,message",
    [
        ("patch.search=[48,32,16]", "patch.search (48, 32, 16): X and Y must be multiples of 32"),
        ("patch.test=[32,32,8]", "patch.test"),
        ('ray.hp_space={"search.nope": {"values": [1]}}', "name no setting"),
        ('ray.hp_space={"search.epochs": {"values": [[1, 2]]}}', "ray.hp_space.search.epochs"),
        ('ray.hp_space={"search.epochs": {"type": "uniform", "low": 2, "high": 1}}', "below high"),
        ('ray.hp_space={"search.epochs": {"type": "loguniform", "low": 0, "high": 1}}', "low > 0"),
        ('ray.hp_space={"search.epochs": {"values": []}}', "at least 1"),
    ],
)
def test_patch_sizes_and_hp_space_are_checked_when_the_config_loads(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config("configs/demo.yaml", [override])


def test_hp_space_is_typed():
    cfg = load_config(
        "configs/demo.yaml",
        [
            'ray.hp_space={"search.weight_optim.lr": '
            '{"type": "loguniform", "low": 0.01, "high": 0.1}, '
            '"search.arch_first": {"values": [true, false]}}'
        ],
    )
    lr = cfg.ray.hp_space["search.weight_optim.lr"]
    assert (lr.type, lr.low, lr.high) == ("loguniform", 0.01, 0.1)
    assert cfg.ray.hp_space["search.arch_first"].values == [True, False]
