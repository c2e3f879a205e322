"""Strided transposed convolutions on CPU: PyTorch's kernel against voxnas' polyphase path.

For each shape (batch 1, fp32, one thread, forward only), PyTorch's ``F.conv_transpose3d``
(``slow_conv_transpose3d`` for groups 1: a GEMM into a column buffer of ``C_out x taps x
input voxels`` and a col2im over it; oneDNN inline for grouped ones) and
``onednn_conv._conv_transpose_polyphase`` (one stride-1 oneDNN conv per residue class of the
output) are timed alternately, call by call, and the medians reported with the column buffer's
size and the path voxnas takes (``POLYPHASE_MIN_COLUMN_BYTES``). The shapes are NAS-3D-U-Net's
``u_conv`` (kernel 3, stride 2, padding 1, output padding 1; stacked over the three edges of
an up cell: C_out 3x) at the public code's 64^3 configuration (4 initial kernels) and at paper
scale, plus small and wide ones on both sides of the threshold, and the depthwise ones
(``u_dep_conv`` and depthwise input gradients) that stay on PyTorch's kernel.

    .venv/bin/python benchmarks/bench_transposed.py [--repeats 9]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from _common import write_results

from voxnas.search_spaces import onednn_conv

SHAPES = [  # (C_in, C_out, input size, groups)
    (4, 12, (16, 16, 16), 1),
    (8, 8, (16, 16, 16), 1),
    (16, 48, (16, 16, 16), 1),
    (48, 8, (16, 16, 16), 1),
    (32, 96, (8, 8, 8), 1),
    (384, 64, (2, 2, 2), 1),
    (4, 4, (32, 32, 32), 1),
    (4, 12, (32, 32, 32), 1),
    (8, 24, (32, 32, 32), 1),
    (16, 16, (32, 32, 32), 1),
    (4, 12, (64, 64, 32), 1),
    (2, 6, (64, 64, 64), 1),
    (4, 4, (32, 32, 32), 4),
    (8, 8, (16, 16, 16), 8),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = []
    for c_in, c_out, size, groups in SHAPES:
        x = torch.randn(1, c_in, *size)
        w = torch.randn(c_in, c_out // groups, 3, 3, 3)

        def stock(x=x, w=w, groups=groups):
            return F.conv_transpose3d(x, w, None, 2, 1, 1, groups)

        def poly(x=x, w=w, groups=groups):
            return onednn_conv._conv_transpose_polyphase(
                x, w, None, [2, 2, 2], [1, 1, 1], [1, 1, 1], [1, 1, 1], groups
            )

        ref = stock()
        err = ((poly() - ref).abs().max() / ref.abs().max()).item()
        times: dict[str, list[float]] = {"stock": [], "poly": []}
        for _ in range(args.repeats):
            for name, fn in (("stock", stock), ("poly", poly)):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        column = c_out * 27 * x[0, 0].numel() * 4
        taken = groups == 1 and column >= onednn_conv.POLYPHASE_MIN_COLUMN_BYTES
        s, p = statistics.median(times["stock"]), statistics.median(times["poly"])
        rows.append(
            {
                "C_in -> C_out (groups)": f"{c_in} -> {c_out} ({groups})",
                "input": "x".join(map(str, size)),
                "column buffer MiB": column / 2**20,
                "PyTorch ms": 1e3 * s,
                "polyphase ms": 1e3 * p,
                "PyTorch / polyphase": s / p,
                "voxnas runs": "polyphase" if taken else "PyTorch",
                "max rel. difference": err,
            }
        )
        print(rows[-1], flush=True)
    note = (
        "Strided transposed conv (kernel 3, stride 2, padding 1, output padding 1), batch 1, "
        f"fp32 forward, one thread, medians of {args.repeats} alternated calls"
    )
    print(write_results("transposed", rows, note, extra={"repeats": args.repeats}))


if __name__ == "__main__":
    main()
