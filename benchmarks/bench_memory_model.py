"""The memory model's figures, recorded: its agreement with the real CPU peak, and the
``voxnas cost`` memory table at the papers' sizes (the README quotes both from here).

1. Model vs measured: the demo V-NAS supernet's search step, the demo all-3D network's
   retrain step and a public-code-like NAS-3D-U-Net supernet's search step (the cases of
   ``tests/search_spaces/test_memory.py``), each the trainables' own step
   (``trainables/step_probe.py``) measured exactly from the CPU allocator's events, next to
   the model's figure (CPU optimiser loop, ``foreach=False``). One thread.
2. Paper sizes: ``footprint.step_bytes`` (as ``voxnas cost`` prints it; CUDA's ``foreach``
   optimiser kernels) for ``configs/vnas_nih.yaml`` (96x96x64, full width; plain and
   memory-lean supernet, the published genotypes, the retrain stage's rows) and
   ``configs/nas3dunet_brats.yaml``, fp32 and bf16 autocast. Modelled, not measured.

Writes ``benchmarks/results/memory_model.{json,md}``. A few minutes on this project's CPU.

    .venv/bin/python benchmarks/bench_memory_model.py
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from _common import write_results

from voxnas.config import load_config
from voxnas.search_spaces.edge_stack import separate_edges
from voxnas.search_spaces.memory import GIB
from voxnas.search_spaces.registry import PUBLISHED
from voxnas.trainables.footprint import stage_archs, step_bytes, step_kind
from voxnas.trainables.models import build_model, cost_channels, supernet_name
from voxnas.trainables.step_probe import measured_step_peak

ROOT = Path(__file__).resolve().parent.parent
MIB = 2**20
PUBLIC_NAS3D = ["model.init_kernels=4", "model.depth=3", "patch.search=[16,16,16]",
                "patch.train=[16,16,16]", "patch.test=[16,16,16]"]  # fmt: skip
PUBLIC_64 = ["model.init_kernels=4", "model.depth=4", "patch.search=[64,64,64]"]
CHECKS = [  # label, config, overrides, architecture, step, edges stacked (the CPU default)
    ("demo V-NAS supernet", "demo.yaml", [], "vnas-supernet", "search", True),
    ("demo 3D/3D", "demo.yaml", [], "3D/3D", "retrain", True),
    ("NAS-3D-U-Net supernet, public-code-like", "nas3dunet_brats.yaml", PUBLIC_NAS3D,
     "nas3dunet-supernet", "search", True),
    ("NAS-3D-U-Net supernet, public-code-like, edges separate", "nas3dunet_brats.yaml",
     PUBLIC_NAS3D, "nas3dunet-supernet", "search", False),
    ("NAS-3D-U-Net supernet, public code's config", "nas3dunet_brats.yaml", PUBLIC_64,
     "nas3dunet-supernet", "search", True),
    ("NAS-3D-U-Net supernet, public code's config, edges separate", "nas3dunet_brats.yaml",
     PUBLIC_64, "nas3dunet-supernet", "search", False),
]  # fmt: skip


def checks() -> list[dict]:
    """The CPU's own step; "edges separate": without search_spaces/edge_stack.py's stacking
    (which GPUs, and the model's replay, do not run)."""
    rows = []
    for label, file, overrides, arch, kind, stacked in CHECKS:
        cfg = load_config(ROOT / "configs" / file, overrides)
        patch = cfg.patch.search if kind == "search" else cfg.patch.train
        modelled = step_bytes(cfg, arch, patch, kind, foreach=False)
        torch.manual_seed(0)
        model = build_model(cfg, arch, *cost_channels(cfg))
        with contextlib.nullcontext() if stacked else separate_edges():
            real = measured_step_peak(cfg, model, kind)
        row = {"case": label, "step": kind, "patch": "x".join(map(str, patch)),
               "measured (MiB)": real / MIB, "modelled (MiB)": modelled / MIB,
               "modelled / measured - 1": modelled / real - 1}  # fmt: skip
        print(row, flush=True)
        rows.append(row)
    return rows


def paper_sizes() -> list[dict]:
    rows = []
    lean = ["model.memory_lean=true"]
    for file, sets, suffix in (
        ("vnas_nih.yaml", [], ""),
        ("vnas_nih.yaml", lean, ", memory_lean (lean_budget 1.4, the default)"),
        ("vnas_nih.yaml", [*lean, "model.lean_budget=null"], ", memory_lean (every MixedOp)"),
        ("nas3dunet_brats.yaml", [], ""),
    ):
        cfg = load_config(ROOT / "configs" / file, sets)
        archs = [supernet_name(cfg)] if sets else [supernet_name(cfg), *stage_archs(cfg)]
        if cfg.model.space == "vnas" and not sets:
            archs[1:1] = list(PUBLISHED)
        for spec in dict.fromkeys(archs):
            kind = step_kind(spec)
            patch = cfg.patch.search if kind == "search" else cfg.patch.train
            name = spec if isinstance(spec, str) else spec.name
            row = {"config": file, "architecture": name + suffix,
                   "step": kind, "patch": "x".join(map(str, patch))}  # fmt: skip
            for precision in ("fp32", "bf16"):
                row[f"{precision} (GiB)"] = step_bytes(cfg, spec, patch, kind, precision) / GIB
            print(row, flush=True)
            rows.append(row)
    return rows


def main() -> None:
    torch.set_num_threads(1)
    rows = [{"part": "model vs measured (CPU)", **r} for r in checks()]
    rows += [{"part": "paper sizes (modelled)", **r} for r in paper_sizes()]
    cols = dict.fromkeys(k for r in rows for k in r)
    rows = [{c: r.get(c, "") for c in cols} for r in rows]
    note = (
        "Memory model: model vs the CPU allocator's peak of the trainables' step (one thread), "
        "and voxnas cost's figures at paper sizes (batch 1; bf16 = CUDA autocast emulated)"
    )
    print(write_results("memory_model", rows, note, {"torch": torch.__version__}))


if __name__ == "__main__":
    main()
