"""Data-layer benchmark: NIfTI decode per case vs cached (memory-mapped) load per case, and
training patches per second from the cache on one core.

    .venv/bin/python benchmarks/bench_data.py [--cases 8] [--shape 128 128 64]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from _common import median_time, write_results

from voxnas.data.cache import build_cache
from voxnas.data.layouts import read_dataset
from voxnas.data.patches import PatchSampler
from voxnas.data.preprocess import PreprocessSettings, load_case, preprocess_image
from voxnas.data.synthetic import write_synthetic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cases", type=int, default=8)
    ap.add_argument("--shape", type=int, nargs=3, default=(128, 128, 64))
    ap.add_argument("--patch", type=int, nargs=3, default=(64, 64, 64))
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = write_synthetic(Path(tmp) / "msd", "msd", args.cases, tuple(args.shape))
        ds = read_dataset(root)
        settings = PreprocessSettings()
        cache = build_cache(ds, settings, Path(tmp) / "cache")
        labels = sorted(ds.labels)

        def decode_all() -> None:
            for case in ds.cases:
                img, lbl, _ = load_case(case, settings, labels)
                preprocess_image(img, settings)

        def cached_all() -> None:
            for cid in cache.case_ids:
                c = cache.load(cid)
                np.asarray(c.image).sum()
                np.asarray(c.label).sum()

        t_dec = median_time(decode_all, repeats=3) / args.cases
        t_cache = median_time(cached_all, repeats=5) / args.cases
        shape = "x".join(map(str, args.shape))
        rows += [
            {
                "measure": f"load one case {shape}: NIfTI decode + preprocess",
                "value": 1e3 * t_dec,
                "unit": "ms",
            },
            {
                "measure": f"load one case {shape}: cache (memory-mapped)",
                "value": 1e3 * t_cache,
                "unit": "ms",
            },
            {"measure": "cache speed-up over NIfTI", "value": t_dec / t_cache, "unit": "x"},
        ]
        cases = [cache.load(c) for c in cache.case_ids]
        for aug, kw in [
            ("flips", {}),
            ("flips+rot+elastic", {"rotate_degrees": 10.0, "elastic_prob": 1.0}),
        ]:
            sampler = PatchSampler(cases, tuple(args.patch), seed=0, **kw)
            n = 20
            t = median_time(lambda s=sampler, n=n: [s.sample() for _ in range(n)], repeats=3)
            rows.append(
                {
                    "measure": f"training patches {'x'.join(map(str, args.patch))} "
                    f"from cache, {aug}, 1 core",
                    "value": n / t,
                    "unit": "patches/s",
                }
            )
    print(write_results("data", rows, "Data layer (synthetic MSD phantoms)"))


if __name__ == "__main__":
    main()
