"""Worker processes for the tests that train several seeds at once."""

from __future__ import annotations

import multiprocessing as mp
import os

# Ray starts its workers (the trials of the Ray tests) at this niceness. The suite's other
# pytest-xdist worker may run a Ray test meanwhile: at niceness 0 these pools would take
# ~97% of the cores from its trials (CFS weights 1024 vs 36) and the Ray test would wait for
# them to finish instead of sharing the cores.
RAY_NICENESS = int(os.environ.get("RAY_worker_niceness", "15"))  # noqa: SIM112 (Ray's name)


def _renice() -> None:
    os.nice(max(0, RAY_NICENESS - os.nice(0)))


def pool(jobs: int):
    """``jobs`` spawned worker processes at Ray's worker niceness."""
    return mp.get_context("spawn").Pool(jobs, initializer=_renice)
