"""Stage records on disk, so each protocol stage can run alone and a resumed run reuses them:
a fold's search result, the aggregated genotype, the retrained folds' per-case metrics.
Paths come from :class:`voxnas.run_layout.RunLayout`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from voxnas.config import Config
from voxnas.search_spaces.genotypes import genotype_from_json

__all__ = [
    "collect_retrain_rows",
    "load_aggregate",
    "load_search_result",
    "load_search_results",
    "search_folds",
    "save_aggregate",
    "save_search_result",
    "write_json",
]


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as JSON atomically (temp file, then rename). The temp file is this
    process's own, so processes writing the same file at once (trials starting together)
    never write into one temp file: a reader sees one whole version or the other."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)
    return path


def save_search_result(cfg: Config, result, tag: str = "", extra: dict | None = None) -> Path:
    data = {
        "fold": result.fold,
        "genotype": result.genotype.to_dict(),
        "alphas": result.alphas,
        "epochs_run": result.epochs_run,
        "stopped_by_count": result.stopped_by_count,
        "history": result.history,
        **(extra or {}),
    }
    return write_json(cfg.layout.search_result(result.fold, tag), data)


def load_search_result(cfg: Config, fold: int | None, tag: str = "") -> dict[str, Any] | None:
    path = cfg.layout.search_result(fold, tag)
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    data["genotype"] = genotype_from_json(data["genotype"])
    return data


def load_search_results(cfg: Config) -> dict[int | None, dict[str, Any]] | None:
    """Every search's result by fold (None: the single search); None while any is missing."""
    found = {k: load_search_result(cfg, k) for k in search_folds(cfg)}
    return None if any(v is None for v in found.values()) else found


def search_folds(cfg: Config) -> list[int | None]:
    """The searches the protocol runs: one per fold, or ``[None]``, a single search over
    every training case (``search.folds: one``, seed 002)."""
    return [None] if cfg.search.folds == "one" else list(range(cfg.split.folds))


def save_aggregate(
    cfg: Config, genotype, fold_genotypes: dict[int, Any], agreement: dict | None = None
) -> Path:
    """``aggregate/genotype.json``: the genotype, every cell's op by name, each fold's
    genotype, and the per-cell votes and summed probabilities (``fold_agreement``)."""
    data = {
        "genotype": genotype.to_dict(),
        "ops": genotype.describe(),
        "folds": {str(k): g.to_dict() for k, g in fold_genotypes.items()},
    }
    if agreement is not None:
        data["votes"] = agreement
    return write_json(cfg.layout.aggregate, data)


def load_aggregate(cfg: Config):
    path = cfg.layout.aggregate
    if not path.is_file():
        return None
    return genotype_from_json(json.loads(path.read_text())["genotype"])


def collect_retrain_rows(cfg: Config) -> list[dict[str, Any]]:
    """Per-case rows of every retrained architecture and fold found on disk."""
    rows = []
    for path in cfg.layout.retrain_metrics():
        rows.extend(json.loads(path.read_text()))
    return rows
