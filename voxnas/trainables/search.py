"""``run_search_fold``: the bilevel search of seed 000 Algorithm 1 (first-order DARTS).

Per iteration: a weight step on a batch of the fold's *train* part and an architecture step
on a batch of its *val* part; V-NAS does the weight step first and starts the architecture
steps after ``warmup_epochs``; NAS-3D-U-Net (``arch_first``) does the architecture step first
(seed 002 Table 2). With ``stop_count`` (NC) the derived cell structure is counted at the start
of every epoch and the search stops when one structure has been seen NC times; otherwise (or
when NE epochs pass) the final (V-NAS) or most common (NAS-3D-U-Net) genotype is returned.

Everything needed to resume bit-for-bit is checkpointed after every epoch.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..platform.config import Config
from ..platform.data.prepare import PreparedData, prepare_data
from ..platform.device import autocast, pick_device
from ..platform.losses import make_loss
from ..platform.model_factory import build_model, out_channels_for, supernet_name
from ..search_spaces.genotypes import derive_genotype, genotype_from_json, softmax
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

__all__ = [
    "NonFiniteLossError",
    "SearchResult",
    "alpha_entropy",
    "alpha_summary",
    "bilevel_step",
    "check_finite",
    "patch_dice",
    "run_search_fold",
]


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


@dataclass
class SearchResult:
    fold: int
    genotype: Any
    alphas: dict[str, list]
    history: list[dict[str, Any]] = field(default_factory=list)
    epochs_run: int = 0
    stopped_by_count: bool = False
    complete: bool = True


def _step(model, opt, params, loss_fn, x, y, device, clip: float | None) -> float:
    opt.zero_grad(set_to_none=True)
    with autocast(device):
        loss = loss_fn(model(x), y)
    loss.backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()
    return float(loss.detach())


def make_arch_optimizer(params, opt) -> torch.optim.Optimizer:
    """Adam for the alphas (seed 000: lr 3e-4, weight decay 1e-3), the decay *decoupled*
    (AdamW). Coupled L2 is added to the gradient before Adam normalises it: once the val loss
    is small the alpha gradients shrink to ~1e-4 and ``1e-3 * alpha`` dominates, pulling every
    alpha back to uniform (measured on the planted task: the alphas returned to 1/3)."""
    return torch.optim.AdamW(
        params, lr=opt.lr, betas=tuple(opt.betas), weight_decay=opt.weight_decay
    )


def bilevel_step(
    model,
    w_opt,
    a_opt,
    loss_fn,
    train_batch,
    val_batch,
    update_arch: bool,
    arch_first: bool = False,
    grad_clip: float | None = None,
    device: torch.device | None = None,
) -> tuple[float, float | None]:
    """One first-order DARTS iteration; returns ``(weight_loss, arch_loss)``."""
    device = device or torch.device("cpu")
    arch_loss = None

    def arch():
        return _step(model, a_opt, model.arch_parameters(), loss_fn, *val_batch, device, None)

    if update_arch and arch_first:
        arch_loss = arch()
    w_loss = _step(
        model, w_opt, model.weight_parameters(), loss_fn, *train_batch, device, grad_clip
    )
    if update_arch and not arch_first:
        arch_loss = arch()
    return w_loss, arch_loss


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


def alpha_entropy(alphas: dict[str, torch.Tensor]) -> float:
    rows = [softmax(a.numpy()) for a in alphas.values()]
    ent = [-(p * np.log(p + 1e-12)).sum(-1) for p in rows]
    return float(np.concatenate(ent).mean()) if ent else 0.0


def alpha_summary(alphas: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per alpha row the top op probability (``alpha_top/encoder07``), plus the mean over rows
    (``alpha_top_mean``): how decided each cell is, which entropy alone hides."""
    out: dict[str, float] = {}
    tops = []
    for key, a in alphas.items():
        for i, row in enumerate(softmax(a.numpy())):
            out[f"alpha_top/{key}{i:02d}"] = float(row.max())
            tops.append(float(row.max()))
    if tops:
        out["alpha_top_mean"] = float(np.mean(tops))
    return out


