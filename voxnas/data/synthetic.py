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

from voxnas.data.layouts import BRATS_MODALITIES
from voxnas.data.nifti import save_volume

__all__ = ["PHANTOMS", "make_brats_case", "make_ct_case", "make_planted_case", "write_synthetic"]

PHANTOMS = ("ct", "planted")

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


def make_planted_case(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    dash: tuple[int, int] = (10, 13),
    gap: tuple[int, int] = (3, 5),
    grid: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """The planted-architecture phantom (label 1 = target, no other class).

    Columns along the slice axis Z, one per cell of a jittered 3x3 in-plane grid, all with the
    same intensity, cross-section distribution and noise. A *target* column is continuous
    over most of the volume's depth; a *decoy* column is dashed: segments of ``dash`` slices
    separated by ``gap`` empty slices. On every slice, and within any window of fewer than
    ``dash[0]`` slices around most decoy voxels, a decoy looks exactly like a target: the
    decisive cue (a gap) lies several slices away along Z, beyond the dense slice-axis reach
    of a network whose cells are all 2D (measured in ``tests/test_planted.py``), and within
    that of 3D / P3D cells. Targets and decoys are drawn 3 : 6 per volume.
    """
    X, Y, Z = shape
    img = np.zeros(shape, np.float32)
    label = np.zeros(shape, np.uint8)
    cells = [(i, j) for i in range(grid) for j in range(grid)]
    n_target = max(1, round(len(cells) / 3))
    kinds = np.array([1] * n_target + [0] * (len(cells) - n_target))
    rng.shuffle(kinds)
    gx, gy = np.meshgrid(np.arange(X), np.arange(Y), indexing="ij")
    for (i, j), is_target in zip(cells, kinds):
        cx = (i + 0.5) * X / grid + rng.uniform(-0.12, 0.12) * X / grid
        cy = (j + 0.5) * Y / grid + rng.uniform(-0.12, 0.12) * Y / grid
        rx, ry = rng.uniform(0.17, 0.3, 2) * np.array([X, Y]) / grid
        disc = ((gx - cx) / rx) ** 2 + ((gy - cy) / ry) ** 2 < 1.0
        on = np.zeros(Z, bool)
        if is_target:
            length = int(rng.integers(int(0.75 * Z), Z + 1))
            start = int(rng.integers(0, Z - length + 1))
            on[start : start + length] = True
        else:
            z = int(rng.integers(-dash[1], 1))
            while z < Z:
                d = int(rng.integers(dash[0], dash[1] + 1))
                on[max(z, 0) : max(z + d, 0)] = True
                z += d + int(rng.integers(gap[0], gap[1] + 1))
        column = disc[:, :, None] & on[None, None, :]
        img[column] = 150.0
        if is_target:
            label[column] = 1
    img += rng.normal(0.0, 30.0, shape).astype(np.float32)
    return img, label


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
    phantom: str = "ct",
    tumour: bool = True,
) -> Path:
    """Write a phantom dataset to ``out`` in ``layout`` (msd, brats, paired); returns ``out``.

    ``phantom`` picks the CT-like volumes: ``ct`` (organ, distractor tube, and a tumour in
    3 of 4 cases when ``tumour``, MSD layout only) or ``planted`` (the planted-architecture
    task, :func:`make_planted_case`)."""
    if phantom not in PHANTOMS:
        raise ValueError(f"unknown phantom {phantom!r} ({', '.join(PHANTOMS)})")
    if layout == "brats" and phantom != "ct":
        raise ValueError(f"phantom {phantom!r} is CT-like: use layout msd or paired, not brats")
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
        if phantom == "planted":
            img, label = make_planted_case(rng, shape)
        else:
            img, label = make_ct_case(rng, shape, tumour=tumour and layout == "msd" and i % 4 != 3)
        name = f"synth_{i:03d}.nii.gz"
        if layout == "paired":
            if i >= cases:
                break
            save_volume(out / "images" / name, img, aff)
            save_volume(out / "labels" / name, label, aff)
            continue
        if i >= cases:
            # held-out scans; their labels are kept aside in labelsTs/ (not part of the
            # MSD dataset, which lists no test labels) to score deployable models
            save_volume(out / "imagesTs" / name, img, aff)
            save_volume(out / "labelsTs" / name, label, aff)
            continue
        save_volume(out / "imagesTr" / name, img, aff)
        save_volume(out / "labelsTr" / name, label, aff)
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    labels = {"0": "background", "1": "organ"}
    if phantom == "planted":
        labels = {"0": "background", "1": "target"}
    elif tumour and layout == "msd":
        labels["2"] = "tumour"
    if layout == "msd":
        meta = {
            "name": "SyntheticPancreas",
            "description": "voxnas phantom (synthetic)",
            "tensorImageSize": "3D",
            "modality": {"0": "CT"},
            "labels": labels,
            "numTraining": len(training),
            "numTest": test_cases,
            "training": training,
            "test": [f"./imagesTs/synth_{cases + j:03d}.nii.gz" for j in range(test_cases)],
        }
        (out / "dataset.json").write_text(json.dumps(meta, indent=2))
    else:
        (out / "labels.json").write_text(json.dumps(labels))
    return out
