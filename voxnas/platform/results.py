"""Stage results on disk, so each protocol stage can run alone and a resumed run reuses them.

<run>/search/fold<k>/result.json     genotype, alphas, history of fold k's search
<run>/aggregate/genotype.json        aggregated genotype (+ per-fold genotypes)
<run>/retrain/<arch>/fold<k>/        model.pt, metrics.csv, predictions/
<run>/results/                       per-case table, summary (markdown, CSV, JSON)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..search_spaces.genotypes import genotype_from_json
from .config import Config

__all__ = [
    "aggregate_path",
    "load_aggregate",
    "load_search_result",
    "retrain_dir",
    "save_aggregate",
    "save_search_result",
    "search_result_path",
]


def retrain_dir(cfg: Config, arch_name: str, fold: int) -> Path:
    """``<run>/retrain/<arch>/fold<k>``; ``/`` and spaces of names like ``P3D/P3D`` dropped."""
    return cfg.run_dir / "retrain" / arch_name.replace("/", "-").replace(" ", "") / f"fold{fold}"


def search_result_path(cfg: Config, fold: int, tag: str = "") -> Path:
    return cfg.run_dir / "search" / (f"{tag}/" if tag else "") / f"fold{fold}" / "result.json"


def save_search_result(cfg: Config, result, tag: str = "", extra: dict | None = None) -> Path:
    path = search_result_path(cfg, result.fold, tag)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "fold": result.fold,
        "genotype": result.genotype.to_dict(),
        "alphas": result.alphas,
        "epochs_run": result.epochs_run,
        "stopped_by_count": result.stopped_by_count,
        "history": result.history,
        **(extra or {}),
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)
    return path


def load_search_result(cfg: Config, fold: int, tag: str = "") -> dict[str, Any] | None:
    path = search_result_path(cfg, fold, tag)
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    data["genotype"] = genotype_from_json(data["genotype"])
    return data


def aggregate_path(cfg: Config) -> Path:
    return cfg.run_dir / "aggregate" / "genotype.json"


def save_aggregate(cfg: Config, genotype, fold_genotypes: dict[int, Any]) -> Path:
    path = aggregate_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "genotype": genotype.to_dict(),
                "folds": {str(k): g.to_dict() for k, g in fold_genotypes.items()},
            },
            indent=1,
        )
    )
    return path


def load_aggregate(cfg: Config):
    path = aggregate_path(cfg)
    if not path.is_file():
        return None
    return genotype_from_json(json.loads(path.read_text())["genotype"])
