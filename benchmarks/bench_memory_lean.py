"""Memory-lean vs plain V-NAS supernet: peak memory and time of a search step (weight step +
arch step), next to the largest single-choice network (all-3D) retrained at the same patch.

Peak memory is exact: the CPU allocator's events (``memory_trace.allocator_peak``, the
weights, gradients and SGD/AdamW state alive before the step included); the memory model's
figure stands next to it. Times are medians of several steps, the three networks measured
side by side in one process, one thread. Targets (issue): lean peak <= 1.5x the all-3D
network's, lean step time <= 1.35x the plain supernet's. About a minute at the defaults.

    .venv/bin/python benchmarks/bench_memory_lean.py [--width 0.125] [--patch 64 64 32]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from _common import median_time, write_results

from voxnas.search_spaces.memory import run_step, step_memory
from voxnas.search_spaces.memory_probe import measured_step_peak
from voxnas.search_spaces.registry import create_model

MIB = 2**20


def ce(out: torch.Tensor) -> torch.Tensor:
    target = torch.zeros((out.shape[0], *out.shape[2:]), dtype=torch.long, device=out.device)
    return F.cross_entropy(out.float(), target)


def setup(arch: str, lean: bool, kw: dict):
    torch.manual_seed(0)
    model = create_model(arch, 1, 3, memory_lean=lean, **kw)
    w = torch.optim.SGD(model.weight_parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    if not model.arch_parameters():
        return model, (w,)
    return model, (w, torch.optim.AdamW(model.arch_parameters(), lr=1e-3))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--width", type=float, default=0.125)
    ap.add_argument("--patch", type=int, nargs=3, default=[64, 64, 32])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    kw, patch = {"width": args.width, "psp": True}, tuple(args.patch)
    x = torch.randn(1, 1, *patch)
    nets = [
        ("V-NAS supernet, plain", "vnas-supernet", False, "search"),
        ("V-NAS supernet, memory-lean", "vnas-supernet", True, "search"),
        ("3D/3D (largest single choice)", "3D/3D", False, "retrain"),
    ]
    built = {label: setup(arch, lean, kw) for label, arch, lean, _ in nets}
    rows, times = [], {}
    for label, arch, lean, kind in nets:
        model, opts = built[label]
        peak = measured_step_peak(model, lambda: x, ce, kind, opts)
        modelled = step_memory(
            lambda a=arch, m=lean: create_model(a, 1, 3, memory_lean=m, **kw), 1, patch, ce, kind
        ).total
        rows.append({"network": label, "step": kind, "peak (MiB)": peak / MIB,
                     "modelled (MiB)": modelled / MIB})  # fmt: skip
    for _ in range(2):  # interleaved rounds: the host is noisy, medians of medians
        for label, _, _, kind in nets:
            model, opts = built[label]
            t = median_time(
                lambda m=model, k=kind, o=opts: run_step(m, x, ce, k, optimizers=o), args.repeats
            )
            times.setdefault(label, []).append(t)
    for row in rows:
        row["step time (s)"] = min(times[row["network"]])
    plain, lean, single = rows
    rows.append({
        "network": "ratio: peak lean / 3D/3D (target <= 1.5); time lean / plain (<= 1.35)",
        "step": "ratio",
        "peak (MiB)": lean["peak (MiB)"] / single["peak (MiB)"],
        "modelled (MiB)": lean["modelled (MiB)"] / single["modelled (MiB)"],
        "step time (s)": lean["step time (s)"] / plain["step time (s)"],
    })  # fmt: skip
    rows.append({
        "network": "ratio: peak plain / 3D/3D; modelled column: peak lean / plain",
        "step": "ratio",
        "peak (MiB)": plain["peak (MiB)"] / single["peak (MiB)"],
        "modelled (MiB)": lean["peak (MiB)"] / plain["peak (MiB)"],
        "step time (s)": "",
    })  # fmt: skip
    note = (
        f"V-NAS width {args.width}, patch {'x'.join(map(str, patch))}, batch 1, CPU fp32, "
        "1 thread; search step = weight step + arch step (SGD momentum + AdamW); step time "
        f"= best of 2 interleaved medians of {args.repeats}"
    )
    print(write_results("memory_lean", rows, note, {"width": args.width, "patch": patch}))


if __name__ == "__main__":
    main()