def run_search_fold(
    cfg: Config,
    fold: int,
    reporter: Reporter | None = None,
    tracker: Tracker | None = None,
    prepared: PreparedData | None = None,
    checkpoint_dir: Path | None = None,
    resume: bool = True,
    stop_after_epochs: int | None = None,
    log: Callable[[str], None] = print,
) -> SearchResult:
    """Search fold ``fold``. ``stop_after_epochs`` ends this call early (state checkpointed),
    as an interruption would; calling again with ``resume`` continues from the checkpoint."""
    prep = prepared or prepare_data(cfg, log)
    split = prep.fold(fold)
    device = pick_device(cfg.device)
    s = cfg.search
    seed = cfg.seed * 1000 + fold
    seed_everything(seed)
    label_values = prep.cache.label_values
    in_ch = len(prep.dataset.modalities)
    model = build_model(
        cfg, supernet_name(cfg), in_ch, out_channels_for(cfg, len(label_values))
    ).to(device)
    total = s.epochs * s.iterations_per_epoch
    w_opt, it_sched, ep_sched = make_weight_optimizer(
        model.weight_parameters(), s.weight_optim, total
    )
    a_opt = make_arch_optimizer(model.arch_parameters(), s.arch_optim)
    train = make_sampler(cfg, load_cases(prep, split.train), cfg.patch.search, seed)
    val = make_sampler(cfg, load_cases(prep, split.val), cfg.patch.search, seed + 7919)
    fixed_val = [val.batch(cfg.patch.batch_size) for _ in range(s.val_batches)]
    loss_fn = make_loss(cfg.loss.name, cfg.loss.dice_eps)
    counter: Counter[str] = Counter()
    last_seen: dict[str, int] = {}
    history: list[dict[str, Any]] = []
    start = 0
    checkpoint_dir = Path(checkpoint_dir or cfg.run_dir / "search" / f"fold{fold}" / "checkpoint")
    state = load_checkpoint(checkpoint_dir) if resume else None
    if state is not None:
        model.load_state_dict(state["model"])
        w_opt.load_state_dict(state["w_opt"])
        a_opt.load_state_dict(state["a_opt"])
        for sched, key in ((it_sched, "it_sched"), (ep_sched, "ep_sched")):
            if sched is not None:
                sched.load_state_dict(state[key])
        set_rng_state(state["rng"])
        train.set_state(state["train_sampler"])
        val.set_state(state["val_sampler"])
        counter, history, start = Counter(state["counter"]), state["history"], state["epoch"] + 1
        last_seen = state["last_seen"]
        log(f"fold {fold}: resumed search after epoch {state['epoch']}")
        if tracker is not None:
            tracker.set_tags({"voxnas.resumed": f"after epoch {state['epoch']}"})
    stopped = False
    epoch = start - 1
    for epoch in range(start, s.epochs):
        # seed 002 Table 2: count the structure before the epoch's updates. Warm-up epochs
        # (our extension) leave the alphas untouched, so counting them would be a vote for
        # the initial structure: counting starts with the first epoch that updates alphas.
        if s.stop_count and epoch >= s.warmup_epochs:
            key = json.dumps(
                derive_genotype(cfg.model.space, model.alphas()).to_dict(), sort_keys=True
            )
            counter[key] += 1
            last_seen[key] = epoch
            if counter[key] >= s.stop_count:
                stopped = True
                log(f"fold {fold}: structure seen {s.stop_count} times, stopping at epoch {epoch}")
                break
        model.train()
        update_arch = epoch >= s.warmup_epochs and model.mode == "search"
        w_losses, a_losses = [], []
        for _ in range(s.iterations_per_epoch):
            tb = batch_to_device(train.batch(cfg.patch.batch_size), cfg, label_values, device)
            vb = batch_to_device(val.batch(cfg.patch.batch_size), cfg, label_values, device)
            wl, al = bilevel_step(
                model,
                w_opt,
                a_opt,
                loss_fn,
                tb,
                vb,
                update_arch,
                s.arch_first,
                s.weight_optim.grad_clip,
                device,
            )
            w_losses.append(wl)
            if al is not None:
                a_losses.append(al)
            if it_sched is not None:
                it_sched.step()
        # The supernet is evaluated with batch statistics (as during its arch steps): its
        # BatchNorm running statistics mix candidate paths whose activations keep changing
        # and, after a few iterations, give validation losses in the thousands.
        model.train(model.mode == "search")
        with torch.no_grad(), autocast(device):
            vals = [batch_to_device(b, cfg, label_values, device) for b in fixed_val]
            outs = [(model(x).float(), y) for x, y in vals]
            val_loss = float(np.mean([float(loss_fn(o, y)) for o, y in outs]))
            val_dice = float(np.mean([patch_dice(o, y, cfg.data.target) for o, y in outs]))
        if ep_sched is not None:
            ep_sched.step(val_loss)
        genotype = derive_genotype(cfg.model.space, model.alphas())
        where = f"search fold {fold} epoch {epoch}"
        metrics = {
            "epoch": epoch,
            "fold": fold,
            "train_loss": check_finite(float(np.mean(w_losses)), f"{where} train"),
            "val_loss": check_finite(val_loss, f"{where} val"),
            "val_dice": val_dice,
            "lr_weights": w_opt.param_groups[0]["lr"],
            "lr_alphas": a_opt.param_groups[0]["lr"],
            "alpha_entropy": alpha_entropy(model.alphas()),
            "genotype": genotype.code(),
        }
        if a_losses:  # nothing during warm-up (no NaN placeholders)
            metrics["arch_loss"] = check_finite(float(np.mean(a_losses)), f"{where} arch")
        history.append(metrics)
        save_checkpoint(
            checkpoint_dir,
            {
                "model": model.state_dict(),
                "w_opt": w_opt.state_dict(),
                "a_opt": a_opt.state_dict(),
                "it_sched": it_sched.state_dict() if it_sched else None,
                "ep_sched": ep_sched.state_dict() if ep_sched else None,
                "rng": rng_state(),
                "train_sampler": train.state(),
                "val_sampler": val.state(),
                "counter": dict(counter),
                "last_seen": last_seen,
                "history": history,
                "epoch": epoch,
            },
        )
        if tracker is not None:
            scalars = {k: v for k, v in metrics.items() if isinstance(v, float)}
            tracker.log_metrics(
                {**scalars, **alpha_summary(model.alphas()), **model.alpha_probs()}, step=epoch
            )
            tracker.log_text(genotype_line(epoch, genotype), "genotypes.jsonl")
        if reporter is not None:
            reporter.report({**metrics, "final": False}, checkpoint_dir)
        log(
            f"fold {fold} epoch {epoch + 1}/{s.epochs}: train {metrics['train_loss']:.4f} "
            f"arch {format(metrics['arch_loss'], '.4f') if a_losses else '-'} val {val_loss:.4f} "
            f"dsc {val_dice:.3f} H(alpha) {metrics['alpha_entropy']:.3f} {genotype.code()}"
        )
        if (
            stop_after_epochs is not None
            and epoch + 1 - start >= stop_after_epochs
            and epoch + 1 < s.epochs
        ):
            return SearchResult(
                fold, genotype, _alpha_lists(model), history, epoch + 1, complete=False
            )
    if s.stop_count and counter:
        # Table 2: the structure that reached NC, else the most common (ties: the latest seen)
        best = max(counter, key=lambda k: (counter[k], last_seen[k]))
        final = genotype_from_json(best)
    else:
        final = derive_genotype(cfg.model.space, model.alphas())
    # stopped by the count at the start of epoch `epoch`, before training it
    epochs_run = epoch if stopped else epoch + 1
    return SearchResult(fold, final, _alpha_lists(model), history, epochs_run, stopped)


def genotype_line(epoch: int, genotype) -> str:
    return json.dumps({"epoch": epoch, **genotype.to_dict()}) + "\n"


def _alpha_lists(model) -> dict[str, list]:
    return {k: v.tolist() for k, v in model.alphas().items()}
