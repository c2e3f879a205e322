"""The size rules of voxnas' CPU convolution paths (``voxnas/search_spaces/onednn_conv.py``),
measured: each path against PyTorch's own kernel, shape by shape, and whole supernet steps with
the rules against without them. Batch 1, fp32, one thread.

1. *transposed*: strided transposed conv forward (kernel 3, stride 2, padding 1, output
   padding 1): PyTorch's ``F.conv_transpose3d`` (``slow_conv_transpose3d`` for groups 1: a
   GEMM into a column buffer of ``C_out x taps x input voxels`` and a col2im over it; oneDNN
   inline for grouped ones) against ``_conv_transpose_polyphase`` (one stride-1 oneDNN conv
   per residue class of the output); voxnas takes the polyphase path for groups 1 from
   ``POLYPHASE_MIN_COLUMN_BYTES``. Shapes: NAS-3D-U-Net's ``u_conv`` stacked over an up
   cell's three edges (C_out 3x) at the public code's 64^3 and at paper-scale sizes, small
   and wide ones on both sides of the threshold, depthwise ones.
2. *weight gradient* (batch 1): of a kernel-3 conv (stride 1 or 2) or transposed conv, PyTorch's
   ``convolution_backward`` against the swapped oneDNN convolution
   (``_grad_weight_swapped``); voxnas takes the swapped one from ``SWAPPED_MIN_VOXELS`` /
   ``SWAPPED_MIN_VOXELS_STRIDED`` voxels (of the larger of input and output).
3. *batched conv*: forward + backward of a ``Conv3d`` on a batch of 2, PyTorch's own call
   (oneDNN for batches) against voxnas' fast path (``BATCHED_STOCK`` off); voxnas takes the
   stock call for 1x1x1 convs and from ``BATCHED_STOCK_MIN_CHANNELS`` channels.
4. *supernet step*: forward + backward of ``mean(out^2)``, voxnas' rules against the paths
   before them (polyphase off, swapped weight gradients at every size, no stock calls for
   batches: ``BATCHED_STOCK_MIN_CHANNELS``), alternating step by step in one process; median
   of the per-pair ratios; batch 1, and batch 2 for the batched rule.

Calls and steps alternate between the two sides so the host's drift cancels.

    .venv/bin/python benchmarks/bench_conv_paths.py [--repeats 9] [--steps 12]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from _common import write_results

from voxnas.search_spaces import onednn_conv

_aten = torch.ops.aten

TRANSPOSED = [  # (C_in, C_out, input size, groups)
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

WEIGHT_GRADS = [  # (kind, C_in, C_out, input size): conv stride 1 / 2, transposed stride 2
    ("conv s1", 64, 64, 2),
    ("conv s1", 128, 128, 2),
    ("conv s1", 32, 32, 4),
    ("conv s1", 16, 16, 8),
    ("conv s1", 64, 64, 8),
    ("conv s1", 16, 16, 16),
    ("conv s1", 4, 4, 64),
    ("conv s2", 64, 64, 2),
    ("conv s2", 32, 64, 8),
    ("conv s2", 16, 32, 16),
    ("conv s2", 8, 16, 32),
    ("conv s2", 4, 8, 64),
    ("transposed s2", 384, 64, 2),
    ("transposed s2", 64, 192, 2),
    ("transposed s2", 192, 32, 4),
    ("transposed s2", 96, 16, 8),
    ("transposed s2", 48, 8, 16),
    ("transposed s2", 4, 12, 32),
]

_PUBLIC = {"init_kernels": 4, "depth": 4, "nodes": 3}
_DEMO = {"width": 0.125, "psp": False}
STEPS = [  # (label, registry name, in channels, kwargs, patch, batch)
    (
        "NAS-3D-U-Net supernet, public config (4 kernels), 64^3",
        "nas3dunet-supernet",
        4,
        _PUBLIC,
        64,
        1,
    ),
    (
        "NAS-3D-U-Net supernet, 16 kernels, 32^3",
        "nas3dunet-supernet",
        4,
        {"init_kernels": 16, "depth": 4, "nodes": 3},
        32,
        1,
    ),
    ("V-NAS supernet, width 0.125, 64^3", "vnas-supernet", 1, {"width": 0.125, "psp": True}, 64, 1),
    ("V-NAS supernet, width 0.5, 32^3", "vnas-supernet", 1, {"width": 0.5, "psp": True}, 32, 1),
    ("V-NAS supernet, demo (width 0.125, no PSP), 32^3, batch 2", "vnas-supernet", 1, _DEMO, 32, 2),
    (
        "NAS-3D-U-Net supernet, public config, 32^3, batch 2",
        "nas3dunet-supernet",
        4,
        _PUBLIC,
        32,
        2,
    ),
]


def _alternate(a, b, repeats: int) -> tuple[float, float, list[float]]:
    """Medians of ``a`` and ``b`` called alternately, and each pair's ratio a / b."""
    a()
    b()
    ta, tb = [], []
    for _ in range(repeats):
        for fn, out in ((a, ta), (b, tb)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb), [x / y for x, y in zip(ta, tb)]


