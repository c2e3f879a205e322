"""What the platform records and registers (no mlflow here: the adapter in ``tracking.py``
carries it out, and tests check these decisions directly).

- a search trial: its genotype (JSON, code, tag), final alphas, the softmax(alpha) heatmap and
  the alpha trajectory plot, and one ``genotypes.jsonl`` line per epoch;
- a retrain trial: per-case metrics, the DSC box plot, the model (bundle + metadata);
- the parent run: the aggregate, the results tables and box plot, and summary metrics;
- registration: the *final* model (every training case) when the protocol trained one, else
  the fold model with the best search-validation DSC (never chosen on test DSC).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "child_identity",
    "choose_registration",
    "genotype_artifact",
    "parent_name",
    "result_metrics",
    "retrain_tags",
    "search_tags",
]


def parent_name(config_name: str, started: str, version: str) -> str:
    """Unique and sortable: ``demo · 2026-11-25 17:50:02 · 34d599c``."""
    return f"{config_name} · {started} · {version}"


def child_identity(stage: str, fold: int | None, what: str) -> tuple[str, dict[str, str]]:
    """Fold-first run name (``f1 · retrain · searched``) and the params that let MLflow's
    compare view group by fold, stage and hyperparameter set (``what``: the set id for a
    search, the architecture for a retrain)."""
    fold_tag = "all" if fold is None else f"f{fold}"
    params = {"fold": "all" if fold is None else str(fold), "stage": stage}
    params["hp_set" if stage == "search" else "arch"] = what
    return f"{fold_tag} · {stage} · {what}", params


def genotype_artifact(genotype) -> dict:
    """``genotype.json``: the codes plus every cell's op by name."""
    return {**genotype.to_dict(), "ops": genotype.describe()}


def search_tags(genotype) -> dict[str, str]:
    return {"voxnas.genotype": genotype.code()[:5000]}


def retrain_tags(res, model_uri: str) -> dict[str, str]:
    import json

    return {
        "voxnas.model_uri": model_uri,
        "voxnas.arch": res.arch,
        "voxnas.mean_dice": json.dumps(
            {k: v["mean"] for k, v in res.summary.items() if "dice" in k}
        ),
    }


def result_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """The parent run's metrics: ``<arch>/<column>/<mean|std|median>`` over all test cases
    and the search summary (``search/alpha_entropy_mean_over_folds``, ...)."""
    metrics = {
        f"{arch}/{col}/{stat}": v[stat]
        for arch, s in summary.items()
        if isinstance(s, dict) and "overall" in s
        for col, v in s["overall"].items()
        for stat in ("mean", "std", "median")
    }
    search = summary.get("search") or {}
    for key in ("alpha_entropy", "alpha_top_mean"):
        if search.get(key):
            metrics[f"search/{key}_mean_over_folds"] = sum(search[key]) / len(search[key])
    if "share_cells_p2d_below_third" in search:
        metrics["search/share_cells_p2d_below_third"] = search["share_cells_p2d_below_third"]
    return metrics


def choose_registration(
    runs: list[dict[str, str]], val_dice: dict[int, float]
) -> tuple[dict[str, str], str] | None:
    """``runs``: the tags of the protocol's retrain/final child runs that logged a model of
    the searched architecture. The final model wins; else the fold with the highest search
    validation DSC (``val_dice`` by fold). Returns ``(tags, why)`` or None."""
    with_model = [r for r in runs if "voxnas.model_uri" in r and r.get("voxnas.arch") == "searched"]
    final = [r for r in with_model if r.get("voxnas.stage") == "final"]
    if final:
        return final[0], "the final model, trained on every training case"
    folds = [r for r in with_model if r.get("voxnas.fold", "").isdigit()]
    if not folds:
        return None
    best = max(folds, key=lambda r: val_dice.get(int(r["voxnas.fold"]), 0.0))
    score = val_dice.get(int(best["voxnas.fold"]), 0.0)
    return best, f"fold {best['voxnas.fold']}, chosen on search validation DSC {score:.4f}"
