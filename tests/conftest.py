"""Shared fixtures: tiny synthetic datasets written as real NIfTI files."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from voxnas.data.synthetic import write_synthetic  # noqa: E402

# The longest tests, started first so that the rest of the suite fills the other worker
# (`bash run.sh test` runs two pytest-xdist workers, README "Tests").
FIRST = (
    "tests/trainables/test_planted.py::test_the_search_moves_away_from_2d",
    "tests/platform/test_demo.py",  # the Ray group: all Ray tests, one after another
    "tests/platform/test_protocol_ray.py",
    "tests/trainables/test_learning.py",
    "tests/trainables/test_planted.py::test_2d_cells_fail_where_p3d_cells_succeed",
)


def pytest_configure(config):
    grouped = (
        config.getoption("numprocesses", None) and config.getoption("dist", "no") == "loadgroup"
    )
    if grouped and int(pytest.__version__.split(".")[0]) >= 9:  # pyproject.toml: pytest < 9
        raise pytest.UsageError(
            "pytest-xdist's --dist loadgroup does not group tests on pytest 9 (two Ray "
            "tests would run at once): install pytest<9 (bash run.sh setup) or pass -n 0"
        )


def _rank(item) -> int:
    return next((i for i, p in enumerate(FIRST) if item.nodeid.startswith(p)), len(FIRST))


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's hook reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    """Tests without a tier marker are unit tests; gpu tests skip without CUDA. Under
    pytest-xdist: Ray tests share one worker (one local Ray cluster at a time) and the longest tests
    go first."""
    import torch

    tiers = {"integration", "ray", "gpu", "slow"}
    for item in items:
        if not tiers & {m.name for m in item.iter_markers()}:
            item.add_marker(pytest.mark.unit)
        if item.get_closest_marker("gpu") and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="needs CUDA"))
        if item.get_closest_marker("ray"):
            item.add_marker(pytest.mark.xdist_group("ray"))
    items.sort(key=_rank)  # stable: the rest keep their order


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
