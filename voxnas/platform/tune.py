"""Ray Tune glue: the ONLY module that imports ray.

The driver side (:func:`init_ray`, :func:`search_trials`, :func:`retrain_trials`) builds and
runs the Tuners; the trial side (:func:`search_trainable`, :func:`retrain_trainable`)
rebuilds the config, opens its fold's data handle (prepared once by the driver), calls the
plain fold-engine function and reports. Checkpoints are the fold engine's own folders, handed
to Tune each epoch and restored from ``tune.get_checkpoint()`` after a failure or
``Tuner.restore``: a trial resumes from *its own* checkpoint only.

Over 300 lines by design: every Ray call of the platform is here, driver and trial side.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

# Our progress lines differ only in numbers, which Ray's log dedup treats as equal: it would
# print fold 0's line "[repeated 2x]" and hide fold 1's. They are few: no dedup. Ray reads
# this when it is imported, so it is set here, before the import.
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

import ray  # noqa: E402
from ray import tune  # noqa: E402

from voxnas.config import ChoiceSpec, Config, apply_overrides, config_from_dict, config_to_dict
from voxnas.console import verbose
from voxnas.data.prepare import FoldData
from voxnas.platform.gpu_info import local_gpu
from voxnas.platform.gpu_share import gpus_per_trial
from voxnas.platform.hp_sets import hp_overrides, hp_tag, param_name, sampled
from voxnas.run_layout import RunLayout, fold_dirname

__all__ = [
    "InterruptedStageError",
    "TuneReporter",
    "check_ray_address",
    "init_ray",
    "retrain_trainable",
    "retrain_trials",
    "search_trainable",
    "search_trials",
]


class InterruptedStageError(RuntimeError):
    """A stage stopped before all its trials finished (Ctrl-C, lost driver)."""


WORKER_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "PYTHONUNBUFFERED": "1",
}
# per-epoch checkpoints with num_to_keep force frequent experiment snapshots; they are small
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


# Ray's start-up notices for a local instance: a fresh token is generated and kept under
# ~/.ray on every start; nothing for the user to do
_RAY_NOTICES = (
    "Token authentication is enabled",
    "Generated new authentication token",
    "Started a local Ray instance",
)


class _DropRayNotices(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_RAY_NOTICES)


def _quiet_ray_loggers() -> None:
    """Ray's per-checkpoint INFO lines ("Checkpoint successfully created ...", one per epoch
    per trial), Tune's result-file notices and Ray's start-up notices, silenced at their
    source unless verbose."""
    if not verbose():
        for name in ("ray.train", "ray.tune", "ray.air"):
            logging.getLogger(name).setLevel(logging.WARNING)
        for handler in logging.getLogger("ray").handlers:  # filters on loggers don't inherit
            if not any(isinstance(f, _DropRayNotices) for f in handler.filters):
                handler.addFilter(_DropRayNotices())
        # with verbose=0 the legacy reporter prints nothing; the new one still prints a
        # configuration box and TensorBoard hints per Tuner
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


def _log_every(epochs: int) -> int:
    """Progress lines per trial: every epoch when verbose, else three (the first, the middle
    and the last epoch: nine trials of a demo stay within a screen)."""
    return 1 if verbose() else max(1, -(-epochs // 2))


def _mlflow_env(cfg: Config, address: str | None) -> dict[str, str]:
    """``MLFLOW_*`` variables (tokens, passwords) go to the workers only when they need them:
    tracking is on, the store is a server, and the workers are on a cluster (a local Ray
    inherits the driver's environment). Their values are never printed."""
    from voxnas.platform.tracking import tracking_uri

    remote = tracking_uri(cfg).split(":", 1)[0] in ("http", "https", "databricks")
    if not (address and cfg.tracking.enabled and remote):
        return {}
    return {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}


def check_ray_address(cfg: Config, address: str | None, timeout: float = 10.0) -> None:
    """Fail fast (before anything is written) when a Ray address does not answer: ray.init
    on an unreachable address retries for minutes without a word."""
    import socket

    address = address or cfg.ray.address or os.environ.get("RAY_ADDRESS")
    if not address or address == "auto" or ray.is_initialized():
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"Ray address {address!r}: expected HOST:PORT (or ray://HOST:PORT)")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as err:
        raise ConnectionError(
            f"Ray address {address}: no answer within {timeout:.0f} s ({err}); is the "
            "cluster up (`ray status` on the head)?"
        ) from None


