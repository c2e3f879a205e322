"""Synthetic phantom datasets written as real NIfTI in the MSD, BraTS and paired layouts.

The phantoms are learnable but not trivial: the target organ overlaps its surroundings in
intensity, a distractor of organ-like intensity sits nearby, shapes are deformed by a smooth
random field, and every volume carries noise and a smooth bias field.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from .layouts import BRATS_MODALITIES
from .nifti import save_volume

__all__ = ["make_brats_case", "make_ct_case", "write_synthetic"]

CT_SPACING = (0.8, 0.8, 2.5)


def _grid(shape: tuple[int, int, int]) -> tuple[np.ndarray, ...]:
    return tuple(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    f = gaussian_filter(rng.normal(size=shape), sigma=sigma)
    return f / (np.abs(f).max() + 1e-8)


def _blob(rng, grid, center, radii, deform: float, field_sigma: float) -> np.ndarray:
    """A deformed ellipsoid: quadratic form plus a smooth random displacement."""
    q = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, center, radii))
    q = q + deform * _smooth_field(rng, q.shape, field_sigma)
    return q < 1.0


def make_ct_case(
    rng: np.random.Generator, shape: tuple[int, int, int], tumour: bool
) -> tuple[np.ndarray, np.ndarray]:
    """One abdominal-CT-like phantom in HU; label 0 background, 1 organ, 2 tumour."""
    grid = _grid(shape)
    sigma = max(2.0, min(shape) / 10)
    body = _blob(rng, grid, (0, 0, 0), (0.9, 0.75, 1.6), 0.1, sigma)
    fat = body & ~_blob(rng, grid, (0, 0, 0), (0.8, 0.62, 1.7), 0.15, sigma)
    center = rng.uniform(-0.3, 0.3, 3) * np.array([1.0, 1.0, 0.5])
    radii = rng.uniform([0.22, 0.14, 0.35], [0.38, 0.26, 0.7])
    organ = _blob(rng, grid, center, radii, rng.uniform(0.2, 0.5), sigma) & body
    # distractor: a vessel-like tube of organ-like intensity next to the organ
    side = np.sign(rng.uniform(-1, 1)) or 1.0
    tube = (
        (
            (grid[0] - center[0] - side * (radii[0] + 0.15)) ** 2 + (grid[1] - center[1]) ** 2
            < 0.07**2
        )
        & body
        & ~organ
    )
    img = np.full(shape, -1000.0)
    img[body] = 40.0
    img[fat] = -100.0
    img[tube] = 150.0
    img[organ] = 110.0
    label = organ.astype(np.uint8)
    if tumour and organ.sum() > 50:
        idx = np.argwhere(organ)
        c = idx[rng.integers(len(idx))] / (np.array(shape) - 1) * 2 - 1
        r = radii * rng.uniform(0.25, 0.45)
        tum = _blob(rng, grid, c, r, 0.2, sigma) & organ
        img[tum] = 60.0
        label[tum] = 2
    img += 50.0 * _smooth_field(rng, shape, sigma * 2) * body  # bias field: intensity overlap
    img += rng.normal(0.0, 25.0, shape)
    return img.astype(np.float32), label


def make_brats_case(
    rng: np.random.Generator, shape: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Four MRI modalities (t1, t1ce, t2, flair) and a BraTS label (0/1/2/4, nested)."""
    grid = _grid(shape)
    sigma = max(2.0, min(shape) / 10)
    brain = _blob(rng, grid, (0, 0, 0), (0.85, 0.9, 0.8), 0.1, sigma)
    wm = _blob(rng, grid, (0, 0, 0), (0.5, 0.6, 0.5), 0.4, sigma) & brain
    center = rng.uniform(-0.35, 0.35, 3)
    r = rng.uniform(0.25, 0.4, 3)
    wt = _blob(rng, grid, center, r, 0.4, sigma) & brain
    tc = _blob(rng, grid, center, r * rng.uniform(0.45, 0.65), 0.3, sigma) & wt
    core = _blob(rng, grid, center, r * rng.uniform(0.2, 0.35), 0.3, sigma) & tc
    et = tc & ~core
    label = np.zeros(shape, np.uint8)
    label[wt] = 2
    label[tc] = 1
    label[et] = 4
    # tissue classes: gm, wm, edema, necrosis, enhancing -> per-modality intensity
    contrast = {  # (gm, wm, edema, necrotic, enhancing)
        "t1": (600, 800, 520, 350, 560),
        "t1ce": (620, 820, 540, 360, 1200),
        "t2": (900, 700, 1400, 1600, 1100),
        "flair": (700, 600, 1300, 900, 1000),
    }
    classes = [brain & ~wm, wm & ~wt, wt & ~tc, core, et]
    vols = []
    for m in BRATS_MODALITIES:
        v = np.zeros(shape)
        for mask, value in zip(classes, contrast[m]):
            v[mask] = value
        v += 150.0 * _smooth_field(rng, shape, sigma * 2)
        v += rng.normal(0.0, 80.0, shape)
        v[~brain] = 0.0
        vols.append(np.clip(v, 1.0, None) * brain)
    return np.stack(vols).astype(np.float32), label


