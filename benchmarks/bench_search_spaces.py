"""Search-space benchmark: forward+backward time and peak memory, batch 1, CPU fp32.

1. V-NAS supernet at a CPU-sized width and a 64^3 patch next to the three single-choice
   networks (2D/2D, 3D/3D, P3D/P3D) measured in the same run: the supernet should cost no
   more than their sum.
2. NAS-3D-U-Net supernet in the public code's configuration (4 modalities, 3 outputs,
   depth 4, 4 initial kernels, 3 nodes, 64^3 patch): stock PyTorch CPU convolutions vs
   voxnas' oneDNN path, same network, same maths, same run.

Each measurement runs in a fresh process so its peak RSS is its own.

    .venv/bin/python benchmarks/bench_search_spaces.py [--width 0.125] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import resource

from _common import median_time, write_results


def _measure(spec: dict, repeats: int, q) -> None:
    import torch

    from voxnas.search_spaces.layers import stock_convolutions
    from voxnas.search_spaces.registry import create_model

    torch.manual_seed(0)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model = create_model(spec["arch"], spec["in"], spec["out"], **spec["kw"])
    x = torch.randn(1, spec["in"], *spec["patch"])

    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(x).float().square().mean().backward()

    ctx = stock_convolutions() if spec.get("stock") else contextlib.nullcontext()
    with ctx:
        t = median_time(step, repeats=repeats, warmup=1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
    q.put((t, peak / 1024))


def measure(spec: dict, repeats: int) -> tuple[float, float]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_measure, args=(spec, repeats, q))
    p.start()
    out = q.get()
    p.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--width", type=float, default=0.125)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rows = []
    vnas = {"in": 1, "out": 3, "patch": (64, 64, 64), "kw": {"width": args.width, "psp": True}}
    single = 0.0
    for arch in ("2D/2D", "3D/3D", "P3D/P3D", "vnas-supernet"):
        t, mem = measure({**vnas, "arch": arch}, args.repeats)
        if arch != "vnas-supernet":
            single += t
        rows.append(
            {
                "network": f"V-NAS {arch} (width {args.width}, 64^3)",
                "fwd+bwd (s)": t,
                "peak RSS (MiB)": mem,
            }
        )
    rows.append(
        {
            "network": "sum of the three single-choice networks",
            "fwd+bwd (s)": single,
            "peak RSS (MiB)": "",
        }
    )
    rows.append(
        {
            "network": "supernet / sum",
            "fwd+bwd (s)": rows[3]["fwd+bwd (s)"] / single,
            "peak RSS (MiB)": "",
        }
    )
    nas = {
        "arch": "nas3dunet-supernet",
        "in": 4,
        "out": 3,
        "patch": (64, 64, 64),
        "kw": {"init_kernels": 4, "depth": 4, "nodes": 3},
    }
    t_stock, m_stock = measure({**nas, "stock": True}, args.repeats)
    t_fast, m_fast = measure(nas, args.repeats)
    rows += [
        {
            "network": "NAS-3D-U-Net supernet (public config), stock PyTorch convs",
            "fwd+bwd (s)": t_stock,
            "peak RSS (MiB)": m_stock,
        },
        {
            "network": "NAS-3D-U-Net supernet (public config), voxnas oneDNN path",
            "fwd+bwd (s)": t_fast,
            "peak RSS (MiB)": m_fast,
        },
        {
            "network": "speed-up (stock / voxnas)",
            "fwd+bwd (s)": t_stock / t_fast,
            "peak RSS (MiB)": "",
        },
    ]
    print(write_results("search_spaces", rows, "Search spaces, batch 1, CPU fp32"))


if __name__ == "__main__":
    main()
