"""Slice-axis reach of the all-2D and all-3D V-NAS networks (planted config width), and the
share of planted decoy voxels beyond the 2D network's 95% window: the facts the planted
task's design rests on (README, "The planted task").

    .venv/bin/python benchmarks/bench_reach.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from _common import write_results

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests" / "trainables"))
from test_planted import decoy_fraction_beyond, slice_reach  # noqa: E402


def main() -> None:
    rows = []
    for arch in ("2D/2D", "P3D/P3D", "3D/3D"):
        support, window = slice_reach(arch)
        rows.append({"measure": f"{arch}: slices with non-zero input gradient", "value": support})
        rows.append({"measure": f"{arch}: slices holding 95% of the gradient", "value": window})
    w2 = rows[1]["value"]
    rows.append(
        {
            "measure": "planted decoy voxels with no gap within the 2D 95% window",
            "value": decoy_fraction_beyond(w2),
        }
    )
    note = "centre output voxel of an untrained network, width 0.125, no PSP, 32^3 input"
    print(write_results("reach", rows, note))


if __name__ == "__main__":
    main()
