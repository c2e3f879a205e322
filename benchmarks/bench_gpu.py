"""GPU check of the memory model and bf16 (issue item 7); skips cleanly without CUDA.

At the papers' sizes: the V-NAS supernet (full width, 96x96x64, search step: weight step +
arch step, plain and memory-lean) and the all-3D V-NAS network (retrain step), and the
NAS-3D-U-Net supernet in the public configuration at 128^3 (search step), each in fp32 and
bf16 autocast. Per row: peak memory from ``torch.cuda.max_memory_allocated`` (weights,
gradients and optimiser state included), the memory model's figure and their ratio, and the
median step time. Writes ``benchmarks/results/gpu.{json,md}`` naming the GPU. A row that
runs out of memory is recorded as such. Roughly 3-6 minutes on one modern GPU.

    .venv/bin/python benchmarks/bench_gpu.py [--repeats 5] [--quick]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from _common import median_time, write_results

from voxnas.config import load_config
from voxnas.search_spaces.memory import GIB
from voxnas.trainables.footprint import make_optimizers, step_bytes
from voxnas.trainables.models import build_model, cost_channels
from voxnas.trainables.step_probe import measured_step_peak, run_step

ROOT = Path(__file__).resolve().parent.parent
CASES = [  # label, config, overrides, architecture, step
    ("V-NAS supernet 96x96x64", "vnas_nih.yaml", [], "vnas-supernet", "search"),
    ("V-NAS supernet 96x96x64, memory-lean (lean_budget 1.4)", "vnas_nih.yaml",
     ["model.memory_lean=true"], "vnas-supernet", "search"),
    ("V-NAS supernet 96x96x64, memory-lean (every MixedOp)", "vnas_nih.yaml",
     ["model.memory_lean=true", "model.lean_budget=null"], "vnas-supernet", "search"),
    ("V-NAS 3D/3D 96x96x64", "vnas_nih.yaml", [], "3D/3D", "retrain"),
    ("NAS-3D-U-Net supernet 128^3", "nas3dunet_brats.yaml", ["patch.search=[128,128,128]"],
     "nas3dunet-supernet", "search"),
]  # fmt: skip
QUICK = {"vnas_nih.yaml": ["model.width=0.25"], "nas3dunet_brats.yaml": ["patch.search=[64,64,64]"]}


def run_case(cfg, arch, kind, precision, repeats) -> dict:
    patch = cfg.patch.search if kind == "search" else cfg.patch.train
    torch.manual_seed(0)
    model = build_model(cfg, arch, *cost_channels(cfg)).cuda()
    peak = measured_step_peak(cfg, model, kind, precision)
    opts = make_optimizers(cfg, model, kind)

    def step():
        run_step(cfg, model, kind, patch, opts, amp=precision == "bf16")
        torch.cuda.synchronize()

    seconds = median_time(step, repeats=repeats, warmup=1)
    return {"peak (GiB)": peak / GIB, "step time (s)": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="quarter width, 64^3: a smoke run")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA device, skipped (nothing written)")
        return
    torch.backends.cudnn.benchmark = True
    rows = []
    for label, file, overrides, arch, kind in CASES:
        cfg = load_config(ROOT / "configs" / file, overrides + (QUICK[file] if args.quick else []))
        patch = cfg.patch.search if kind == "search" else cfg.patch.train
        for precision in ("fp32", "bf16"):
            if precision == "bf16" and not torch.cuda.is_bf16_supported():
                continue
            modelled = step_bytes(cfg, arch, patch, kind, precision) / GIB
            row = {"network": label, "step": kind, "precision": precision,
                   "modelled (GiB)": modelled}  # fmt: skip
            try:
                row.update(run_case(cfg, arch, kind, precision, args.repeats))
                torch.cuda.empty_cache()  # the case's tensors died with run_case
                row["measured / modelled"] = row["peak (GiB)"] / modelled
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                row.update({"peak (GiB)": "out of memory", "step time (s)": "",
                            "measured / modelled": ""})  # fmt: skip
            print(row, flush=True)
            rows.append(row)
    props = torch.cuda.get_device_properties(0)
    extra = {"gpu": props.name, "gpu_memory_gib": props.total_memory / GIB,
             "torch": torch.__version__, "quick": args.quick}  # fmt: skip
    note = f"GPU {props.name}, batch 1; peak = torch.cuda.max_memory_allocated"
    print(write_results("gpu", rows, note, extra))


if __name__ == "__main__":
    main()
