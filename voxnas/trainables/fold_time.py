"""Projected time of one fold: the config's FLOPs over the GFLOP/s a benchmark achieved.

``benchmarks/bench_throughput.py`` writes ``throughput.json`` next to this module, naming the
device it measured; the projection says which device it is for and prints the paper's figure
next to it. Part of the ``voxnas cost`` report (:mod:`voxnas.trainables.footprint` sizes the
memory)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from voxnas.config import Config
from voxnas.search_spaces.cost import model_cost
from voxnas.trainables.footprint import default_fixed
from voxnas.trainables.models import build_model, cost_channels, supernet_name

__all__ = ["PAPER_GPU_DAYS", "THROUGHPUT", "load_throughput", "time_projection"]

THROUGHPUT = Path(__file__).with_name("throughput.json")
PAPER_GPU_DAYS = {"vnas": "1.2 V100 GPU-days per fold (seed 000, section 3.2)"}


def load_throughput(path: Path = THROUGHPUT) -> dict[str, Any] | None:
    """The throughput table (``{"device", "date", "rows": [{"space", "step",
    "gflops_per_s"}, ...]}``) or None when none was shipped."""
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def _gflops(cfg: Config, spec, patch) -> float:
    in_ch, out_ch = cost_channels(cfg)
    build = lambda: build_model(cfg, spec, in_ch, out_ch)  # noqa: E731
    return model_cost(build, in_ch, tuple(patch), cfg.patch.batch_size)["gflops_fwd_bwd"]


def _flop(gflop: float) -> str:
    for unit, scale in (("PFLOP", 1e6), ("TFLOP", 1e3)):
        if gflop >= scale:
            return f"{gflop / scale:,.1f} {unit}"
    return f"{gflop:,.1f} GFLOP"


def _duration(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:,.1f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:,.1f} hours"
    return f"{seconds / 60:,.1f} minutes"


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
    fixed = default_fixed(cfg)
    name = fixed.name if not isinstance(fixed, str) else fixed
    retrain_gflop = _gflops(cfg, fixed, cfg.patch.train) * r.epochs * r.iterations_per_epoch
    space = cfg.model.space
    lines = [
        f"Projected time of one fold on {table['device']} (throughput measured "
        f"{table.get('date', '?')}; FLOPs of this config / GFLOP/s achieved there):",
    ]
    for what, gflop, detail in (
        ("search", search_gflop, f"{total:,} iterations, {warm:,} weight-only warm-up"),
        ("retrain", retrain_gflop, f"{name}, {r.epochs * r.iterations_per_epoch:,} iterations"),
    ):
        if (space, what) not in rate:
            lines.append(f"- {what}: no {space} {what} throughput in the table")
            continue
        seconds = gflop / rate[(space, what)]
        lines.append(
            f"- {what} ({detail}): {_flop(gflop)} at {rate[(space, what)]:.1f} GFLOP/s "
            f"= {_duration(seconds)}"
        )
    if space in PAPER_GPU_DAYS:
        lines.append(f"- paper: {PAPER_GPU_DAYS[space]}")
    return "\n".join(lines)
