"""What the platform records and registers (no mlflow here: the adapter in ``tracking.py``
carries it out, and tests check these decisions directly).

- a search trial: its genotype (JSON, code, tag), final alphas, the softmax(alpha) heatmap and
  the alpha trajectory plot, one ``genotypes.jsonl`` line per epoch and the full
  ``alpha_history.json``;
- a retrain trial: per-case metrics, the DSC box plot, the model (bundle + metadata);
- the parent run: the aggregate, the results tables and box plot, and summary metrics;
- registration: the *final* model (every training case) when the protocol trained one, else
  the fold model with the best search-validation DSC (never chosen on test DSC); alias
  ``best``.

Metric keys have one ``/``, so MLflow's chart view shows one section per namespace:
``search/…`` and ``retrain/…`` (the model's curves; the final stage is a retrain too), then
``search_cells/<cell>.top_p|choice|agreement`` (what each cell decided) after them;
``results/…`` on the parent. Per-op probabilities are in ``alpha_history.json``, not metrics:
69 of them would bury the curves.
"""

from __future__ import annotations

import math
from typing import Any

from voxnas.search_spaces.agreement import cell_table

__all__ = [
    "CELLS",
    "agreement_metrics",
    "child_identity",
    "choose_registration",
    "genotype_artifact",
    "logged_model_name",
    "namespace",
    "parent_name",
    "readable_code",
    "result_metrics",
    "retrain_tags",
    "search_tags",
    "tracked_metrics",
    "version_description",
]

CELLS = "search_cells"  # sorts after "retrain" and "search" in MLflow's chart view


def namespace(stage: str) -> str:
    """``search`` for searches, ``retrain`` for fold retrains and the final model."""
    return "search" if stage == "search" else "retrain"


def _key(name: str) -> str:
    return name.replace("/", "_")


def _cell(name: str) -> str:
    return name.replace("/", ".")


def tracked_metrics(stage: str, metrics: dict[str, float]) -> dict[str, float]:
    """What one epoch logs to MLflow: every finite scalar as ``<namespace>/<name>``; the
    per-op ``alpha/<cell>/<op>`` probabilities summarised per cell as
    ``search_cells/<cell>.top_p`` and ``.choice`` (the op's index in the cell's op table)."""
    ns = namespace(stage)
    out = {
        f"{ns}/{_key(k)}": float(v)
        for k, v in metrics.items()
        if not k.startswith("alpha/") and math.isfinite(float(v))
    }
    for cell, ops in cell_table(metrics).items():
        probs = list(ops.values())
        top = max(range(len(probs)), key=probs.__getitem__)
        out[f"{CELLS}/{_cell(cell)}.top_p"] = probs[top]
        out[f"{CELLS}/{_cell(cell)}.choice"] = float(top)
    return out


def agreement_metrics(agreement: dict[str, Any]) -> dict[str, float]:
    """The parent's per-cell agreement between folds (``agreement.fold_agreement``)."""
    out = {
        f"{CELLS}/{_cell(cell)}.agreement": float(row["agreement"])
        for cell, row in agreement["cells"].items()
    }
    out["search/fold_agreement_mean"] = float(agreement["agreement_mean"])
    return out


def readable_code(genotype) -> str:
    """The genotype code with op names: ``[2D 2D P3D, ...] [3D ...]`` for V-NAS (whose code
    is digits); NAS-3D-U-Net codes already name their ops."""
    if genotype.space != "vnas":
        return genotype.code()
    from voxnas.search_spaces.genotypes import ENCODER_LAYOUT, VNAS_CHOICES

    groups, i = [], 0
    for n in ENCODER_LAYOUT:
        groups.append(" ".join(VNAS_CHOICES[c] for c in genotype.encoder[i : i + n]))
        i += n
    return f"[{', '.join(groups)}] [{' '.join(VNAS_CHOICES[c] for c in genotype.decoder)}]"


def logged_model_name(arch: str, fold: int | None) -> str:
    """Distinct names for the models of one protocol: ``searched-f1``, ``searched-final``,
    ``P3D-P3D-f0`` (MLflow refuses ``/ : . % " '`` in a model name)."""
    import re

    name = re.sub(r"[/:.%\"' ]+", "-", arch).strip("-") or "model"
    return f"{name}-{'final' if fold is None else f'f{fold}'}"


def version_description(
    genotype, cv_dice: dict[str, float], why: str, parent_id: str, parent_name: str
) -> str:
    """The registered version's description (Markdown): what the model is and how good."""
    lines = [
        f"voxnas model, {why}.",
        "",
        f"- genotype: `{genotype.code()}`" if genotype is not None else "- architecture: fixed",
    ]
    if genotype is not None and genotype.space == "vnas":
        lines.append(f"- ops: {readable_code(genotype)}")
    for col, v in cv_dice.items():
        lines.append(f"- cross-validated DSC {col} (test folds, mean): {v:.4f}")
    lines.append(f"- protocol run: {parent_name} (`{parent_id}`)")
    return "\n".join(lines)


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
    """The parent run's metrics: ``results/<arch>_<column>_<mean|std|median>`` over all test
    cases and the search summary (``search/alpha_entropy_mean_over_folds``, ...)."""
    metrics = {
        f"results/{arch}_{_key(col)}_{stat}": v[stat]
        for arch, s in summary.items()
        if isinstance(s, dict) and "overall" in s
        for col, v in s["overall"].items()
        for stat in ("mean", "std", "median")
    }
    search = summary.get("search") or {}
    for key in ("alpha_entropy", "alpha_top_mean", "val_dice"):
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
