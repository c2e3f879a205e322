"""From a config to data ready for training: dataset -> check + cache -> splits -> handles.

nnU-Net's order: nothing trains on data that failed the integrity check. The *driver*
prepares once (:func:`prepare_data`, then :func:`write_split_files`); trials receive a
:class:`FoldData` handle (cache path, the fold's case ids, modalities, labels) in their Tune
config and open the cache read-only: they never check, decode or write shared files.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voxnas.config import Config
from voxnas.data.cache import CachedCase, VolumeCache, build_cache
from voxnas.data.integrity import DataIntegrityError
from voxnas.data.layouts import Dataset, read_dataset
from voxnas.data.preprocess import PreprocessSettings
from voxnas.data.splits import FoldSplit, all_cases_split, fold_split, load_or_make_splits
from voxnas.data.synthetic import write_synthetic

__all__ = [
    "DataIntegrityError",
    "FoldData",
    "check_patch_fits",
    "PreparedData",
    "dataset_root",
    "prepare_data",
    "preprocess_settings",
    "write_split_files",
]


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
    held_out = f"-t{s.test_cases}" if s.test_cases != 1 else ""
    shape = "x".join(map(str, s.shape))
    root = cfg.workdir / "data" / f"synthetic-{kind}-{s.cases}{held_out}-{shape}-s{s.seed}"
    if (root / ".complete").exists():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    # one generator at a time (two `voxnas prepare` at once); written to a private folder
    # and renamed into place, so nobody ever reads a half-written dataset
    with open(root.with_name(root.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / ".complete").exists():
            tmp = root.with_name(f"{root.name}.tmp-{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            write_synthetic(
                tmp,
                s.layout,
                s.cases,
                tuple(s.shape),
                s.seed,
                test_cases=s.test_cases,
                phantom=s.phantom,
                tumour=s.tumour,
            )
            (tmp / ".complete").write_text("ok\n")
            shutil.rmtree(root, ignore_errors=True)  # an incomplete earlier attempt
            tmp.rename(root)
    return root


@dataclass(frozen=True)
class FoldData:
    """One fold's data as a trial sees it: small, JSON-able, read-only.

    ``split.fold`` is None for the final stage (every training case, no test cases)."""

    cache_path: str
    split: FoldSplit
    modalities: tuple[str, ...]
    labels: tuple[tuple[int, str], ...]
    _opened: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def fold(self) -> int | None:
        return self.split.fold

    @property
    def cache(self) -> VolumeCache:
        if "cache" not in self._opened:
            self._opened["cache"] = VolumeCache(Path(self.cache_path))
        return self._opened["cache"]

    @property
    def label_values(self) -> list[int]:
        return self.cache.label_values

    @property
    def label_names(self) -> dict[int, str]:
        return dict(self.labels)

    def load(self, ids: tuple[str, ...] | list[str]) -> list[CachedCase]:
        return [self.cache.load(c) for c in ids]

    def to_dict(self) -> dict[str, Any]:
        return {
            "cache_path": self.cache_path,
            "split": self.split.to_dict(),
            "modalities": list(self.modalities),
            "labels": [list(x) for x in self.labels],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FoldData:
        return cls(
            d["cache_path"],
            FoldSplit.from_dict(d["split"]),
            tuple(d["modalities"]),
            tuple((int(v), str(n)) for v, n in d["labels"]),
        )


@dataclass(frozen=True)
class PreparedData:
    cfg: Config
    dataset: Dataset
    cache: VolumeCache
    folds: list[list[str]]

    def split_for(self, k: int | None) -> FoldSplit:
        """Fold ``k``'s train/val/test case ids (pure); ``None``: every case, train:val only."""
        ratio, seed = tuple(self.cfg.split.train_val_ratio), self.cfg.split.seed
        if k is None:
            return all_cases_split(sorted(c for f in self.folds for c in f), ratio, seed)
        return fold_split(self.folds, k, ratio, seed)

    def fold_data(self, k: int | None) -> FoldData:
        """The handle a trial gets for fold ``k`` (``None``: all training cases)."""
        return FoldData(
            str(self.cache.path),
            self.split_for(k),
            tuple(self.dataset.modalities),
            tuple(sorted((int(v), str(n)) for v, n in self.dataset.labels.items())),
        )

    def describe(self) -> dict[str, Any]:
        """The dataset as experiment trackers record it: name, source folder, digest (the
        preprocessing cache key: data and settings) and a profile."""
        ds = self.dataset
        return {
            "name": ds.root.name,
            "source": str(ds.root.resolve()),
            "digest": self.cache.path.name,
            "profile": {
                "layout": ds.layout,
                "cases": len(ds.cases),
                "held_out_images": len(ds.test_images),
                "modalities": list(ds.modalities),
                "labels": {str(v): n for v, n in ds.labels.items()},
                "folds": len(self.folds),
            },
        }

    def fold_stats(self, split: FoldSplit) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "intensity": self.cfg.data.intensity,
            "preprocessing": self.cache.settings.to_dict(),
        }
        if self.cfg.data.intensity == "mri":  # statistics from this fold's training cases only
            stats["modalities"] = dict(
                zip(self.cache.index["modalities"], self.cache.raw_mri_stats(list(split.trainval)))
            )
        return stats


