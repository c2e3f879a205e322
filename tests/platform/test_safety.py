"""What is never loaded, never forwarded, never raced: the logged MLflow model needs no
pickle and a planted one is refused; credentials reach workers only when needed; two
generators of the same synthetic dataset produce one complete copy; `voxnas ui` is the
server process itself."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny import TINY_VNAS

from voxnas.config import load_config

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
TINY = [
    *TINY_VNAS,
    "data.synthetic.cases=4",
    "retrain.epochs=1",
    "retrain.iterations_per_epoch=1",
    "retrain.bn_recalibration=1",
]


def _logged_model(tmp_path):
    from voxnas.platform.tracking import TrialTracker
    from voxnas.trainables.retrain import run_retrain_fold

    cfg = load_config(ROOT / "configs" / "demo.yaml", [*TINY, f"workdir={tmp_path}"])
    trk = TrialTracker(cfg, None, "retrain", 0, "P3D/P3D", "trial-x", [])
    res = run_retrain_fold(cfg, 0, "P3D/P3D", tracker=trk, log=lambda s: None)
    trk.finish_retrain(res)
    trk.close()
    return cfg, trk.client.get_run(trk.run_id).data.tags["voxnas.model_uri"]


def test_the_logged_mlflow_model_holds_no_pickle(tmp_path):
    import mlflow

    from voxnas.platform.predict import load_model
    from voxnas.platform.tracking import tracking_uri

    cfg, uri = _logged_model(tmp_path)
    files = [p for p in (tmp_path / "mlartifacts").rglob("*") if p.is_file()]
    model_files = [p for p in files if "models" in p.parts]
    assert any(p.name == "mlflow_model.py" for p in model_files)  # models-from-code
    assert not [p for p in model_files if p.suffix in (".pkl", ".pickle", ".cloudpickle")]
    model, meta = load_model(uri, "cpu", tracking_uri(cfg))
    assert meta.arch == "P3D/P3D"
    # MLflow's own loader runs our code file and loads the bundle weights-only
    import numpy as np

    from voxnas.platform.tracking import using_tracking_uri

    with using_tracking_uri(tracking_uri(cfg)):
        pyfunc = mlflow.pyfunc.load_model(uri)

    out = pyfunc.predict(np.zeros((1, 32, 32, 16), np.float32))
    assert out.shape == (32, 32, 16)


def test_a_pickle_planted_in_an_mlflow_model_is_refused_without_running(tmp_path):
    import pickle

    from voxnas.platform.predict import load_model
    from voxnas.platform.tracking import tracking_uri

    cfg, uri = _logged_model(tmp_path)
    marker = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    bundle = next((tmp_path / "mlartifacts").rglob("artifacts/model.pt"))
    bundle.write_bytes(pickle.dumps({"meta": Evil(), "state_dict": {}}))
    with pytest.raises(ValueError, match="not a voxnas model bundle"):
        load_model(uri, "cpu", tracking_uri(cfg))
    assert not marker.exists()


def test_mlflow_credentials_reach_workers_only_when_needed(monkeypatch, tmp_path):
    pytest.importorskip("ray")
    from voxnas.platform.tune import _mlflow_env

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "s3cret")
    local = load_config(None, [f"workdir={tmp_path}"])
    server = load_config(None, [f"workdir={tmp_path}", "tracking.tracking_uri=http://mlf:5000"])
    assert _mlflow_env(local, "10.0.0.1:6379") == {}  # sqlite: workers need no token
    assert _mlflow_env(server, None) == {}  # local Ray inherits the environment
    assert _mlflow_env(server, "10.0.0.1:6379")["MLFLOW_TRACKING_TOKEN"] == "s3cret"
    off = load_config(
        None,
        [f"workdir={tmp_path}", "tracking.tracking_uri=http://mlf:5000", "tracking.enabled=false"],
    )
    assert _mlflow_env(off, "10.0.0.1:6379") == {}


def _generate(workdir: str) -> str:
    from voxnas.data.prepare import dataset_root

    cfg = load_config(ROOT / "configs" / "demo.yaml", [*TINY, f"workdir={workdir}"])
    return str(dataset_root(cfg))


def test_two_generators_of_one_synthetic_dataset_do_not_race(tmp_path):
    with mp.get_context("spawn").Pool(3) as pool:
        roots = pool.map(_generate, [str(tmp_path)] * 3)
    assert len(set(roots)) == 1
    root = Path(roots[0])
    files = sorted(p.name for p in root.rglob("*.nii.gz"))
    assert len(files) == 2 * 4 + 2 * 4  # images + labels, 4 held-out images + labels
    leftovers = [p for p in tmp_path.rglob("*") if ".tmp" in p.name]
    assert not leftovers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_voxnas_ui_is_the_server_process(tmp_path):
    port = _free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "voxnas.cli",
            "ui",
            "--port",
            str(port),
            "--set",
            f"workdir={tmp_path}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.time() + 60
        cmdline = ""
        while time.time() < deadline and proc.poll() is None:
            cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode(errors="replace")
            if "mlflow" in cmdline:
                break
            time.sleep(0.2)
        assert "mlflow" in cmdline, cmdline  # exec'd: the pid we signal is the server
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
