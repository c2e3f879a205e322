"""``run_retrain_fold``: train a fixed architecture from scratch on a fold's train+val cases,
then evaluate it on the fold's test cases on whole volumes (seed 000 section 3.1)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..platform.bundle import ModelMeta, save_bundle, segment
from ..platform.config import Config
from ..platform.data.nifti import save_volume
from ..platform.data.prepare import PreparedData, prepare_data
from ..platform.data.preprocess import invert_geometry
from ..platform.device import autocast, pick_device
from ..platform.inference import masks_by_name
from ..platform.losses import make_loss
from ..platform.metrics import case_metrics, summarize, write_table
from ..platform.model_factory import build_model, model_kwargs, out_channels_for
from ..platform.results import retrain_dir
from ..search_spaces.layers import recalibrate_batchnorm
from ..search_spaces.registry import Architecture, resolve_architecture
from .common import (
    Reporter,
    Tracker,
    batch_to_device,
    load_cases,
    load_checkpoint,
    make_sampler,
    make_weight_optimizer,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)
from .search import check_finite

__all__ = ["RetrainResult", "evaluate_cases", "run_retrain_fold"]


@dataclass
class RetrainResult:
    fold: int
    arch: str
    rows: list[dict[str, Any]]
    summary: dict[str, dict[str, float]]
    model_path: Path
    out_dir: Path
    history: list[dict[str, Any]] = field(default_factory=list)


def evaluate_cases(
    model,
    meta: ModelMeta,
    cases,
    spacing_of,
    device,
    fold: int,
    arch: str,
    pred_dir: Path | None = None,
    percentile: float = 95.0,
    log: Callable[[str], None] = print,
    on_case: Callable[..., None] | None = None,
) -> list[dict[str, Any]]:
    """Whole-volume prediction and per-case metrics (on the preprocessed grid, in mm)."""
    rows = []
    for case in cases:
        pred = segment(model, meta, np.asarray(case.image), device)
        gt = np.asarray(meta.label_values, np.uint8)[np.asarray(case.label)]
        m = case_metrics(
            masks_by_name(pred, meta.target, meta.label_names),
            masks_by_name(gt, meta.target, meta.label_names),
            spacing_of(case),
            percentile,
        )
        rows.append({"case": case.case_id, "fold": fold, "arch": arch, **m})
        if on_case is not None:
            on_case(case, pred, gt)
        if pred_dir is not None:
            save_volume(
                pred_dir / f"{case.case_id}.nii.gz",
                invert_geometry(pred, case.geometry),
                np.asarray(case.geometry.source_affine),
            )
        dice = " ".join(f"{k.split('/')[1]} {v:.3f}" for k, v in m.items() if k.startswith("dice"))
        log(f"  fold {fold} {arch} {case.case_id}: DSC {dice}")
    return rows


def run_retrain_fold(
    cfg: Config,
    fold: int,
    arch: str | Architecture,
    reporter: Reporter | None = None,
    tracker: Tracker | None = None,
    prepared: PreparedData | None = None,
    out_dir: Path | None = None,
    resume: bool = True,
    log: Callable[[str], None] = print,
) -> RetrainResult:
    """Retrain ``arch`` (genotype object, name, code or JSON file; ``mix`` = frozen equal
    alphas) on fold ``fold``'s train+val and evaluate on its test cases."""
    prep = prepared or prepare_data(cfg, log)
    split = prep.fold(fold)
    arch = arch if isinstance(arch, Architecture) else resolve_architecture(arch)
    out_dir = Path(out_dir or retrain_dir(cfg, arch.name, fold))
    device = pick_device(cfg.device)
    seed = cfg.seed * 1000 + 500 + fold
    seed_everything(seed)
    label_values = prep.cache.label_values
    in_ch, out_ch = len(prep.dataset.modalities), out_channels_for(cfg, len(label_values))
    model = build_model(cfg, arch, in_ch, out_ch).to(device)
    r = cfg.retrain
    opt, it_sched, ep_sched = make_weight_optimizer(
        [p for p in model.parameters() if p.requires_grad],
        r.optim,
        r.epochs * r.iterations_per_epoch,
    )
    sampler = make_sampler(cfg, load_cases(prep, split.trainval), cfg.patch.train, seed)
    loss_fn = make_loss(cfg.loss.name, cfg.loss.dice_eps)
    history: list[dict[str, Any]] = []
    start = 0
    ckpt_dir = out_dir / "checkpoint"
    state = load_checkpoint(ckpt_dir) if resume else None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        for sched, key in ((it_sched, "it_sched"), (ep_sched, "ep_sched")):
            if sched is not None:
                sched.load_state_dict(state[key])
        set_rng_state(state["rng"])
        sampler.set_state(state["sampler"])
        history, start = state["history"], state["epoch"] + 1
        log(f"fold {fold} {arch.name}: resumed retraining after epoch {state['epoch']}")
        if tracker is not None:
            tracker.set_tags({"voxnas.resumed": f"after epoch {state['epoch']}"})
    for epoch in range(start, r.epochs):
        model.train()
        losses = []
        for _ in range(r.iterations_per_epoch):
            x, y = batch_to_device(sampler.batch(cfg.patch.batch_size), cfg, label_values, device)
            opt.zero_grad(set_to_none=True)
            with autocast(device):
                loss = loss_fn(model(x), y)
            loss.backward()
            if r.optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), r.optim.grad_clip)
            opt.step()
            if it_sched is not None:
                it_sched.step()
            losses.append(float(loss.detach()))
        train_loss = check_finite(
            float(np.mean(losses)), f"retrain {arch.name} fold {fold} epoch {epoch}"
        )
        if ep_sched is not None:
            ep_sched.step(train_loss)
        metrics = {
            "epoch": epoch,
            "fold": fold,
            "train_loss": train_loss,
            "lr_weights": opt.param_groups[0]["lr"],
        }
        history.append(metrics)
        save_checkpoint(
            ckpt_dir,
            {
                "model": model.state_dict(),
                "opt": opt.state_dict(),
                "it_sched": it_sched.state_dict() if it_sched else None,
                "ep_sched": ep_sched.state_dict() if ep_sched else None,
                "rng": rng_state(),
                "sampler": sampler.state(),
                "history": history,
                "epoch": epoch,
            },
        )
        if tracker is not None:
            tracker.log_metrics(
                {"train_loss": train_loss, "lr_weights": metrics["lr_weights"]}, step=epoch
            )
        if reporter is not None:
            reporter.report({**metrics, "final": False}, ckpt_dir)
        log(f"fold {fold} {arch.name} epoch {epoch + 1}/{r.epochs}: loss {train_loss:.4f}")
    if r.bn_recalibration:  # every time, also after a resume: checkpoints hold the EMA stats
        calib = make_sampler(cfg, load_cases(prep, split.trainval), cfg.patch.train, seed + 1)
        recalibrate_batchnorm(
            model,
            (
                batch_to_device(calib.batch(cfg.patch.batch_size), cfg, label_values, device)[0]
                for _ in range(r.bn_recalibration)
            ),
        )
    p = cfg.patch
    meta = ModelMeta(
        arch=arch.name,
        space=arch.space,
        mode=arch.mode,
        genotype=arch.genotype.to_dict() if arch.genotype is not None else None,
        in_channels=in_ch,
        out_channels=out_ch,
        model_kwargs=model_kwargs(cfg),
        preprocessing=prep.cache.settings.to_dict(),
        patch=list(p.test),
        tiling=p.tiling,
        overlap=p.overlap,
        blend=p.blend,
        target=cfg.data.target,
        label_values=label_values,
        label_names=dict(prep.dataset.labels),
        modalities=list(prep.dataset.modalities),
        extra={"fold": fold, "config": cfg.name},
        bn_stats=cfg.eval.bn_stats,
    )
    model_path = save_bundle(out_dir / "model.pt", model, meta)
    on_case = None
    if tracker is not None and hasattr(tracker, "log_png"):
        from ..platform.plots import overlay

        shown: list[str] = []

        def on_case(case, pred, gt):
            if len(shown) < cfg.eval.overlays:
                shown.append(case.case_id)
                tracker.log_png(
                    overlay(np.asarray(case.image[0]), gt, pred, case.case_id),
                    f"overlays/{case.case_id}.png",
                )

    rows = evaluate_cases(
        model,
        meta,
        load_cases(prep, split.test),
        lambda c: c.geometry.spacing,
        device,
        fold,
        arch.name,
        out_dir / "predictions",
        cfg.eval.hd_percentile,
        log,
        on_case,
    )
    write_table(rows, out_dir / "metrics.csv")
    summary = summarize(rows)
    if tracker is not None:
        tracker.log_metrics(
            {f"test/{k}/mean": v["mean"] for k, v in summary.items()}, step=r.epochs
        )
    if reporter is not None:
        reporter.report(
            {
                **(history[-1] if history else {}),
                "final": True,
                **{f"test/{k}": v["mean"] for k, v in summary.items()},
            },
            ckpt_dir,
        )
    return RetrainResult(fold, arch.name, rows, summary, model_path, out_dir, history)
