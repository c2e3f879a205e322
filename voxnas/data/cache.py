"""Preprocessed-volume cache: built once, memory-mapped by every fold and trial.

The cache folder is keyed by a hash of the source files (path, size, mtime) and the
preprocessing settings; a change to either gives a new key and a rebuild. A build writes
into a private temporary folder and is renamed into place, under an exclusive file lock, so
two processes building at once produce one complete cache and never a half-written one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voxnas.data.integrity import (
    DataIntegrityError,
    Problem,
    check_case,
    format_report,
    no_foreground,
)
from voxnas.data.layouts import Dataset
from voxnas.data.nifti import shared_decodes
from voxnas.data.preprocess import Geometry, PreprocessSettings, load_case, preprocess_image

__all__ = ["CachedCase", "VolumeCache", "build_cache", "cache_key"]

_VERSION = 1


def cache_key(ds: Dataset, settings: PreprocessSettings) -> str:
    h = hashlib.sha256()
    h.update(
        json.dumps(
            {"v": _VERSION, "settings": settings.to_dict(), "labels": sorted(ds.labels)},
            sort_keys=True,
        ).encode()
    )
    for case in ds.cases:
        for f in case.files:
            # a missing file keys as such; the integrity check then reports it
            st = f.stat() if f.exists() else None
            stamp = f"{st.st_size}|{st.st_mtime_ns}" if st else "missing"
            h.update(f"{case.case_id}|{f.resolve()}|{stamp}\n".encode())
    return h.hexdigest()[:20]


@dataclass(frozen=True)
class CachedCase:
    case_id: str
    image: np.ndarray  # (C, X, Y, Z) float32, memory-mapped
    label: np.ndarray  # (X, Y, Z) uint8 class indices, memory-mapped
    geometry: Geometry


class VolumeCache:
    """A built cache folder; arrays are opened memory-mapped on access."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.index = json.loads((self.path / "index.json").read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(
                f"{self.path / 'index.json'}: unreadable cache index ({err}); delete "
                f"{self.path} to rebuild the cache"
            ) from None

    @property
    def case_ids(self) -> list[str]:
        return list(self.index["cases"])

    @property
    def label_values(self) -> list[int]:
        return list(self.index["label_values"])

    @property
    def settings(self) -> PreprocessSettings:
        return PreprocessSettings.from_dict(self.index["settings"])

    def load(self, case_id: str) -> CachedCase:
        if case_id not in self.index["cases"]:
            raise KeyError(f"{self.path}: case {case_id!r} not in cache")
        meta = self.index["cases"][case_id]
        arrays = []
        for kind in ("image", "label"):
            f = self.path / f"{case_id}_{kind}.npy"
            try:
                arrays.append(np.load(f, mmap_mode="r", allow_pickle=False))
            except (OSError, ValueError) as err:
                raise ValueError(
                    f"{f}: corrupt cache file ({type(err).__name__}); delete {self.path} to "
                    "rebuild the cache"
                ) from None
        return CachedCase(case_id, arrays[0], arrays[1], Geometry.from_dict(meta["geometry"]))

    def raw_mri_stats(self, case_ids: list[str]) -> list[dict[str, float]]:
        """Seed 002 eq. 1 statistics over ``case_ids`` only (from the cached raw moments)."""
        per = [self.index["cases"][c]["moments"] for c in case_ids]
        out = []
        for m in range(len(per[0])):
            n = sum(p[m][0] for p in per)
            s = sum(p[m][1] for p in per)
            s2 = sum(p[m][2] for p in per)
            mean = s / max(n, 1)
            out.append(
                {
                    "mean": mean,
                    "std": float(np.sqrt(max(s2 / max(n, 1) - mean**2, 0))),
                    "voxels": int(n),
                }
            )
        return out


def _build_into(
    tmp: Path,
    ds: Dataset,
    settings: PreprocessSettings,
    progress: Callable[[int, int], None] | None,
) -> None:
    label_values = sorted(ds.labels)
    index = {
        "settings": settings.to_dict(),
        "label_values": label_values,
        "modalities": list(ds.modalities),
        "root": str(ds.root),
        "cases": {},
    }
    problems: list[Problem] = []
    seen: set[int] = set()
    for i, case in enumerate(ds.cases):
        # the integrity check and the preprocessing share one decode of each file
        with shared_decodes():
            found = check_case(case, len(ds.modalities), set(label_values), seen)
            if found:
                problems.extend(found)
                continue
            image, label, geom = load_case(case, settings, label_values)
        # raw non-zero moments per modality, so any fold's eq. 1 statistics come from its
        # training cases alone without decoding the NIfTI again
        moments = []
        for ch in image:
            v = ch[ch != 0].astype(np.float64)
            moments.append([int(v.size), float(v.sum()), float((v**2).sum())])
        np.save(tmp / f"{case.case_id}_image.npy", preprocess_image(image, settings))
        np.save(tmp / f"{case.case_id}_label.npy", label.astype(np.uint8))
        index["cases"][case.case_id] = {
            "geometry": geom.to_dict(),
            "moments": moments,
            "shape": list(image.shape),
        }
        if progress:
            progress(i + 1, len(ds.cases))
    problems += no_foreground(ds, seen, problems)
    if problems:  # nothing is cached from a dataset that fails the check
        raise DataIntegrityError(format_report(problems, ds.root))
    index["checked"] = True
    (tmp / "index.json").write_text(json.dumps(index, indent=1))


def build_cache(
    ds: Dataset,
    settings: PreprocessSettings,
    cache_dir: Path,
    progress: Callable[[int, int], None] | None = None,
) -> VolumeCache:
    """Return the cache for ``ds`` under ``cache_dir``, building it if missing or stale.

    A build runs the integrity check on every case first (:class:`DataIntegrityError` with
    the whole report if any case fails); an existing cache is keyed on the files' paths,
    sizes and mtimes, so its data passed the check and is not decoded again."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = cache_key(ds, settings)
    final = cache_dir / key
    with open(cache_dir / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if (final / "index.json").is_file():
                return VolumeCache(final)
            tmp = cache_dir / f"{key}.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            try:
                _build_into(tmp, ds, settings, progress)
                tmp.rename(final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return VolumeCache(final)
