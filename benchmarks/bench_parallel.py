"""Parallel efficiency of the fold searches on Ray Tune, on this machine.

K fold searches (1 CPU each) run (a) in-process one after another without Ray, (b) on Ray
one trial at a time (b0: a new worker process per trial, ``ray.reuse_actors=false``; b: the
default, a worker runs trial after trial), (c) on Ray K at a time. Each stage's data is
prepared before its clock starts (the driver prepares once per run). Reports the speed-up
(b)/(c) (ideal K on K cores) and Tune's overhead per trial ((b) - (a)) / K.

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

        def stage(name: str, *extra: str) -> float:
            """One search stage on Ray, its data prepared beforehand (as the driver does
            once per run), so only what Tune adds is timed."""
            cfg_k = _cfg(tmp / name, args, *extra)
            prep_k = prepare_data(cfg_k, log=lambda s: None)
            t0 = time.perf_counter()
            run_search_stage(cfg_k, prep=prep_k)
            return time.perf_counter() - t0

        try:
            seq_fresh = stage("seq-fresh", "ray.max_concurrent_trials=1", "ray.reuse_actors=false")
            seq = stage("seq", "ray.max_concurrent_trials=1")
            par = stage("par")
        finally:
            ray.shutdown()
    k = args.folds
    rows = [
        {"measure": f"{k} fold searches in-process, one after another (no Ray)", "value": plain},
        {
            "measure": f"{k} fold searches on Ray, 1 at a time, a new worker per trial",
            "value": seq_fresh,
        },
        {
            "measure": f"{k} fold searches on Ray, 1 at a time (ray.reuse_actors, the default)",
            "value": seq,
        },
        {"measure": f"{k} fold searches on Ray, {k} at a time", "value": par},
    ]
    for row in rows:
        row["unit"] = "s"
    rows += [
        {
            "measure": "parallel speed-up (1 at a time / all at once)",
            "value": seq / par,
            "unit": f"x (ideal {k})",
        },
        {
            "measure": "Tune overhead per trial ((Ray sequential - in-process) / folds)",
            "value": (seq - plain) / k,
            "unit": "s",
        },
        {
            "measure": "Tune overhead per trial, a new worker per trial",
            "value": (seq_fresh - plain) / k,
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
