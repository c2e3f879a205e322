"""Pictures as PNG bytes: alpha heatmap and trajectories, overlays, per-case DSC box plots."""

from __future__ import annotations

import io
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["alpha_heatmap", "alpha_trajectories", "dice_box_plot", "overlay"]


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _split(probs: dict[str, float]) -> tuple[list[str], list[str], dict[tuple[str, str], float]]:
    cells, ops, table = [], [], {}
    for key, v in probs.items():
        cell, op = key[len("alpha/") :].rsplit("/", 1)
        cells.append(cell)
        ops.append(op)
        table[(cell, op)] = v
    return list(dict.fromkeys(cells)), list(dict.fromkeys(ops)), table


def alpha_heatmap(probs: dict[str, float], title: str = "softmax(alpha)") -> bytes:
    """Cells x ops heatmap of ``{"alpha/enc07/p3d": p}``; blank where an op is not a choice."""
    cells, ops, table = _split(probs)
    m = np.full((len(cells), len(ops)), np.nan)
    for (c, o), v in table.items():
        m[cells.index(c), ops.index(o)] = v
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(ops), 0.8 + 0.28 * len(cells)))
    im = ax.imshow(m, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(ops)), ops, rotation=45, ha="right")
    ax.set_yticks(range(len(cells)), cells, fontsize=7)
    for i, j in zip(*np.where(~np.isnan(m))):
        ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=6, color="w")
    fig.colorbar(im, ax=ax, fraction=0.04)
    ax.set_title(title)
    return _png(fig)


def alpha_trajectories(history: list[dict[str, float]]) -> bytes:
    """One panel per cell, one line per op: softmax(alpha) over epochs."""
    cells, ops, _ = _split(history[-1])
    n = len(cells)
    cols = min(6, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(
        rows, cols, figsize=(2.4 * cols, 1.8 * rows), squeeze=False, sharey=True
    )
    for idx, cell in enumerate(cells):
        ax = axes[idx // cols][idx % cols]
        for op in ops:
            key = f"alpha/{cell}/{op}"
            ys = [h.get(key, np.nan) for h in history]
            if not np.all(np.isnan(ys)):
                ax.plot(ys, label=op)
        ax.set_title(cell, fontsize=7)
        ax.tick_params(labelsize=6)
    for idx in range(n, rows * cols):
        axes[idx // cols][idx % cols].axis("off")
    axes[0][0].legend(fontsize=5)
    fig.suptitle("softmax(alpha) per epoch")
    return _png(fig)


def overlay(image: np.ndarray, gt: np.ndarray, pred: np.ndarray, title: str = "") -> bytes:
    """Axial slice through the largest ground-truth area: image, GT (green) and prediction
    (red) contours, like the seeds' figures."""
    z = int(np.argmax((gt > 0).sum((0, 1)))) if gt.any() else gt.shape[2] // 2
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(image[:, :, z].T, cmap="gray", origin="lower")
    for mask, color in ((gt, "lime"), (pred, "red")):
        for v in [v for v in np.unique(mask) if v]:
            if (mask[:, :, z] == v).any():
                ax.contour((mask[:, :, z] == v).T, levels=[0.5], colors=color, linewidths=1)
    ax.set_title(f"{title} (z={z}; green GT, red prediction)", fontsize=8)
    ax.axis("off")
    return _png(fig)


def dice_box_plot(rows: list[dict]) -> bytes:
    """Per-case DSC per class/region and architecture (seed 002 Fig. 9 style)."""
    cols = [k for k in rows[0] if k.startswith("dice/")]
    by_arch: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_arch[r.get("arch", "model")].append(r)
    fig, axes = plt.subplots(1, len(cols), figsize=(3.2 * len(cols), 3.2), squeeze=False)
    for ax, col in zip(axes[0], cols):
        data = [[r[col] for r in rs] for rs in by_arch.values()]
        ax.boxplot(data, showmeans=True)
        ax.set_xticks(range(1, len(data) + 1), list(by_arch), rotation=30, ha="right", fontsize=7)
        ax.set_title(col)
        ax.set_ylim(-0.02, 1.02)
    fig.suptitle("per-case DSC (box: quartiles, line: median, triangle: mean)")
    return _png(fig)
