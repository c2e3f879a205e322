"""Shared fixtures: tiny synthetic datasets written as real NIfTI files."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from voxnas.data.synthetic import write_synthetic  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """Tests without a tier marker are unit tests; gpu tests skip without CUDA."""
    import torch

    tiers = {"integration", "ray", "gpu", "slow"}
    for item in items:
        if not tiers & {m.name for m in item.iter_markers()}:
            item.add_marker(pytest.mark.unit)
        if item.get_closest_marker("gpu") and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="needs CUDA"))


@pytest.fixture(scope="session")
def msd_dir(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("msd"), "msd", cases=6, shape=(32, 32, 16))


@pytest.fixture(scope="session")
def brats_dir(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("brats"), "brats", cases=4, shape=(32, 32, 24))


@pytest.fixture(scope="session")
def paired_dir(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("paired"), "paired", cases=4, shape=(32, 32, 16))


@pytest.fixture(autouse=True)
def _no_leaked_tracking_uri():
    """A test that leaves MLFLOW_TRACKING_URI behind sends every later test's tracking to its
    store (mlflow.set_tracking_uri writes the variable): fail the test that leaked it."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    after = os.environ.get("MLFLOW_TRACKING_URI")
    assert after == before, f"this test left MLFLOW_TRACKING_URI={after!r} (was {before!r})"
