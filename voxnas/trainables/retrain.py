"""``run_retrain_fold``: train a fixed architecture from scratch on a fold's train+val cases,
then evaluate it on the fold's test cases on whole volumes (seed 000 section 3.1). With
``fold=None`` it is the *final* stage: every training case, no test cases (seed 002 retrains
the chosen architecture on the whole training set; nnU-Net users expect this model)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voxnas.config import Config
from voxnas.data.nifti import save_volume
from voxnas.data.prepare import FoldData
from voxnas.data.preprocess import invert_geometry
from voxnas.evaluation.inference import inference_mode, masks_by_name, segment
from voxnas.evaluation.metrics import case_metrics, summarize, write_table
from voxnas.run_layout import RunLayout
from voxnas.search_spaces.layers import recalibrate_batchnorm
from voxnas.search_spaces.registry import Architecture, resolve_architecture
from voxnas.trainables.bundle import ModelMeta, save_bundle
from voxnas.trainables.checkpoint import Checkpoint
from voxnas.trainables.engine import (
    Epoch,
    FoldContext,
    Reporter,
    Tracker,
    check_finite,
    make_weight_optimizer,
    open_fold,
    run_epochs,
    train_step,
)
from voxnas.trainables.models import model_kwargs

__all__ = ["RetrainResult", "evaluate_cases", "run_retrain_fold"]


@dataclass
class RetrainResult:
    fold: int | None  # None: the final model (every training case)
    arch: str
    rows: list[dict[str, Any]]
    summary: dict[str, dict[str, float]]
    model_path: Path
    out_dir: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed: bool = False


def evaluate_cases(
    model,
    meta: ModelMeta,
    cases,
    spacing_of,
    device,
    fold: int | None,
    arch: str,
    pred_dir: Path | None = None,
    percentile: float = 95.0,
    log: Callable[[str], None] = print,
    on_case: Callable[..., None] | None = None,
) -> list[dict[str, Any]]:
    """Whole-volume prediction and per-case metrics (on the preprocessed grid, in mm);
    ``model`` may be a list (fold ensemble)."""
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
        log(f"  {'final' if fold is None else f'fold {fold}'} {arch} {case.case_id}: DSC {dice}")
    return rows


def model_meta(ctx: FoldContext, arch: Architecture) -> ModelMeta:
    """What a bundle needs to rebuild the network and run it like training did."""
    cfg, p = ctx.cfg, ctx.cfg.patch
    return ModelMeta(
        arch=arch.name,
        space=arch.space,
        mode=arch.mode,
        genotype=arch.genotype.to_dict() if arch.genotype is not None else None,
        in_channels=ctx.in_channels,
        out_channels=ctx.out_channels,
        model_kwargs=model_kwargs(cfg),
        preprocessing=ctx.data.cache.settings.to_dict(),
        patch=list(p.test),
        tiling=p.tiling,
        overlap=p.overlap,
        blend=p.blend,
        target=cfg.data.target,
        label_values=ctx.label_values,
        label_names=ctx.data.label_names,
        modalities=list(ctx.data.modalities),
        extra={"fold": ctx.fold, "config": cfg.name, "stage": ctx.stage},
        bn_stats=cfg.eval.bn_stats,
    )


def run_retrain_fold(
    cfg: Config,
    fold: int | None,
    arch: str | Architecture,
    reporter: Reporter | None = None,
    tracker: Tracker | None = None,
    data: FoldData | None = None,
    out_dir: Path | None = None,
    resume: bool = False,
    log: Callable[[str], None] = print,
    log_every: int = 1,
) -> RetrainResult:
    """Retrain ``arch`` (genotype object, name, code or JSON file; ``mix`` = frozen equal
    alphas) on fold ``fold``'s train+val and evaluate on its test cases; ``fold=None``: the
    final model on every training case. ``resume`` continues from ``out_dir``'s checkpoint."""
    ctx = open_fold(cfg, "retrain" if fold is not None else "final", fold, data, log)
    arch = arch if isinstance(arch, Architecture) else resolve_architecture(arch)
    if out_dir is None:
        out_dir = (
            cfg.layout.final(arch.name)
            if fold is None
            else cfg.layout.retrain_fold(arch.name, fold)
        )
    out_dir = Path(out_dir)
    model = ctx.model(arch)
    r = cfg.retrain
    params = [p for p in model.parameters() if p.requires_grad]
    opt, it_sched, ep_sched = make_weight_optimizer(
        params, r.optim, r.epochs * r.iterations_per_epoch
    )
    trainval = ctx.data.split.trainval
    sampler = ctx.sampler(trainval, cfg.patch.train, "train")
    loss_fn = ctx.loss()
    what = f"{ctx.stage} {arch.name} {ctx.name}"
    # the validation curve: fixed patches of the test cases (its own patch stream, so the
    # training stream and the results are the same with or without it), scored the way
    # inference will see them; nothing is selected on it
    test = ctx.data.split.test
    watch = ctx.sampler(test, cfg.patch.train, "val") if test and r.val_batches else None
    watched = [watch.batch(cfg.patch.batch_size) for _ in range(r.val_batches)] if watch else []

    def validate() -> dict[str, float]:
        if not watched:
            return {}
        with inference_mode(model, cfg.eval.bn_stats):
            val_loss, val_dice = ctx.evaluate(model, watched, loss_fn)
        return {"val_loss": check_finite(val_loss, f"{what} val"), "val_dice": val_dice}

    def one_epoch(epoch: int) -> Epoch:
        model.train()
        losses = []
        for _ in range(r.iterations_per_epoch):
            batch = ctx.batch(sampler)
            losses.append(
                train_step(model, opt, params, loss_fn, batch, ctx.device, r.optim.grad_clip)
            )
            if it_sched is not None:
                it_sched.step()
        train_loss = check_finite(float(np.mean(losses)), f"{what} epoch {epoch}")
        if ep_sched is not None:
            ep_sched.step(train_loss)
        metrics = {
            "epoch": epoch,
            "fold": ctx.fold,
            "train_loss": train_loss,
            "lr_weights": opt.param_groups[0]["lr"],
            **validate(),
        }
        val = f" val {metrics['val_loss']:.4f} dsc {metrics['val_dice']:.3f}" if watched else ""
        return Epoch(metrics, line=f"loss {train_loss:.4f}{val}")

    ckpt = Checkpoint(
        RunLayout.checkpoint(out_dir),
        model=model,
        opt=opt,
        it_sched=it_sched,
        ep_sched=ep_sched,
        sampler=sampler,
    )
    loop = run_epochs(
        ckpt,
        r.epochs,
        one_epoch,
        what=what,
        resume=resume,
        reporter=reporter,
        tracker=tracker,
        log=log,
        log_every=log_every,
    )
    if r.bn_recalibration:  # every time, also after a resume: checkpoints hold the EMA stats
        calib = ctx.sampler(trainval, cfg.patch.train, "calibration")
        recalibrate_batchnorm(model, (ctx.batch(calib)[0] for _ in range(r.bn_recalibration)))
    meta = model_meta(ctx, arch)
    model_path = save_bundle(out_dir / "model.pt", model, meta)
    rows: list[dict[str, Any]] = []
    summary: dict[str, dict[str, float]] = {}
    if ctx.data.split.test:
        rows = evaluate_cases(
            model,
            meta,
            ctx.data.load(ctx.data.split.test),
            lambda c: c.geometry.spacing,
            ctx.device,
            ctx.fold,
            arch.name,
            out_dir / "predictions",
            cfg.eval.hd_percentile,
            log if log_every == 1 else (lambda s: None),  # per-case lines only in detail
            _overlay_logger(cfg, tracker),
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
                **(loop.history[-1] if loop.history else {}),
                "final": True,
                **{f"test/{k}": v["mean"] for k, v in summary.items()},
            },
            ckpt.folder,
        )
    return RetrainResult(
        ctx.fold, arch.name, rows, summary, model_path, out_dir, loop.history, loop.start > 0
    )


def _overlay_logger(cfg: Config, tracker: Tracker | None):
    """A per-case hook logging the first ``eval.overlays`` cases' overlay PNGs, or None."""
    if tracker is None or not hasattr(tracker, "log_png"):
        return None
    from voxnas.evaluation.plots import overlay

    shown: list[str] = []

    def on_case(case, pred, gt):
        if len(shown) < cfg.eval.overlays:
            shown.append(case.case_id)
            tracker.log_png(
                overlay(np.asarray(case.image[0]), gt, pred, case.case_id),
                f"overlays/{case.case_id}.png",
            )

    return on_case
