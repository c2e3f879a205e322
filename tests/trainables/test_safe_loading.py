"""Model bundles and checkpoints load with ``weights_only=True``: a pickle whose loading
would run code is refused and its code never runs."""

import os
import pickle

import pytest
import torch

from voxnas.trainables.bundle import load_bundle
from voxnas.trainables.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state


class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _plant(path, marker):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump({"meta": _Evil(marker), "state_dict": {}}, f)


def test_malicious_bundle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    _plant(tmp_path / "evil.pt", marker)
    with pytest.raises(ValueError, match="evil.pt: not a voxnas model bundle"):
        load_bundle(tmp_path / "evil.pt")
    assert not marker.exists()


def test_malicious_checkpoint_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    _plant(tmp_path / "checkpoint" / "state.pt", marker)
    with pytest.raises(ValueError, match="state.pt: not a voxnas checkpoint"):
        load_checkpoint(tmp_path / "checkpoint")
    assert not marker.exists()


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    import random

    import numpy as np

    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    save_checkpoint(tmp_path / "ck", {"rng": rng_state(), "epoch": 4})
    want = (random.random(), np.random.rand(), torch.rand(1).item())
    state = load_checkpoint(tmp_path / "ck")
    set_rng_state(state["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == want
