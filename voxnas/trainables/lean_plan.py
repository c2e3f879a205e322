"""The MixedOps a memory-lean supernet recomputes (``model.memory_lean``, ``model.lean_budget``).

Recomputing every MixedOp in backward takes a supernet's step down to little more than its
MixedOps' inputs and outputs, at the price of one more forward of every candidate. A budget
asks for less: with ``model.lean_budget: b`` the step may hold ``b`` times the memory of the
largest single-choice network's retraining step at the same patch
(:func:`~voxnas.trainables.footprint.default_fixed`: V-NAS all-3D), and only the MixedOps
needed for that are recomputed, those keeping the most activations first
(:mod:`voxnas.search_spaces.recompute_plan`), checked against the memory model (batch and
optimisers of the config) and grown until the modelled step is within the budget both in
fp32 (CPUs) and in bf16 autocast (CUDA; the same network keeps relatively more there), or
every MixedOp recomputes. ``lean_budget: null`` recomputes every MixedOp.

The plan depends on the config and the architecture only (meta device, cached per process):
every trial, the memory model and ``voxnas cost`` see the same one.
"""

from __future__ import annotations

import functools

import torch

from voxnas.config import Config
from voxnas.search_spaces.mixed import set_memory_lean
from voxnas.search_spaces.recompute_plan import mixed_op_costs, pick
from voxnas.search_spaces.registry import Architecture, create_model, resolve_architecture
from voxnas.trainables.footprint import built_step_bytes, default_fixed, step_kind
from voxnas.trainables.models import model_kwargs

__all__ = ["recomputed"]

_ROUNDS = 4  # memory-model checks before falling back to recomputing every MixedOp
PRECISIONS = ("fp32", "bf16")  # the budget holds for both: CUDA trains in bf16 autocast


def _plain(cfg: Config) -> Config:
    return cfg.model_copy(update={"model": cfg.model.model_copy(update={"memory_lean": False})})


def recomputed(
    cfg: Config, arch: Architecture, in_channels: int, out_channels: int
) -> tuple[str, ...] | None:
    """Names of the MixedOps of ``arch`` (built with ``cfg``) that recompute in backward;
    None: all of them (``lean_budget: null``, or a fixed network: nothing to choose)."""
    if cfg.model.lean_budget is None or arch.genotype is not None:
        return None
    return _plan(cfg.model_dump_json(), arch.name, in_channels, out_channels)


@functools.lru_cache(maxsize=16)
def _plan(cfg_json: str, name: str, in_ch: int, out_ch: int) -> tuple[str, ...] | None:
    cfg = _plain(Config.model_validate_json(cfg_json))
    arch = resolve_architecture(name)
    kind = step_kind(arch)
    patch = tuple(cfg.patch.search if kind == "search" else cfg.patch.train)
    ref = default_fixed(cfg)
    ref = ref if isinstance(ref, Architecture) else resolve_architecture(ref)

    def build(names=(), spec=arch):
        model = create_model(spec, in_ch, out_ch, **model_kwargs(cfg))
        return set_memory_lean(model, names)

    def single(p: str) -> int:  # the budget's unit: the single-choice network's retraining
        return built_step_bytes(cfg, lambda: build(spec=ref), in_ch, patch, "retrain", p)

    targets = [cfg.model.lean_budget * single(p) for p in PRECISIONS]

    def over(names) -> list[int]:
        return [
            built_step_bytes(cfg, lambda: build(names), in_ch, patch, kind, p) - t
            for p, t in zip(PRECISIONS, targets)
        ]

    free = over(())
    if max(free) <= 0:
        return ()
    with torch.device("meta"):
        x = torch.zeros(cfg.patch.batch_size, in_ch, *patch)
        costs = mixed_op_costs(build(), x, PRECISIONS)
    for _ in range(_ROUNDS):
        names = pick(costs, tuple(free))
        if len(names) == len(costs):
            return None
        left = over(names)
        if max(left) <= 0:
            return tuple(names)
        freed = [sum(c.kept[i] for c in costs if c.name in names) for i in range(len(free))]
        free = [f + max(o, 0) for f, o in zip(freed, left)]
    return None
