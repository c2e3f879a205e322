"""Augmentation speed: patches/s with flips + in-plane rotation (+-10 degrees) + a random
elastic displacement (every patch) at the paper's search patch size, one channel and four
(BraTS-like), on one core: the previous voxnas sampler (scipy ``rotate`` + ``map_coordinates``),
MONAI ``RandAffined`` + ``Rand3DElasticd`` and ``Rand3DElasticd`` with its own rotation, and
the current voxnas two-pass ``grid_sample`` warp (also inside the full ``PatchSampler``).

CPU time (``time.process_time``) is the figure for one dedicated core: on a shared machine
wall time also counts other processes' turns; both are reported.

    .venv/bin/python benchmarks/bench_augment.py [--device cuda] [--patch 96 96 64]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import warnings

import numpy as np
import torch
from _common import write_results
from scipy.ndimage import gaussian_filter, map_coordinates, rotate

from voxnas.data.augment import AugParams, apply_augmentation, augmentation_margin
from voxnas.data.cache import CachedCase
from voxnas.data.patches import PatchSampler
from voxnas.data.warp import control_shape, warp_grids, warp_slices

ALPHA, DEGREES = 4.0, 10.0


def timed(fn, n: int, repeats: int = 3, sync=lambda: None) -> tuple[float, float]:
    """Median seconds per call of ``fn`` (CPU time, wall time) over ``repeats`` runs of ``n``."""
    fn()
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(n):
            fn()
        sync()
        cpu.append((time.process_time() - c0) / n)
        wall.append((time.perf_counter() - w0) / n)
    return statistics.median(cpu), statistics.median(wall)


def scipy_previous(image: np.ndarray, label: np.ndarray, angle: float, seed: int):
    """The sampler's augmentation before the grid_sample warp (rotation, then elastic)."""
    image = rotate(image, angle, axes=(1, 2), reshape=False, order=1, mode="nearest")
    label = rotate(label, angle, axes=(0, 1), reshape=False, order=0, mode="nearest")
    shape, rng = label.shape, np.random.default_rng(seed)
    coords = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    disp = [gaussian_filter(rng.uniform(-1, 1, shape), 4.0) for _ in range(3)]
    warped = [c + d / (np.abs(d).max() + 1e-8) * ALPHA for c, d in zip(coords, disp)]
    img = np.stack([map_coordinates(ch, warped, order=1, mode="nearest") for ch in image])
    return img, map_coordinates(label, warped, order=0, mode="nearest")


def monai_transforms(size, device):
    from monai.transforms import Compose, Rand3DElasticd, RandAffined, RandFlipd

    keys, modes = ["image", "label"], ("bilinear", "nearest")
    rot = (0, 0, math.radians(DEGREES))  # MONAI's third angle turns the first two axes
    flips = [RandFlipd(keys, prob=0.5, spatial_axis=a) for a in range(3)]
    common = {"mode": modes, "padding_mode": "zeros", "spatial_size": size, "device": device}
    # magnitude: uniform noise smoothed by sigma 6 has std ~0.006, so ~150 gives a few voxels
    elastic = {"sigma_range": (6, 6), "magnitude_range": (150, 150), "prob": 1.0}
    two = Compose(
        [
            *flips,
            RandAffined(keys, prob=1.0, rotate_range=rot, **common),
            Rand3DElasticd(keys, **elastic, **common),
        ]
    )
    one = Compose([*flips, Rand3DElasticd(keys, rotate_range=rot, **elastic, **common)])
    two.set_random_state(0)
    one.set_random_state(0)
    return two, one


