"""The paper-style results tables (DSC mean +- std, max, min, median per architecture and
fold) and what the searches decided (alpha entropy, p(2D) per cell)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from voxnas.config import Config
from voxnas.evaluation.metrics import format_summary, summarize, write_table
from voxnas.search_spaces.genotypes import derive_genotype, softmax

__all__ = ["results_tables", "summarize_search"]


def summarize_search(space: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    """What the fold searches decided: final alpha entropy and top-op probability per fold,
    whether each fold's genotype differs from the one uniform alphas derive, loss ranges,
    and for V-NAS the mean over folds of p(2D) per cell (seed 000's question: where does the
    volume need slice-axis context?). Alpha rows may have different op counts (NAS-3D-U-Net).
    """
    rows = [
        [p for a in r["alphas"].values() for p in softmax(np.asarray(a, dtype=float))]
        for r in results
    ]
    out: dict[str, Any] = {
        "alpha_entropy": [
            float(np.mean([-(p * np.log(p + 1e-12)).sum() for p in f])) for f in rows
        ],
        "alpha_top_mean": [float(np.mean([p.max() for p in f])) for f in rows],
        "uniform_entropy": float(np.mean([np.log(len(p)) for p in rows[0]])),
        "genotypes": [r["genotype"].code() for r in results],
    }
    zeros = {k: np.zeros_like(np.asarray(a, dtype=float)) for k, a in results[0]["alphas"].items()}
    uniform = derive_genotype(space, zeros)
    out["uniform_genotype"] = uniform.code()
    out["differs_from_uniform"] = [r["genotype"] != uniform for r in results]
    if all("val_dice" in r for r in results):  # the search's last validation DSC per fold
        out["val_dice"] = [float(r["val_dice"]) for r in results]
    hist = [h for r in results for h in r.get("history", [])]
    for key in ("train_loss", "val_loss", "arch_loss"):
        vals = [h[key] for h in hist if key in h]
        if vals:
            out[f"max_{key}"] = float(max(vals))
    if space == "vnas":
        p2d = np.mean([[p[0] for p in f] for f in rows], axis=0)
        out["p2d_mean_over_folds"] = [round(float(v), 4) for v in p2d]
        out["share_cells_p2d_below_third"] = float((p2d < 1 / 3).mean())
    return out


def _search_lines(s: dict[str, Any]) -> str:
    ent = ", ".join(f"{v:.3f}" for v in s["alpha_entropy"])
    lines = [
        "## Search",
        "",
        f"- final alpha entropy per fold: {ent} (uniform alphas: {s['uniform_entropy']:.3f})",
        "- final mean top-op probability per fold: "
        + ", ".join(f"{v:.3f}" for v in s["alpha_top_mean"]),
    ]
    if "share_cells_p2d_below_third" in s:
        lines.append(
            "- cells whose p(2D), mean over folds, is below 1/3: "
            f"{100 * s['share_cells_p2d_below_third']:.0f}% "
            f"(p(2D) per cell: {' '.join(f'{v:.2f}' for v in s['p2d_mean_over_folds'])})"
        )
    same = [k for k, d in enumerate(s["differs_from_uniform"]) if not d]
    lines.append(
        "- every fold's genotype differs from the one uniform alphas derive"
        if not same
        else f"- fold(s) {same} returned the genotype uniform alphas derive"
    )
    for key in ("max_train_loss", "max_val_loss", "max_arch_loss"):
        if key in s:
            lines.append(f"- largest epoch {key[4:]} over folds: {s[key]:.4f}")
    return "\n".join(lines) + "\n"


def results_tables(
    cfg: Config,
    rows: list[dict[str, Any]],
    search_results: list[dict[str, Any]] | None = None,
    out: Path | None = None,
) -> tuple[str, dict[str, Any]]:
    """Per architecture: overall summary over all test cases, and one per fold, plus the
    "Search" section from ``search_results``. Writes ``per_case.csv``, ``summary.json`` and
    ``summary.md`` to ``<run>/results``."""
    out = Path(out or cfg.layout.results)
    out.mkdir(parents=True, exist_ok=True)
    write_table(rows, out / "per_case.csv")
    archs = list(dict.fromkeys(r["arch"] for r in rows))
    parts, data = [f"# {cfg.name}: results ({cfg.split.folds}-fold cross-validation)"], {}
    overview = [
        "| architecture | " + " | ".join(_dice_cols(rows)) + " |",
        "|---|" + "---|" * len(_dice_cols(rows)),
    ]
    for arch in archs:
        mine = [r for r in rows if r["arch"] == arch]
        summary = summarize(mine)
        data[arch] = {"overall": summary, "folds": {}}
        overview.append(
            f"| {arch} | "
            + " | ".join(
                f"{100 * summary[c]['mean']:.2f} +- {100 * summary[c]['std']:.2f}%"
                for c in _dice_cols(rows)
            )
            + " |"
        )
        per_fold = []
        for fold in sorted({r["fold"] for r in mine}):
            fs = summarize([r for r in mine if r["fold"] == fold])
            data[arch]["folds"][str(fold)] = fs
            dice = ", ".join(f"{c} {100 * fs[c]['mean']:.2f}%" for c in _dice_cols(rows))
            per_fold.append(f"- fold {fold}: {dice}")
        table = format_summary(summary, f"{arch}: all folds ({len(mine)} cases)")
        parts.append(table + "\n\n" + "\n".join(per_fold))
    text = "\n\n".join(["\n".join(overview)] + parts[1:])
    text = parts[0] + "\n\nMean DSC +- std over all test cases:\n\n" + text + "\n"
    search = summarize_search(cfg.model.space, search_results) if search_results else None
    if search is not None:
        data["search"] = search
        text += "\n" + _search_lines(search)
    (out / "summary.md").write_text(text)
    (out / "summary.json").write_text(json.dumps(data, indent=1))
    return text, data


def _dice_cols(rows: list[dict[str, Any]]) -> list[str]:
    return [k for k in rows[0] if k.startswith("dice/")] if rows else []
