"""Replayable patch augmentation: flips, right-angle turns, a small in-plane rotation and
seed 002's "random distortion" (a smooth random displacement of a few voxels).

torchio style: :func:`sample_augmentation` draws an :class:`AugParams` (plain data) from a
generator and the deterministic :func:`apply_augmentation` applies it, so any patch can be
replayed from its parameters. Rotation and displacement share one resampling
(:mod:`voxnas.data.warp`); flips and right-angle turns are exact and come last, in the copy
that produces the output arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from voxnas.data.warp import control_shape, warp_grids, warp_margin, warp_slices

__all__ = ["AugParams", "apply_augmentation", "augmentation_margin", "sample_augmentation"]


@dataclass(frozen=True)
class AugParams:
    """One patch's augmentation.

    Attributes:
        flips: mirror along X, Y, Z.
        rot90: quarter turns in the X-Y plane (applied only when X == Y).
        angle: in-plane rotation in degrees.
        elastic_seed: seed of the control-point displacements; None for no displacement.
        elastic_alpha: largest control-point displacement in voxels, per axis; no voxel moves
            further (the B-spline averages control points).
        elastic_spacing: control points' spacing in voxels (the field's smoothness).
    """

    flips: tuple[bool, bool, bool] = (False, False, False)
    rot90: int = 0
    angle: float = 0.0
    elastic_seed: int | None = None
    elastic_alpha: float = 0.0
    elastic_spacing: float = 8.0

    @property
    def warps(self) -> bool:
        """Whether the patch is resampled (otherwise it is the crop, exactly)."""
        return bool(self.angle) or self.elastic_seed is not None


def sample_augmentation(
    rng: np.random.Generator, flip: bool, rotate90: bool, rotate_degrees: float, elastic_prob: float
) -> AugParams:
    """Draw one patch's parameters: each flip with probability 1/2, a uniform number of quarter
    turns, an angle uniform in +-``rotate_degrees``, a displacement with ``elastic_prob``."""
    return AugParams(
        flips=tuple(bool(rng.random() < 0.5) if flip else False for _ in range(3)),
        rot90=int(rng.integers(4)) if rotate90 else 0,
        angle=float(rng.uniform(-rotate_degrees, rotate_degrees)) if rotate_degrees else 0.0,
        elastic_seed=int(rng.integers(2**31)) if rng.random() < elastic_prob else None,
        elastic_alpha=4.0,
    )


def _displacement(p: AugParams) -> float:
    return p.elastic_alpha if p.elastic_seed is not None else 0.0


def augmentation_margin(p: AugParams, size: tuple[int, int, int]) -> tuple[int, int, int]:
    """Voxels to crop beyond ``size`` on each side so that rotating and displacing read real
    data, not a repeated border."""
    if not p.warps:
        return (0, 0, 0)
    return warp_margin(tuple(size), p.angle, _displacement(p))


def _orient(a: np.ndarray, p: AugParams) -> np.ndarray:
    """Flips and quarter turns of a ``(X, Y, Z)`` array, as a view."""
    for axis, f in enumerate(p.flips):
        if f:
            a = np.flip(a, axis)
    if p.rot90 and a.shape[0] == a.shape[1]:  # in-plane only; keeps the slice axis
        a = np.rot90(a, p.rot90, (0, 1))
    return a


def _copy(dst: np.ndarray, src: np.ndarray, axis: int, rows: int = 2) -> None:
    """``dst[...] = src`` a few rows along ``axis`` at a time. A whole-volume transposing copy
    thrashes the cache (five times slower when the slice count is a power of two); a block
    of rows stays in it."""
    dst, src = np.moveaxis(dst, axis, 0), np.moveaxis(src, axis, 0)
    for i in range(0, dst.shape[0], rows):
        dst[i : i + rows] = src[i : i + rows]


def _slices(a: np.ndarray) -> torch.Tensor:
    """``(X, Y, Z)`` -> contiguous ``(Z, X, Y)`` float32, the layout of the warp."""
    out = np.empty((a.shape[2], a.shape[0], a.shape[1]), np.float32)
    _copy(out, a.transpose(2, 0, 1), axis=1)
    return torch.from_numpy(out)


def apply_augmentation(
    image: np.ndarray, label: np.ndarray, p: AugParams, size: tuple[int, int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Apply ``p`` to the centre ``size`` patch of a region.

    Args:
        image: ``(C, X, Y, Z)`` region centred on the patch; ``size`` plus
            :func:`augmentation_margin` on each side (a smaller margin repeats its border).
        label: ``(X, Y, Z)`` integer labels of the same region.
        p: the parameters.
        size: the patch size; defaults to the region's size (no margin).

    Returns:
        ``(C, *size)`` float32 image and ``size`` uint8 label, new arrays. Labels are
        resampled by nearest value, so they take only values present in ``label``.
    """
    size = tuple(image.shape[1:]) if size is None else tuple(size)
    if not p.warps:
        lo = [(n - s) // 2 for n, s in zip(image.shape[1:], size)]
        box = tuple(slice(a, a + s) for a, s in zip(lo, size))
        img, lbl = image[(slice(None), *box)], label[box]
    else:
        coeffs = None
        if p.elastic_seed is not None:
            mz = (image.shape[3] - size[2]) // 2
            shape = (3, *control_shape(size, mz, p.elastic_spacing))
            draw = np.random.default_rng(p.elastic_seed).uniform(-1.0, 1.0, shape)
            coeffs = torch.from_numpy((draw * p.elastic_alpha).astype(np.float32))
        grids = warp_grids(image.shape[1:], size, p.angle, coeffs, p.elastic_spacing)
        img = [warp_slices(_slices(ch), grids, "bilinear").numpy() for ch in image]
        lbl = warp_slices(_slices(label), grids, "nearest").numpy()
    out_img = np.empty((image.shape[0], *size), np.float32)
    for c in range(image.shape[0]):
        _copy(out_img[c], _orient(img[c], p), axis=0)
    out_lbl = np.empty(size, np.uint8)
    _copy(out_lbl, _orient(lbl, p), axis=0)
    return out_img, out_lbl
