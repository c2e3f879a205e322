"""Plain helpers shared by search and retraining: protocols, optimizers, RNG, checkpoints."""

from __future__ import annotations

import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ..platform.config import Config, OptimConfig
from ..platform.data.cache import CachedCase
from ..platform.data.patches import PatchSampler
from ..platform.data.prepare import PreparedData

__all__ = [
    "MemoryReporter",
    "MemoryTracker",
    "Reporter",
    "Tracker",
    "batch_to_device",
    "load_cases",
    "load_checkpoint",
    "make_sampler",
    "make_weight_optimizer",
    "rng_state",
    "save_checkpoint",
    "seed_everything",
    "set_rng_state",
]


class Reporter(Protocol):
    """Receives one result per epoch; ``checkpoint`` is a folder holding the resume state."""

    def report(self, metrics: dict[str, Any], checkpoint: Path | None = None) -> None: ...


class Tracker(Protocol):
    """Experiment tracking (MLflow in production, in memory in tests)."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def log_text(self, text: str, name: str) -> None: ...

    def log_dict(self, data: Any, name: str) -> None: ...

    def set_tags(self, tags: dict[str, str]) -> None: ...


@dataclass
class MemoryReporter:
    results: list[dict[str, Any]] = field(default_factory=list)

    def report(self, metrics: dict[str, Any], checkpoint: Path | None = None) -> None:
        self.results.append(dict(metrics))


@dataclass
class MemoryTracker:
    metrics: dict[str, dict[int, float]] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for k, v in metrics.items():
            self.metrics.setdefault(k, {})[step] = float(v)

    def log_text(self, text: str, name: str) -> None:
        self.texts[name] = self.texts.get(name, "") + text if name.endswith(".jsonl") else text

    def log_dict(self, data: Any, name: str) -> None:
        import json

        self.texts[name] = json.dumps(data)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.tags.update(tags)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every RNG's state as plain types and tensors, so checkpoints load with
    ``weights_only=True`` (no unpickling of arbitrary objects)."""
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


def make_weight_optimizer(params, opt: OptimConfig, total_iters: int):
    """SGD + polynomial decay per iteration (seed 000) or Adam + ReduceLROnPlateau (seed 002
    public code). Returns ``(optimizer, per_iteration_scheduler, per_epoch_scheduler)``."""
    params = list(params)
    if opt.name == "sgd":
        optim = torch.optim.SGD(
            params, lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay
        )
    else:
        optim = torch.optim.Adam(params, lr=opt.lr, weight_decay=opt.weight_decay)
    it_sched = ep_sched = None
    if opt.schedule == "poly":
        it_sched = torch.optim.lr_scheduler.LambdaLR(
            optim, lambda it: max(0.0, 1 - it / max(total_iters, 1)) ** opt.poly_power
        )
    elif opt.schedule == "plateau":
        ep_sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optim, factor=opt.plateau_factor, patience=opt.plateau_patience
        )
    return optim, it_sched, ep_sched


def make_sampler(
    cfg: Config, cases: list[CachedCase], size: tuple[int, int, int], seed: int
) -> PatchSampler:
    p = cfg.patch
    return PatchSampler(
        cases, size, seed, p.foreground_ratio, p.flip, p.rotate90, p.rotate_degrees, p.elastic_prob
    )


def batch_to_device(
    batch: tuple[np.ndarray, np.ndarray], cfg: Config, label_values: list[int], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """A sampler batch as tensors on ``device``, labels turned into the loss's target."""
    from ..platform.losses import make_target

    x, y = batch
    return (
        torch.from_numpy(x).to(device),
        make_target(torch.from_numpy(y.astype(np.int64)).to(device), cfg.data.target, label_values),
    )


def load_cases(prep: PreparedData, ids: tuple[str, ...] | list[str]) -> list[CachedCase]:
    return [prep.cache.load(c) for c in ids]


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
            # weights_only: a planted pickle in a (shared) checkpoint folder is refused,
            # never run
            try:
                return torch.load(f / "state.pt", map_location="cpu", weights_only=True)
            except Exception as err:
                raise ValueError(f"{f / 'state.pt'}: not a voxnas checkpoint ({err})") from None
    return None
