"""Parallel efficiency of the fold searches on Ray Tune, on this machine.

K fold searches (1 CPU each) run (a) in-process one after another without Ray, (b) on Ray
one trial at a time (b0: a new worker process per trial, ``ray.reuse_actors=false``; b: the
default, a worker runs trial after trial), (c) on Ray K at a time. Each stage's data is
prepared before its clock starts (the driver prepares once per run). Reports the speed-up
(b)/(c) (ideal K on K cores; next to it, what the cores allow: (a) against the folds in K
processes at once without Ray) and Tune's overhead per trial ((b) - (a)) / K, medians over
``--repeats`` runs, and where the seconds of (b) go: outside the trials (Tuner start, the
worker process, unpickling the trainable: importing ray.tune, torch and voxnas there) and
inside them (Tune's trial clock against the in-process run). A trivial trainable (no torch)
measures Tune's own floor: stage start to the trial's first line. A trainable that only
imports torch, builds an optimizer and reports a checkpoint per epoch, ``--folds`` trials one
at a time on one worker, measures the floor of Ray Tune + PyTorch per trial: what any
resumable PyTorch trainable pays here before its own code; the overhead above it is voxnas'.
The same trials K at once give the floor of (c), and with it the most speed-up the floors
allow: (a + floor 1 at a time) / (a in K processes + floor K at once).
A one-thread conv loop in one process, then in K processes at once, measures what the cores
give K single-thread jobs without data, Ray or Python between steps.

``--long-iters N`` repeats (a), (b) and (c) with N iterations per epoch: longer trials, as
real searches are, amortise the per-stage start. Each repeat runs its stages in the opposite
order to the one before (the host's speed drifts); the JSON keeps every repeat's times.

    .venv/bin/python benchmarks/bench_parallel.py [--folds 2] [--epochs 3] [--iters 6]
        [--repeats 3] [--long-iters 30]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from _common import spawn_at_once, write_results  # noqa: E402

from voxnas.config import load_config  # noqa: E402


def _cfg(workdir: Path, folds: int, epochs: int, iters: int, *extra: str):
    sets = [
        f"workdir={workdir}",
        f"split.folds={folds}",
        f"search.epochs={epochs}",
        f"search.iterations_per_epoch={iters}",
        "search.warmup_epochs=1",
        "tracking.enabled=false",
        "ray.cpus_per_trial=1",
        *extra,
    ]
    return load_config(Path(__file__).parent.parent / "configs" / "demo.yaml", sets)


def _trial_seconds(cfg) -> list[float]:
    """Each trial's own clock (Tune's ``time_total_s`` in its last result)."""
    out = []
    for result in sorted(cfg.layout.tune_stage("search").glob("*/result.json")):
        lines = result.read_text().splitlines()
        out.append(float(json.loads(lines[-1])["time_total_s"]))
    return out


def _tune_floor(tmp: Path) -> float:
    """Stage start to the first line of a trivial trainable (no torch): Tune's own cost."""
    from ray import tune

    stamp = tmp / "entered"

    def trivial(config):
        stamp.write_text(repr(time.time()))
        tune.report({"x": 1})

    t0 = time.time()
    tune.Tuner(
        tune.with_resources(trivial, {"cpu": 1}),
        run_config=tune.RunConfig(storage_path=str(tmp / "floor"), verbose=0),
    ).fit()
    return float(stamp.read_text()) - t0


def _torch_trainable(config):
    """What any resumable PyTorch trainable does besides its own work: import torch, build an
    optimizer (torch.optim imports ``torch._dynamo`` there), report each epoch with a
    checkpoint."""
    import torch
    from ray import tune

    torch.set_num_threads(1)
    net = torch.nn.Conv3d(1, 4, 3)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for epoch in range(config["epochs"]):
        opt.zero_grad()
        net(torch.zeros(1, 1, 4, 4, 4)).sum().backward()
        opt.step()
        with tempfile.TemporaryDirectory() as d:
            torch.save({"net": net.state_dict(), "opt": opt.state_dict()}, Path(d) / "s.pt")
            tune.report({"epoch": epoch}, checkpoint=tune.Checkpoint.from_directory(d))


