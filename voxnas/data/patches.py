"""Training patches: foreground-biased random crops with replayable augmentation.

Random parameters are drawn by :func:`sample_augmentation` and applied by the deterministic
:func:`apply_augmentation` (torchio style), so a patch can be replayed from its parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates, rotate

from voxnas.data.cache import CachedCase

__all__ = ["AugParams", "PatchSampler", "apply_augmentation", "crop_patch", "sample_augmentation"]


@dataclass(frozen=True)
class AugParams:
    flips: tuple[bool, bool, bool] = (False, False, False)
    rot90: int = 0
    angle: float = 0.0
    elastic_seed: int | None = None
    elastic_alpha: float = 0.0


def sample_augmentation(
    rng: np.random.Generator, flip: bool, rotate90: bool, rotate_degrees: float, elastic_prob: float
) -> AugParams:
    return AugParams(
        flips=tuple(bool(rng.random() < 0.5) if flip else False for _ in range(3)),
        rot90=int(rng.integers(4)) if rotate90 else 0,
        angle=float(rng.uniform(-rotate_degrees, rotate_degrees)) if rotate_degrees else 0.0,
        elastic_seed=int(rng.integers(2**31)) if rng.random() < elastic_prob else None,
        elastic_alpha=4.0,
    )


def _elastic(
    arrays: list[np.ndarray], orders: list[int], seed: int, alpha: float
) -> list[np.ndarray]:
    """Seed 002's random distortion: a smooth displacement field (voxels) on all arrays."""
    shape = arrays[-1].shape[-3:]
    rng = np.random.default_rng(seed)
    coords = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    disp = [gaussian_filter(rng.uniform(-1, 1, shape), 4.0) for _ in range(3)]
    disp = [d / (np.abs(d).max() + 1e-8) * alpha for d in disp]
    warped = [c + d for c, d in zip(coords, disp)]
    out = []
    for arr, order in zip(arrays, orders):
        if arr.ndim == 4:
            out.append(
                np.stack([map_coordinates(ch, warped, order=order, mode="nearest") for ch in arr])
            )
        else:
            out.append(map_coordinates(arr, warped, order=order, mode="nearest"))
    return out


def apply_augmentation(
    image: np.ndarray, label: np.ndarray, p: AugParams
) -> tuple[np.ndarray, np.ndarray]:
    """Apply ``p`` to a ``(C, X, Y, Z)`` image and its ``(X, Y, Z)`` label."""
    for axis, f in enumerate(p.flips):
        if f:
            image, label = np.flip(image, axis + 1), np.flip(label, axis)
    if p.rot90 and image.shape[1] == image.shape[2]:  # in-plane only; keeps the slice axis
        image, label = np.rot90(image, p.rot90, (1, 2)), np.rot90(label, p.rot90, (0, 1))
    if p.angle:
        image = rotate(image, p.angle, axes=(1, 2), reshape=False, order=1, mode="nearest")
        label = rotate(label, p.angle, axes=(0, 1), reshape=False, order=0, mode="nearest")
    if p.elastic_seed is not None:
        image, label = _elastic([image, label], [1, 0], p.elastic_seed, p.elastic_alpha)
    return np.ascontiguousarray(image, np.float32), np.ascontiguousarray(label)


def crop_patch(
    image: np.ndarray, label: np.ndarray, start: tuple[int, ...], size: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Crop at ``start`` (may be negative or overrun); outside voxels are zero / background."""
    out_img = np.zeros((image.shape[0], *size), np.float32)
    out_lbl = np.zeros(size, np.uint8)
    src, dst = [], []
    for s, n, L in zip(start, size, image.shape[1:]):
        lo, hi = max(s, 0), min(s + n, L)
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    out_img[(slice(None), *dst)] = image[(slice(None), *src)]
    out_lbl[tuple(dst)] = label[tuple(src)]
    return out_img, out_lbl


class PatchSampler:
    """Draws training patches from cached cases; ``foreground_ratio`` of them centred on a
    voxel of a random foreground class. Seeded: the same seed gives the same patch stream."""

    def __init__(
        self,
        cases: list[CachedCase],
        size: tuple[int, int, int],
        seed: int,
        foreground_ratio: float = 0.5,
        flip: bool = True,
        rotate90: bool = False,
        rotate_degrees: float = 0.0,
        elastic_prob: float = 0.0,
    ):
        if not cases:
            raise ValueError("PatchSampler needs at least one case")
        self.cases, self.size = cases, tuple(size)
        self.rng = np.random.default_rng(seed)
        self.fg_ratio = foreground_ratio
        self.aug = (flip, rotate90, rotate_degrees, elastic_prob)
        self._fg = [self._foreground_index(c.label) for c in cases]

    @staticmethod
    def _foreground_index(label: np.ndarray) -> dict[int, np.ndarray]:
        lab = np.asarray(label)
        return {int(k): np.argwhere(lab == k) for k in np.unique(lab) if k != 0}

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        """One ``(C, *size)`` float32 patch and its ``size`` uint8 label."""
        i = int(self.rng.integers(len(self.cases)))
        case, fg = self.cases[i], self._fg[i]
        shape = case.image.shape[1:]
        if fg and self.rng.random() < self.fg_ratio:
            cls = list(fg)[int(self.rng.integers(len(fg)))]
            center = fg[cls][int(self.rng.integers(len(fg[cls])))]
            start = [int(c) - n // 2 for c, n in zip(center, self.size)]
        else:
            start = [
                int(self.rng.integers(min(0, L - n), max(L - n, 0) + 1))
                for L, n in zip(shape, self.size)
            ]
        img, lbl = crop_patch(case.image, case.label, tuple(start), self.size)
        params = sample_augmentation(self.rng, *self.aug)
        return apply_augmentation(img, lbl, params)

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        pairs = [self.sample() for _ in range(n)]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
