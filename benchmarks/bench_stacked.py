"""Supernet steps with candidates' convolutions stacked into one call, against each running
its own: V-NAS' 2D and P3D openings within a MixedOp (:mod:`voxnas.search_spaces.shared_head`,
off: ``separate_openings``), NAS-3D-U-Net's same-kind candidates across the edges that read
one state (:mod:`voxnas.search_spaces.edge_stack`, off: ``separate_edges``).

A training step (forward, backward of ``mean(out^2)``, SGD) on one thread, batch 1, fp32. One
fresh process per round (``--rounds``) and network runs ``--steps`` pairs of steps, *separate*
and *stacked* back to back on the same model (alternating which goes first), after two
warm-up pairs: on a shared host whose speed drifts by 10-30% between processes, the two steps
of a pair see the same host. Reported: the median step of each mode over all pairs, the
median over the pairs of stacked / separate, and in how many pairs the stacked step was the
faster.

    .venv/bin/python benchmarks/bench_stacked.py [--rounds 4] [--steps 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from _common import spawn_at_once, write_results

NETS = {  # name: (space, in channels, kwargs, patch, steps scale, module, its switch-off)
    "V-NAS supernet, demo / planted search (width 0.125, 32^3)": (
        "vnas-supernet", 1, {"width": 0.125, "psp": False}, (32, 32, 32), 1.0,
        "shared_head", "separate_openings",
    ),
    "V-NAS supernet (width 0.125, 64^3, as bench_conv_share)": (
        "vnas-supernet", 1, {"width": 0.125, "psp": True}, (64, 64, 64), 0.4,
        "shared_head", "separate_openings",
    ),
    "NAS-3D-U-Net supernet, demo search (2 kernels, depth 3, 32^3)": (
        "nas3dunet-supernet", 4, {"init_kernels": 2, "depth": 3, "nodes": 3}, (32, 32, 32), 0.5,
        "edge_stack", "separate_edges",
    ),
    "NAS-3D-U-Net supernet (public config, 64^3, as bench_conv_share)": (
        "nas3dunet-supernet", 4, {"init_kernels": 4, "depth": 4, "nodes": 3}, (64, 64, 64), 0.2,
        "edge_stack", "separate_edges",
    ),
}  # fmt: skip


def _worker(net: str, steps: int, barrier, q) -> None:
    import contextlib
    import importlib

    import torch

    from voxnas.search_spaces.registry import create_model

    torch.set_num_threads(1)
    space, c_in, kw, patch, _, module, switch = NETS[net]
    separate = getattr(importlib.import_module(f"voxnas.search_spaces.{module}"), switch)
    torch.manual_seed(0)
    model = create_model(space, c_in, 3, **kw)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(1, c_in, *patch)

    def step(stacked: bool) -> float:
        with contextlib.nullcontext() if stacked else separate():
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            model(x).square().mean().backward()
            opt.step()
            return time.perf_counter() - t0

    barrier.wait()
    pairs = []
    for i in range(steps + 2):  # two warm-up pairs: oneDNN builds its kernels on first use
        order = (False, True) if i % 2 == 0 else (True, False)
        t = {stacked: step(stacked) for stacked in order}
        if i >= 2:
            pairs.append((t[False], t[True]))
    q.put(pairs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    pairs: dict[str, list[tuple[float, float]]] = {net: [] for net in NETS}
    for r in range(args.rounds):
        for net, (*_, scale, _, _) in NETS.items():
            [got] = spawn_at_once(_worker, [(net, max(3, round(args.steps * scale)))])
            pairs[net] += got
            ratio = statistics.median(b / a for a, b in got)
            print(f"round {r} {net}: stacked / separate {ratio:.3f}", file=sys.stderr, flush=True)
    rows = []
    for net, got in pairs.items():
        rows.append(
            {
                "network": net,
                "separate": statistics.median(a for a, _ in got),
                "stacked": statistics.median(b for _, b in got),
                "unit": "s",
                "stacked / separate": statistics.median(b / a for a, b in got),
                "pairs faster": f"{sum(b < a for a, b in got)}/{len(got)}",
            }
        )
    print(
        write_results(
            "stacked",
            rows,
            "Supernet training step, candidates' convolutions stacked vs separate, batch 1, fp32, "
            f"one thread; medians over the step pairs of {args.rounds} processes",
            extra={"rounds": args.rounds, "steps": args.steps},
        )
    )


if __name__ == "__main__":
    main()
