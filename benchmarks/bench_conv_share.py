"""Where a supernet step's CPU time goes: the convolution/GEMM share, before and after.

Both search spaces at the search-space benchmark's configurations (``bench_search_spaces.py``):
the V-NAS supernet at width 0.125 on a 64^3 patch (1 channel in, 3 out) and the NAS-3D-U-Net
supernet in the public code's configuration (4 modalities, 3 outputs, depth 4, 4 initial
kernels, 3 nodes, 64^3), batch 1, fp32, forward + backward of ``mean(out^2)``, one thread.

*before* is the code of an earlier commit (``--before``, default the commit this work started
from), extracted with ``git archive`` and imported in its own process; *after* is this tree.
Both run in the same invocation, one process per (space, code) pair, alternately.

Each process warms up, times ``--repeats`` steps without the profiler (median: the step
time), then records ``--profiled`` steps with ``torch.profiler`` and sums every op's *self*
CPU time by category:

- convolution/GEMM: aten/mkldnn convolution kernels (``mkldnn_convolution``, the
  transposed/grouped oneDNN kernels PyTorch runs inline in ``_convolution``, ``slow_conv*``,
  ``convolution_backward``, oneDNN deconvolution) and matrix products (``mm``, ``addmm``,
  ``bmm``, ``matmul``). Only ``aten::``/``mkldnn::`` ops count: voxnas' custom autograd
  functions (``_OneDNNConv3d``, its backward) contribute only their own Python-side self
  time, which goes to *framework*.
- normalisation (GroupNorm/BatchNorm forward and backward), activation (ReLU and its
  backward, sigmoid), element-wise arithmetic (``mul``/``add``/``sum``: the alpha weighting,
  candidate sums and autograd's gradient accumulation), copies (``copy_``, ``cat``, ``fill_``,
  ``flip``, padding), pooling/resampling, framework (autograd engine nodes, allocation, views,
  Python in custom functions), other.

The conv share is reported two ways, both over the profiled steps: of the summed op self time,
and of those steps' wall time (which adds the interpreter between ops and the profiler's own
overhead to the denominator). Two ceilings follow from the same profile: the share of op time
if normalisation and activation took no time (what a perfect fused norm+activation kernel
could reach), and if element-wise arithmetic and copies took none either (what is left is
the framework: dispatch, allocation, autograd's nodes, and pooling). The plain step time is
the median of the unprofiled steps; on a shared host it moves with the load, the shares much
less.

    .venv/bin/python benchmarks/bench_conv_share.py [--before REF] [--repeats 5] [--profiled 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASE_COMMIT = "26a9392"  # the tree before issue 14 item 4 (fused mixing, oneDNN transposed)

SPACES = {
    "V-NAS supernet (width 0.125, 64^3)": (
        "vnas-supernet",
        1,
        3,
        {"width": 0.125, "psp": True},
    ),
    "NAS-3D-U-Net supernet (public config, 64^3)": (
        "nas3dunet-supernet",
        4,
        3,
        {"init_kernels": 4, "depth": 4, "nodes": 3},
    ),
}

CATEGORIES = [  # first match wins; names without aten::/mkldnn:: fall to framework
    ("convolution/GEMM", r"^(aten|mkldnn)::(.*conv.*|mm|bmm|addmm|baddbmm|addbmm|matmul|linear)$"),
    (
        "normalisation",
        r"^aten::(native_group_norm.*|native_batch_norm.*|_batch_norm.*|batch_norm.*"
        r"|group_norm|var|var_mean)$",
    ),  # fmt: skip
    ("activation", r"^aten::(relu_?|clamp_min_?|threshold_backward|sigmoid.*|hardtanh.*)$"),
    ("element-wise mul/add/sum", r"^aten::(mul_?|add_?|sum|sub_?|div_?|mean|addcmul_?|neg|pow)$"),
    (
        "copies",
        r"^aten::(copy_|clone|contiguous|cat|stack|fill_|zero_|flip|constant_pad_nd"
        r"|new_zeros|zeros|zeros_like|index.*|slice_scatter)$",
    ),  # fmt: skip
    ("pooling/resampling", r"^aten::(max_pool.*|avg_pool.*|upsample.*|_adaptive.*)$"),
    (
        "framework",
        r"^(aten::(empty.*|view|reshape|_reshape_alias|transpose|t|as_strided_?|"
        r"resize_|permute|expand|unsqueeze|squeeze|detach_?|alias|select|slice|split|narrow"
        r"|unbind|_unsafe_view|result_type|to|_to_copy|lift_fresh|ones_like|split_with_sizes)"
        r"|(?!aten::|mkldnn::).*)$",
    ),  # fmt: skip
]


def classify(name: str) -> str:
    for label, pattern in CATEGORIES:
        if re.match(pattern, name):
            return label
    return "other"


def _worker(space: str, repeats: int, profiled: int) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from voxnas.search_spaces.registry import create_model

    torch.set_num_threads(1)
    arch, c_in, c_out, kw = SPACES[space]
    torch.manual_seed(0)
    model = create_model(arch, c_in, c_out, **kw)
    x = torch.randn(1, c_in, 64, 64, 64)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(x).float().square().mean().backward()

    from _common import step_times  # the script's folder is on sys.path

    times = step_times(step, repeats, warmup=2)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for _ in range(profiled):
            step()
        wall_profiled = (time.perf_counter() - t0) / profiled
    by_cat: dict[str, float] = {}
    by_op: dict[str, float] = {}
    for ev in prof.events():
        us = ev.self_cpu_time_total
        by_cat[classify(ev.name)] = by_cat.get(classify(ev.name), 0.0) + us
        by_op[ev.name] = by_op.get(ev.name, 0.0) + us
    per_step = {k: v / 1e6 / profiled for k, v in by_cat.items()}
    top = sorted(by_op.items(), key=lambda kv: -kv[1])[:15]
    import voxnas

    return {
        "code": str(Path(voxnas.__file__).parent.parent),
        "step_s": statistics.median(times),
        "profiled_step_wall_s": wall_profiled,
        "op_time_s": sum(per_step.values()),
        "categories_s": per_step,
        "top_ops_s": {k: v / 1e6 / profiled for k, v in top},
    }


CEILINGS = {  # what a fused kernel could at best remove: the share with those categories at 0
    "normalisation and activation": ("normalisation", "activation"),
    "normalisation, activation, element-wise and copies":
        ("normalisation", "activation", "element-wise mul/add/sum", "copies"),
}  # fmt: skip


def _ceiling(res: dict, free: tuple[str, ...]) -> float:
    """The conv/GEMM share of the profiled op time with the ``free`` categories' time removed:
    what fusing them away (into the convolutions, or to nothing) could at most reach."""
    cats = res["categories_s"]
    rest = res["op_time_s"] - sum(cats.get(c, 0.0) for c in free)
    return 100 * cats.get("convolution/GEMM", 0.0) / rest


def _run(space: str, code: Path, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", space, "--repeats", str(args.repeats),
           "--profiled", str(args.profiled)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(code)}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, cwd=code)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--before", default=BASE_COMMIT, help="git ref of the 'before' code")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--profiled", type=int, default=2)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, args.repeats, args.profiled)))
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import write_results

    with tempfile.TemporaryDirectory() as tmp:
        before = Path(tmp)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before, "voxnas"],
                                 capture_output=True, check=True).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
        results = {s: {"before": _run(s, before, args), "after": _run(s, ROOT, args)}
                   for s in SPACES}  # fmt: skip
    rows = []
    for space, res in results.items():
        order = res["before"]["categories_s"]
        cats = sorted({c for r in res.values() for c in r["categories_s"]},
                      key=lambda c, order=order: -order.get(c, 0.0))  # fmt: skip
        conv = {k: r["categories_s"].get("convolution/GEMM", 0.0) for k, r in res.items()}
        measures = {
            "step time (median, no profiler) [s]": {k: r["step_s"] for k, r in res.items()},
            "conv/GEMM share of profiled op time [%]":
                {k: 100 * conv[k] / r["op_time_s"] for k, r in res.items()},
            "conv/GEMM share of the profiled steps' wall time [%]":
                {k: 100 * conv[k] / r["profiled_step_wall_s"] for k, r in res.items()},
            "profiled step wall time / its conv/GEMM time [x]":
                {k: r["profiled_step_wall_s"] / conv[k] for k, r in res.items()},
            **{f"conv/GEMM share of op time if {what} took no time (a ceiling) [%]":
               {k: _ceiling(r, free) for k, r in res.items()}
               for what, free in CEILINGS.items()},
            **{f"{c}, profiled [s]": {k: r["categories_s"].get(c, 0.0) for k, r in res.items()}
               for c in cats},
        }  # fmt: skip
        for measure, v in measures.items():
            name, _, unit = measure.rpartition(" [")
            rows.append({"network": space, "measure": name, "unit": unit[:-1],
                         "before": v["before"], "after": v["after"]})  # fmt: skip
    note = (f"Conv/GEMM share of a supernet step, batch 1, 64^3, CPU fp32, one thread; before = "
            f"commit {args.before}, after = this tree")  # fmt: skip
    print(write_results("conv_share", rows, note, extra={"threads": 1, "before": args.before,
                                                         "raw": results}))  # fmt: skip


if __name__ == "__main__":
    main()
