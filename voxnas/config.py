"""Experiment configuration: frozen pydantic models loaded from YAML with ``--set`` overrides.

Spatial sizes are given in voxel order ``(X, Y, Z)`` as nibabel reads them: the first two
axes are in-plane, the last is the slice axis, so a "3x3x1" kernel is a 2D in-plane kernel.
Defaults are the papers' numbers (seed 000 = V-NAS, seed 002 = NAS-3D-U-Net).

Over 300 lines because the whole schema (every section, default and validation) is kept in
one file, so a user reads every setting in one place.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PositiveInt,
    Tag,
    ValidationError,
    model_validator,
)

from voxnas.run_layout import RunLayout
from voxnas.shape_rules import check_patch

__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "PatchConfig",
    "RayConfig",
    "RetrainConfig",
    "SearchConfig",
    "SplitConfig",
    "SyntheticConfig",
    "TrackingConfig",
    "apply_overrides",
    "flatten_config",
    "load_config",
]

Size3 = tuple[PositiveInt, PositiveInt, PositiveInt]
Positive = Annotated[float, Field(gt=0)]


# a config name is a folder name under the workdir: no separators, no "..", no leading dot
RESERVED_NAMES = {"cache", "data", "mlartifacts", "mlflow.db"}  # other workdir entries


def _safe_name(name: str) -> str:
    if name in RESERVED_NAMES:
        raise ValueError(f"{name!r} is the name of another workdir entry; choose another")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name):
        raise ValueError(
            f"{name!r} is not a folder name (letters, digits, '.', '_', '-'; no '/', no "
            "leading '.'; at most 100 characters): it names the run folder in the workdir"
        )
    return name


SafeName = Annotated[str, AfterValidator(_safe_name)]


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the key."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SyntheticConfig(_Frozen):
    """Phantom dataset generated when ``data.root`` is not set."""

    layout: Literal["msd", "brats", "paired"] = "msd"
    cases: int = Field(8, ge=2, le=10_000)
    shape: Size3 = (64, 64, 32)
    seed: int = 0
    # held-out scans in imagesTs/ (MSD layout), labels kept aside in labelsTs/
    test_cases: int = Field(1, ge=0, le=1000)
    # ct: organ + distractor (+ tumour); planted: the planted-architecture task (README)
    phantom: Literal["ct", "planted"] = "ct"
    tumour: bool = True

    @model_validator(mode="after")
    def _check_phantom(self) -> SyntheticConfig:
        if self.layout == "brats" and self.phantom != "ct":
            raise ValueError("phantom 'planted' is CT-like: use layout msd or paired")
        return self


class DataConfig(_Frozen):
    root: Path | None = None
    layout: Literal["auto", "msd", "brats", "paired"] = "auto"
    synthetic: SyntheticConfig = SyntheticConfig()
    intensity: Literal["ct", "mri"] = "ct"
    ct_window: tuple[float, float] = (-100.0, 240.0)
    mri_xi: Positive = 100.0
    mri_lambda: Positive = 0.1
    target_spacing: tuple[Positive, Positive, Positive] | None = None
    cache_dir: Path | None = None
    target: Literal["labels", "brats_regions"] = "labels"

    @model_validator(mode="after")
    def _check_window(self) -> DataConfig:
        lo, hi = self.ct_window
        if not lo < hi:
            raise ValueError(f"data.ct_window {list(self.ct_window)}: low must be below high")
        return self


class SplitConfig(_Frozen):
    folds: int = Field(4, ge=2)
    seed: int = 0
    train_val_ratio: tuple[PositiveInt, PositiveInt] = (2, 1)


class PatchConfig(_Frozen):
    search: Size3 = (96, 96, 64)
    train: Size3 = (96, 96, 64)
    test: Size3 = (64, 64, 64)
    foreground_ratio: float = Field(0.5, ge=0.0, le=1.0)
    batch_size: int = Field(1, ge=1)
    flip: bool = True
    rotate90: bool = False
    rotate_degrees: float = 0.0
    elastic_prob: float = Field(0.0, ge=0.0, le=1.0)
    tiling: Literal["sliding", "auto_fit"] = "sliding"
    overlap: float = Field(0.25, ge=0.0, lt=1.0)
    blend: Literal["constant", "gaussian"] = "gaussian"


class ModelConfig(_Frozen):
    space: Literal["vnas", "nas3dunet"] = "vnas"
    width: float = Field(1.0, gt=0.0)
    init_kernels: int = Field(4, ge=1)
    depth: int = Field(4, ge=1)
    nodes: int = Field(3, ge=1)
    channel_change: bool = True
    psp: bool = True
    # recompute the supernet's candidate activations in backward (same gradients, less
    # memory, one more forward of the candidates): search_spaces/mixed.py
    memory_lean: bool = False
    # with memory_lean: recompute only the MixedOps (those keeping the most first) needed for
    # the modelled step to hold at most this many times the memory of the largest
    # single-choice network's retraining step at the same patch; null: recompute them all
    # (trainables/lean_plan.py)
    lean_budget: float | None = Field(1.4, gt=0.0)


class OptimConfig(_Frozen):
    """Weight (kernel) optimizer: seed 000 SGD + poly decay; seed 002 code Adam + plateau."""

    name: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(0.05, gt=0.0)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: Literal["poly", "plateau", "constant"] = "poly"
    poly_power: float = 0.9
    plateau_patience: int = 5
    plateau_factor: float = 0.5
    # paper silent; DARTS clips weight gradients at norm 5. Batch-1 3D patches with BatchNorm
    # give rare gradient spikes that otherwise throw SGD (momentum 0.9) out of its basin.
    grad_clip: float | None = Field(5.0, gt=0.0)


class ArchOptimConfig(_Frozen):
    """Alpha optimizer: seed 000's Adam (lr 3e-4, weight decay 1e-3; betas not given, so
    PyTorch's defaults) with the decay decoupled (AdamW); see ``make_arch_optimizer``."""

    lr: float = Field(3e-4, gt=0.0)
    weight_decay: float = Field(1e-3, ge=0.0)
    betas: tuple[float, float] = (0.9, 0.999)