def init_ray(cfg: Config, address: str | None = None) -> None:
    if ray.is_initialized():
        return
    check_ray_address(cfg, address)
    address = address or cfg.ray.address or os.environ.get("RAY_ADDRESS")
    _quiet_ray_loggers()
    worker_env = {**WORKER_ENV, "VOXNAS_VERBOSE": "1" if verbose() else "0"}
    env = {"env_vars": {**worker_env, **_mlflow_env(cfg, address)}}
    if address:
        print(f"connecting to Ray cluster at {address}")
        ray.init(address=address, runtime_env=env)
    else:
        ray.init(num_cpus=cfg.ray.local_cpus, include_dashboard=False, runtime_env=env)
    res = ray.cluster_resources()
    if verbose():
        print(f"Ray resources: {res}")
    else:
        nodes = sum(1 for k in res if k.startswith("node:") and k != "node:__internal_head__")
        print(f"Ray: {nodes} node(s), {res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs")


def tune_space(cfg: Config) -> dict[str, Any]:
    """The typed ``ray.hp_space`` as Tune distributions (names from ``hp_sets.param_name``)."""
    kinds = {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint}
    space = {}
    for key, spec in cfg.ray.hp_space.items():
        if isinstance(spec, ChoiceSpec):
            space[param_name(key)] = tune.choice(list(spec.values))
        elif spec.type == "randint":
            space[param_name(key)] = tune.randint(int(spec.low), int(spec.high))
        else:
            space[param_name(key)] = kinds[spec.type](spec.low, spec.high)
    return space


def _has_gpus() -> bool:
    return ray.cluster_resources().get("GPU", 0) > 0


def _trial_gpus(cfg: Config, stage: str, archs: list | None = None) -> float:
    """The configured GPU share, or for ``auto`` the one the memory model fits on the
    smallest local GPU (read via NVML when available: no CUDA context on the driver) for the
    stage's largest job (``archs``: what a retrain stage trains). A cluster without GPUs gives
    trials none; one whose driver sees no GPU to size gives each trial a whole GPU."""
    if not _has_gpus():
        return 0.0
    if cfg.ray.gpus_per_trial != "auto":
        return gpus_per_trial(cfg, stage, 0, "fp32")
    gpu = local_gpu()
    if gpu is None:
        print(
            "ray.gpus_per_trial: auto: the cluster has GPUs but this driver sees none to "
            "size (no NVML, no CUDA here): 1 GPU per trial"
        )
        return 1.0
    precision = "bf16" if gpu.bf16 else "fp32"
    share = gpus_per_trial(cfg, stage, gpu.total_bytes, precision, archs)
    print(
        f"ray.gpus_per_trial: auto: {share:g} GPU per {stage} trial ({precision}, sized "
        f"for {gpu.describe()})"
    )
    return share


def _trial_dirname(trial) -> str:
    cfg = trial.config
    job = cfg.get("job") or {}
    if job:
        return f"{job['arch'].replace('/', '-')}_{fold_dirname(job['fold'])}_{trial.trial_id}"
    if "fold" in cfg:
        return f"{fold_dirname(cfg['fold'])}_{trial.trial_id}"
    return f"set_{trial.trial_id}"


