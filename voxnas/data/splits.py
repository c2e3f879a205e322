"""K-fold cross-validation splits, seeded and saved as JSON; train/val inside each fold."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "FoldSplit",
    "SplitError",
    "all_cases_split",
    "fold_split",
    "load_or_make_splits",
    "make_folds",
]


class SplitError(ValueError):
    pass


@dataclass(frozen=True)
class FoldSplit:
    """``fold`` is the test fold's index, or None for a split of every case (no test)."""

    fold: int | None
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]

    @property
    def trainval(self) -> tuple[str, ...]:
        return self.train + self.val

    def to_dict(self) -> dict:
        return {
            "fold": self.fold,
            "train": list(self.train),
            "val": list(self.val),
            "test": list(self.test),
        }

    @classmethod
    def from_dict(cls, d: dict) -> FoldSplit:
        return cls(d["fold"], tuple(d["train"]), tuple(d["val"]), tuple(d["test"]))


def make_folds(case_ids: list[str], k: int, seed: int) -> list[list[str]]:
    """Shuffle ``case_ids`` with ``seed`` and deal them into ``k`` folds of near-equal size."""
    if k < 2:
        raise SplitError(f"need at least 2 folds, got {k}")
    if len(case_ids) < k:
        raise SplitError(f"split.folds={k}: the dataset has only {len(case_ids)} cases")
    order = np.random.default_rng(seed).permutation(sorted(case_ids))
    return [sorted(order[i::k].tolist()) for i in range(k)]


def _train_val(rest: list[str], ratio: tuple[int, int], seed: int, what: str):
    """Shuffle ``rest`` with ``seed`` and split it train:val by ``ratio``."""
    if ratio[0] <= 0 or ratio[1] <= 0:
        raise SplitError(f"train_val_ratio must be two positive numbers, got {list(ratio)}")
    rest = np.random.default_rng(seed).permutation(sorted(rest)).tolist()
    n_val = max(1, round(len(rest) * ratio[1] / (ratio[0] + ratio[1])))
    if n_val >= len(rest):
        raise SplitError(f"{what}: {len(rest)} non-test cases cannot split {ratio[0]}:{ratio[1]}")
    return tuple(sorted(rest[n_val:])), tuple(sorted(rest[:n_val]))


FOLD_SEED_OFFSET = 1000  # fold k's train/val shuffle uses split seed + 1000 + k
ALL_CASES_SEED_OFFSET = 999  # the all-cases split's train/val shuffle


def fold_split(folds: list[list[str]], fold: int, ratio: tuple[int, int], seed: int) -> FoldSplit:
    """Fold ``fold`` is the test set; the rest splits train:val by ``ratio`` (2:1 or 4:1)."""
    if not isinstance(fold, int) or not 0 <= fold < len(folds):
        raise SplitError(
            f"fold {fold} does not exist: there are {len(folds)} folds (0..{len(folds) - 1})"
        )
    rest = [c for i, f in enumerate(folds) if i != fold for c in f]
    train, val = _train_val(rest, ratio, seed + FOLD_SEED_OFFSET + fold, f"fold {fold}")
    return FoldSplit(fold, train, val, tuple(folds[fold]))


def all_cases_split(case_ids: list[str], ratio: tuple[int, int], seed: int) -> FoldSplit:
    """Every case split train:val by ``ratio``, no test cases: the single search of seed 002
    (4:1 of the training set) and the final model's training set (``fold`` None)."""
    train, val = _train_val(list(case_ids), ratio, seed + ALL_CASES_SEED_OFFSET, "all cases")
    return FoldSplit(None, train, val, ())


def load_or_make_splits(path: Path, case_ids: list[str], k: int, seed: int) -> list[list[str]]:
    """Reuse the folds saved at ``path`` when they match the dataset, else make and save them."""
    path = Path(path)
    if path.is_file():
        saved = json.loads(path.read_text())
        same = (
            saved.get("k") == k
            and saved.get("seed") == seed
            and sorted(c for f in saved["folds"] for c in f) == sorted(case_ids)
        )
        if same:
            return saved["folds"]
    folds = make_folds(case_ids, k, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"k": k, "seed": seed, "folds": folds}, indent=1))
    return folds
