"""The protocol on a real local Ray (num_cpus=2): folds x hyperparameter sets, aggregation,
retraining, results; a 2-node cluster; a killed worker; an interrupted and resumed run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from tiny import TINY_VNAS

from voxnas.config import load_config

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ray = pytest.importorskip("ray")
ROOT = Path(__file__).resolve().parents[2]


TINY = [
    *TINY_VNAS,
    "patch.batch_size=2",
    "search.epochs=3",
    "search.iterations_per_epoch=2",
    "search.warmup_epochs=1",
    "search.arch_optim.lr=0.05",
    "retrain.epochs=1",
    "retrain.iterations_per_epoch=2",
    "ray.cpus_per_trial=1",
    "ray.max_failures=2",
]


def tiny(workdir: Path, *extra: str):
    sets = [*TINY, f"workdir={workdir}"]
    return load_config(ROOT / "configs" / "demo.yaml", [*sets, *extra])


@pytest.fixture
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


def _trial_rows(stage_dir: Path) -> dict[str, list[dict]]:
    out = {}
    for f in stage_dir.glob("*/result.json"):
        out[f.parent.name] = [json.loads(line) for line in f.read_text().splitlines() if line]
    return out


def test_folds_times_hyperparameter_sets(local_ray, tmp_path):
    from voxnas.platform.orchestration import run_protocol

    cfg = tiny(
        tmp_path,
        "ray.num_samples=2",
        'ray.hp_space={"search.weight_optim.lr": {"type": "loguniform", "low": 0.01, "high": 0.1}}',
    )
    stage = cfg.run_dir.resolve() / "tune" / "search"
    done, running_together = threading.Event(), []

    def watch():  # observed state, not timestamps: two trials started and not yet final
        while not done.is_set():
            rows = _trial_rows(stage)
            if sum(1 for r in rows.values() if r and not r[-1].get("final")) >= 2:
                running_together.append(True)
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        out = run_protocol(cfg)
    finally:
        done.set()
        watcher.join()
    trials = _trial_rows(stage)
    assert len(trials) == 4  # 2 folds x 2 hyperparameter sets
    by_set: dict[float, set[int]] = {}
    for rows in trials.values():
        lr = rows[0]["config"]["hp__search__weight_optim__lr"]
        by_set.setdefault(lr, set()).add(rows[0]["config"]["__trial_index__"])
    assert len(by_set) == 2 and all(folds == {0, 1} for folds in by_set.values())
    assert running_together, "never saw two search trials running at once"
    assert out.genotype.space == "vnas"
    assert cfg.layout.aggregate.is_file()
    retrain = _trial_rows(cfg.run_dir.resolve() / "tune" / "retrain")
    assert len(retrain) == 3  # 2 folds + the final model on every training case
    assert out.final_model == cfg.layout.final("searched").resolve() / "model.pt"
    for fold in (0, 1):  # the Ray path keeps every epoch's history
        result = json.loads(cfg.layout.search_result(fold).read_text())
        assert [h["epoch"] for h in result["history"]] == [0, 1, 2]
    summary = (cfg.run_dir / "results" / "summary.md").read_text()
    assert "| searched |" in summary and "dice/organ" in summary
    hp_sets = json.loads((cfg.run_dir / "search" / "hp_sets.json").read_text())
    assert len(hp_sets) == 2 and sum(s["best"] for s in hp_sets) == 1
    from mlflow_checks import check_store

    from voxnas.platform.tracking import tracking_uri

    runs = check_store(
        tracking_uri(cfg),
        "voxnas-demo",
        n_search=4,
        n_retrain=2,
        epochs=3,
        model_name="voxnas-demo",
    )
    assert len({r.info.run_name for r in runs["search"]}) == 4  # f0/f1 x two set tags
    assert out.model_uri == "models:/voxnas-demo/1"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_against_a_tracking_server(local_ray, tmp_path):
    import urllib.request

    from mlflow_checks import check_store

    from voxnas.platform.orchestration import run_protocol

    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--default-artifact-root",
            (tmp_path / "server-artifacts").as_uri(),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                if urllib.request.urlopen(f"{uri}/health", timeout=2).status == 200:
                    break
            except OSError:
                pass
            assert time.time() < deadline and server.poll() is None, "server did not start"
            time.sleep(1)
        cfg = tiny(tmp_path / "w", f"tracking.tracking_uri={uri}", "search.epochs=2")
        run_protocol(cfg)
        check_store(uri, "voxnas-demo", n_search=2, n_retrain=2, epochs=2, model_name="voxnas-demo")
        assert not (tmp_path / "w" / "mlflow.db").exists()  # nothing went to the local store
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # only the server we started (its own group)
        server.wait(timeout=30)


def test_two_node_cluster(tmp_path):
    from ray.cluster_utils import Cluster

    from voxnas.platform.orchestration import run_search_stage

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address)
        cfg = tiny(tmp_path, "tracking.enabled=false")
        run_search_stage(cfg)
        trials = _trial_rows(cfg.run_dir.resolve() / "tune" / "search")
        nodes = {row["node_id"] for rows in trials.values() for row in rows if "node_id" in row}
        assert len(nodes) == 2  # one fold trial on each node
        assert all(
            (cfg.run_dir / "search" / f"fold{k}" / "result.json").is_file() for k in range(2)
        )
    finally:
        ray.shutdown()
        cluster.shutdown()


def _killer(stage_dir: Path, done: threading.Event, killed: list[int]) -> None:
    """kill -9 the worker of fold 0 once it has checkpointed its first epoch."""
    while not done.is_set() and not killed:
        for d in stage_dir.glob("fold0_*"):
            pid_file, rows = d / "worker.pid", d / "result.json"
            if pid_file.is_file() and rows.is_file() and rows.read_text().count("\n") >= 1:
                pid = int(pid_file.read_text())
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.2)


def test_killed_worker_resumes_from_checkpoint(local_ray, tmp_path):
    from voxnas.platform.orchestration import run_search_stage

    extra = ("tracking.enabled=false", "search.epochs=4")
    cfg_a = tiny(tmp_path / "a", *extra)
    run_search_stage(cfg_a)
    cfg_b = tiny(tmp_path / "b", *extra)
    done, killed = threading.Event(), []
    t = threading.Thread(
        target=_killer, args=(cfg_b.run_dir.resolve() / "tune" / "search", done, killed)
    )
    t.start()
    try:
        run_search_stage(cfg_b)
    finally:
        done.set()
        t.join()
    assert killed, "the worker was never killed"
    a = json.loads((cfg_a.run_dir / "search" / "fold0" / "result.json").read_text())
    b = json.loads((cfg_b.run_dir / "search" / "fold0" / "result.json").read_text())
    assert a["genotype"] == b["genotype"] and b["epochs_run"] == 4
    for key in a["alphas"]:
        for ra, rb in zip(a["alphas"][key], b["alphas"][key]):
            assert ra == pytest.approx(rb, rel=1e-4, abs=1e-5)


def test_interrupted_run_resumes_without_rerunning_finished_trials(tmp_path):
    sets = [
        "--set",
        "ray.max_concurrent_trials=1",
        "--set",
        "ray.local_cpus=2",
        "--set",
        "search.epochs=6",
        "--set",
        "retrain.final=false",  # the final stage is covered above; this test is about resume
    ]
    cfg = tiny(tmp_path, "ray.max_concurrent_trials=1", "search.epochs=6", "retrain.final=false")
    args = [sys.executable, "-m", "voxnas.cli", "run", str(ROOT / "configs" / "demo.yaml")]
    for item in [*TINY, f"workdir={tmp_path}"]:  # the same settings as cfg, via the CLI
        args += ["--set", item]
    args += sets
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    stage = cfg.run_dir.resolve() / "tune" / "search"
    # a file, not a pipe nobody reads (a full pipe would block the driver); closed below
    log = open(tmp_path / "run.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    first = None
    while time.time() < deadline and proc.poll() is None:
        rows = _trial_rows(stage)
        finished = [n for n, r in rows.items() if r and r[-1].get("final")]
        running = [n for n, r in rows.items() if r and not r[-1].get("final")]
        if finished and running:
            first = finished[0]
            break
        time.sleep(0.3)
    assert first is not None, (
        "never saw one finished and one running trial: "
        + (tmp_path / "run.log").read_text()[-3000:]
    )
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    log.close()
    out = (tmp_path / "run.log").read_text()
    assert proc.returncode != 0, out[-2000:]
    assert not (cfg.run_dir / "results" / "summary.md").exists()
    rows_before = len(_trial_rows(stage)[first])
    resumed = subprocess.run(
        args + ["--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    after = _trial_rows(stage)
    assert len(after) == 2 and len(after[first]) == rows_before  # not rerun
    assert all(r[-1].get("final") for r in after.values())
    assert (cfg.run_dir / "results" / "summary.md").is_file()
    # the interrupted trial continued its own MLflow run: 2 search runs, no step twice
    from mlflow_checks import check_store

    from voxnas.platform.tracking import tracking_uri

    check_store(
        tracking_uri(cfg),
        "voxnas-demo",
        n_search=2,
        n_retrain=2,
        epochs=6,
        model_name="voxnas-demo",
        n_final=0,
    )


def test_single_search_nas3dunet_protocol(local_ray, tmp_path):
    """Seed 002's protocol: one search over every training case (``search.folds: one``),
    its Table 2 genotype retrained per fold and on every case; the final model registered."""
    from tiny import NAS3D_CONFIG, TINY_NAS3D

    from voxnas.platform.orchestration import run_protocol

    sets = [
        *TINY_NAS3D,
        f"workdir={tmp_path}",
        "search.folds=one",
        "search.epochs=3",
        "search.iterations_per_epoch=2",
        "search.warmup_epochs=1",
        "search.stop_count=2",
        "retrain.epochs=1",
        "retrain.iterations_per_epoch=1",
        "ray.cpus_per_trial=1",
    ]
    cfg = load_config(NAS3D_CONFIG, sets)
    out = run_protocol(cfg)
    search = cfg.layout.search
    assert sorted(p.name for p in search.iterdir() if p.is_dir()) == ["all"]
    result = json.loads(cfg.layout.search_result(None).read_text())
    assert result["fold"] is None and result["history"]
    aggregate = json.loads(cfg.layout.aggregate.read_text())
    assert aggregate["genotype"] == result["genotype"]  # the single search's genotype
    assert out.final_model is not None and out.final_model.is_file()
    assert out.model_uri == "models:/nas3dunet-brats/1"
    assert len(_trial_rows(cfg.run_dir.resolve() / "tune" / "search")) == 1
