"""The run folder: every path under ``<workdir>/<name>/`` comes from here.

```
<run>/config.yaml                       the run's resolved config (every default spelled out)
<run>/splits/folds.json                 K folds of case ids (seeded)
<run>/splits/fold<k>.json               fold k's train / val / test ids
<run>/splits/fold<k>_stats.json         fold k's normalisation statistics
<run>/search/fold<k>/result.json        fold k's genotype, alphas, history (best hp set)
<run>/search/all/result.json            the single search (`search.folds: one`)
<run>/search/fold<k>/checkpoint/        search state when run without Ray (`voxnas search`)
<run>/search/hp_sets.json               every hyperparameter set and its mean val DSC
<run>/aggregate/genotype.json           aggregated genotype (+ the fold genotypes)
<run>/retrain/<arch>/fold<k>/           model.pt, metrics.csv/json, predictions/, checkpoint/
<run>/final/<arch>/                     the model trained on every training case
<run>/results/                          per-case table, summary (markdown, CSV, JSON)
<run>/tune/<stage>/                     Ray Tune experiment folders (trial state, checkpoints)
```
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunLayout", "arch_dirname", "fold_dirname"]


def fold_dirname(fold: int | None) -> str:
    """``fold3``; ``all`` for a stage over every training case (single search, final)."""
    return "all" if fold is None else f"fold{fold}"


def arch_dirname(arch_name: str) -> str:
    """``P3D/P3D`` -> ``P3D-P3D``: architecture names as folder names."""
    return arch_name.replace("/", "-").replace(" ", "")


@dataclass(frozen=True)
class RunLayout:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def splits(self) -> Path:
        return self.root / "splits"

    @property
    def folds_json(self) -> Path:
        return self.splits / "folds.json"

    def fold_split(self, fold: int) -> Path:
        return self.splits / f"fold{fold}.json"

    def fold_stats(self, fold: int) -> Path:
        return self.splits / f"fold{fold}_stats.json"

    @property
    def search(self) -> Path:
        return self.root / "search"

    def search_fold(self, fold: int | None, tag: str = "") -> Path:
        name = fold_dirname(fold)
        return self.search / tag / name if tag else self.search / name

    def search_result(self, fold: int | None, tag: str = "") -> Path:
        return self.search_fold(fold, tag) / "result.json"

    def search_checkpoint(self, fold: int | None) -> Path:
        return self.search_fold(fold) / "checkpoint"

    @property
    def hp_sets(self) -> Path:
        return self.search / "hp_sets.json"

    @property
    def aggregate(self) -> Path:
        return self.root / "aggregate" / "genotype.json"

    @property
    def retrain(self) -> Path:
        return self.root / "retrain"

    def retrain_fold(self, arch_name: str, fold: int) -> Path:
        return self.retrain / arch_dirname(arch_name) / f"fold{fold}"

    def retrain_metrics(self) -> list[Path]:
        """Every retrained (architecture, fold)'s per-case metrics on disk."""
        return sorted(self.retrain.glob("*/fold*/metrics.json"))

    @property
    def final_root(self) -> Path:
        return self.root / "final"

    def final(self, arch_name: str = "searched") -> Path:
        return self.final_root / arch_dirname(arch_name)

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def tune(self) -> Path:
        return self.root / "tune"

    def tune_stage(self, stage: str) -> Path:
        return self.tune / stage

    @property
    def predictions(self) -> Path:
        return self.root / "predictions"

    # inside a trained model's folder (retrain fold or final)
    @staticmethod
    def checkpoint(model_dir: Path) -> Path:
        return Path(model_dir) / "checkpoint"

    @staticmethod
    def bundle(model_dir: Path) -> Path:
        return Path(model_dir) / "model.pt"
