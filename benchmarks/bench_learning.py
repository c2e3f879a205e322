"""Learning figure: retrain the manual P3D/P3D V-NAS network on the synthetic MSD phantom
with the learning test's budget and report held-out organ DSC per case (whole volumes).

    .venv/bin/python benchmarks/bench_learning.py [--fold 0]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import write_results

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from test_learning import LEARNING_SETTINGS  # noqa: E402

from voxnas.platform.config import load_config  # noqa: E402
from voxnas.trainables.retrain import run_retrain_fold  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--fold", type=int, default=0)
    args = ap.parse_args()
    root = Path(__file__).parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(root / "configs" / "demo.yaml", [f"workdir={tmp}", *LEARNING_SETTINGS])
        t0 = time.perf_counter()
        res = run_retrain_fold(cfg, args.fold, "P3D/P3D", log=lambda s: None)
        wall = time.perf_counter() - t0
    dice = [r["dice/organ"] for r in res.rows]
    rows = [
        {"measure": f"held-out organ DSC, case {r['case']}", "value": r["dice/organ"], "unit": ""}
        for r in res.rows
    ]
    rows += [
        {"measure": "held-out organ DSC, mean", "value": float(np.mean(dice)), "unit": ""},
        {"measure": "wall time (train 1200 iterations + evaluate)", "value": wall, "unit": "s"},
    ]
    print(
        write_results(
            "learning", rows, f"P3D/P3D retrain, fold {args.fold}, {' '.join(LEARNING_SETTINGS)}"
        )
    )


if __name__ == "__main__":
    main()
