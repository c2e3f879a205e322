"""Learning figure: the learning test's budget, for its three seeds. Retrains the manual
P3D/P3D V-NAS network on fold 0 of the demo's synthetic MSD phantoms and reports held-out
organ DSC (whole volumes) per seed and the median the test asserts on.

    .venv/bin/python benchmarks/bench_learning.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import write_results

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests" / "trainables"))
from test_learning import (  # noqa: E402
    LEARNING_SEEDS,
    LEARNING_SETTINGS,
    LEARNING_THRESHOLD,
    learning_run,
)


def main() -> None:
    rows, means = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in LEARNING_SEEDS:
            t0 = time.perf_counter()
            res = learning_run(Path(tmp) / f"s{seed}", seed)
            wall = time.perf_counter() - t0
            dice = [r["dice/organ"] for r in res.rows]
            means.append(float(np.mean(dice)))
            rows.append(
                {
                    "measure": f"seed {seed}: held-out organ DSC, mean of {len(dice)} cases",
                    "value": means[-1],
                    "unit": "",
                }
            )
            rows.append({"measure": f"seed {seed}: wall time", "value": wall, "unit": "s"})
    rows.append({"measure": "median over seeds", "value": float(np.median(means)), "unit": ""})
    rows.append({"measure": "test threshold", "value": LEARNING_THRESHOLD, "unit": ""})
    note = f"P3D/P3D retrain, fold 0, {' '.join(LEARNING_SETTINGS)}, seeds {LEARNING_SEEDS}"
    print(write_results("learning", rows, note))


if __name__ == "__main__":
    main()
