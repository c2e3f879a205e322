"""Memory-lean vs plain V-NAS supernet: peak memory and time of a search step (weight step +
arch step), next to the largest single-choice network (all-3D) retrained at the same patch.
Two lean rows: the default ``model.lean_budget`` (only the MixedOps the budget needs
recompute, ``trainables/lean_plan.py``) and ``lean_budget: null`` (every MixedOp).

The step and optimisers are the trainables' own (``trainables/step_probe.py``: ``bilevel_step``
/ ``train_step``, ``make_weight_optimizer`` / ``make_arch_optimizer``, ``vnas_nih.yaml``'s
settings). Peak memory is exact: the CPU allocator's events (``memory_trace.allocator_peak``,
the weights, gradients and optimiser state alive before the step included); the memory
model's figure (CPU optimiser loop, ``foreach=False``) stands next to it. Times are medians
of several steps, the three networks measured side by side in one process, one thread.
Targets (issue): lean peak <= 1.5x the all-3D network's, lean step time <= 1.35x the plain
supernet's. Ratios go to the JSON's ``meta``.
One to two minutes at the defaults on this project's CPU.

    .venv/bin/python benchmarks/bench_memory_lean.py [--width 0.125] [--patch 64 64 32]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from _common import median_time, write_results

from voxnas.config import load_config
from voxnas.search_spaces.mixed import MixedOp
from voxnas.trainables.footprint import make_optimizers, step_bytes
from voxnas.trainables.models import build_model, cost_channels
from voxnas.trainables.step_probe import measured_step_peak, run_step

ROOT = Path(__file__).resolve().parent.parent
MIB = 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--width", type=float, default=0.125)
    ap.add_argument("--patch", type=int, nargs=3, default=[64, 64, 32])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    ap.add_argument("--budget", type=float, default=1.4, help="model.lean_budget of the lean row")
    args = ap.parse_args()
    torch.set_num_threads(1)
    patch = list(args.patch)
    sizes = [f"model.width={args.width}", f"patch.search={patch}", f"patch.train={patch}",
             f"patch.test={patch}"]  # fmt: skip
    budget = f"lean_budget {args.budget}"
    nets = [
        ("V-NAS supernet, plain", "vnas-supernet", [], "search"),
        (f"V-NAS supernet, memory-lean ({budget})", "vnas-supernet",
         ["model.memory_lean=true", f"model.lean_budget={args.budget}"], "search"),
        ("V-NAS supernet, memory-lean (every MixedOp)", "vnas-supernet",
         ["model.memory_lean=true", "model.lean_budget=null"], "search"),
        ("3D/3D (largest single choice)", "3D/3D", [], "retrain"),
    ]  # fmt: skip
    rows, times, built = [], {}, {}
    for label, arch, sets, kind in nets:
        cfg = load_config(ROOT / "configs" / "vnas_nih.yaml", [*sizes, *sets])
        torch.manual_seed(0)
        model = build_model(cfg, arch, *cost_channels(cfg))
        built[label] = (cfg, model, make_optimizers(cfg, model, kind))
        peak = measured_step_peak(cfg, model, kind)
        modelled = step_bytes(cfg, arch, patch, kind, foreach=False)
        mixed = [m for m in model.modules() if isinstance(m, MixedOp) and len(m.ops) > 1]
        rows.append({"network": label, "step": kind,
                     "recomputed MixedOps": f"{sum(m.memory_lean for m in mixed)} of {len(mixed)}",
                     "peak (MiB)": peak / MIB, "modelled (MiB)": modelled / MIB})  # fmt: skip
    for _ in range(args.rounds):  # interleaved rounds: the host is noisy, best of medians
        for label, _, _, kind in nets:
            cfg, model, opts = built[label]
            t = median_time(
                lambda c=cfg, m=model, k=kind, o=opts: run_step(c, m, k, patch, o), args.repeats
            )
            times.setdefault(label, []).append(t)
    for row in rows:
        row["step time (s)"] = min(times[row["network"]])
    plain, lean, every, single = rows
    ratios = {
        "peak lean / 3D/3D, measured (target <= 1.5)": lean["peak (MiB)"] / single["peak (MiB)"],
        "peak lean / 3D/3D, modelled": lean["modelled (MiB)"] / single["modelled (MiB)"],
        "time lean / plain (target <= 1.35)": lean["step time (s)"] / plain["step time (s)"],
        "peak every-MixedOp lean / 3D/3D, measured": every["peak (MiB)"] / single["peak (MiB)"],
        "time every-MixedOp lean / plain": every["step time (s)"] / plain["step time (s)"],
        "peak plain / 3D/3D, measured": plain["peak (MiB)"] / single["peak (MiB)"],
    }
    for k, v in ratios.items():
        print(f"{k}: {v:.3f}")
    note = (
        f"V-NAS width {args.width}, patch {'x'.join(map(str, patch))}, batch 1, CPU fp32, "
        "1 thread; search step = bilevel_step (SGD momentum + AdamW, vnas_nih.yaml); step "
        f"time = best of {args.rounds} interleaved medians of {args.repeats}"
    )
    extra = {"width": args.width, "patch": patch, "lean_budget": args.budget, "ratios": ratios}
    print(write_results("memory_lean", rows, note, extra))


if __name__ == "__main__":
    main()