def _affine(spacing: tuple[float, float, float], flip: bool) -> np.ndarray:
    sign = np.array([-1.0, -1.0, 1.0]) if flip else np.ones(3)
    aff = np.diag([*(sign * np.array(spacing)), 1.0])
    aff[:3, 3] = [120.0, 100.0, -80.0]
    return aff


def write_synthetic(
    out: Path,
    layout: str,
    cases: int = 8,
    shape: tuple[int, int, int] = (64, 64, 32),
    seed: int = 0,
    test_cases: int = 1,
) -> Path:
    """Write a phantom dataset to ``out`` in ``layout`` (msd, brats, paired); returns ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    if layout == "brats":
        aff = _affine((1.0, 1.0, 1.0), flip=False)
        for i in range(cases):
            mods, label = make_brats_case(rng, shape)
            sub = out / f"BraTS_synth_{i:03d}"
            for m, vol in zip(BRATS_MODALITIES, mods):
                save_volume(sub / f"{sub.name}_{m}.nii.gz", vol, aff)
            save_volume(sub / f"{sub.name}_seg.nii.gz", label, aff)
        return out
    if layout not in ("msd", "paired"):
        raise ValueError(f"unknown layout {layout!r} (msd, brats, paired)")
    aff = _affine(CT_SPACING, flip=layout == "msd")
    training = []
    for i in range(cases + test_cases):
        img, label = make_ct_case(rng, shape, tumour=layout == "msd" and i % 4 != 3)
        name = f"synth_{i:03d}.nii.gz"
        if layout == "paired":
            if i >= cases:
                break
            save_volume(out / "images" / name, img, aff)
            save_volume(out / "labels" / name, label, aff)
            continue
        if i >= cases:
            save_volume(out / "imagesTs" / name, img, aff)
            continue
        save_volume(out / "imagesTr" / name, img, aff)
        save_volume(out / "labelsTr" / name, label, aff)
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    if layout == "msd":
        meta = {
            "name": "SyntheticPancreas",
            "description": "voxnas phantom (synthetic)",
            "tensorImageSize": "3D",
            "modality": {"0": "CT"},
            "labels": {"0": "background", "1": "organ", "2": "tumour"},
            "numTraining": len(training),
            "numTest": test_cases,
            "training": training,
            "test": [f"./imagesTs/synth_{cases + j:03d}.nii.gz" for j in range(test_cases)],
        }
        (out / "dataset.json").write_text(json.dumps(meta, indent=2))
    else:
        (out / "labels.json").write_text(json.dumps({"0": "background", "1": "organ"}))
    return out
