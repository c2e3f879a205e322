"""``ray.gpus_per_trial: auto``: the share of a GPU a trial asks Ray for, from the memory
model (:mod:`voxnas.trainables.footprint`) and the GPU's memory, so that as many folds as fit
run on one GPU. No Ray, no CUDA needed: :func:`gpu_fraction` is a pure function."""

from __future__ import annotations

import math

from voxnas.config import Config, ConfigError
from voxnas.search_spaces.memory import GIB

__all__ = [
    "HEADROOM",
    "MAX_TRIALS_PER_GPU",
    "PER_PROCESS_BYTES",
    "SIZE_KEYS",
    "gpu_fraction",
    "gpus_per_trial",
]

# kept free on each GPU for the caching allocator's rounding and fragmentation, which the
# memory model does not count
HEADROOM = 0.15
# every Ray trial is its own process: its own CUDA context (~0.3-0.5 GiB) and cuDNN/cuBLAS
# workspaces, none of which the memory model counts; added to each trial's need
PER_PROCESS_BYTES = GIB // 2
# beyond this many processes a GPU is time-sliced to no gain (and Ray's 4-decimal shares
# would round towards 0): a tiny model on a 141 GiB GPU asks for 1/32, never 0
MAX_TRIALS_PER_GPU = 32
# settings that change a trial's memory (patch and batch, network size, optimiser state):
# sampling them per trial defeats a single share
SIZE_KEYS = ("patch.", "model.")
_SIZE_SUFFIXES = ("optim.name", "optim.momentum")


def gpu_fraction(
    needed: int,
    per_gpu: int,
    headroom: float = HEADROOM,
    what: str = "one trial",
    per_process: int = PER_PROCESS_BYTES,
    max_trials: int = MAX_TRIALS_PER_GPU,
    bf16_helps: bool = True,
) -> float:
    """``1 / k`` for the most trials ``k`` (at most ``max_trials``) whose ``needed`` bytes plus
    ``per_process`` bytes each fit in ``per_gpu`` bytes less ``headroom`` (a fraction); 1.0
    when one fits. Rounded down to Ray's 4 decimals so that ``k`` shares never add up to more
    than one GPU; never 0. ``bf16_helps``: whether the error may suggest bf16 autocast (not
    when the need already is bf16's, nor when bf16 holds more, as GroupNorm networks do).

    Raises:
        ConfigError: when one trial does not fit, naming both sizes and what to change.
    """
    if needed <= 0 or per_gpu <= 0 or per_process < 0 or max_trials < 1 or not 0 <= headroom < 1:
        raise ValueError(f"gpu_fraction({needed}, {per_gpu}, {headroom}): bad arguments")
    usable = per_gpu * (1 - headroom)
    k = min(int(usable // (needed + per_process)), max_trials)
    if k < 1:
        raise ConfigError(
            f"ray.gpus_per_trial: auto: {what} needs {needed / GIB:.1f} GiB of GPU memory "
            f"(+{per_process / GIB:.1f} GiB for its process' CUDA context), a GPU has "
            f"{per_gpu / GIB:.1f} GiB ({usable / GIB:.1f} GiB usable, {headroom:.0%} kept "
            "free): use a smaller patch (patch.search / patch.train), "
            "a smaller network (model.width or model.init_kernels), "
            "model.memory_lean: true (supernet search; a lower model.lean_budget, or null, "
            "recomputes more)" + (", or a GPU with bf16 autocast" if bf16_helps else "")
        )
    return math.floor(10_000 / k) / 10_000


def _check_not_sampled(cfg: Config) -> None:
    sampled = [k for k in cfg.ray.hp_space if k.startswith(SIZE_KEYS) or k.endswith(_SIZE_SUFFIXES)]
    if sampled:
        raise ConfigError(
            f"ray.gpus_per_trial: auto: ray.hp_space samples {', '.join(sampled)}, which "
            "change each trial's memory; one share cannot fit them all: give "
            "ray.gpus_per_trial as a number, or drop them from ray.hp_space"
        )


def gpus_per_trial(
    cfg: Config,
    stage: str,
    per_gpu: int,
    precision: str,
    archs: list | None = None,
    headroom: float = HEADROOM,
) -> float:
    """The GPU share a trial of ``stage`` asks for: the configured number, or for ``auto``
    the :func:`gpu_fraction` of the modelled peak of the stage's largest job (``archs``:
    the architectures a retrain stage trains; see ``footprint.trial_bytes``) on a GPU of
    ``per_gpu`` bytes. A cluster without GPUs is the caller's case (no share at all).

    Raises:
        ConfigError: ``auto`` while ``ray.hp_space`` samples a size, or when a trial does
            not fit.
    """
    if cfg.ray.gpus_per_trial != "auto":
        return float(cfg.ray.gpus_per_trial)
    _check_not_sampled(cfg)
    from voxnas.trainables.footprint import trial_bytes

    needed = trial_bytes(cfg, stage, precision, archs)
    what = f"one {stage} trial ({precision}, {cfg.model.space})"
    try:
        return gpu_fraction(needed, per_gpu, headroom, what, bf16_helps=False)
    except ConfigError:
        if precision == "bf16" or trial_bytes(cfg, stage, "bf16", archs) >= needed:
            raise
    return gpu_fraction(needed, per_gpu, headroom, what, bf16_helps=True)
