"""What a config's training steps need: GPU-free memory figures and projected fold times.

- :func:`step_bytes`: peak memory of one search or retrain step of an architecture at a
  patch, fp32 or bf16 (:mod:`voxnas.search_spaces.memory`, meta device, seconds).
- :func:`trial_bytes`: what one Ray trial of a stage needs (the ``ray.gpus_per_trial: auto``
  input): the supernet's search step at ``patch.search``, or the retrain step of the largest
  single-choice network at ``patch.train``.
- :func:`memory_table` and :func:`time_projection`: the ``voxnas cost`` report. The time of a
  whole fold is FLOPs over the GFLOP/s a benchmark achieved (``bench_throughput.py`` writes
  ``throughput.json`` next to this module), labelled with the device it was measured on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from voxnas.config import Config
from voxnas.search_spaces.cost import model_cost
from voxnas.search_spaces.genotypes import derive_genotype
from voxnas.search_spaces.memory import step_memory
from voxnas.search_spaces.nas3dunet import ALPHA_KEYS
from voxnas.search_spaces.registry import PUBLISHED, Architecture, resolve_architecture
from voxnas.trainables.losses import make_loss
from voxnas.trainables.models import build_model, supernet_name

__all__ = [
    "THROUGHPUT",
    "channels",
    "largest_fixed",
    "memory_table",
    "step_bytes",
    "time_projection",
    "trial_bytes",
]

THROUGHPUT = Path(__file__).with_name("throughput.json")
PAPER_GPU_DAYS = {"vnas": "1.2 V100 GPU-days per fold (seed 000, section 3.2)"}
GIB = 2**30


def channels(cfg: Config) -> tuple[int, int]:
    """(in, out) channels the cost figures assume: 1 CT channel / 3 classes, 4 MRI / 3."""
    return (4, 3) if cfg.model.space == "nas3dunet" else (1, 3)


def largest_fixed(cfg: Config) -> str | Architecture:
    """The single-choice network a retrain trial is sized for: V-NAS all-3D (the largest
    choice everywhere); NAS-3D-U-Net the genotype of uniform alphas (a retrain's genotype is
    known only after the search)."""
    if cfg.model.space == "vnas":
        return "3D/3D"
    with torch.device("meta"):
        arch = build_model(cfg, supernet_name(cfg), *channels(cfg)).arch_parameters()
    g = derive_genotype("nas3dunet", {k: torch.zeros(a.shape) for k, a in zip(ALPHA_KEYS, arch)})
    return Architecture("uniform-alpha genotype", "nas3dunet", g)


def _loss(cfg: Config):
    loss = make_loss(cfg.loss.name, cfg.loss.dice_eps)
    regions = cfg.data.target == "brats_regions"

    def loss_fn(logits: torch.Tensor) -> torch.Tensor:
        if regions:
            return loss(logits, torch.zeros_like(logits))
        shape = (logits.shape[0], *logits.shape[2:])
        return loss(logits, torch.zeros(shape, dtype=torch.long, device=logits.device))

    return loss_fn


def step_bytes(
    cfg: Config, spec: str | Architecture, patch, kind: str, precision: str = "fp32"
) -> int:
    """Peak bytes of one ``kind`` (search/retrain) step of ``spec`` on ``patch``."""
    in_ch, out_ch = channels(cfg)
    mem = step_memory(
        lambda: build_model(cfg, spec, in_ch, out_ch),
        in_ch,
        tuple(patch),
        _loss(cfg),
        kind,
        precision,
        cfg.search.weight_optim.name if kind == "search" else cfg.retrain.optim.name,
        cfg.patch.batch_size,
    )
    return mem.total


def trial_bytes(cfg: Config, stage: str, precision: str) -> int:
    """Peak bytes of one trial of ``stage`` (``search`` or a retrain stage)."""
    if stage == "search":
        return step_bytes(cfg, supernet_name(cfg), cfg.patch.search, "search", precision)
    return step_bytes(cfg, largest_fixed(cfg), cfg.patch.train, "retrain", precision)


def _name(spec: str | Architecture) -> str:
    return spec.name if isinstance(spec, Architecture) else spec


def _rows(cfg: Config, archs: list[str] | None) -> list[tuple[str | Architecture, str, tuple]]:
    """(architecture, step kind, patch): the supernet searched at the search patch, fixed
    networks retrained at the train patch."""
    if archs is None:
        fixed = list(PUBLISHED) if cfg.model.space == "vnas" else []
        archs = [supernet_name(cfg), *fixed, largest_fixed(cfg)]
    rows = []
    for spec in archs:
        arch = spec if isinstance(spec, Architecture) else resolve_architecture(spec)
        if arch.genotype is None:
            rows.append((spec, "search", tuple(cfg.patch.search)))
        else:
            rows.append((spec, "retrain", tuple(cfg.patch.train)))
    return rows


def memory_table(cfg: Config, archs: list[str] | None = None) -> str:
    """Markdown table: peak memory of a training step, fp32 and bf16 autocast, in GiB."""
    lines = [
        "Peak memory of one training step, batch "
        f"{cfg.patch.batch_size} (weights, gradients, optimiser state, activations; "
        "search = weight step + arch step; bf16 = CUDA autocast, weights fp32; "
        f"memory_lean={cfg.model.memory_lean})",
        "| architecture | step | patch | fp32 (GiB) | bf16 (GiB) |",
        "|---|---|---|---|---|",
    ]
    for spec, kind, patch in _rows(cfg, archs):
        fp32, bf16 = (step_bytes(cfg, spec, patch, kind, p) / GIB for p in ("fp32", "bf16"))
        size = "x".join(map(str, patch))
        lines.append(f"| {_name(spec)} | {kind} | {size} | {fp32:.2f} | {bf16:.2f} |")
    return "\n".join(lines)


def load_throughput(path: Path = THROUGHPUT) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def _gflops(cfg: Config, spec, patch) -> float:
    in_ch, out_ch = channels(cfg)
    build = lambda: build_model(cfg, spec, in_ch, out_ch)  # noqa: E731
    return model_cost(build, in_ch, tuple(patch), cfg.patch.batch_size)["gflops_fwd_bwd"]


def time_projection(cfg: Config, table: dict[str, Any] | None = None) -> str:
    """Projected time of one fold's search and retrain at the config's iterations, from the
    GFLOP/s measured for this space's search and retrain steps."""
    table = table if table is not None else load_throughput()
    if not table:
        return f"No throughput table ({THROUGHPUT}): run benchmarks/bench_throughput.py"
    rate = {(r["space"], r["step"]): r["gflops_per_s"] for r in table["rows"]}
    s, r = cfg.search, cfg.retrain
    total = s.epochs * s.iterations_per_epoch
    warm = min(s.warmup_epochs, s.epochs) * s.iterations_per_epoch
    search_gflop = _gflops(cfg, supernet_name(cfg), cfg.patch.search) * (2 * total - warm)
    fixed = largest_fixed(cfg)
    retrain_gflop = _gflops(cfg, fixed, cfg.patch.train) * r.epochs * r.iterations_per_epoch
    space = cfg.model.space
    lines = [
        f"Projected time of one fold on {table['device']} (throughput measured "
        f"{table.get('date', '?')}; FLOPs of this config / GFLOP/s achieved there):",
    ]
    for what, gflop, step, detail in (
        ("search", search_gflop, "search", f"{total:,} iterations, {warm:,} weight-only warm-up"),
        (
            "retrain",
            retrain_gflop,
            "retrain",
            f"{_name(fixed)}, {r.epochs * r.iterations_per_epoch:,} iterations",
        ),
    ):
        if (space, step) not in rate:
            lines.append(f"- {what}: no {space} {step} throughput in the table")
            continue
        days = gflop / rate[(space, step)] / 86400
        lines.append(
            f"- {what} ({detail}): {gflop / 1e6:,.1f} PFLOP at "
            f"{rate[(space, step)]:.1f} GFLOP/s = {days:,.1f} days"
        )
    if space in PAPER_GPU_DAYS:
        lines.append(f"- paper: {PAPER_GPU_DAYS[space]}")
    return "\n".join(lines)
