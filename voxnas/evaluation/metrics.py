"""Segmentation metrics per case and class/region, and paper-style summaries.

Pure functions on boolean masks (``compute_*``), a per-case table builder and a summary
(mean +- std, max, min, median per column), as in seed 000 Tables 2-4 and seed 002 Tables 3-4.

Empty masks follow the BraTS convention:
- prediction and ground truth both empty: DSC 1, sensitivity 1, HD95 0;
- exactly one empty: DSC 0, HD95 = the volume's diagonal in mm (373.13 for 240x240x155 at
  1 mm, the BraTS value); sensitivity is 1 when the ground truth is empty (nothing to miss)
  and 0 when only the prediction is; specificity is 1 when there is no background.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.ndimage import binary_erosion, distance_transform_edt, generate_binary_structure

__all__ = [
    "case_metrics",
    "compute_dice",
    "compute_hd95",
    "compute_sensitivity",
    "compute_specificity",
    "format_summary",
    "summarize",
    "write_table",
]


def compute_dice(pred: np.ndarray, gt: np.ndarray) -> float:
    p, g = pred.astype(bool), gt.astype(bool)
    denom = p.sum() + g.sum()
    return 1.0 if denom == 0 else float(2.0 * (p & g).sum() / denom)


def compute_sensitivity(pred: np.ndarray, gt: np.ndarray) -> float:
    g = gt.astype(bool)
    return 1.0 if not g.any() else float((pred.astype(bool) & g).sum() / g.sum())


def compute_specificity(pred: np.ndarray, gt: np.ndarray) -> float:
    bg = ~gt.astype(bool)
    return 1.0 if not bg.any() else float((~pred.astype(bool) & bg).sum() / bg.sum())


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~binary_erosion(mask, generate_binary_structure(3, 1), border_value=0)


def compute_hd95(
    pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float], percentile: float = 95.0
) -> float:
    """Seed 002 eq. 7: max of the two directed 95th-percentile surface distances, in mm."""
    p, g = pred.astype(bool), gt.astype(bool)
    if not p.any() and not g.any():
        return 0.0
    if not p.any() or not g.any():
        return float(math.sqrt(sum((n * s) ** 2 for n, s in zip(p.shape, spacing))))
    sp, sg = _surface(p), _surface(g)
    to_g = distance_transform_edt(~sg, sampling=spacing)
    to_p = distance_transform_edt(~sp, sampling=spacing)
    return float(max(np.percentile(to_g[sp], percentile), np.percentile(to_p[sg], percentile)))


def case_metrics(
    pred: dict[str, np.ndarray],
    gt: dict[str, np.ndarray],
    spacing: Sequence[float],
    percentile: float = 95.0,
) -> dict[str, float]:
    """``{"dice/organ": ..., "hd95/organ": ...}`` for each named class/region mask."""
    out = {}
    for name in gt:
        p, g = pred[name], gt[name]
        out[f"dice/{name}"] = compute_dice(p, g)
        out[f"sensitivity/{name}"] = compute_sensitivity(p, g)
        out[f"specificity/{name}"] = compute_specificity(p, g)
        out[f"hd95/{name}"] = compute_hd95(p, g, spacing, percentile)
    return out


def summarize(
    rows: list[dict[str, float]], columns: Sequence[str] | None = None
) -> dict[str, dict[str, float]]:
    """Per metric column: mean, std, max, min, median over cases (NaN ignored)."""
    columns = columns or [k for k in rows[0] if k not in ("case", "fold", "arch")]
    out = {}
    for col in columns:
        v = np.array([r[col] for r in rows if col in r], dtype=float)
        v = v[~np.isnan(v)]
        if v.size == 0:
            continue
        out[col] = {
            "mean": float(v.mean()),
            "std": float(v.std()),
            "max": float(v.max()),
            "min": float(v.min()),
            "median": float(np.median(v)),
            "n": int(v.size),
        }
    return out


def format_summary(summary: dict[str, dict[str, float]], title: str = "") -> str:
    """Markdown table; ratio metrics in %, HD95 in mm."""
    lines = [f"### {title}"] if title else []
    lines += ["| metric | mean +- std | max | min | median | n |", "|---|---|---|---|---|---|"]
    for col, s in summary.items():
        pct = not col.startswith("hd95")
        f = (lambda x: f"{100 * x:.2f}%") if pct else (lambda x: f"{x:.2f}")
        std = f"{100 * s['std']:.2f}%" if pct else f"{s['std']:.2f}"
        lines.append(
            f"| {col} | {f(s['mean'])} +- {std} | {f(s['max'])} | {f(s['min'])} | "
            f"{f(s['median'])} | {s['n']} |"
        )
    return "\n".join(lines)


def write_table(rows: list[dict], path: Path) -> None:
    """Per-case rows as CSV (and the same as JSON next to it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    path.with_suffix(".json").write_text(json.dumps(rows, indent=1))
