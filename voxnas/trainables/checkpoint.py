"""Checkpoints: named stateful objects saved together after every epoch, restored together.

Everything is stored as tensors and plain types and loaded with ``weights_only=True``: a
planted pickle in a (cluster-shared) checkpoint folder is refused, never run.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "load_checkpoint",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]


class CheckpointError(ValueError):
    """A checkpoint file exists but is not a voxnas checkpoint (or does not fit the model)."""


def rng_state() -> dict[str, Any]:
    """Every RNG's state as plain types and tensors."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(folder: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``folder/state.pt`` atomically (temp folder, then rename)."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(state, tmp / "state.pt")
    old = folder.with_name(folder.name + ".old")
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def load_checkpoint(folder: Path | None) -> dict[str, Any] | None:
    """The state in ``folder`` (or its ``.old`` twin left by an interrupted save), or None."""
    if folder is None:
        return None
    for f in (Path(folder), Path(folder).with_name(Path(folder).name + ".old")):
        if (f / "state.pt").is_file():
            try:
                return torch.load(f / "state.pt", map_location="cpu", weights_only=True)
            except Exception as err:
                why = (
                    "it holds Python objects that would run code when loaded: refused"
                    if "weights only" in str(err).lower()
                    else f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
                )
                raise CheckpointError(
                    f"{f / 'state.pt'}: not a voxnas checkpoint ({why})"
                ) from None
    return None


def _get(obj: Any) -> Any:
    if hasattr(obj, "state_dict"):
        return obj.state_dict()
    return obj.state()  # PatchSampler


def _set(obj: Any, state: Any) -> None:
    if hasattr(obj, "load_state_dict"):
        obj.load_state_dict(state)
    else:
        obj.set_state(state)


class Checkpoint:
    """The resume state of one training loop: ``objects`` (model, optimizers, schedulers,
    samplers, counters: anything with ``state_dict``/``load_state_dict`` or
    ``state``/``set_state``; None entries are skipped), the RNGs, the epoch history."""

    def __init__(self, folder: Path, **objects: Any):
        self.folder = Path(folder)
        self.objects = {k: v for k, v in objects.items() if v is not None}

    def save(self, epoch: int, history: list[dict[str, Any]]) -> Path:
        state = {k: _get(v) for k, v in self.objects.items()}
        return save_checkpoint(
            self.folder, {"objects": state, "rng": rng_state(), "history": history, "epoch": epoch}
        )

    def restore(self) -> tuple[int, list[dict[str, Any]]] | None:
        """Load the saved state into the objects; returns ``(last epoch, history)`` or None."""
        state = load_checkpoint(self.folder)
        if state is None:
            return None
        saved = state.get("objects", {})
        missing = sorted(set(self.objects) - set(saved))
        if missing:
            raise CheckpointError(f"{self.folder}: checkpoint lacks {missing}")
        try:
            for k, obj in self.objects.items():
                _set(obj, saved[k])
        except (RuntimeError, KeyError, ValueError) as err:
            raise CheckpointError(
                f"{self.folder}: checkpoint does not fit this run ({str(err).splitlines()[0]})"
            ) from None
        set_rng_state(state["rng"])
        return int(state["epoch"]), list(state["history"])
