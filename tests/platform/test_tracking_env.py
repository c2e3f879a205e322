"""Tracking never leaves MLflow's global URI in the environment that later processes inherit."""

import os

import mlflow

from voxnas.platform.tracking import using_tracking_uri


def test_using_tracking_uri_restores_environment_and_global(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    before = mlflow.get_tracking_uri()
    with using_tracking_uri("http://127.0.0.1:1"):
        assert mlflow.get_tracking_uri() == "http://127.0.0.1:1"
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert mlflow.get_tracking_uri() == before
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'a.db'}")
    with using_tracking_uri("http://127.0.0.1:2"):
        pass
    assert os.environ["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path / 'a.db'}"