def _fit(
    cfg: Config,
    name: str,
    trainable,
    param_space: dict,
    resume: bool,
    search_alg=None,
    num_samples: int = 1,
    tolerate_errors: bool = False,
    archs: list | None = None,
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Run (or with ``resume`` restore) the Tuner ``name``; returns (config, final metrics)
    per finished trial. Failed trials raise, unless ``tolerate_errors`` (hyperparameter
    search: a diverging set is dropped and the others compete); unfinished ones raise
    :class:`InterruptedStageError`. ``archs``: the architectures a retrain stage trains
    (``ray.gpus_per_trial: auto`` sizes the largest)."""
    gpus = _trial_gpus(cfg, "search" if name == "search" else "retrain", archs)
    trainable = tune.with_resources(trainable, {"cpu": cfg.ray.cpus_per_trial, "gpu": gpus})
    path = cfg.layout.tune_stage(name)
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
                reuse_actors=cfg.ray.reuse_actors,
                metric="val_dice" if search_alg else None,
                mode="max" if search_alg else None,
                trial_dirname_creator=_trial_dirname,
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=str(cfg.layout.tune),
                verbose=1 if verbose() else 0,
                failure_config=tune.FailureConfig(max_failures=cfg.ray.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            ),
        )
    grid = tuner.fit()
    errors = [r.error for r in grid if r.error is not None]
    if errors and not (tolerate_errors and len(errors) < len(grid)):
        raise RuntimeError(f"{len(errors)} {name} trial(s) failed; first error: {errors[0]}")
    for err in errors:
        print(f"{name}: a trial failed and is left out: {str(err).splitlines()[0][:300]}")
    unfinished = [r for r in grid if r.error is None and not (r.metrics or {}).get("final")]
    if unfinished:
        raise InterruptedStageError(
            f"{name} stage interrupted with {len(unfinished)} unfinished trial(s); "
            f"state saved under {path}: rerun with --resume"
        )
    return [(dict(r.config), dict(r.metrics)) for r in grid if r.error is None]


def _base(cfg: Config, handles: dict[str, FoldData], parent_run_id: str | None) -> dict:
    return {
        "voxnas": config_to_dict(cfg),
        "parent_run_id": parent_run_id,
        "data": {k: h.to_dict() for k, h in handles.items()},
    }


def search_trials(
    cfg: Config,
    handles: dict[str, FoldData],
    folds: list[int | None],
    resume: bool,
    parent_run_id: str | None,
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """One search trial per fold (x hyperparameter sets from Optuna: a Repeater hands each
    set to every fold and Optuna sees the mean)."""
    from ray.tune.search import Repeater
    from ray.tune.search.optuna import OptunaSearch

    base = {**_base(cfg, handles, parent_run_id), "folds": folds}
    space = tune_space(cfg)
    if space:
        k = len(folds)
        alg = Repeater(
            OptunaSearch(metric="val_dice", mode="max", seed=cfg.seed), repeat=k, set_index=True
        )
        return _fit(
            cfg,
            "search",
            search_trainable,
            {**base, **space},
            resume,
            alg,
            cfg.ray.num_samples * k,
            tolerate_errors=True,
        )
    return _fit(cfg, "search", search_trainable, {**base, "fold": tune.grid_search(folds)}, resume)


def retrain_trials(
    cfg: Config,
    handles: dict[str, FoldData],
    jobs: list[dict[str, Any]],
    resume: bool,
    parent_run_id: str | None,
    name: str = "retrain",
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """One trial per job ``{arch, genotype_json, fold, out_dir}`` (fold None: final)."""
    base = _base(cfg, handles, parent_run_id)
    archs = list({_job_spec(j).name: _job_spec(j) for j in jobs}.values())
    space = {**base, "job": tune.grid_search(jobs)}
    return _fit(cfg, name, retrain_trainable, space, resume, archs=archs)


def _job_spec(job: dict[str, Any]):
    """The architecture a retrain job trains: a registered name, or its genotype's JSON."""
    from voxnas.search_spaces.genotypes import genotype_from_json
    from voxnas.search_spaces.registry import Architecture, resolve_architecture

    if job.get("genotype_json"):
        g = genotype_from_json(job["genotype_json"])
        return Architecture(job["arch"], g.space, g)
    return resolve_architecture(job["arch"])


# ---------------------------------------------------------------- trial side


class TuneReporter:
    """Reporter that forwards each epoch's scalars and checkpoint folder to Ray Tune."""

    def report(self, metrics: dict[str, Any], checkpoint: Path | None = None) -> None:
        scalars = {
            k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) or v is None
        }
        scalars["node_id"] = ray.get_runtime_context().get_node_id()
        ckpt = tune.Checkpoint.from_directory(str(checkpoint)) if checkpoint else None
        tune.report(scalars, checkpoint=ckpt)


def _restore_into(folder: Path) -> bool:
    """Fill ``folder`` from this trial's own Tune checkpoint; True when there was one."""
    ckpt = tune.get_checkpoint()
    if ckpt is None:
        return False
    shutil.rmtree(folder, ignore_errors=True)
    ckpt.to_directory(str(folder))
    return True


