"""Whole-volume inference by patches: sliding-window and seed 002's 'auto-fitting' layouts.

A layout is, per axis, the list of patch start positions (possibly negative or running past
the end; the volume is zero-padded there). One stitcher serves both layouts and averages
overlaps with constant or gaussian weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

__all__ = [
    "auto_fit_axis",
    "auto_fit_layout",
    "brain_cube",
    "gaussian_weight",
    "sliding_axis",
    "sliding_layout",
    "stitch",
]

Layout = list[list[int]]


def auto_fit_axis(l_b: int, l_p: int) -> list[int]:
    """Seed 002 section 2.3 on one axis, starts relative to the brain cube's first voxel.

    ``n_p = ceil(l_b / l_p)``, ``l_o = floor((n_p l_p - l_b) / (n_p - 1))``, first start
    ``-floor((n_p l_p - l_o (n_p - 1) - l_b) / 2)``, step ``l_p - l_o``. With ``l_b <= l_p``
    (outside the paper's assumption) one patch is centred on the cube.
    """
    if l_b <= 0 or l_p <= 0:
        raise ValueError(f"lengths must be positive (brain cube {l_b}, patch {l_p})")
    n_p = math.ceil(l_b / l_p)
    if n_p == 1:
        return [-((l_p - l_b) // 2)]
    l_o = (n_p * l_p - l_b) // (n_p - 1)
    first = -((n_p * l_p - l_o * (n_p - 1) - l_b) // 2)
    return [first + i * (l_p - l_o) for i in range(n_p)]


def brain_cube(image: np.ndarray) -> tuple[tuple[int, int], ...]:
    """Bounding box ``((lo, hi), ...)`` of the non-zero voxels of a ``(C, X, Y, Z)`` image."""
    mask = np.any(np.asarray(image) != 0, axis=0)
    if not mask.any():
        return tuple((0, s) for s in mask.shape)
    box = []
    for axis in range(3):
        nz = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        box.append((int(nz[0]), int(nz[-1]) + 1))
    return tuple(box)


def auto_fit_layout(image: np.ndarray, patch: tuple[int, int, int]) -> Layout:
    """Auto-fitting starts per axis, absolute voxel positions in ``image``."""
    return [
        [lo + s for s in auto_fit_axis(hi - lo, p)] for (lo, hi), p in zip(brain_cube(image), patch)
    ]


def sliding_axis(length: int, patch: int, overlap: float) -> list[int]:
    """Evenly stepped starts with at least ``overlap`` fraction shared, last patch flush."""
    if length <= patch:
        return [0]
    step = max(1, int(patch * (1 - overlap)))
    n = math.ceil((length - patch) / step) + 1
    return sorted({min(i * step, length - patch) for i in range(n)})


def sliding_layout(shape: tuple[int, ...], patch: tuple[int, int, int], overlap: float) -> Layout:
    return [sliding_axis(L, p, overlap) for L, p in zip(shape, patch)]


def gaussian_weight(patch: tuple[int, int, int], sigma_scale: float = 0.125) -> torch.Tensor:
    axes = []
    for n in patch:
        x = torch.arange(n, dtype=torch.float32) - (n - 1) / 2
        axes.append(torch.exp(-(x**2) / (2 * (sigma_scale * n) ** 2)))
    w = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    return (w / w.max()).clamp_min(1e-3)


@torch.no_grad()
def stitch(
    image: torch.Tensor,
    layout: Layout,
    patch: tuple[int, int, int],
    predictor: Callable[[torch.Tensor], torch.Tensor],
    out_channels: int,
    blend: str = "constant",
    batch_size: int = 1,
    progress: Callable[[int, int], None] | None = None,
    fill: float | None = None,
) -> torch.Tensor:
    """Predict ``image`` ``(C, X, Y, Z)`` patch by patch; returns ``(K, X, Y, Z)`` averages.

    Voxels no patch covers (auto-fit leaves everything outside the brain cube) get ``fill``;
    with ``fill=None`` an uncovered voxel is an error.
    """
    shape = image.shape[1:]
    lo = [min(0, min(a)) for a in layout]
    hi = [max(L, max(a) + p) for a, p, L in zip(layout, patch, shape)]
    pad = [(-lo_i, h - L) for lo_i, h, L in zip(lo, hi, shape)]
    flat_pad = [v for pr in reversed(pad) for v in pr]
    padded = torch.nn.functional.pad(image, flat_pad)
    acc = torch.zeros((out_channels, *padded.shape[1:]), dtype=torch.float32, device=image.device)
    norm = torch.zeros(padded.shape[1:], dtype=torch.float32, device=image.device)
    weight = (gaussian_weight(patch) if blend == "gaussian" else torch.ones(patch)).to(image.device)
    starts = [
        (x - lo[0], y - lo[1], z - lo[2]) for x in layout[0] for y in layout[1] for z in layout[2]
    ]
    for b in range(0, len(starts), batch_size):
        group = starts[b : b + batch_size]
        slices = [tuple(slice(s, s + p) for s, p in zip(st, patch)) for st in group]
        batch = torch.stack([padded[(slice(None), *sl)] for sl in slices])
        pred = predictor(batch).float()
        for sl, pr in zip(slices, pred):
            acc[(slice(None), *sl)] += pr * weight
            norm[sl] += weight
        if progress:
            progress(min(b + batch_size, len(starts)), len(starts))
    crop = tuple(slice(-lo_i, -lo_i + L) for lo_i, L in zip(lo, shape))
    norm = norm[crop]
    uncovered = norm == 0
    if fill is None and bool(uncovered.any()):
        raise ValueError("patch layout does not cover the whole volume")
    out = acc[(slice(None), *crop)] / norm.clamp_min(1e-12)
    if fill is not None:
        out[:, uncovered] = fill
    return out
