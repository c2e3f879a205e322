"""Ray Tune glue: the only trainable-side module that imports ray.

A trainable validates its config, calls the plain function, and reports. Checkpoints are the
plain functions' own checkpoint folders, handed to Tune each epoch and restored from
``tune.get_checkpoint()`` after a failure or ``Tuner.restore``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import ray
from ray import tune

from ..platform.config import apply_overrides, config_from_dict
from .retrain import run_retrain_fold
from .search import run_search_fold

__all__ = ["TuneReporter", "hp_overrides", "retrain_trainable", "search_trainable"]


class TuneReporter:
    """Reporter that forwards each epoch's scalars and checkpoint folder to Ray Tune."""

    def report(self, metrics: dict[str, Any], checkpoint: Path | None = None) -> None:
        scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool))}
        scalars["node_id"] = ray.get_runtime_context().get_node_id()
        ckpt = tune.Checkpoint.from_directory(str(checkpoint)) if checkpoint else None
        tune.report(scalars, checkpoint=ckpt)


def hp_overrides(config: dict[str, Any]) -> list[str]:
    """Tune's sampled hyperparameters (``hp__search__weight_optim__lr``) as ``--set`` strings."""
    return [
        f"{k[4:].replace('__', '.')}={json.dumps(v)}"
        for k, v in config.items()
        if k.startswith("hp__")
    ]


def _restore_into(workdir: Path, name: str = "state") -> Path:
    """The folder the plain function checkpoints into, filled from Tune's checkpoint if any."""
    state = workdir / name
    ckpt = tune.get_checkpoint()
    if ckpt is not None:
        shutil.rmtree(state, ignore_errors=True)
        ckpt.to_directory(str(state))
    return state


def _cfg(config: dict[str, Any]):
    return config_from_dict(apply_overrides(config["voxnas"], hp_overrides(config)))


def _tracker(cfg, config: dict[str, Any], stage: str, fold: int, name: str):
    from ..platform.tracking import trial_tracker

    return trial_tracker(
        cfg,
        config.get("parent_run_id"),
        stage,
        fold,
        name,
        tune.get_context().get_trial_id(),
        hp_overrides(config),
    )


def _hp_tag(config: dict[str, Any]) -> str:
    """Names a hyperparameter set in run names: ``0`` for the config's own, else a short hash
    of the sampled values (the same on every fold of a set)."""
    hp = hp_overrides(config)
    return hashlib.sha1(" ".join(sorted(hp)).encode()).hexdigest()[:6] if hp else "0"


def search_trainable(config: dict[str, Any]) -> None:
    cfg = _cfg(config)
    fold = int(config.get("fold", config.get("__trial_index__", 0)))
    workdir = Path(tune.get_context().get_trial_dir())
    (workdir / "worker.pid").write_text(str(os.getpid()))  # for operators (and the kill test)
    tracker = _tracker(cfg, config, "search", fold, f"search f{fold} h{_hp_tag(config)}")
    try:
        res = run_search_fold(
            cfg,
            fold,
            TuneReporter(),
            tracker,
            checkpoint_dir=_restore_into(workdir),
            log=lambda s: print(s),
        )
        if tracker is not None:
            tracker.finish_search(res)
    finally:
        if tracker is not None:
            tracker.close()
    tune.report(
        {
            "final": True,
            "fold": fold,
            "epoch": res.epochs_run - 1,
            "val_dice": res.history[-1]["val_dice"] if res.history else 0.0,
            "genotype_json": json.dumps(res.genotype.to_dict()),
            "alphas_json": json.dumps(res.alphas),
            "history_json": json.dumps(res.history),
            "stopped_by_count": res.stopped_by_count,
            "epochs_run": res.epochs_run,
        }
    )


def retrain_trainable(config: dict[str, Any]) -> None:
    cfg = _cfg(config)
    job = config["job"]
    fold, arch, out_dir = int(job["fold"]), job["arch"], Path(job["out_dir"])
    from ..search_spaces.genotypes import genotype_from_json
    from ..search_spaces.registry import Architecture

    spec = arch
    if job.get("genotype_json"):
        g = genotype_from_json(job["genotype_json"])
        spec = Architecture(arch, g.space, g)
    # Continue only from this trial's own Tune checkpoint (a restart after a failure, or
    # `--resume`): the retrain folder is shared across runs, and an old run's checkpoint
    # there must never be picked up by a fresh run.
    resume = tune.get_checkpoint() is not None
    _restore_into(out_dir, "checkpoint")
    tracker = _tracker(cfg, config, "retrain", fold, f"retrain {arch} f{fold}")
    try:
        res = run_retrain_fold(
            cfg,
            fold,
            spec,
            TuneReporter(),
            tracker,
            out_dir=out_dir,
            resume=resume,
            log=lambda s: print(s),
        )
        if tracker is not None:
            tracker.finish_retrain(res)
    finally:
        if tracker is not None:
            tracker.close()
    tune.report(
        {
            "final": True,
            "fold": fold,
            "rows_json": json.dumps(res.rows),
            "model_path": str(res.model_path),
        }
    )
