"""``run_search_fold``: the bilevel search of seed 000 Algorithm 1 (first-order DARTS).

Per iteration: a weight step on a batch of the fold's *train* part and an architecture step
on a batch of its *val* part; V-NAS does the weight step first and starts the architecture
steps after ``warmup_epochs``; NAS-3D-U-Net (``arch_first``) does the architecture step first
(seed 002 Table 2). With ``stop_count`` (NC) the derived cell structure is counted at the start
of every epoch and the search stops when one structure has been seen NC times; otherwise (or
when NE epochs pass) the final (V-NAS) or most common (NAS-3D-U-Net) genotype is returned.

Everything needed to resume bit-for-bit is checkpointed after every epoch (fold engine).
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

from voxnas.config import Config
from voxnas.data.prepare import FoldData
from voxnas.search_spaces.genotypes import derive_genotype, genotype_from_json, softmax
from voxnas.trainables.checkpoint import Checkpoint
from voxnas.trainables.engine import (
    Epoch,
    NonFiniteLossError,
    Reporter,
    Tracker,
    check_finite,
    make_weight_optimizer,
    open_fold,
    patch_dice,
    run_epochs,
    train_step,
)
from voxnas.trainables.models import supernet_name

__all__ = [
    "NonFiniteLossError",
    "SearchResult",
    "StructureCounter",
    "alpha_entropy",
    "alpha_summary",
    "bilevel_step",
    "check_finite",
    "patch_dice",
    "run_search_fold",
]


@dataclass
class SearchResult:
    fold: int | None  # None: the single search over every case
    genotype: Any
    alphas: dict[str, list]
    history: list[dict[str, Any]] = field(default_factory=list)
    epochs_run: int = 0
    stopped_by_count: bool = False
    complete: bool = True


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
    amp: bool = True,
) -> tuple[float, float | None]:
    """One first-order DARTS iteration; returns ``(weight_loss, arch_loss)`` (``amp``: as
    :func:`~voxnas.trainables.engine.train_step`)."""
    device = device or torch.device("cpu")
    arch_loss = None

    def arch():
        alphas = model.arch_parameters()
        return train_step(model, a_opt, alphas, loss_fn, val_batch, device, amp=amp)

    if update_arch and arch_first:
        arch_loss = arch()
    weights = list(model.weight_parameters())
    w_loss = train_step(model, w_opt, weights, loss_fn, train_batch, device, grad_clip, amp)
    if update_arch and not arch_first:
        arch_loss = arch()
    return w_loss, arch_loss


def alpha_entropy(alphas: dict[str, torch.Tensor]) -> float:
    rows = [softmax(a.numpy()) for a in alphas.values()]
    ent = [-(p * np.log(p + 1e-12)).sum(-1) for p in rows]
    return float(np.concatenate(ent).mean()) if ent else 0.0


def alpha_summary(alphas: dict[str, torch.Tensor]) -> dict[str, float]:
    """The mean over alpha rows of the top op probability (``alpha_top_mean``): how decided
    the cells are, which entropy alone hides (each cell's own is in the tracked
    ``search_cells/<cell>.top_p``, from the per-op probabilities)."""
    tops = [float(row.max()) for a in alphas.values() for row in softmax(a.numpy())]
    return {"alpha_top_mean": float(np.mean(tops))} if tops else {}


class StructureCounter:
    """Seed 002 Table 2: how often each derived cell structure was seen (NC stop rule)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.last_seen: dict[str, int] = {}

    def observe(self, genotype, epoch: int) -> int:
        key = json.dumps(genotype.to_dict(), sort_keys=True)
        self.counts[key] += 1
        self.last_seen[key] = epoch
        return self.counts[key]

    def most_common(self):
        """The most often seen structure (ties: the latest seen); None before any."""
        if not self.counts:
            return None
        best = max(self.counts, key=lambda k: (self.counts[k], self.last_seen[k]))
        return genotype_from_json(best)

    def state_dict(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "last_seen": dict(self.last_seen)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.counts, self.last_seen = Counter(state["counts"]), dict(state["last_seen"])


def run_search_fold(
    cfg: Config,
    fold: int | None,
    reporter: Reporter | None = None,
    tracker: Tracker | None = None,
    data: FoldData | None = None,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    stop_after_epochs: int | None = None,
    log: Callable[[str], None] = print,
    log_every: int = 1,
) -> SearchResult:
    """Search fold ``fold`` (None: one search over every case, ``search.folds: one``).
    ``stop_after_epochs`` ends this call early (state checkpointed), as an interruption
    would; calling again with ``resume=True`` continues from the checkpoint."""
    ctx = open_fold(cfg, "search", fold, data, log)
    split, s = ctx.data.split, cfg.search
    model = ctx.model(supernet_name(cfg))
    w_opt, it_sched, ep_sched = make_weight_optimizer(
        model.weight_parameters(), s.weight_optim, s.epochs * s.iterations_per_epoch
    )
    a_opt = make_arch_optimizer(model.arch_parameters(), s.arch_optim)
    train = ctx.sampler(split.train, cfg.patch.search, "train")
    val = ctx.sampler(split.val, cfg.patch.search, "val")
    fixed_val = [val.batch(cfg.patch.batch_size) for _ in range(s.val_batches)]
    loss_fn = ctx.loss()
    counter = StructureCounter()
    folder = checkpoint_dir or cfg.layout.search_checkpoint(fold)
    ckpt = Checkpoint(
        folder,
        model=model,
        w_opt=w_opt,
        a_opt=a_opt,
        it_sched=it_sched,
        ep_sched=ep_sched,
        train_sampler=train,
        val_sampler=val,
        counter=counter,
    )
    where = f"search {ctx.name}"

    def one_epoch(epoch: int) -> Epoch | None:
        # seed 002 Table 2: count the structure before the epoch's updates. Warm-up epochs
        # (our extension) leave the alphas untouched, so counting them would be a vote for
        # the initial structure: counting starts with the first epoch that updates alphas.
        if s.stop_count and epoch >= s.warmup_epochs:
            seen = counter.observe(derive_genotype(cfg.model.space, model.alphas()), epoch)
            if seen >= s.stop_count:
                log(f"{where}: structure seen {s.stop_count} times, stopping at epoch {epoch}")
                return None
        model.train()
        update_arch = epoch >= s.warmup_epochs and model.mode == "search"
        w_losses, a_losses = [], []
        for _ in range(s.iterations_per_epoch):
            wl, al = bilevel_step(
                model,
                w_opt,
                a_opt,
                loss_fn,
                ctx.batch(train),
                ctx.batch(val),
                update_arch,
                s.arch_first,
                s.weight_optim.grad_clip,
                ctx.device,
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
        val_loss, val_dice = ctx.evaluate(model, fixed_val, loss_fn)
        if ep_sched is not None:
            ep_sched.step(val_loss)
        genotype = derive_genotype(cfg.model.space, model.alphas())
        at = f"{where} epoch {epoch}"
        metrics = {
            "epoch": epoch,
            "fold": fold,
            "train_loss": check_finite(float(np.mean(w_losses)), f"{at} train"),
            "val_loss": check_finite(val_loss, f"{at} val"),
            "val_dice": val_dice,
            "lr_weights": w_opt.param_groups[0]["lr"],
            "lr_alphas": a_opt.param_groups[0]["lr"],
            "alpha_entropy": alpha_entropy(model.alphas()),
            "genotype": genotype.code(),
        }
        if a_losses:  # nothing during warm-up (no NaN placeholders)
            metrics["arch_loss"] = check_finite(float(np.mean(a_losses)), f"{at} arch")
        if tracker is not None:
            tracker.log_text(genotype_line(epoch, genotype), "genotypes.jsonl")
        arch = format(metrics["arch_loss"], ".4f") if a_losses else "-"
        return Epoch(
            metrics,
            {**alpha_summary(model.alphas()), **model.alpha_probs()},
            f"train {metrics['train_loss']:.4f} arch {arch} val {val_loss:.4f} "
            f"dsc {val_dice:.3f} H(alpha) {metrics['alpha_entropy']:.3f} {genotype.code()}",
        )

    loop = run_epochs(
        ckpt,
        s.epochs,
        one_epoch,
        what=where,
        resume=resume,
        reporter=reporter,
        tracker=tracker,
        log=log,
        stop_after=stop_after_epochs,
        log_every=log_every,
    )
    current = derive_genotype(cfg.model.space, model.alphas())
    if loop.interrupted:
        return SearchResult(
            fold, current, _alpha_lists(model), loop.history, loop.next_epoch, complete=False
        )
    # Table 2: the structure that reached NC, else the most common; V-NAS: the final alphas
    final = (counter.most_common() if s.stop_count else None) or current
    return SearchResult(
        fold, final, _alpha_lists(model), loop.history, loop.next_epoch, loop.stopped
    )


def genotype_line(epoch: int, genotype) -> str:
    return json.dumps({"epoch": epoch, **genotype.to_dict()}) + "\n"


def _alpha_lists(model) -> dict[str, list]:
    return {k: v.tolist() for k, v in model.alphas().items()}
