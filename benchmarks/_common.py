"""Shared benchmark helpers: timing with medians, results as JSON plus a markdown table."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def step_times(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def median_time(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    return statistics.median(step_times(fn, repeats, warmup))


def spawn_at_once(target, args: list[tuple]) -> list:
    """``target(*a, barrier, queue)`` in one spawned process per ``a``, released together by
    the barrier; what each puts on the queue."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier, q = ctx.Barrier(len(args)), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*a, barrier, q)) for a in args]
    for p in procs:
        p.start()
    out = [q.get() for _ in procs]
    for p in procs:
        p.join()
    return out


def cpu_model() -> str:
    """The CPU's model name and vector extensions (numerics and speed depend on them)."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    ext = [f for f in ("avx2", "avx512f", "amx_tile") if f in flags]
    return f"{name} ({', '.join(ext) or 'no AVX2'})"


def write_results(name: str, rows: list[dict], note: str = "", extra: dict | None = None) -> str:
    """Write ``results/NAME.json`` and ``results/NAME.md``; return the markdown table.
    The JSON names the CPU it ran on (``meta.cpu``)."""
    import os

    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
        **(extra or {}),
    }
    (RESULTS / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r[c]) for c in cols) + " |")
    table = "\n".join(lines)
    head = (note + "\n\n" if note else "") + f"CPU: {meta['cpu']}, {meta['cores']} cores\n\n"
    (RESULTS / f"{name}.md").write_text(head + table + "\n")
    return table


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)