class SearchConfig(_Frozen):
    """Bilevel search. Length is ``epochs * iterations_per_epoch`` (paper: 40,000 iterations)."""

    epochs: int = Field(200, ge=1)
    iterations_per_epoch: int = Field(200, ge=1)
    warmup_epochs: int = Field(20, ge=0)
    weight_optim: OptimConfig = OptimConfig()
    arch_optim: ArchOptimConfig = ArchOptimConfig()
    arch_first: bool = False
    stop_count: int | None = None
    val_batches: int = Field(2, ge=1)
    # "each": one search per cross-validation fold (V-NAS), genotypes aggregated; "one": a
    # single search over every training case split train:val (seed 002)
    folds: Literal["each", "one"] = "each"


class RetrainConfig(_Frozen):
    epochs: int = Field(200, ge=1)
    iterations_per_epoch: int = Field(200, ge=1)
    optim: OptimConfig = OptimConfig()
    genotype: str = "searched"
    extra_rows: tuple[str, ...] = ()
    # patches whose average replaces BatchNorm's running statistics after training (0: off);
    # paper silent; see search_spaces.layers.recalibrate_batchnorm
    bn_recalibration: int = Field(200, ge=0)
    # fixed patches of the fold's test cases scored after every epoch (loss, patch DSC), the
    # validation curve of a retrain; for watching only, nothing is chosen on it (0: off)
    val_batches: int = Field(2, ge=0)
    # the final stage: the aggregated genotype trained on every training case (same epochs
    # and optimiser), registered as the deployable model; the fold models stay the evidence
    final: bool = True


class LossConfig(_Frozen):
    name: Literal["ce", "dice", "dice_ce"] = "ce"
    dice_eps: float = 1e-6


class EvalConfig(_Frozen):
    hd_percentile: float = 95.0
    # BatchNorm at inference: "patch" normalises each inference patch with its own statistics,
    # as batch-1 training did; "running" is classic eval mode (README, Departures)
    bn_stats: Literal["patch", "running"] = "patch"
    overlays: int = Field(3, ge=0)


HpValue = Annotated[str, Field(max_length=200)] | int | float | bool


class ChoiceSpec(_Frozen):
    """``{type: choice, values: [...]}``: one of a list of plain values."""

    type: Literal["choice"] = "choice"
    values: list[HpValue] = Field(min_length=1, max_length=64)


class RangeSpec(_Frozen):
    """``{type: uniform|loguniform|randint, low, high}``."""

    type: Literal["uniform", "loguniform", "randint"]
    low: float
    high: float

    @model_validator(mode="after")
    def _check_range(self) -> RangeSpec:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.type == "loguniform" and self.low <= 0:
            raise ValueError(f"loguniform needs low > 0, got {self.low}")
        return self


def _hp_kind(v: Any) -> str:
    kind = v.get("type", "choice") if isinstance(v, dict) else getattr(v, "type", "choice")
    return "choice" if kind == "choice" else "range"


HpSpec = Annotated[
    Annotated[ChoiceSpec, Tag("choice")] | Annotated[RangeSpec, Tag("range")],
    Discriminator(_hp_kind),
]


def _config_key_exists(key: str) -> bool:
    """Whether ``key`` (``search.weight_optim.lr``) names a setting of :class:`Config`."""
    model: Any = Config
    for part in key.split("."):
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return False
        model = fields[part].annotation
    return getattr(model, "model_fields", None) is None  # a leaf, not a whole section


