"""The fold engine: what every training stage (search, retrain, final) shares.

- :class:`FoldContext`: one fold's data handle, device, channels, seeds and loss;
- :func:`train_step`: one optimiser step (forward, loss, backward, clip, step);
- :func:`run_epochs`: the epoch loop with explicit resume, a checkpoint after every epoch,
  tracking, reporting and progress lines. Stages supply only what one epoch does.

No ray, no mlflow here: the :class:`Reporter` and :class:`Tracker` protocols are implemented
by the platform (Ray Tune, MLflow) and by the in-memory classes below (tests, CLI).
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from voxnas.config import Config, OptimConfig
from voxnas.data.patches import PatchSampler
from voxnas.data.prepare import FoldData, prepare_data
from voxnas.device import autocast, pick_device
from voxnas.trainables.checkpoint import Checkpoint
from voxnas.trainables.losses import make_loss, make_target
from voxnas.trainables.models import build_model, out_channels_for

__all__ = [
    "Epoch",
    "FoldContext",
    "MemoryReporter",
    "MemoryTracker",
    "NonFiniteLossError",
    "Reporter",
    "Tracker",
    "check_finite",
    "make_weight_optimizer",
    "open_fold",
    "patch_dice",
    "run_epochs",
    "seed_everything",
    "stage_seed",
    "train_step",
]

# Seeds are ``config seed * 1000 + stage offset + fold`` (fold None: + FINAL_FOLD), and each
# patch stream of a stage adds its own offset, so no two streams of a run coincide.
STAGE_SEED_OFFSETS = {"search": 0, "retrain": 500, "final": 900}
FINAL_FOLD = 99
STREAM_SEED_OFFSETS = {"train": 0, "val": 7919, "calibration": 1}


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
        self.texts[name] = json.dumps(data)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.tags.update(tags)


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite: the trial ends here instead of deriving a genotype."""


def check_finite(value: float, what: str) -> float:
    """``value`` if finite, else :class:`NonFiniteLossError` naming ``what`` (fold, epoch)."""
    if not np.isfinite(value):
        raise NonFiniteLossError(
            f"{what}: loss is {value}; training diverged (lower the learning rate, set "
            "grad_clip, or check the data)"
        )
    return value


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def stage_seed(cfg: Config, stage: str, fold: int | None) -> int:
    return cfg.seed * 1000 + STAGE_SEED_OFFSETS[stage] + (FINAL_FOLD if fold is None else fold)


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


def train_step(
    model, opt, params, loss_fn, batch, device, clip: float | None = None, amp: bool = True
) -> float:
    """One optimiser step of ``params`` on ``batch``; returns the loss. ``amp=False``: fp32
    even where training would autocast (the memory probe measures both)."""
    x, y = batch
    opt.zero_grad(set_to_none=True)
    with autocast(device) if amp else contextlib.nullcontext():
        loss = loss_fn(model(x), y)
    loss.backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()
    return float(loss.detach())


def patch_dice(logits: torch.Tensor, target: torch.Tensor, kind: str) -> float:
    """Mean foreground DSC of a batch (classes by argmax, BraTS regions by sigmoid > 0.5)."""
    if kind == "brats_regions":
        pred, gt = torch.sigmoid(logits) > 0.5, target > 0.5
    else:
        k = logits.shape[1]
        pred = torch.nn.functional.one_hot(logits.argmax(1), k).movedim(-1, 1)[:, 1:] > 0
        gt = torch.nn.functional.one_hot(target, k).movedim(-1, 1)[:, 1:] > 0
    dims = (0, *range(2, pred.ndim))
    inter, denom = (pred & gt).sum(dims).float(), (pred.sum(dims) + gt.sum(dims)).float()
    dice = torch.where(denom > 0, 2 * inter / denom.clamp_min(1), torch.ones_like(denom))
    return float(dice.mean())


