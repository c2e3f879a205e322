"""The protocol, stage by stage (Ray and MLflow calls live in ``tune.py`` and ``tracking.py``):

prepare (once, on the driver) -> searches in parallel (one per fold, x hyperparameter sets;
or one search, ``search.folds: one``) -> best set -> aggregated genotype -> retrains per fold
in parallel (plus extra rows) + the final model on every training case -> results tables ->
registration of the final model.

Every stage writes its results to the run folder (:mod:`voxnas.run_layout`). ``resume``
reuses finished stages and restores unfinished Tuners (finished trials are not rerun); a
fresh ``run`` moves an existing run folder aside first, so nothing of an old run is reused.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxnas.config import Config
from voxnas.data.prepare import FoldData, PreparedData, prepare_data, write_split_files
from voxnas.evaluation.tables import results_tables
from voxnas.run_layout import fold_dirname
from voxnas.search_spaces.genotypes import genotype_from_json
from voxnas.search_spaces.registry import list_models, resolve_architecture
from voxnas.trainables.aggregate import aggregate_stage
from voxnas.trainables.records import (
    collect_retrain_rows,
    load_aggregate,
    load_search_results,
    save_search_result,
    search_folds,
    write_json,
)
from voxnas.trainables.search import SearchResult

__all__ = [
    "ProtocolResult",
    "absolute",
    "move_aside",
    "run_protocol",
    "run_retrain_stage",
    "run_search_stage",
]


@dataclass(frozen=True)
class ProtocolResult:
    genotype: Any
    run_dir: Path
    results: Path
    final_model: Path | None
    model_uri: str | None
    parent_run_id: str | None
    summary: dict[str, Any]


def absolute(cfg: Config) -> Config:
    """Paths resolved on the driver: trial workers run in their own working directories."""
    data = cfg.data.model_copy(
        update={
            "root": Path(cfg.data.root).resolve() if cfg.data.root else None,
            "cache_dir": Path(cfg.data.cache_dir).resolve() if cfg.data.cache_dir else None,
        }
    )
    return cfg.model_copy(update={"workdir": Path(cfg.workdir).resolve(), "data": data})


def move_aside(path: Path, log=print) -> Path | None:
    """Rename an existing, non-empty ``path`` to ``<path>.replaced-<time>`` (never deleted)."""
    path = Path(path)
    if not path.exists() or not any(path.iterdir()):
        return None
    dest = path.with_name(f"{path.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
    n = 1
    while dest.exists():
        dest = dest.with_name(f"{dest.name.split('~')[0]}~{n}")
        n += 1
    path.rename(dest)
    log(f"fresh run: the previous run folder was moved to {dest}")
    return dest


def _prepared(cfg: Config, prep: PreparedData | None) -> PreparedData:
    """The driver prepares once: check + cache + folds + every fold's split files."""
    if prep is None:
        prep = prepare_data(cfg)
        write_split_files(prep)
    return prep


def _handles(prep: PreparedData) -> dict[str, FoldData]:
    """Every data handle a trial may need: each fold's, and every case's (``all``)."""
    keys: list[int | None] = [*range(len(prep.folds)), None]
    return {fold_dirname(k): prep.fold_data(k) for k in keys}


def run_search_stage(
    cfg: Config,
    address: str | None = None,
    resume: bool = True,
    parent_run_id: str | None = None,
    prep: PreparedData | None = None,
) -> dict[int | None, dict]:
    """The searches in parallel; writes each fold's result of the best hyperparameter set
    (highest mean final val DSC over folds) and ``hp_sets.json``."""
    from voxnas.platform import tune
    from voxnas.platform.hp_sets import best_set

    cfg = absolute(cfg)
    folds = search_folds(cfg)
    done = load_search_results(cfg)
    if resume and done is not None:
        print(f"search stage already finished ({cfg.layout.search}); reusing it")
        return done
    prep = _prepared(cfg, prep)
    _ensure_tracking(cfg)
    tune.init_ray(cfg, address)
    trials = tune.search_trials(cfg, _handles(prep), folds, resume, parent_run_id)
    outcomes = [(json.loads(m["hp_json"]), m["fold"], m["val_dice"]) for _, m in trials]
    best, scores = best_set(outcomes, folds)
    write_json(
        cfg.layout.hp_sets,
        [{"hp": s.hp, "mean_val_dice": s.mean_val_dice, "best": s is best} for s in scores],
    )
    for _, m in trials:
        if json.loads(m["hp_json"]) != best.hp:
            continue
        res = SearchResult(
            m["fold"],
            genotype_from_json(m["genotype_json"]),
            json.loads(m["alphas_json"]),
            json.loads(m["history_json"]),
            int(m["epochs_run"]),
            bool(m["stopped_by_count"]),
        )
        save_search_result(cfg, res, extra={"hp": best.hp, "val_dice": m["val_dice"]})
    chosen = f"best hyperparameter set {best.key}" if best.hp else "the config's settings"
    print(
        f"search stage: {len(trials)} trial(s), {chosen}, mean final val DSC over folds "
        f"{best.mean_val_dice:.4f}"
    )
    return load_search_results(cfg) or {}


