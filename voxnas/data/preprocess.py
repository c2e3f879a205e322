"""Preprocessing: canonical orientation, optional resampling, CT window / brain-wise MRI norm.

Arrays are ``(C, X, Y, Z)`` for images and ``(X, Y, Z)`` for labels, in voxel order after
reorientation to RAS+ (nibabel's closest canonical).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import nibabel as nib
import numpy as np
from scipy.ndimage import zoom

from voxnas.data.layouts import Case
from voxnas.data.nifti import load_volume, voxel_spacing

__all__ = [
    "Geometry",
    "PreprocessSettings",
    "fit_mri_stats",
    "invert_geometry",
    "load_case",
    "normalize_ct",
    "normalize_mri",
    "preprocess_image",
]


@dataclass(frozen=True)
class PreprocessSettings:
    intensity: str = "ct"
    ct_window: tuple[float, float] = (-100.0, 240.0)
    mri_xi: float = 100.0
    mri_lambda: float = 0.1
    target_spacing: tuple[float, float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessSettings:
        ts = d.get("target_spacing")
        return cls(
            d["intensity"],
            tuple(d["ct_window"]),
            d["mri_xi"],
            d["mri_lambda"],
            tuple(ts) if ts else None,
        )


@dataclass(frozen=True)
class Geometry:
    """How a case's source voxels map to its preprocessed array, to undo it at prediction."""

    source_shape: tuple[int, int, int]
    source_affine: list[list[float]]
    ornt: list[list[float]]
    canonical_shape: tuple[int, int, int]
    spacing: tuple[float, float, float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Geometry:
        return cls(
            tuple(d["source_shape"]),
            d["source_affine"],
            d["ornt"],
            tuple(d["canonical_shape"]),
            tuple(d["spacing"]),
        )


def normalize_ct(image: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Seed 000: clip HU to ``window`` then z-score the whole case (zero mean, unit variance)."""
    out = np.clip(image, window[0], window[1]).astype(np.float32)
    std = float(out.std())
    return (out - out.mean()) / (std if std > 0 else 1.0)


def normalize_mri(image: np.ndarray, mean: float, std: float, xi: float, lam: float) -> np.ndarray:
    """Seed 002 eq. 1-2 on one modality: z-score then min-max over non-zero voxels.

    ``xi * ((A_hat - min) / (max - min) + lam)`` inside the brain, 0 outside. Eq. 2's
    min-max is invariant to eq. 1's affine map, so the result does not depend on ``mean``
    and ``std`` (up to rounding); they are kept for fidelity to the paper.
    """
    out = np.zeros(image.shape, np.float32)
    brain = image != 0
    if not brain.any():
        return out
    z = (image[brain].astype(np.float64) - mean) / (std if std > 0 else 1.0)
    lo, hi = z.min(), z.max()
    scaled = (z - lo) / (hi - lo) if hi > lo else np.zeros_like(z)
    out[brain] = xi * (scaled + lam)
    return out


def fit_mri_stats(images: list[np.ndarray]) -> list[dict[str, float]]:
    """Per modality mean and std over the non-zero voxels of all training volumes."""
    n_mod = images[0].shape[0]
    stats = []
    for m in range(n_mod):
        count, total, total_sq = 0, 0.0, 0.0
        for img in images:
            v = img[m][img[m] != 0].astype(np.float64)
            count += v.size
            total += v.sum()
            total_sq += (v**2).sum()
        mean = total / max(count, 1)
        std = float(np.sqrt(max(total_sq / max(count, 1) - mean**2, 0.0)))
        stats.append({"mean": float(mean), "std": std, "voxels": int(count)})
    return stats


def _stack_modalities(case: Case) -> tuple[np.ndarray, np.ndarray]:
    if case.four_d:
        data, affine = load_volume(case.images[0])
        return np.moveaxis(data, -1, 0), affine
    vols, affine = [], None
    for path in case.images:
        data, aff = load_volume(path)
        vols.append(data)
        affine = aff if affine is None else affine
    return np.stack(vols), affine


def _reorient(data: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """Apply an orientation transform to the last three axes."""
    if data.ndim == 4:
        return np.moveaxis(
            nib.orientations.apply_orientation(np.moveaxis(data, 0, -1), ornt), -1, 0
        )
    return nib.orientations.apply_orientation(data, ornt)


def load_case(
    case: Case, settings: PreprocessSettings, label_values: list[int]
) -> tuple[np.ndarray, np.ndarray | None, Geometry]:
    """Decode a case, reorient to canonical, resample; label values become class indices."""
    image, affine = _stack_modalities(case)
    source_shape = tuple(int(v) for v in image.shape[1:])
    ornt = nib.orientations.io_orientation(affine)
    image = np.ascontiguousarray(_reorient(image, ornt), dtype=np.float32)
    canonical_affine = affine @ nib.orientations.inv_ornt_aff(ornt, image.shape[1:])
    spacing = voxel_spacing(canonical_affine)
    label = None
    if case.label is not None:
        raw, _ = load_volume(case.label, np.float32)
        raw = _reorient(np.rint(raw).astype(np.int64), ornt)
        lut = np.zeros(max(label_values) + 1, np.uint8)
        lut[label_values] = np.arange(len(label_values), dtype=np.uint8)
        label = np.ascontiguousarray(lut[raw])
    canonical_shape = tuple(int(s) for s in image.shape[1:])
    if settings.target_spacing is not None:
        factors = [s / t for s, t in zip(spacing, settings.target_spacing)]
        if not np.allclose(factors, 1.0):
            image = np.stack(
                [zoom(ch, factors, order=1, grid_mode=True, mode="nearest") for ch in image]
            ).astype(np.float32)
            if label is not None:
                label = zoom(label, factors, order=0, grid_mode=True, mode="nearest")
            spacing = tuple(float(t) for t in settings.target_spacing)
    geom = Geometry(
        source_shape, np.asarray(affine).tolist(), ornt.tolist(), canonical_shape, spacing
    )
    return image, label, geom


def preprocess_image(
    image: np.ndarray, settings: PreprocessSettings, mri_stats: list[dict[str, float]] | None = None
) -> np.ndarray:
    """Intensity normalisation of a ``(C, X, Y, Z)`` image."""
    if settings.intensity == "ct":
        return np.stack([normalize_ct(ch, settings.ct_window) for ch in image])
    stats = mri_stats or [{"mean": 0.0, "std": 1.0}] * image.shape[0]
    return np.stack(
        [
            normalize_mri(ch, s["mean"], s["std"], settings.mri_xi, settings.mri_lambda)
            for ch, s in zip(image, stats)
        ]
    )


def invert_geometry(mask: np.ndarray, geom: Geometry) -> np.ndarray:
    """Map a mask on the preprocessed grid back to the source voxel grid (nearest)."""
    if tuple(mask.shape) != tuple(geom.canonical_shape):
        factors = [c / m for c, m in zip(geom.canonical_shape, mask.shape)]
        mask = zoom(mask, factors, order=0, grid_mode=True, mode="nearest")
        mask = mask[tuple(slice(0, c) for c in geom.canonical_shape)]
        pad = [(0, c - m) for c, m in zip(geom.canonical_shape, mask.shape)]
        mask = np.pad(mask, pad, mode="edge")
    inverse = nib.orientations.ornt_transform(
        np.array([[0, 1], [1, 1], [2, 1]], dtype=float), np.asarray(geom.ornt)
    )
    return np.ascontiguousarray(nib.orientations.apply_orientation(mask, inverse))
