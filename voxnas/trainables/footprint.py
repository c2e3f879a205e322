"""What a config's training steps need in memory, GPU-free.

- :func:`step_bytes`: peak memory of one search or retrain step of an architecture at a
  patch, fp32 or bf16 (:mod:`voxnas.search_spaces.memory`, meta device, seconds), with the
  optimisers the trainables build (``make_weight_optimizer``, ``make_arch_optimizer``).
- :func:`trial_bytes`: what one Ray trial of a stage needs (the ``ray.gpus_per_trial: auto``
  input): the supernet's search step at ``patch.search``; for a retrain stage the largest of
  the architectures its jobs train (``retrain.extra_rows`` included: ``mix`` is a whole
  supernet) at ``patch.train``.
- :func:`memory_table`: the memory part of the ``voxnas cost`` report
  (:mod:`voxnas.trainables.fold_time` projects the time).
"""

from __future__ import annotations

import torch

from voxnas.config import Config
from voxnas.search_spaces.genotypes import derive_genotype
from voxnas.search_spaces.memory import GIB, step_memory
from voxnas.search_spaces.nas3dunet import ALPHA_KEYS
from voxnas.search_spaces.recompute_plan import searched_mixed_ops
from voxnas.search_spaces.registry import PUBLISHED, Architecture, resolve_architecture
from voxnas.trainables.engine import make_weight_optimizer
from voxnas.trainables.losses import make_loss
from voxnas.trainables.models import build_model, cost_channels, supernet_name
from voxnas.trainables.search import make_arch_optimizer

__all__ = [
    "built_step_bytes",
    "default_fixed",
    "make_optimizers",
    "memory_table",
    "stage_archs",
    "step_bytes",
    "step_kind",
    "trial_bytes",
]


def default_fixed(cfg: Config) -> str | Architecture:
    """The single-choice network a retrain stage is sized for before its genotype is known:
    V-NAS all-3D (the largest choice everywhere); NAS-3D-U-Net the genotype of uniform alphas,
    a stand-in (not the largest genotype: a retrain stage sizes the searched genotypes its
    jobs carry, :func:`trial_bytes` with ``archs``)."""
    if cfg.model.space == "vnas":
        return "3D/3D"
    with torch.device("meta"):
        arch = build_model(cfg, supernet_name(cfg), *cost_channels(cfg)).arch_parameters()
    zeros = {k: torch.zeros(a.shape, device="cpu") for k, a in zip(ALPHA_KEYS, arch)}
    g = derive_genotype("nas3dunet", zeros)  # on the CPU even under a meta device context
    return Architecture("uniform-alpha genotype", "nas3dunet", g)


def step_kind(spec: str | Architecture) -> str:
    """``search`` for a supernet in search mode, ``retrain`` for anything trained with frozen
    alphas or none (fixed networks, and ``mix``: equal alphas, no genotype, a retrain)."""
    arch = spec if isinstance(spec, Architecture) else resolve_architecture(spec)
    return "search" if arch.genotype is None and arch.mode == "search" else "retrain"


def _loss(cfg: Config):
    loss = make_loss(cfg.loss.name, cfg.loss.dice_eps)
    regions = cfg.data.target == "brats_regions"

    def loss_fn(logits: torch.Tensor) -> torch.Tensor:
        if regions:
            return loss(logits, torch.zeros_like(logits))
        shape = (logits.shape[0], *logits.shape[2:])
        return loss(logits, torch.zeros(shape, dtype=torch.long, device=logits.device))

    return loss_fn


def make_optimizers(cfg: Config, model, kind: str) -> tuple[torch.optim.Optimizer, ...]:
    """The optimisers a ``kind`` step of ``model`` runs, built as the trainables build them:
    (weights, alphas) for a search step, (weights,) for a retrain."""
    if kind == "search":
        w = make_weight_optimizer(model.weight_parameters(), cfg.search.weight_optim, 1)[0]
        return w, make_arch_optimizer(model.arch_parameters(), cfg.search.arch_optim)
    params = [p for p in model.parameters() if p.requires_grad]  # as run_retrain_fold
    return (make_weight_optimizer(params, cfg.retrain.optim, 1)[0],)


def step_bytes(
    cfg: Config,
    spec: str | Architecture,
    patch,
    kind: str,
    precision: str = "fp32",
    foreach: bool = True,
) -> int:
    """Peak bytes of one ``kind`` (search/retrain) step of ``spec`` on ``patch`` (``foreach``
    optimiser kernels as on CUDA; False for the CPU's per-tensor loop)."""
    in_ch, out_ch = cost_channels(cfg)
    build = lambda: build_model(cfg, spec, in_ch, out_ch)  # noqa: E731
    return built_step_bytes(cfg, build, in_ch, patch, kind, precision, foreach)


