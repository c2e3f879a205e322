"""Parallel efficiency of the fold searches on Ray Tune, on this machine.

K fold searches (1 CPU each) run (a) in-process one after another without Ray, (b) on Ray
one trial at a time, (c) on Ray K at a time. Reports the speed-up (b)/(c) (ideal K on K
cores) and Tune's overhead per trial ((b) - (a)) / K.

    .venv/bin/python benchmarks/bench_parallel.py [--folds 2] [--epochs 3] [--iters 6]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from _common import write_results  # noqa: E402

from voxnas.config import load_config  # noqa: E402


def _cfg(workdir: Path, args, *extra: str):
    sets = [
        f"workdir={workdir}",
        f"split.folds={args.folds}",
        f"search.epochs={args.epochs}",
        f"search.iterations_per_epoch={args.iters}",
        "search.warmup_epochs=1",
        "tracking.enabled=false",
        "ray.cpus_per_trial=1",
        *extra,
    ]
    return load_config(Path(__file__).parent.parent / "configs" / "demo.yaml", sets)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--iters", type=int, default=6)
    args = ap.parse_args()
    import ray
    import torch

    from voxnas.data.prepare import prepare_data
    from voxnas.platform.orchestration import run_search_stage
    from voxnas.trainables.search import run_search_fold

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.set_num_threads(1)  # a trial gets 1 CPU: compare like with like
        cfg = _cfg(tmp / "plain", args)
        prep = prepare_data(cfg, log=lambda s: None)
        t0 = time.perf_counter()
        for k in range(args.folds):
            run_search_fold(cfg, k, data=prep.fold_data(k), log=lambda s: None)
        plain = time.perf_counter() - t0
        ray.init(num_cpus=args.folds, include_dashboard=False)
        try:
            t0 = time.perf_counter()
            run_search_stage(_cfg(tmp / "seq", args, "ray.max_concurrent_trials=1"))
            seq = time.perf_counter() - t0
            t0 = time.perf_counter()
            run_search_stage(_cfg(tmp / "par", args))
            par = time.perf_counter() - t0
        finally:
            ray.shutdown()
    rows = [
        {
            "measure": f"{args.folds} fold searches in-process, one after another (no Ray)",
            "value": plain,
            "unit": "s",
        },
        {
            "measure": f"{args.folds} fold searches on Ray, 1 trial at a time",
            "value": seq,
            "unit": "s",
        },
        {
            "measure": f"{args.folds} fold searches on Ray, {args.folds} at a time",
            "value": par,
            "unit": "s",
        },
        {
            "measure": "parallel speed-up (1 at a time / all at once)",
            "value": seq / par,
            "unit": f"x (ideal {args.folds})",
        },
        {
            "measure": "Tune overhead per trial ((Ray sequential - in-process) / folds)",
            "value": (seq - plain) / args.folds,
            "unit": "s",
        },
    ]
    print(
        write_results(
            "parallel",
            rows,
            f"Fold searches on Ray Tune ({args.epochs} epochs x "
            f"{args.iters} iterations each, demo config)",
        )
    )


if __name__ == "__main__":
    main()