class RayConfig(_Frozen):
    address: str | None = None
    cpus_per_trial: float = Field(1.0, gt=0.0)
    # a fraction of a GPU per trial, or "auto": from the memory model and the GPU's memory
    # (platform/gpu_share.py); without GPUs, trials get none either way
    gpus_per_trial: Annotated[float, Field(ge=0.0)] | Literal["auto"] = 0.0
    max_concurrent_trials: int | None = None
    max_failures: int = Field(2, ge=0)
    # a finished trial's worker process runs the next trial: its start-up and imports
    # (torch, voxnas, mlflow: seconds) are paid once per worker, not once per trial
    reuse_actors: bool = True
    num_samples: int = Field(1, ge=1)
    local_cpus: int | None = None
    # the hyperparameters Optuna samples: config key -> spec (typed, at most 32 keys)
    hp_space: dict[Annotated[str, Field(max_length=200)], HpSpec] = Field(
        default_factory=dict, max_length=32
    )


class TrackingConfig(_Frozen):
    enabled: bool = True
    experiment: str | None = None
    tracking_uri: str | None = None
    registered_model: str | None = None


class Config(_Frozen):
    name: SafeName = "voxnas"
    workdir: Path = Path("voxnas_work")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data: DataConfig = DataConfig()
    split: SplitConfig = SplitConfig()
    patch: PatchConfig = PatchConfig()
    model: ModelConfig = ModelConfig()
    search: SearchConfig = SearchConfig()
    retrain: RetrainConfig = RetrainConfig()
    loss: LossConfig = LossConfig()
    eval: EvalConfig = EvalConfig()
    ray: RayConfig = RayConfig()
    tracking: TrackingConfig = TrackingConfig()

    @model_validator(mode="after")
    def _check_consistency(self) -> Config:
        if self.data.target == "brats_regions" and self.loss.name == "ce":
            raise ValueError("loss.name: 'ce' needs single-label targets; BraTS regions use 'dice'")
        for which in ("search", "train", "test"):
            check_patch(
                self.model.space, getattr(self.patch, which), self.model.depth, f"patch.{which}"
            )
        unknown = [k for k in self.ray.hp_space if not _config_key_exists(k)]
        if unknown:
            raise ValueError(f"ray.hp_space: {unknown} name no setting of the config")
        return self

    @property
    def run_dir(self) -> Path:
        return self.workdir / self.name

    @property
    def layout(self) -> RunLayout:
        """Every path under the run folder (:mod:`voxnas.run_layout`)."""
        return RunLayout(self.run_dir)


def _format_error(err: ValidationError, source: str) -> str:
    """One line: ``<file>: invalid configuration: <key>: <problem>; <key>: <problem>``."""
    parts = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"] if p not in ("choice", "range")) or "(root)"
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(msg if key == "(root)" else f"{key}: {msg}")
    return f"{source}: invalid configuration: " + "; ".join(dict.fromkeys(parts))


MAX_CONFIG_BYTES = 1_000_000
MAX_CONFIG_NODES = 100_000


def _check_size(node: Any, source: str) -> None:
    """Refuse documents that expand to more than MAX_CONFIG_NODES values: YAML aliases can
    make a small file describe an exponentially large tree (an "anchor bomb"). Counting
    stops at the limit, so the check itself stays cheap."""
    count, stack = 0, [node]
    while stack:
        item = stack.pop()
        count += 1
        if count > MAX_CONFIG_NODES:
            raise ConfigError(
                f"{source}: expands to more than {MAX_CONFIG_NODES} values (YAML aliases?)"
            )
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _yaml_value(text: str, source: str) -> Any:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        detail = str(err).splitlines()[0]
        raise ConfigError(f"{source}: not valid YAML ({detail})") from None
    _check_size(value, source)
    return value


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Return a copy of ``raw`` with ``section.key=value`` overrides applied (values as YAML)."""
    _check_size(raw, "config")
    out = yaml.safe_load(yaml.safe_dump(raw)) or {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = out
        for p in parts[:-1]:
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {p!r} is not a section")
            node = child
        if not all(parts):
            raise ConfigError(f"--set {item!r}: empty key")
        node[parts[-1]] = _yaml_value(value, f"--set {key}")
    return out


def _from_dict(raw: dict[str, Any], source: str) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_error(err, source)) from None


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a YAML config (or the defaults when ``path`` is None) and apply overrides."""
    raw: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes; not a config")
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path}: unreadable ({err})") from None
        raw = _yaml_value(text, str(path)) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
    return _from_dict(apply_overrides(raw, overrides), source)


def config_to_dict(cfg: Config) -> dict[str, Any]:
    return cfg.model_dump(mode="json")


def config_from_dict(raw: dict[str, Any]) -> Config:
    return _from_dict(raw, "config")


def flatten_config(cfg: Config) -> dict[str, str]:
    """``{"search.weight_optim.lr": "0.05", ...}`` for logging as params."""
    flat: dict[str, str] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            flat[prefix] = str(node)

    walk("", config_to_dict(cfg))
    return flat