def ours_on_device(region: torch.Tensor, label: torch.Tensor, p: AugParams, size):
    """The current warp with its grids and data on ``region.device`` (for --device cuda)."""
    mz = (region.shape[3] - size[2]) // 2
    shape = (3, *control_shape(size, mz, p.elastic_spacing))
    coeffs = torch.from_numpy(
        np.random.default_rng(p.elastic_seed).uniform(-ALPHA, ALPHA, shape).astype(np.float32)
    )
    grids = warp_grids(
        tuple(region.shape[1:]), size, p.angle, coeffs, p.elastic_spacing, region.device
    )
    img = [warp_slices(ch.permute(2, 0, 1).contiguous(), grids, "bilinear") for ch in region]
    return img, warp_slices(label.permute(2, 0, 1).float().contiguous(), grids, "nearest")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--patch", type=int, nargs=3, default=(96, 96, 64))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--n", type=int, default=8, help="patches per timed run")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    size, dev = tuple(args.patch), torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    p = AugParams((True, False, True), 0, 7.5, 123, ALPHA)  # a near-worst-case angle
    margin = augmentation_margin(p, size)
    rows = []

    def row(method: str, channels: int, cpu_wall: tuple[float, float]) -> None:
        cpu, wall = cpu_wall
        rows.append(
            {
                "method": method,
                "channels": channels,
                "device": str(dev),
                "patches/s (CPU time)": 1 / cpu,
                "patches/s (wall)": 1 / wall,
                "ms/patch (CPU time)": 1e3 * cpu,
            }
        )
        print(rows[-1], flush=True)

    rng = np.random.default_rng(0)
    for ch in (1, 4):
        region = rng.normal(size=(ch, *[s + 2 * m for s, m in zip(size, margin)]))
        region = region.astype(np.float32)
        labels = rng.integers(0, 4, region.shape[1:]).astype(np.uint8)
        box = tuple(slice(m, m + s) for s, m in zip(size, margin))
        patch, patch_l = np.ascontiguousarray(region[(slice(None), *box)]), labels[box]
        if dev.type == "cpu":
            row(
                "voxnas previous: scipy rotate + map_coordinates",
                ch,
                timed(lambda a=patch, b=patch_l: scipy_previous(a, b, p.angle, 1), 2, 3),
            )
        two, one = monai_transforms(size, dev)
        data = {
            "image": torch.from_numpy(np.ascontiguousarray(region)).to(dev),
            "label": torch.from_numpy(labels[None].astype(np.float32)).to(dev),
        }
        row(
            "MONAI RandFlipd + RandAffined + Rand3DElasticd",
            ch,
            timed(lambda f=two, d=data: f(d), 2, 3, sync),
        )
        row(
            "MONAI RandFlipd + Rand3DElasticd(rotate_range)",
            ch,
            timed(lambda f=one, d=data: f(d), 2, 3, sync),
        )
        if dev.type == "cpu":
            row(
                "voxnas apply_augmentation (two-pass grid_sample)",
                ch,
                timed(lambda a=region, b=labels: apply_augmentation(a, b, p, size), args.n),
            )
            vol = (240, 240, 155)
            img = rng.normal(size=(ch, *vol)).astype(np.float32)
            lbl = np.zeros(vol, np.uint8)
            lbl[80:160, 90:150, 50:110] = 1
            lbl[100:130, 100:130, 70:90] = 2
            case = CachedCase("brats-like", img, lbl, None)
            sampler = PatchSampler([case], size, seed=0, rotate_degrees=DEGREES, elastic_prob=1.0)
            row(
                "voxnas PatchSampler.sample (crop 240x240x155 + flips + rot + elastic)",
                ch,
                timed(sampler.sample, args.n),
            )
        else:
            t = torch.from_numpy(region).to(dev)
            lt = torch.from_numpy(labels).to(dev)
            row(
                "voxnas warp_grids + warp_slices on device",
                ch,
                timed(lambda a=t, b=lt: ours_on_device(a, b, p, size), args.n, 3, sync),
            )
    patch_s = "x".join(map(str, size))
    name = "augment" if dev.type == "cpu" else f"augment_{dev.type}"
    note = (
        f"Augmentation speed, patch {patch_s}, flips + rotation +-{DEGREES:g} deg + elastic "
        f"(every patch, max {ALPHA:g} voxels), 1 torch thread"
    )
    print(write_results(name, rows, note, {"patch": list(size), "device": str(dev)}))


if __name__ == "__main__":
    main()
