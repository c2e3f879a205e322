"""From a config to data ready for training: dataset -> check -> cache -> splits.

nnU-Net's order: the integrity check runs before anything trains; data-derived settings
(splits, normalisation statistics) are written to JSON in the run directory.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import Config
from .cache import VolumeCache, build_cache
from .integrity import check_dataset, format_report
from .layouts import Dataset, read_dataset
from .preprocess import PreprocessSettings
from .splits import FoldSplit, fold_split, load_or_make_splits
from .synthetic import write_synthetic

__all__ = [
    "DataIntegrityError",
    "PreparedData",
    "dataset_root",
    "prepare_data",
    "preprocess_settings",
]


class DataIntegrityError(ValueError):
    """The dataset failed the integrity check; the message is the full report."""


def preprocess_settings(cfg: Config) -> PreprocessSettings:
    d = cfg.data
    return PreprocessSettings(
        d.intensity,
        tuple(d.ct_window),
        d.mri_xi,
        d.mri_lambda,
        tuple(d.target_spacing) if d.target_spacing else None,
    )


def dataset_root(cfg: Config) -> Path:
    """The configured dataset folder, or the synthetic phantom folder (generated if absent)."""
    if cfg.data.root is not None:
        return Path(cfg.data.root)
    s = cfg.data.synthetic
    kind = s.layout + ("-planted" if s.phantom == "planted" else "")
    if s.phantom == "ct" and s.layout == "msd" and not s.tumour:
        kind += "-organ"
    root = (
        cfg.workdir / "data" / f"synthetic-{kind}-{s.cases}-{'x'.join(map(str, s.shape))}-s{s.seed}"
    )
    if not (root / ".complete").exists():
        write_synthetic(
            root, s.layout, s.cases, tuple(s.shape), s.seed, phantom=s.phantom, tumour=s.tumour
        )
        (root / ".complete").write_text("ok\n")
    return root


@dataclass(frozen=True)
class PreparedData:
    cfg: Config
    dataset: Dataset
    cache: VolumeCache
    folds: list[list[str]]

    def fold(self, k: int) -> FoldSplit:
        """Fold ``k``'s train/val/test case ids; also writes its split and stats JSON."""
        split = fold_split(
            self.folds, k, tuple(self.cfg.split.train_val_ratio), self.cfg.split.seed
        )
        out = self.cfg.run_dir / "splits"
        out.mkdir(parents=True, exist_ok=True)
        stats = {
            "intensity": self.cfg.data.intensity,
            "preprocessing": self.cache.settings.to_dict(),
        }
        if self.cfg.data.intensity == "mri":  # statistics from this fold's training cases only
            stats["modalities"] = dict(
                zip(self.cache.index["modalities"], self.cache.raw_mri_stats(list(split.trainval)))
            )
        (out / f"fold{k}.json").write_text(json.dumps(split.to_dict(), indent=1))
        (out / f"fold{k}_stats.json").write_text(json.dumps(stats, indent=1))
        return split


def prepare_data(cfg: Config, log: Callable[[str], None] = print) -> PreparedData:
    """Read, check, cache and split the configured dataset (idempotent, safe to rerun)."""
    root = dataset_root(cfg)
    ds = read_dataset(root, cfg.data.layout)
    log(f"dataset {root} ({ds.layout}, {len(ds.cases)} cases, modalities {list(ds.modalities)})")
    problems = check_dataset(ds)
    if problems:
        raise DataIntegrityError(format_report(problems, root))
    cache_dir = cfg.data.cache_dir or (cfg.workdir / "cache")
    cache = build_cache(
        ds,
        preprocess_settings(cfg),
        cache_dir,
        progress=lambda i, n: log(f"  preprocessing {i}/{n}") if i == n else None,
    )
    log(f"cache {cache.path}")
    folds = load_or_make_splits(
        cfg.run_dir / "splits" / "folds.json", ds.case_ids, cfg.split.folds, cfg.split.seed
    )
    return PreparedData(cfg, ds, cache, folds)
