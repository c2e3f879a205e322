"""Whole-volume inference: patches laid out by sliding window or auto-fit, stitched by
averaging, then probabilities -> labels in the dataset's own values."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import numpy as np
import torch

from voxnas.data.layouts import BRATS_REGIONS
from voxnas.device import autocast
from voxnas.evaluation import tiling
from voxnas.search_spaces.layers import patch_statistics

__all__ = [
    "inference_mode",
    "labels_from_probs",
    "masks_by_name",
    "predict_volume",
    "segment",
]


def inference_mode(model: torch.nn.Module, bn_stats: str):
    """Eval mode, and with ``bn_stats == "patch"`` each batch normalised by its own BatchNorm
    statistics (``layers.patch_statistics``): how inference runs the model, as a context."""
    if bn_stats not in ("running", "patch"):
        raise ValueError(f"bn_stats must be 'running' or 'patch', got {bn_stats!r}")
    model.eval()
    return patch_statistics(model) if bn_stats == "patch" else contextlib.nullcontext()


@torch.no_grad()
def predict_volume(
    model: torch.nn.Module,
    image: np.ndarray,
    patch: tuple[int, int, int],
    target: str,
    tiling_mode: str = "sliding",
    overlap: float = 0.25,
    blend: str = "gaussian",
    device: torch.device | None = None,
    out_channels: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    bn_stats: str = "running",
) -> np.ndarray:
    """Probabilities ``(K, X, Y, Z)`` for a preprocessed ``(C, X, Y, Z)`` image: softmax over
    classes, or sigmoid per BraTS region (``target == "brats_regions"``). ``bn_stats``:
    ``running`` (eval-mode BatchNorm) or ``patch`` (each patch normalised with its own
    statistics, as in batch-1 training; see ``layers.patch_statistics``)."""
    device = device or next(model.parameters()).device
    with inference_mode(model, bn_stats):
        return _predict(
            model, image, patch, target, tiling_mode, overlap, blend, device, out_channels, progress
        )


def _predict(
    model, image, patch, target, tiling_mode, overlap, blend, device, out_channels, progress
) -> np.ndarray:
    vol = torch.from_numpy(np.array(image, dtype=np.float32)).to(device)
    if tiling_mode == "auto_fit":
        layout = tiling.auto_fit_layout(image, patch)
    else:
        layout = tiling.sliding_layout(image.shape[1:], patch, overlap)

    def predictor(x: torch.Tensor) -> torch.Tensor:
        with autocast(device):
            logits = model(x).float()
        return torch.sigmoid(logits) if target == "brats_regions" else torch.softmax(logits, 1)

    k = out_channels or int(
        predictor(torch.zeros((1, image.shape[0], *patch), device=device)).shape[1]
    )
    # voxels outside the auto-fit brain cube are background: probability 0 for every region;
    # for softmax outputs the sliding layout always covers the whole volume
    probs = tiling.stitch(
        vol,
        layout,
        patch,
        predictor,
        k,
        blend=blend,
        progress=progress,
        fill=0.0 if tiling_mode == "auto_fit" else None,
    )
    if tiling_mode == "auto_fit" and target != "brats_regions":
        outside = probs.sum(0) == 0
        probs[0][outside] = 1.0
    return probs.cpu().numpy()


def labels_from_probs(probs: np.ndarray, target: str, label_values: Sequence[int]) -> np.ndarray:
    """Label volume in the dataset's values (BraTS: 0/1/2/4 from nested WT > TC > ET)."""
    if target == "brats_regions":
        wt, tc, et = probs > 0.5
        out = np.zeros(wt.shape, np.uint8)
        out[wt] = 2
        out[wt & tc] = 1
        out[wt & tc & et] = 4
        return out
    return np.asarray(label_values, dtype=np.uint8)[probs.argmax(0)]


def masks_by_name(
    labels: np.ndarray, target: str, label_names: dict[int, str]
) -> dict[str, np.ndarray]:
    """Binary masks to score: BraTS regions (WT, TC, ET) or each foreground label."""
    if target == "brats_regions":
        return {name: np.isin(labels, values) for name, values in BRATS_REGIONS.items()}
    return {name: labels == v for v, name in label_names.items() if v != 0}


def segment(models, meta, image, device: torch.device | None = None) -> np.ndarray:
    """Label volume (dataset's values) for a preprocessed ``(C, X, Y, Z)`` image with the
    model bundle's own patch size, tiling, target kind and BatchNorm statistics (``meta``:
    a :class:`voxnas.trainables.bundle.ModelMeta`). ``models`` may be a list (the fold
    ensemble): their probabilities are averaged before the labels are taken (nnU-Net)."""
    models = list(models) if isinstance(models, (list, tuple)) else [models]
    probs = None
    for model in models:
        p = predict_volume(
            model,
            image,
            tuple(meta.patch),
            meta.target,
            meta.tiling,
            meta.overlap,
            meta.blend,
            device,
            meta.out_channels,
            bn_stats=meta.bn_stats,
        )
        probs = p if probs is None else probs + p
    return labels_from_probs(probs / len(models), meta.target, meta.label_values)