def check_patch_fits(cfg: Config, cache: VolumeCache, log: Callable[[str], None] = print) -> None:
    """Training patches are zero-padded where a volume is smaller (as in nnU-Net): fine for a
    few thin scans (logged), garbage when the patch exceeds *every* volume along an axis (a
    loss in the millions, nothing learnt): refused, naming the sizes."""
    shapes = {cid: tuple(m["shape"][-3:]) for cid, m in cache.index["cases"].items()}
    for which in ("search", "train"):
        patch = tuple(getattr(cfg.patch, which))
        small = {c: s for c, s in shapes.items() if any(p > n for p, n in zip(patch, s))}
        if not small:
            continue
        largest = tuple(max(s[a] for s in shapes.values()) for a in range(3))
        if any(p > n for p, n in zip(patch, largest)):
            cid, shape = next(iter(small.items()))
            raise ValueError(
                f"patch.{which} {patch} is larger than every volume along an axis (largest "
                f"{largest}, e.g. case {cid!r} {shape}, after preprocessing): choose patches no "
                "larger than the volumes"
            )
        log(
            f"note: patch.{which} {patch} is larger than {len(small)} of {len(shapes)} cases "
            f"(e.g. {next(iter(small))!r} {next(iter(small.values()))}); those are zero-padded"
        )


def write_split_files(prep: PreparedData) -> None:
    """Driver only: every fold's split and statistics JSON under ``<run>/splits``."""
    layout = prep.cfg.layout
    layout.splits.mkdir(parents=True, exist_ok=True)
    for k in range(len(prep.folds)):
        split = prep.split_for(k)
        layout.fold_split(k).write_text(json.dumps(split.to_dict(), indent=1))
        layout.fold_stats(k).write_text(json.dumps(prep.fold_stats(split), indent=1))


def prepare_data(cfg: Config, log: Callable[[str], None] = print) -> PreparedData:
    """Read the dataset, check and cache it (once: an existing cache of the same files is
    reused without decoding them), and make or reuse the K folds. Driver side."""
    root = dataset_root(cfg)
    ds = read_dataset(root, cfg.data.layout)
    log(f"dataset {root} ({ds.layout}, {len(ds.cases)} cases, modalities {list(ds.modalities)})")
    cache_dir = cfg.data.cache_dir or (cfg.workdir / "cache")
    cache = build_cache(
        ds,
        preprocess_settings(cfg),
        cache_dir,
        progress=lambda i, n: (
            log(f"  checking + preprocessing {i}/{n}") if i == n or i % 10 == 0 else None
        ),
    )
    log(f"cache {cache.path}")
    check_patch_fits(cfg, cache, log)
    folds = load_or_make_splits(cfg.layout.folds_json, ds.case_ids, cfg.split.folds, cfg.split.seed)
    return PreparedData(cfg, ds, cache, folds)