def _cfg(config: dict[str, Any]) -> Config:
    return config_from_dict(apply_overrides(config["voxnas"], hp_overrides(config)))


def _trial_fold(config: dict[str, Any]) -> int | None:
    """The fold a search trial searches: ``fold`` (grid) or the Repeater's index."""
    if "fold" in config:
        return config["fold"]
    if "__trial_index__" in config:
        return config["folds"][int(config["__trial_index__"])]
    raise ValueError("search trial config names no fold ('fold' or '__trial_index__')")


def _handle(config: dict[str, Any], fold: int | None) -> FoldData:
    key = fold_dirname(fold)
    if key not in config["data"]:
        raise ValueError(f"trial config has no data handle for {key}")
    return FoldData.from_dict(config["data"][key])


def _tracker(cfg: Config, config: dict[str, Any], stage: str, fold: int | None, name: str):
    from voxnas.platform.tracking import trial_tracker

    return trial_tracker(
        cfg,
        config.get("parent_run_id"),
        stage,
        fold,
        name,
        tune.get_context().get_trial_id(),
        hp_overrides(config),
    )


def _tracked(tracker, run, finish: str):
    """``run(tracker)``, then the tracker's ``finish`` step; the run is closed either way."""
    status = "FAILED"
    try:
        res = run(tracker)
        if tracker is not None:
            getattr(tracker, finish)(res)
        status = "FINISHED"
        return res
    finally:
        if tracker is not None:
            tracker.close(status)


def _trial_threads(cfg: Config) -> None:
    """torch's intra-op threads = the trial's CPUs. Ray sets ``OMP_NUM_THREADS`` only when
    the trial starts; a worker that imported torch earlier (a reused actor, a warm pool
    worker) would keep one thread per core of the node and oversubscribe it."""
    import torch

    torch.set_num_threads(max(1, int(cfg.ray.cpus_per_trial)))


def search_trainable(config: dict[str, Any]) -> None:
    from voxnas.trainables.search import run_search_fold

    _quiet_ray_loggers()
    cfg = _cfg(config)
    _trial_threads(cfg)
    fold = _trial_fold(config)
    workdir = Path(tune.get_context().get_trial_dir())
    (workdir / "worker.pid").write_text(str(os.getpid()))  # for operators (and the kill test)
    state = workdir / "state"
    resume = _restore_into(state)
    tracker = _tracker(cfg, config, "search", fold, f"h{hp_tag(config)}")
    data = _handle(config, fold)
    res = _tracked(
        tracker,
        lambda trk: run_search_fold(
            cfg,
            fold,
            TuneReporter(),
            trk,
            data=data,
            checkpoint_dir=state,
            resume=resume,
            log_every=_log_every(cfg.search.epochs),
        ),
        "finish_search",
    )
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
            "hp_json": json.dumps(sampled(config), sort_keys=True),
        }
    )


def retrain_trainable(config: dict[str, Any]) -> None:
    from voxnas.trainables.retrain import run_retrain_fold

    _quiet_ray_loggers()
    cfg = _cfg(config)
    _trial_threads(cfg)
    job = config["job"]
    fold, arch, out_dir = job["fold"], job["arch"], Path(job["out_dir"])
    spec = _job_spec(job)
    # Continue only from this trial's own Tune checkpoint (a restart after a failure, or
    # `--resume`): a checkpoint left in the folder by another run is never picked up.
    resume = _restore_into(RunLayout.checkpoint(out_dir))
    stage = "final" if fold is None else "retrain"
    tracker = _tracker(cfg, config, stage, fold, arch)
    data = _handle(config, fold)
    res = _tracked(
        tracker,
        lambda trk: run_retrain_fold(
            cfg,
            fold,
            spec,
            TuneReporter(),
            trk,
            data=data,
            out_dir=out_dir,
            resume=resume,
            log_every=_log_every(cfg.retrain.epochs),
        ),
        "finish_retrain",
    )
    if tracker is not None:  # the model is in MLflow too: a resume may skip this job
        (out_dir / ".tracked").write_text("ok\n")
    tune.report(
        {
            "final": True,
            "fold": fold,
            "rows_json": json.dumps(res.rows),
            "model_path": str(res.model_path),
            "resumed": res.resumed,
        }
    )