def _job(cfg: Config, spec, fold: int | None) -> dict[str, Any]:
    """One retrain trial: a registered name travels as is; a genotype (the searched one, a
    code or a .json file, resolved here on the driver: trials run in their own folders)
    travels as JSON under its name."""
    genotype = None
    if not isinstance(spec, str):
        name, genotype = "searched", spec
    elif spec in list_models():
        name = spec
    else:
        arch = resolve_architecture(spec)  # ValueError naming an unknown spec
        name, genotype = arch.name, arch.genotype
    out = cfg.layout.final(name) if fold is None else cfg.layout.retrain_fold(name, fold)
    return {
        "arch": name,
        "genotype_json": None if genotype is None else json.dumps(genotype.to_dict()),
        "fold": fold,
        "out_dir": str(out),
    }


def run_retrain_stage(
    cfg: Config,
    genotype,
    extra_rows: tuple[str, ...] = (),
    address: str | None = None,
    resume: bool = True,
    parent_run_id: str | None = None,
    prep: PreparedData | None = None,
    final: bool = False,
) -> list[dict]:
    """Retrain ``genotype`` (searched genotype or architecture name) and ``extra_rows`` on
    every fold in parallel, and with ``final`` the genotype on every training case too;
    returns all per-case rows of the fold models."""
    from voxnas.platform import tune

    cfg = absolute(cfg)
    jobs = [_job(cfg, s, f) for s in (genotype, *extra_rows) for f in range(cfg.split.folds)]
    if final:
        jobs.append(_job(cfg, genotype, None))

    def finished(job: dict[str, Any]) -> bool:
        """Trained, evaluated and (with tracking) logged: a job that crashed while logging
        its model to MLflow is run again (its Tune checkpoint makes that cheap)."""
        out = Path(job["out_dir"])
        done = (out / ("model.pt" if job["fold"] is None else "metrics.json")).is_file()
        return done and (not cfg.tracking.enabled or (out / ".tracked").is_file())

    if resume and all(finished(j) for j in jobs):
        print("retrain stage already finished; reusing it")
    else:
        prep = _prepared(cfg, prep)
        _ensure_tracking(cfg)
        tune.init_ray(cfg, address)
        trials = tune.retrain_trials(cfg, _handles(prep), jobs, resume, parent_run_id)
        resumed = [c["job"] for c, m in trials if m.get("resumed")]
        for job in resumed:
            print(f"{job['arch']} {fold_dirname(job['fold'])}: continued from its checkpoint")
    return collect_retrain_rows(cfg)


def _ensure_tracking(cfg: Config) -> None:
    """Create the MLflow database and experiment on the driver before trials write to it."""
    if cfg.tracking.enabled:
        from voxnas.platform.tracking import check_tracking_server, ensure_experiment

        check_tracking_server(cfg)
        ensure_experiment(cfg)


def write_resolved_config(cfg: Config) -> Path:
    """``<run>/config.yaml``: the resolved config (defaults and overrides spelled out), for
    the record and the parent run's artifacts, rather than 90 lines on the console."""
    import yaml

    from voxnas.config import config_to_dict

    path = cfg.layout.config
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    return path


def run_protocol(cfg: Config, address: str | None = None, resume: bool = False) -> ProtocolResult:
    """The whole protocol. Without ``resume`` an existing run folder is moved aside first."""
    from voxnas.platform.tracking import ProtocolTracker, check_tracking_server
    from voxnas.platform.tune import check_ray_address

    cfg = absolute(cfg)
    # before anything is written: an unreachable server or cluster fails in seconds
    check_tracking_server(cfg)
    check_ray_address(cfg, address)
    if not resume:
        move_aside(cfg.run_dir)
    prep = _prepared(cfg, None)
    write_resolved_config(cfg)
    with ProtocolTracker(cfg, resume) as tracker:
        tracker.log_dataset(prep.describe(), "training")
        run_search_stage(cfg, address, resume, tracker.parent_id, prep)
        genotype = (load_aggregate(cfg) if resume else None) or aggregate_stage(cfg)
        tracker.log_aggregate(cfg, genotype)
        rows = run_retrain_stage(
            cfg,
            genotype,
            tuple(cfg.retrain.extra_rows),
            address,
            resume,
            tracker.parent_id,
            prep,
            final=cfg.retrain.final,
        )
        searches = list((load_search_results(cfg) or {}).values())
        text, summary = results_tables(cfg, rows, searches)
        tracker.log_results(cfg, text, summary)
        model_uri = tracker.register(cfg)
    # the console gets the results; the search summary is in summary.md and MLflow
    print(text.partition("\n## Search")[0].rstrip())
    final_model = cfg.layout.bundle(cfg.layout.final("searched"))
    return ProtocolResult(
        genotype,
        cfg.run_dir,
        cfg.layout.results,
        final_model if final_model.is_file() else None,
        model_uri,
        tracker.parent_id,
        summary,
    )
