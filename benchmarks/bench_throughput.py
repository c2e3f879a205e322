"""Step throughput table for ``voxnas cost``'s time projection.

Times a search step (weight step + arch step) of each space's supernet and a retrain step
of a single-choice network, batch 1, and divides their FLOPs (PyTorch's FLOP counter, as
``voxnas cost`` counts them) by the time: GFLOP/s achieved on this device (CPU: one thread). Writes
``benchmarks/results/throughput.{json,md}`` and the table ``voxnas cost`` reads,
``voxnas/trainables/throughput.json``, naming the device. On CPU the sizes are CPU sizes (a
GFLOP/s figure at width 1/8 and a 64x64x32 patch projects full width only roughly: wider
convolutions run at higher GFLOP/s). ``--device cuda`` measures a GPU instead (bf16 autocast
where supported, as training runs), at the papers' sizes. About 1-2 minutes on 2 CPU cores.

    .venv/bin/python benchmarks/bench_throughput.py [--device cpu|cuda] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from _common import cpu_model, median_time, write_results

from voxnas.config import load_config
from voxnas.search_spaces.cost import model_cost
from voxnas.trainables.fold_time import THROUGHPUT
from voxnas.trainables.footprint import default_fixed, make_optimizers
from voxnas.trainables.models import build_model, cost_channels, supernet_name
from voxnas.trainables.step_probe import run_step

ROOT = Path(__file__).resolve().parent.parent
CPU_SIZES = {
    "vnas": ["model.width=0.125", "patch.search=[64,64,32]", "patch.train=[64,64,32]"],
    "nas3dunet": ["patch.search=[32,32,32]", "patch.train=[32,32,32]"],
}
CONFIGS = {"vnas": "vnas_nih.yaml", "nas3dunet": "nas3dunet_brats.yaml"}


def measure(cfg, spec, kind: str, device: str, repeats: int) -> dict:
    in_ch, out_ch = cost_channels(cfg)
    patch = tuple(cfg.patch.search if kind == "search" else cfg.patch.train)
    torch.manual_seed(0)
    model = build_model(cfg, spec, in_ch, out_ch).to(device)
    opts = make_optimizers(cfg, model, kind)
    bf16 = device == "cuda" and torch.cuda.is_bf16_supported()

    def step() -> None:
        run_step(cfg, model, kind, patch, opts)
        if device == "cuda":
            torch.cuda.synchronize()

    seconds = median_time(step, repeats=repeats, warmup=1)
    build = lambda: build_model(cfg, spec, in_ch, out_ch)  # noqa: E731
    gflop = model_cost(build, in_ch, patch)["gflops_fwd_bwd"] * (2 if kind == "search" else 1)
    name = spec if isinstance(spec, str) else spec.name
    return {
        "space": cfg.model.space,
        "step": kind,
        "network": name,
        "patch": "x".join(map(str, patch)),
        "size": {k: v for k, v in cfg.model.model_dump().items() if k != "space"},
        "precision": "bf16 autocast" if bf16 else "fp32",
        "gflop_per_step": gflop,
        "s_per_step": seconds,
        "gflops_per_s": gflop / seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing measured")
        return
    if args.device == "cpu":
        torch.set_num_threads(1)  # the host is shared; one core, as the other benchmarks
        device_name = f"CPU {cpu_model()}, {torch.get_num_threads()} threads"
    else:
        device_name = f"GPU {torch.cuda.get_device_name(0)}"
    rows = []
    for space, file in CONFIGS.items():
        overrides = CPU_SIZES[space] if args.device == "cpu" else []
        cfg = load_config(ROOT / "configs" / file, overrides)
        rows.append(measure(cfg, supernet_name(cfg), "search", args.device, args.repeats))
        rows.append(measure(cfg, default_fixed(cfg), "retrain", args.device, args.repeats))
    table = {"device": device_name, "date": time.strftime("%Y-%m-%d"), "rows": rows}
    THROUGHPUT.write_text(json.dumps(table, indent=1) + "\n")
    flat = [{k: v for k, v in r.items() if k != "size"} for r in rows]
    print(write_results("throughput", flat, f"Step throughput on {device_name}", table))


if __name__ == "__main__":
    main()