def _stack_floor(tmp: Path, folds: int, epochs: int, at_once: int = 1) -> float:
    """The wall of a stage of ``folds`` trials of ``_torch_trainable``, ``at_once`` at a time
    on reused workers (as (b) or (c)): the floor of Ray Tune + PyTorch on this machine,
    before any voxnas code or compute."""
    from ray import tune

    t0 = time.perf_counter()
    tune.Tuner(
        tune.with_resources(_torch_trainable, {"cpu": 1}),
        param_space={"epochs": epochs, "fold": tune.grid_search(list(range(folds)))},
        tune_config=tune.TuneConfig(max_concurrent_trials=at_once, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(tmp / f"stack{at_once}"), verbose=0),
    ).fit()
    return time.perf_counter() - t0


def _compute_worker(seconds: float, barrier, q) -> None:
    import torch

    torch.set_num_threads(1)
    conv = torch.nn.Conv3d(8, 8, 3, padding=1)
    x = torch.randn(1, 8, 48, 48, 48)
    for _ in range(2):  # warm-up: oneDNN builds its kernels on first use
        conv(x).sum().backward()
    barrier.wait()
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        conv(x).sum().backward()
        n += 1
    q.put(n / (time.perf_counter() - t0))


def _cores_allow(k: int, seconds: float = 6.0) -> float:
    """Pure compute (a one-thread conv fwd+bwd loop: no data, no Ray, little Python): the
    summed step rate of ``k`` processes at once over one process's rate alone."""
    [alone] = spawn_at_once(_compute_worker, [(seconds,)])
    return sum(spawn_at_once(_compute_worker, [(seconds,)] * k)) / alone


def _plain_worker(cfg, fold: int, barrier, q) -> None:
    import torch

    from voxnas.data.prepare import prepare_data
    from voxnas.trainables.search import run_search_fold

    torch.set_num_threads(1)
    import torch._dynamo  # noqa: F401  (the optimizers import it once per process: as (a))

    data = prepare_data(cfg, log=lambda s: None).fold_data(fold)  # cached by the driver
    barrier.wait()
    t0 = time.time()
    run_search_fold(cfg, fold, data=data, log=lambda s: None)
    q.put((t0, time.time()))


def _plain_parallel(cfg, folds: int) -> float:
    """The folds in-process, one process each, all at once (no Ray): what the cores allow
    (memory bandwidth, caches, turbo) before Ray takes anything."""
    spans = spawn_at_once(_plain_worker, [(cfg, k) for k in range(folds)])
    return max(e for _, e in spans) - min(s for s, _ in spans)


def _measure(
    tmp: Path, folds: int, epochs: int, iters: int, fresh: bool, reverse: bool = False
) -> dict[str, float]:
    """One repeat's stage times. ``reverse`` runs the stages in the opposite order: the host's
    speed drifts over minutes, and alternating the order between repeats lets the drift
    cancel in the medians of the ratios instead of favouring whichever stage runs first."""
    from voxnas.data.prepare import prepare_data
    from voxnas.platform.orchestration import run_search_stage
    from voxnas.trainables.search import run_search_fold

    tag = f"{epochs}x{iters}-{time.monotonic_ns()}"
    cfg = _cfg(tmp / f"plain-{tag}", folds, epochs, iters)
    prep = prepare_data(cfg, log=lambda s: None)
    out: dict[str, float] = {}

    def plain() -> float:
        t0 = time.perf_counter()
        for k in range(folds):
            run_search_fold(cfg, k, data=prep.fold_data(k), log=lambda s: None)
        return time.perf_counter() - t0

    def stage(name: str, *extra: str) -> float:
        """One search stage on Ray, its data prepared beforehand (as the driver does once
        per run), so only what Tune adds is timed."""
        cfg_k = _cfg(tmp / f"{name}-{tag}", folds, epochs, iters, *extra)
        prep_k = prepare_data(cfg_k, log=lambda s: None)
        t0 = time.perf_counter()
        run_search_stage(cfg_k, prep=prep_k)
        wall = time.perf_counter() - t0
        if name == "seq":
            out["seq_in_trials"] = sum(_trial_seconds(cfg_k))
        return wall

    stages = [
        ("plain", plain),
        ("plain_par", lambda: _plain_parallel(cfg, folds)),
        ("seq", lambda: stage("seq", "ray.max_concurrent_trials=1")),
        ("par", lambda: stage("par")),
    ]
    if fresh:
        fresh_stage = ("seq_fresh", lambda: stage(
            "seq-fresh", "ray.max_concurrent_trials=1", "ray.reuse_actors=false"
        ))  # fmt: skip
        stages.insert(2, fresh_stage)
    for key, run in reversed(stages) if reverse else stages:
        out[key] = run()
    out["order"] = "reversed" if reverse else "forward"
    print({k: v if isinstance(v, str) else round(v, 2) for k, v in out.items()}, flush=True)
    return out


