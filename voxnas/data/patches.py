"""Training patches: foreground-biased random crops with replayable augmentation.

Random parameters are drawn by :func:`~voxnas.data.augment.sample_augmentation` and applied
by the deterministic :func:`~voxnas.data.augment.apply_augmentation` (torchio style), so a
patch can be replayed from its crop and its parameters.
"""

from __future__ import annotations

import numpy as np

from voxnas.data.augment import apply_augmentation, augmentation_margin, sample_augmentation
from voxnas.data.cache import CachedCase

__all__ = ["PatchSampler", "crop_patch"]


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


def _region(
    image: np.ndarray, label: np.ndarray, start: tuple[int, ...], size: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`crop_patch`, but a view (no copy of the memory-mapped cache) when the
    region lies inside the volume; augmentation only reads it."""
    if all(s >= 0 and s + n <= L for s, n, L in zip(start, size, image.shape[1:])):
        box = tuple(slice(s, s + n) for s, n in zip(start, size))
        return image[(slice(None), *box)], label[box]
    return crop_patch(image, label, start, size)


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
        params = sample_augmentation(self.rng, *self.aug)
        margin = augmentation_margin(params, self.size)
        img, lbl = _region(
            case.image,
            case.label,
            tuple(s - m for s, m in zip(start, margin)),
            tuple(n + 2 * m for n, m in zip(self.size, margin)),
        )
        return apply_augmentation(img, lbl, params, self.size)

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        pairs = [self.sample() for _ in range(n)]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
