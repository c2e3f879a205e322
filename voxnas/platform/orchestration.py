"""The protocol on Ray Tune: the only module that builds a ``ray.tune.Tuner``.

check -> preprocess/cache (once, on the driver) -> K fold searches in parallel (x
hyperparameter sets from Optuna, the same set on every fold) -> best set -> aggregated
genotype -> K retrains in parallel (plus extra rows) -> evaluation -> results tables.
Every stage writes its results to the run directory; a rerun with ``resume`` skips finished
stages and restores unfinished Tuners (finished trials are not rerun).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from .config import Config, config_to_dict
from .data.prepare import prepare_data
from .report import aggregate_stage, collect_retrain_rows, results_tables
from .results import load_aggregate, load_search_result, retrain_dir, save_search_result

__all__ = [
    "InterruptedStageError",
    "init_ray",
    "run_protocol",
    "run_retrain_stage",
    "run_search_stage",
]


class InterruptedStageError(RuntimeError):
    """A stage stopped before all its trials finished (Ctrl-C, lost driver)."""


WORKER_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PYTHONUNBUFFERED": "1",
}
# per-epoch checkpoints with num_to_keep force frequent experiment snapshots; they are small
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def absolute(cfg: Config) -> Config:
    """Paths resolved on the driver: trial workers run in their own working directories."""
    data = cfg.data.model_copy(
        update={
            "root": Path(cfg.data.root).resolve() if cfg.data.root else None,
            "cache_dir": Path(cfg.data.cache_dir).resolve() if cfg.data.cache_dir else None,
        }
    )
    return cfg.model_copy(update={"workdir": Path(cfg.workdir).resolve(), "data": data})


def init_ray(cfg: Config, address: str | None = None) -> None:
    import ray

    if ray.is_initialized():
        return
    address = address or cfg.ray.address or os.environ.get("RAY_ADDRESS")
    env = {
        "env_vars": {
            **WORKER_ENV,
            **{k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")},
        }
    }
    if address:
        print(f"connecting to Ray cluster at {address}")
        ray.init(address=address, runtime_env=env)
    else:
        ray.init(num_cpus=cfg.ray.local_cpus, include_dashboard=False, runtime_env=env)
    print(f"Ray resources: {ray.cluster_resources()}")


def _hp_space(cfg: Config) -> dict[str, Any]:
    from ray import tune

    kinds = {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint}
    space = {}
    for key, spec in cfg.ray.hp_space.items():
        name = "hp__" + key.replace(".", "__")
        kind = spec.get("type", "choice")
        if kind == "choice":
            space[name] = tune.choice(list(spec["values"]))
        elif kind in kinds:
            space[name] = kinds[kind](spec["low"], spec["high"])
        else:
            raise ValueError(
                f"ray.hp_space.{key}: unknown type {kind!r} (choice, {', '.join(kinds)})"
            )
    return space


def _fit(
    cfg: Config,
    name: str,
    trainable,
    param_space: dict,
    resume: bool,
    search_alg=None,
    num_samples: int = 1,
):
    from ray import tune

    gpus = cfg.ray.gpus_per_trial if _has_gpus() else 0.0
    trainable = tune.with_resources(trainable, {"cpu": cfg.ray.cpus_per_trial, "gpu": gpus})
    storage = cfg.run_dir / "tune"
    path = storage / name
    if resume and tune.Tuner.can_restore(str(path)):
        print(f"resuming {name} from {path}")
        tuner = tune.Tuner.restore(
            str(path), trainable, resume_unfinished=True, resume_errored=True
        )
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                search_alg=search_alg,
                num_samples=num_samples,
                max_concurrent_trials=cfg.ray.max_concurrent_trials,
                metric="val_dice" if search_alg else None,
                mode="max" if search_alg else None,
                trial_dirname_creator=_trial_dirname,
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=str(storage),
                verbose=1,
                failure_config=tune.FailureConfig(max_failures=cfg.ray.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            ),
        )
    grid = tuner.fit()
    errors = [r.error for r in grid if r.error is not None]
    if errors:
        raise RuntimeError(f"{len(errors)} {name} trial(s) failed; first error: {errors[0]}")
    unfinished = [r for r in grid if not (r.metrics or {}).get("final")]
    if unfinished:
        raise InterruptedStageError(
            f"{name} stage interrupted with {len(unfinished)} unfinished trial(s); "
            f"state saved under {path}: rerun with --resume"
        )
    return grid


def _trial_dirname(trial) -> str:
    cfg = trial.config
    job = cfg.get("job") or {}
    if job:
        return f"{job['arch'].replace('/', '-')}_fold{job['fold']}_{trial.trial_id}"
    return f"fold{cfg.get('fold', cfg.get('__trial_index__', 0))}_{trial.trial_id}"


def _prepare_all_folds(cfg: Config) -> None:
    prep = prepare_data(cfg)
    for k in range(cfg.split.folds):
        prep.fold(k)  # writes <run>/splits/fold<k>.json and its statistics


def _ensure_tracking(cfg: Config) -> None:
    """Create the MLflow database and experiment on the driver before trials write to it."""
    if cfg.tracking.enabled:
        from .tracking import ensure_experiment

        ensure_experiment(cfg)


def _has_gpus() -> bool:
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0


def run_search_stage(
    cfg: Config, address: str | None = None, resume: bool = True, parent_run_id: str | None = None
) -> dict[int, dict]:
    """K fold searches (x hyperparameter sets) in parallel; writes each fold's result of the
    best set (highest mean final val DSC over folds)."""
    cfg = absolute(cfg)
    k = cfg.split.folds
    done = {f: load_search_result(cfg, f) for f in range(k)}
    if resume and all(done.values()):
        print(f"search stage already finished ({cfg.run_dir / 'search'}); reusing it")
        return done
    _prepare_all_folds(cfg)  # check + cache + every fold's split, once, before any trial
    _ensure_tracking(cfg)
    init_ray(cfg, address)
    from ray.tune.search import Repeater
    from ray.tune.search.optuna import OptunaSearch

    from ..trainables._tune import search_trainable

    base = {"voxnas": config_to_dict(cfg), "parent_run_id": parent_run_id}
    space = _hp_space(cfg)
    if space:  # Optuna proposes a set; the Repeater hands it to all K folds, Optuna sees the mean
        alg = Repeater(
            OptunaSearch(metric="val_dice", mode="max", seed=cfg.seed), repeat=k, set_index=True
        )
        grid = _fit(
            cfg, "search", search_trainable, {**base, **space}, resume, alg, cfg.ray.num_samples * k
        )
    else:
        from ray import tune

        grid = _fit(
            cfg,
            "search",
            search_trainable,
            {**base, "fold": tune.grid_search(list(range(k)))},
            resume,
        )
    sets: dict[str, dict[int, dict]] = defaultdict(dict)
    for r in grid:
        hp = {key: v for key, v in r.config.items() if key.startswith("hp__")}
        sets[json.dumps(hp, sort_keys=True)][int(r.metrics["fold"])] = {**r.metrics, "hp": hp}
    scored = {
        s: sum(m["val_dice"] for m in f.values()) / len(f) for s, f in sets.items() if len(f) == k
    }
    best = max(scored, key=scored.get)
    (cfg.run_dir / "search").mkdir(parents=True, exist_ok=True)
    (cfg.run_dir / "search" / "hp_sets.json").write_text(
        json.dumps(
            [
                {"hp": json.loads(s), "mean_val_dice": v, "best": s == best}
                for s, v in scored.items()
            ],
            indent=1,
        )
    )
    from ..search_spaces.genotypes import genotype_from_json
    from ..trainables.search import SearchResult

    for fold, m in sets[best].items():
        res = SearchResult(
            fold,
            genotype_from_json(m["genotype_json"]),
            json.loads(m["alphas_json"]),
            json.loads(m.get("history_json", "[]")),
            int(m["epochs_run"]),
            bool(m["stopped_by_count"]),
        )
        save_search_result(cfg, res, extra={"hp": m["hp"], "val_dice": m["val_dice"]})
    print(
        f"search stage: {len(grid)} trials, best hyperparameter set {best} "
        f"(mean val DSC {scored[best]:.4f})"
    )
    return {f: load_search_result(cfg, f) for f in range(k)}


def run_retrain_stage(
    cfg: Config,
    genotype,
    extra_rows: tuple[str, ...] = (),
    address: str | None = None,
    resume: bool = True,
    parent_run_id: str | None = None,
) -> list[dict]:
    """Retrain ``genotype`` (searched genotype or architecture name) and ``extra_rows`` on
    every fold in parallel; returns all per-case rows."""
    cfg = absolute(cfg)
    from ray import tune

    from ..trainables._tune import retrain_trainable

    archs = []
    for spec in (genotype, *extra_rows):
        if isinstance(spec, str):
            archs.append({"arch": spec, "genotype_json": None})
        else:
            archs.append({"arch": "searched", "genotype_json": json.dumps(spec.to_dict())})
    todo = [
        dict(a, fold=f, out_dir=str(retrain_dir(cfg, a["arch"], f)))
        for a in archs
        for f in range(cfg.split.folds)
    ]
    if not (resume and all((Path(t["out_dir"]) / "metrics.json").is_file() for t in todo)):
        _prepare_all_folds(cfg)
        _ensure_tracking(cfg)
        init_ray(cfg, address)
        base = {"voxnas": config_to_dict(cfg), "parent_run_id": parent_run_id}
        _fit(cfg, "retrain", retrain_trainable, {**base, "job": tune.grid_search(todo)}, resume)
    else:
        print("retrain stage already finished; reusing it")
    return collect_retrain_rows(cfg)


def run_protocol(cfg: Config, address: str | None = None, resume: bool = False) -> dict:
    """The whole protocol; returns paths and the aggregated genotype."""
    cfg = absolute(cfg)
    prepare_data(cfg)
    from .tracking import ProtocolTracker

    with ProtocolTracker(cfg, resume) as tracker:
        run_search_stage(cfg, address, resume, tracker.parent_id)
        genotype = (load_aggregate(cfg) if resume else None) or aggregate_stage(cfg)
        tracker.log_aggregate(cfg, genotype)
        rows = run_retrain_stage(
            cfg, genotype, tuple(cfg.retrain.extra_rows), address, resume, tracker.parent_id
        )
        text, summary = results_tables(cfg, rows)
        tracker.log_results(cfg, text, summary)
        model_uri = tracker.register_best(cfg)
    print(text)
    return {
        "genotype": genotype,
        "results": cfg.run_dir / "results",
        "model_uri": model_uri,
        "run_dir": cfg.run_dir,
        "parent_run_id": tracker.parent_id,
    }
