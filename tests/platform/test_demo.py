"""`voxnas demo` end to end (the smaller CI setting): whole protocol, registry, prediction,
pictures."""

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_demo_quick(tmp_path):
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "voxnas.cli",
            "demo",
            "--quick",
            "--set",
            f"workdir={tmp_path}",
            "--set",
            "data.synthetic.cases=8",
            "--set",
            "ray.local_cpus=2",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "registered model:    models:/voxnas-demo/1" in out
    run = tmp_path / "demo"
    assert "| searched |" in (run / "results" / "summary.md").read_text()
    pred = next((run / "predictions").glob("*.nii.gz"))
    src = next((tmp_path / "data").glob("synthetic-msd-*/imagesTs/*.nii.gz"))
    assert nib.load(str(pred)).shape == nib.load(str(src)).shape
    pngs = {p.name for p in (tmp_path / "mlartifacts").rglob("*.png")}
    assert {"alpha_heatmap.png", "alpha_trajectory.png", "dice_boxplot.png"} <= pngs
    assert any(p.startswith("synth_") for p in pngs)  # overlays
    assert Path(tmp_path / "mlflow.db").is_file()