def _kernel_row(part, shape, size, stock, fast, taken: str, repeats: int) -> dict:
    """One shape: ``stock`` (PyTorch's kernel) against ``fast`` (voxnas' path), alternated;
    ``taken`` names the path voxnas' rule picks for it."""
    ref = stock()
    err = ((fast() - ref).abs().max() / ref.abs().max()).item()
    s, f, _ = _alternate(stock, fast, repeats)
    row = {
        "part": part,
        "shape": shape,
        "size": size,
        "baseline ms": 1e3 * s,
        "voxnas ms": 1e3 * f,
        "baseline / voxnas": s / f,
        "voxnas runs": taken,
        "max rel. difference": err,
    }
    print(row, flush=True)
    return row


def _transposed_rows(repeats: int) -> list[dict]:
    rows = []
    for c_in, c_out, size, groups in TRANSPOSED:
        x = torch.randn(1, c_in, *size)
        w = torch.randn(c_in, c_out // groups, 3, 3, 3)

        def stock(x=x, w=w, groups=groups):
            return F.conv_transpose3d(x, w, None, 2, 1, 1, groups)

        def poly(x=x, w=w, groups=groups):
            return onednn_conv._conv_transpose_polyphase(
                x, w, None, [2, 2, 2], [1, 1, 1], [1, 1, 1], [1, 1, 1], groups
            )

        column = c_out * 27 * x[0, 0].numel() * 4
        taken = onednn_conv._polyphase_pays(x, w, groups, [2, 2, 2])
        rows.append(
            _kernel_row(
                "transposed forward",
                f"{c_in} -> {c_out} (groups {groups}), input {'x'.join(map(str, size))}",
                f"column buffer {column / 2**20:.3g} MiB",
                stock,
                poly,
                "polyphase" if taken else "PyTorch",
                repeats,
            )
        )
    return rows


def _weight_grad_rows(repeats: int) -> list[dict]:
    rows = []
    for kind, c_in, c_out, n in WEIGHT_GRADS:
        transposed = kind.startswith("transposed")
        stride = [1, 1, 1] if kind == "conv s1" else [2, 2, 2]
        x = torch.randn(1, c_in, n, n, n)
        if transposed:
            w = torch.randn(c_in, c_out, 3, 3, 3)
            go = torch.randn(1, c_out, 2 * n, 2 * n, 2 * n)
            big, out_pad = go, [1, 1, 1]
        else:
            w = torch.randn(c_out, c_in, 3, 3, 3)
            m = n // stride[0]
            go = torch.randn(1, c_out, m, m, m)
            big, out_pad = x, [0, 0, 0]

        def stock(x=x, w=w, go=go, stride=stride, transposed=transposed, out_pad=out_pad):
            return _aten.convolution_backward(
                go, x, w, None, stride, [1, 1, 1], [1, 1, 1], transposed, out_pad, 1,
                [False, True, False],
            )[1]  # fmt: skip

        def swapped(x=x, go=go, stride=stride, transposed=transposed):
            a, b = (go, x) if transposed else (x, go)
            return onednn_conv._grad_weight_swapped(
                a, b, [1, 1, 1], stride, [1, 1, 1], 1, (3, 3, 3)
            )

        taken = onednn_conv._swapped_ok(big, w, 1, stride)
        rows.append(
            _kernel_row(
                "weight gradient",
                f"{kind}, {c_in} -> {c_out}, input {n}^3",
                f"{big[0, 0].numel()} voxels",
                stock,
                swapped,
                "swapped" if taken else "PyTorch",
                repeats,
            )
        )
    return rows


BATCHED = [  # (channels, kernel, size): batch 2, stride 1, groups 1
    (4, 3, (32, 32, 32)),
    (8, (3, 3, 1), (32, 32, 32)),
    (8, 1, (32, 32, 32)),
    (12, 3, (16, 16, 32)),
    (16, 3, (16, 16, 32)),
    (16, (3, 3, 1), (16, 16, 32)),
    (32, (3, 3, 1), (8, 8, 16)),
    (64, 3, (4, 4, 8)),
]


def _batched_rows(repeats: int) -> list[dict]:
    from voxnas.search_spaces.onednn_conv import Conv3d, stock_convolutions

    rows = []
    for c, kernel, size in BATCHED:
        k3 = (kernel,) * 3 if isinstance(kernel, int) else kernel
        conv = Conv3d(c, c, k3, padding=tuple(k // 2 for k in k3), bias=False)
        x = torch.randn(2, c, *size)

        def fwd_bwd(conv=conv, x=x):
            conv.weight.grad = None
            conv(x).sum().backward()
            return conv.weight.grad

        def stock(fn=fwd_bwd):
            with stock_convolutions():
                return fn()

        def fast(fn=fwd_bwd):
            onednn_conv.BATCHED_STOCK = False
            try:
                return fn()
            finally:
                onednn_conv.BATCHED_STOCK = True

        taken = onednn_conv._batched_stock(conv, x, conv.weight)
        rows.append(
            _kernel_row(
                "batched conv (fwd+bwd)",
                f"{c} -> {c}, kernel {'x'.join(map(str, conv.kernel_size))}, batch 2 x "
                f"{'x'.join(map(str, size))}",
                f"{c} channels",
                stock,
                fast,
                "PyTorch" if taken else "fast path",
                repeats,
            )
        )
    return rows


def _step_rows(steps: int) -> list[dict]:
    from voxnas.search_spaces.registry import create_model

    before = {"POLYPHASE_MIN_COLUMN_BYTES": float("inf"), "SWAPPED_MIN_VOXELS": 0,
              "SWAPPED_MIN_VOXELS_STRIDED": 0, "BATCHED_STOCK": False}  # fmt: skip
    rules = {k: getattr(onednn_conv, k) for k in before}
    rows = []
    for label, arch, c_in, kw, patch, batch in STEPS:
        torch.manual_seed(0)
        model = create_model(arch, c_in, 3, **kw)
        x = torch.randn(batch, c_in, patch, patch, patch)

        def step(settings, model=model, x=x):
            for k, v in settings.items():
                setattr(onednn_conv, k, v)
            model.zero_grad(set_to_none=True)
            model(x).float().square().mean().backward()

        old, new, ratios = _alternate(lambda: step(before), lambda: step(rules), steps)
        for k, v in rules.items():
            setattr(onednn_conv, k, v)
        rows.append(
            {
                "part": "supernet step",
                "shape": label,
                "size": f"{steps} alternated pairs",
                "baseline ms": 1e3 * old,
                "voxnas ms": 1e3 * new,
                "baseline / voxnas": statistics.median(ratios),
                "voxnas runs": "rules on (vs off)",
                "max rel. difference": None,
            }
        )
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=9, help="alternated calls per shape")
    ap.add_argument("--steps", type=int, default=12, help="alternated step pairs per supernet")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = _transposed_rows(args.repeats) + _weight_grad_rows(args.repeats)
    rows += _batched_rows(args.repeats) + _step_rows(args.steps)
    note = (
        "voxnas' CPU convolution paths against PyTorch's kernels, fp32, one thread; "
        f"medians of {args.repeats} alternated calls per shape; supernet steps: medians of "
        f"{args.steps} alternated pairs. Baseline: PyTorch's kernel (transposed forward, weight "
        "gradient, batched conv); for the supernet steps the paths before the size rules "
        "(polyphase off, swapped weight gradients at every size, no stock calls for batches), "
        "ratio = median of the pairs' ratios"
    )
    print(write_results("conv_paths", rows, note, extra={"repeats": args.repeats,
                                                         "steps": args.steps}))  # fmt: skip


if __name__ == "__main__":
    main()