def _median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def _floors_allow(runs: list[dict[str, float]], stack: float, stack_par: float) -> float:
    """The most speed-up the floors allow: (in-process + the floor stage 1 at a time) /
    (in-process at once + the floor stage at once), median over ``runs``."""
    return statistics.median((r["plain"] + stack) / (r["plain_par"] + stack_par) for r in runs)


def _overhead_per_trial(runs: list[dict[str, float]], k: int, key: str = "seq") -> float:
    """Tune's overhead per trial: (the Ray stage ``key`` - in-process) / folds, median."""
    return statistics.median((r[key] - r["plain"]) / k for r in runs)


def _rows(runs: list[dict[str, float]], k: int, label: str) -> list[dict]:
    plain, seq, par = (_median(runs, key) for key in ("plain", "seq", "par"))
    rows = [
        {
            "measure": f"{label}: {k} fold searches in-process, one after another (no Ray)",
            "value": plain,
            "unit": "s",
        },
    ]
    if "seq_fresh" in runs[0]:
        rows.append(
            {
                "measure": f"{label}: on Ray, 1 at a time, a new worker per trial",
                "value": _median(runs, "seq_fresh"),
                "unit": "s",
            }
        )
    rows += [
        {
            "measure": f"{label}: on Ray, 1 at a time (ray.reuse_actors, the default)",
            "value": seq,
            "unit": "s",
        },
        {
            "measure": f"{label}: in-process, {k} processes at once (no Ray)",
            "value": _median(runs, "plain_par"),
            "unit": "s",
        },
        {
            "measure": f"{label}: what the cores allow: in-process speed-up without Ray",
            "value": statistics.median(r["plain"] / r["plain_par"] for r in runs),
            "unit": f"x (ideal {k})",
        },
        {"measure": f"{label}: on Ray, {k} at a time", "value": par, "unit": "s"},
        {
            "measure": f"{label}: parallel speed-up (1 at a time / all at once)",
            "value": statistics.median(r["seq"] / r["par"] for r in runs),
            "unit": f"x (ideal {k})",
        },
        {
            "measure": f"{label}: Tune overhead per trial ((Ray 1 at a time - in-process) / folds)",
            "value": _overhead_per_trial(runs, k),
            "unit": "s",
        },
    ]
    if "seq_fresh" in runs[0]:
        rows.append(
            {
                "measure": f"{label}: Tune overhead per trial, a new worker per trial",
                "value": _overhead_per_trial(runs, k, "seq_fresh"),
                "unit": "s",
            }
        )
    rows += [
        {
            "measure": f"{label}: of which outside the trials (Tuner start, worker, imports), "
            "per stage",
            "value": statistics.median(r["seq"] - r["seq_in_trials"] for r in runs),
            "unit": "s",
        },
        {
            "measure": f"{label}: of which inside the trials (trial clocks - in-process), "
            "per stage",
            "value": statistics.median(r["seq_in_trials"] - r["plain"] for r in runs),
            "unit": "s",
        },
    ]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--iters", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--long-iters", type=int, default=0, help="0: skip the long-trial rows")
    args = ap.parse_args()
    import ray
    import torch

    torch.set_num_threads(1)  # a trial gets 1 CPU: compare like with like
    # torch.optim imports torch._dynamo at a process's first optimizer (~1.5 s): done here,
    # so every in-process repeat is alike; each Ray worker pays it in its first trial
    import torch._dynamo  # noqa: F401

    k = args.folds
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ray.init(num_cpus=k, include_dashboard=False)
        try:
            floor = statistics.median(_tune_floor(tmp / f"f{i}") for i in range(args.repeats))
            stack = statistics.median(
                _stack_floor(tmp / f"s{i}", k, args.epochs) for i in range(args.repeats)
            )
            stack_par = statistics.median(
                _stack_floor(tmp / f"s{i}", k, args.epochs, k) for i in range(args.repeats)
            )
            cores = statistics.median(_cores_allow(k) for _ in range(args.repeats))
            runs = [
                _measure(tmp, k, args.epochs, args.iters, fresh=True, reverse=i % 2 == 1)
                for i in range(args.repeats)
            ]
            long_runs = [
                _measure(tmp, k, args.epochs, args.long_iters, fresh=False, reverse=i % 2 == 1)
                for i in range(args.repeats if args.long_iters else 0)
            ]
        finally:
            ray.shutdown()
    rows = _rows(runs, k, f"{args.epochs}x{args.iters}")
    rows.append(
        {
            "measure": "Tune's floor: stage start to a trivial trainable's first line (no torch)",
            "value": floor,
            "unit": "s",
        }
    )
    rows.append(
        {
            "measure": f"Ray Tune + PyTorch floor per trial: {k} trials that only import torch, "
            f"build an optimizer and report {args.epochs} checkpoints, 1 at a time",
            "value": stack / k,
            "unit": "s",
        }
    )
    rows.append(
        {
            "measure": f"Ray Tune + PyTorch floor: the same {k} trials at once, the stage",
            "value": stack_par,
            "unit": "s",
        }
    )
    rows.append(
        {
            "measure": f"{args.epochs}x{args.iters}: Tune overhead per trial above that floor "
            "(voxnas' own)",
            "value": _overhead_per_trial(runs, k) - stack / k,
            "unit": "s",
        }
    )
    rows.append(
        {
            "measure": f"{args.epochs}x{args.iters}: the most speed-up the floors allow "
            "((in-process + floor 1 at a time) / (in-process at once + floor at once))",
            "value": _floors_allow(runs, stack, stack_par),
            "unit": f"x (ideal {k})",
        }
    )
    rows.append(
        {
            "measure": f"what the cores allow, pure compute: {k} one-thread conv loops at once "
            "/ one alone",
            "value": cores,
            "unit": f"x (ideal {k})",
        }
    )
    if long_runs:
        label = f"{args.epochs}x{args.long_iters}"
        rows += _rows(long_runs, k, label)
        rows.append(
            {
                "measure": f"{label}: the most speed-up the floors allow (as above, these trials)",
                "value": _floors_allow(long_runs, stack, stack_par),
                "unit": f"x (ideal {k})",
            }
        )
    print(
        write_results(
            "parallel",
            rows,
            f"Fold searches on Ray Tune (epochs x iterations per trial as labelled, demo "
            f"config, 1 CPU per trial), medians of {args.repeats} runs, stage order "
            "alternated between runs",
            extra={
                "folds": k,
                "epochs": args.epochs,
                "iters": args.iters,
                "long_iters": args.long_iters,
                "repeats": args.repeats,
                "stage_order": "alternated: forward in even repeats, reversed in odd ones",
                "runs": runs,
                "long_runs": long_runs,
            },
        )
    )


if __name__ == "__main__":
    main()
