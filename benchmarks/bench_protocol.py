"""Quality figures of whole protocols, run as a user runs them, on this machine's CPU.

    .venv/bin/python benchmarks/bench_protocol.py demo       # voxnas demo
    .venv/bin/python benchmarks/bench_protocol.py demo_nas3dunet   # voxnas demo --space nas3dunet
    .venv/bin/python benchmarks/bench_protocol.py planted    # voxnas run configs/planted_vnas.yaml

Each runs the command in a fresh temporary workdir, then reads what it wrote: the results
table (`<run>/results/summary.json`), the search summary (alpha entropy per fold, p(2D) per
cell), and the MLflow store (largest loss per metric, NaN count). Writes
`results/demo.{json,md}` or `results/planted.{json,md}`, naming the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import write_results

ROOT = Path(__file__).resolve().parent.parent
VOXNAS = [sys.executable, "-m", "voxnas.cli"]


def store_health(db: Path) -> dict[str, float]:
    """Largest value per loss metric and the number of NaN values in an MLflow sqlite store."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    out = {
        f"max {key}": float(top)
        for key, top in con.execute(
            "select key, max(value) from metrics where key like '%loss%' group by key"
        )
    }
    out["NaN metric values"] = con.execute(
        "select count(*) from metrics where is_nan = 1"
    ).fetchone()[0]
    return out


def run(kind: str, workdir: Path) -> tuple[Path, float, str]:
    if kind == "demo":
        cmd, name = [*VOXNAS, "demo"], "demo"
    elif kind == "demo_nas3dunet":
        cmd, name = [*VOXNAS, "demo", "--space", "nas3dunet"], "demo_nas3dunet"
    else:
        cmd, name = [*VOXNAS, "run", str(ROOT / "configs" / "planted_vnas.yaml")], "planted_vnas"
    cmd += ["--set", f"workdir={workdir}"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    (workdir / "console.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
    return workdir / name, wall, " ".join(cmd[2:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("kind", choices=["demo", "demo_nas3dunet", "planted"])
    ap.add_argument("--keep", metavar="DIR", help="run in DIR and keep it (default: a temp dir)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.keep or tmp).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        run_dir, wall, cmd = run(args.kind, workdir)
        summary = json.loads((run_dir / "results" / "summary.json").read_text())
        health = store_health(workdir / "mlflow.db")
        aggregate = json.loads((run_dir / "aggregate" / "genotype.json").read_text())
        held_path = run_dir / "results" / "held_out.json"
        held_out = json.loads(held_path.read_text())["summary"] if held_path.is_file() else {}
    search = summary.pop("search")
    search["aggregate"] = aggregate["genotype"]["code"]
    rows = []
    for arch, s in summary.items():
        for col, v in s["overall"].items():
            if col.startswith("dice/"):
                rows.append({"measure": f"{arch} {col} (mean over test cases)", "value": v["mean"]})
                rows.append({"measure": f"{arch} {col} (std)", "value": v["std"]})
    for model, s in held_out.items():  # the deployable models on held-out labelled scans
        for col, v in s.items():
            if col.startswith("dice/"):
                rows.append({"measure": f"held-out {model} {col} (mean)", "value": v["mean"]})
                rows.append({"measure": f"held-out {model} {col} (std)", "value": v["std"]})
    ent = search["alpha_entropy"]
    rows.append({"measure": "final alpha entropy, mean over folds", "value": sum(ent) / len(ent)})
    rows.append({"measure": "final alpha entropy, max over folds", "value": max(ent)})
    rows.append({"measure": "alpha entropy of uniform alphas", "value": search["uniform_entropy"]})
    rows.append(
        {
            "measure": "folds whose genotype differs from the uniform-alpha one",
            "value": sum(search["differs_from_uniform"]),
        }
    )
    if "share_cells_p2d_below_third" in search:
        rows.append(
            {
                "measure": "share of cells with p(2D) < 1/3 (mean over folds)",
                "value": search["share_cells_p2d_below_third"],
            }
        )
    rows += [{"measure": k, "value": v} for k, v in sorted(health.items())]
    rows.append({"measure": "wall time", "value": wall})
    note = f"`{cmd}` on a fresh workdir; search genotypes per fold: {search['genotypes']}"
    print(write_results(args.kind, rows, note, {"search": search, "command": cmd}))


if __name__ == "__main__":
    main()