def built_step_bytes(
    cfg: Config,
    build,
    in_ch: int,
    patch,
    kind: str,
    precision: str = "fp32",
    foreach: bool = True,
) -> int:
    """:func:`step_bytes` of the network ``build()`` makes (on the meta device) with
    ``in_ch`` input channels."""
    mem = step_memory(
        build,
        in_ch,
        tuple(patch),
        _loss(cfg),
        kind,
        precision,
        lambda model: make_optimizers(cfg, model, kind),
        cfg.patch.batch_size,
        foreach,
    )
    return mem.total


def stage_archs(cfg: Config) -> list[str | Architecture]:
    """What a retrain stage trains when its genotypes are not known yet: the largest single
    choice (:func:`default_fixed`) and every ``retrain.extra_rows`` entry."""
    return [default_fixed(cfg), *dict.fromkeys(cfg.retrain.extra_rows)]


def trial_bytes(cfg: Config, stage: str, precision: str, archs: list | None = None) -> int:
    """Peak bytes of one trial of ``stage`` (``search`` or a retrain stage): for a retrain
    stage the largest over ``archs`` (the jobs' architectures; default :func:`stage_archs`)."""
    if stage == "search":
        return step_bytes(cfg, supernet_name(cfg), cfg.patch.search, "search", precision)
    archs = archs if archs is not None else stage_archs(cfg)
    return max(step_bytes(cfg, spec, cfg.patch.train, step_kind(spec), precision) for spec in archs)


def _name(spec: str | Architecture) -> str:
    return spec.name if isinstance(spec, Architecture) else spec


def _rows(cfg: Config, archs: list[str] | None) -> list[tuple[str | Architecture, str, tuple]]:
    """(architecture, step kind, patch): the supernet searched at the search patch, the rest
    retrained at the train patch."""
    if archs is None:
        fixed = list(PUBLISHED) if cfg.model.space == "vnas" else []
        archs = [supernet_name(cfg), *fixed, *stage_archs(cfg)]
    rows = []
    for spec in dict.fromkeys(archs):
        kind = step_kind(spec)
        rows.append((spec, kind, tuple(cfg.patch.search if kind == "search" else cfg.patch.train)))
    return rows


def _size(nbytes: float) -> str:
    return f"{nbytes / GIB:.2f} GiB" if nbytes >= GIB / 10 else f"{nbytes / 2**20:.1f} MiB"


def _lean_note(cfg: Config) -> str:
    """``memory_lean`` and, when on, how many of the supernet's MixedOps recompute."""
    if not cfg.model.memory_lean:
        return "memory_lean off"
    from voxnas.trainables.lean_plan import recomputed  # it imports this module

    in_ch, out_ch = cost_channels(cfg)
    with torch.device("meta"):
        model = build_model(cfg, supernet_name(cfg), in_ch, out_ch)
    mixed = searched_mixed_ops(model).values()
    arch = resolve_architecture(supernet_name(cfg))
    budget = cfg.model.lean_budget
    if recomputed(cfg, arch, in_ch, out_ch) is None and budget is not None:
        why = f"lean_budget {budget:g} out of reach: every MixedOp"
    else:
        why = f"lean_budget {budget:g}" if budget is not None else "lean_budget null"
    lean = sum(m.memory_lean for m in mixed)
    return f"memory_lean: {lean} of {len(mixed)} supernet MixedOps recompute ({why})"


def memory_table(cfg: Config, archs: list[str] | None = None) -> str:
    """Markdown table: peak memory of a training step, fp32 and bf16 autocast."""
    lines = [
        "Peak memory of one training step, batch "
        f"{cfg.patch.batch_size} (weights, gradients, optimiser state, activations, the "
        "optimiser step; search = weight step + arch step; bf16 = CUDA autocast, weights "
        f"fp32; {_lean_note(cfg)}; not counted: CUDA context, workspaces)",
        "| architecture | step | patch | fp32 | bf16 |",
        "|---|---|---|---|---|",
    ]
    for spec, kind, patch in _rows(cfg, archs):
        fp32, bf16 = (step_bytes(cfg, spec, patch, kind, p) for p in ("fp32", "bf16"))
        size = "x".join(map(str, patch))
        lines.append(f"| {_name(spec)} | {kind} | {size} | {_size(fp32)} | {_size(bf16)} |")
    return "\n".join(lines)