@dataclass
class FoldContext:
    """One stage on one fold: the data handle, the device, channels, seeds and the loss."""

    cfg: Config
    data: FoldData
    stage: str
    device: torch.device
    seed: int

    @property
    def fold(self) -> int | None:
        return self.data.fold

    @property
    def label_values(self) -> list[int]:
        return self.data.label_values

    @property
    def in_channels(self) -> int:
        return len(self.data.modalities)

    @property
    def out_channels(self) -> int:
        return out_channels_for(self.cfg, len(self.label_values))

    @property
    def name(self) -> str:
        return "all cases" if self.fold is None else f"fold {self.fold}"

    def model(self, spec) -> torch.nn.Module:
        return build_model(self.cfg, spec, self.in_channels, self.out_channels).to(self.device)

    def loss(self):
        return make_loss(self.cfg.loss.name, self.cfg.loss.dice_eps)

    def sampler(self, ids, size, stream: str = "train") -> PatchSampler:
        p = self.cfg.patch
        return PatchSampler(
            self.data.load(ids),
            tuple(size),
            self.seed + STREAM_SEED_OFFSETS[stream],
            p.foreground_ratio,
            p.flip,
            p.rotate90,
            p.rotate_degrees,
            p.elastic_prob,
        )

    def batch(self, sampler: PatchSampler) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch of ``sampler`` on the device, labels as the loss's target."""
        x, y = sampler.batch(self.cfg.patch.batch_size)
        return self.to_device((x, y))

    def evaluate(self, model, batches, loss_fn) -> tuple[float, float]:
        """Mean loss and patch DSC of ``model`` on host ``batches`` (no gradients); the
        caller sets the model's mode (which BatchNorm statistics it uses)."""
        with torch.no_grad(), autocast(self.device):
            outs = [(model(x).float(), y) for x, y in map(self.to_device, batches)]
        loss = float(np.mean([float(loss_fn(o, y)) for o, y in outs]))
        return loss, float(np.mean([patch_dice(o, y, self.cfg.data.target) for o, y in outs]))

    def to_device(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        target = torch.from_numpy(y.astype(np.int64)).to(self.device)
        return (
            torch.from_numpy(x).to(self.device),
            make_target(target, self.cfg.data.target, self.label_values),
        )


def open_fold(
    cfg: Config,
    stage: str,
    fold: int | None,
    data: FoldData | None = None,
    log: Callable[[str], None] = print,
) -> FoldContext:
    """The context of ``stage`` on ``fold``; without a handle the data is prepared here
    (single-process use: CLI stages, tests). Seeds every RNG."""
    if data is None:
        data = prepare_data(cfg, log).fold_data(fold)
    seed = stage_seed(cfg, stage, data.fold)
    seed_everything(seed)
    return FoldContext(cfg, data, stage, pick_device(cfg.device), seed)


@dataclass
class Epoch:
    """What one epoch produced: its metrics (history, reporter), extra scalars for the
    tracker only, and the progress line."""

    metrics: dict[str, Any]
    tracked: dict[str, float] = field(default_factory=dict)
    line: str = ""


@dataclass
class LoopResult:
    history: list[dict[str, Any]]
    start: int  # the first epoch this call ran
    next_epoch: int  # the first epoch not run
    stopped: bool = False  # the stage asked to stop (NC count)
    interrupted: bool = False  # ``stop_after`` ended this call early


def run_epochs(
    checkpoint: Checkpoint,
    epochs: int,
    run_epoch: Callable[[int], Epoch | None],
    *,
    what: str,
    resume: bool,
    reporter: Reporter | None = None,
    tracker: Tracker | None = None,
    log: Callable[[str], None] = print,
    stop_after: int | None = None,
    log_every: int = 1,
) -> LoopResult:
    """Epochs ``0..epochs-1`` of ``run_epoch`` (None: stop before this epoch), continuing
    after the checkpoint's last epoch when ``resume`` (and saying so in the log and as the
    tracker tag ``voxnas.resumed``); ``stop_after`` ends this call after that many epochs.
    The progress line is logged for the first, every ``log_every``-th and the last epoch."""
    history: list[dict[str, Any]] = []
    start = 0
    restored = checkpoint.restore() if resume else None
    if restored is not None:
        last, history = restored
        start = last + 1
        log(f"{what}: resumed after epoch {last}")
        if tracker is not None:
            tracker.set_tags({"voxnas.resumed": f"after epoch {last}"})
    epoch = start
    while epoch < epochs:
        out = run_epoch(epoch)
        if out is None:
            return LoopResult(history, start, epoch, stopped=True)
        history.append(out.metrics)
        checkpoint.save(epoch, history)
        if tracker is not None:
            scalars = {k: v for k, v in out.metrics.items() if isinstance(v, float)}
            tracker.log_metrics({**scalars, **out.tracked}, step=epoch)
        if reporter is not None:
            reporter.report({**out.metrics, "final": False}, checkpoint.folder)
        if epoch == start or (epoch + 1) % log_every == 0 or epoch + 1 == epochs:
            log(f"{what} epoch {epoch + 1}/{epochs}: {out.line}")
        epoch += 1
        if stop_after is not None and epoch - start >= stop_after and epoch < epochs:
            return LoopResult(history, start, epoch, interrupted=True)
    return LoopResult(history, start, epoch)
