"""``ray.gpus_per_trial: auto``: the share of a GPU a trial asks Ray for, from the memory
model (:mod:`voxnas.trainables.footprint`) and the GPU's memory, so that as many folds as fit
run on one GPU. No Ray, no CUDA needed: :func:`gpu_fraction` is a pure function."""

from __future__ import annotations

import math

from voxnas.config import Config, ConfigError

__all__ = ["HEADROOM", "gpu_fraction", "gpus_per_trial"]

# kept free on each GPU: the CUDA context (~0.3-0.5 GiB a process), cuDNN workspaces and the
# caching allocator's fragmentation, none of which the memory model counts
HEADROOM = 0.15
GIB = 2**30


def gpu_fraction(
    needed: int, per_gpu: int, headroom: float = HEADROOM, what: str = "one trial"
) -> float:
    """``1 / k`` for the most trials ``k`` whose ``needed`` bytes fit in ``per_gpu`` bytes
    less ``headroom`` (a fraction); 1.0 when one fits. Rounded down to Ray's 4 decimals so
    that ``k`` shares never add up to more than one GPU.

    Raises:
        ConfigError: when one trial does not fit, naming both sizes and what to change.
    """
    if needed <= 0 or per_gpu <= 0 or not 0 <= headroom < 1:
        raise ValueError(f"gpu_fraction({needed}, {per_gpu}, {headroom}): bad arguments")
    usable = per_gpu * (1 - headroom)
    k = int(usable // needed)
    if k < 1:
        raise ConfigError(
            f"ray.gpus_per_trial: auto: {what} needs {needed / GIB:.1f} GiB of GPU memory, "
            f"a GPU has {per_gpu / GIB:.1f} GiB ({usable / GIB:.1f} GiB usable, "
            f"{headroom:.0%} kept free): use a smaller patch (patch.search / patch.train), "
            "a smaller network (model.width or model.init_kernels), "
            "model.memory_lean: true (supernet search), or a GPU with bf16 autocast"
        )
    return math.floor(10_000 / k) / 10_000


def gpus_per_trial(
    cfg: Config, stage: str, per_gpu: int | None, precision: str, headroom: float = HEADROOM
) -> float:
    """The GPU share a trial of ``stage`` asks for: the configured number, or for ``auto``
    the :func:`gpu_fraction` of the modelled peak (0 without GPUs: ``per_gpu`` None)."""
    if not per_gpu:
        return 0.0
    if cfg.ray.gpus_per_trial != "auto":
        return float(cfg.ray.gpus_per_trial)
    from voxnas.trainables.footprint import trial_bytes

    needed = trial_bytes(cfg, stage, precision)
    what = f"one {stage} trial ({precision}, {cfg.model.space})"
    return gpu_fraction(needed, per_gpu, headroom, what)
