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
    """Cells x ops heatmap of ``{"alpha/enc07/p3d": p}``; blank where an op is not a choice;
    each cell's chosen (most probable) op framed in red with its value in bold."""
    cells, ops, table = _split(probs)
    m = np.full((len(cells), len(ops)), np.nan)
    for (c, o), v in table.items():
        m[cells.index(c), ops.index(o)] = v
    fig, ax = plt.subplots(figsize=(2.6 + 0.8 * len(ops), 1.2 + 0.3 * len(cells)))
    im = ax.imshow(m, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(ops)), ops, rotation=30, ha="right", fontsize=9)
    ax.set_yticks(range(len(cells)), cells, fontsize=8)
    ax.set_xlabel("candidate op")
    ax.set_ylabel("cell")
    chosen = np.nanargmax(np.nan_to_num(m, nan=-1.0), axis=1)
    for i, j in zip(*np.where(~np.isnan(m))):
        top = j == chosen[i]
        ax.text(
            j,
            i,
            f"{m[i, j]:.2f}",
            ha="center",
            va="center",
            fontsize=7,
            color="k" if m[i, j] > 0.6 else "w",
            fontweight="bold" if top else "normal",
        )
        if top:
            ax.add_patch(
                plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", lw=1.5)
            )
    fig.colorbar(im, ax=ax, fraction=0.05, label="probability")
    ax.set_title(f"{title}\n(red frame: chosen op)", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def alpha_trajectories(history: list[dict[str, float]]) -> bytes:
    """One panel per cell, one line per op: softmax(alpha) over epochs."""
    cells, ops, _ = _split(history[-1])
    n = len(cells)
    cols = min(6, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(
        rows, cols, figsize=(2.6 * cols, 2.0 * rows + 0.8), squeeze=False, sharex=True
    )
    lines = {}
    for idx, cell in enumerate(cells):
        ax = axes[idx // cols][idx % cols]
        for op in ops:
            key = f"alpha/{cell}/{op}"
            ys = [h.get(key, np.nan) for h in history]
            if not np.all(np.isnan(ys)):
                (lines[op],) = ax.plot(ys, label=op, color=f"C{ops.index(op)}")
        ax.set_title(cell, fontsize=9, pad=3)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if idx % cols == 0:
            ax.set_ylabel("probability", fontsize=8)
        if idx + cols >= n:  # the lowest panel of its column
            ax.set_xlabel("epoch", fontsize=8)
            ax.tick_params(labelbottom=True)
    for idx in range(n, rows * cols):
        axes[idx // cols][idx % cols].axis("off")
    fig.suptitle("softmax(alpha) per epoch", fontsize=11)
    fig.legend(
        list(lines.values()),
        list(lines),
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=min(len(lines), 6),
        fontsize=8,
        frameon=False,
    )
    fig.tight_layout()
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
    fig, axes = plt.subplots(1, len(cols), figsize=(3.4 * len(cols), 3.6), squeeze=False)
    for ax, col in zip(axes[0], cols):
        data = [[r[col] for r in rs] for rs in by_arch.values()]
        ax.boxplot(data, showmeans=True)
        ax.set_xticks(range(1, len(data) + 1), list(by_arch), rotation=30, ha="right", fontsize=8)
        ax.set_title(col.split("/", 1)[-1], fontsize=10)
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("DSC", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("per-case DSC\n(box: quartiles, line: median, triangle: mean)", fontsize=10)
    fig.tight_layout()
    return _png(fig)
