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
    """``cfg`` without the memory-lean switches: what the plan's traces build with."""
    model = cfg.model.model_copy(update={"memory_lean": False, "lean_budget": None})
    return cfg.model_copy(update={"model": model})


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
    cfg = Config.model_validate_json(cfg_json)
    budget, plain = cfg.model.lean_budget, _plain(cfg).model_dump_json()
    kind = step_kind(resolve_architecture(name))
    patch = tuple(cfg.patch.search if kind == "search" else cfg.patch.train)
    targets = [budget * _bytes(plain, None, (), in_ch, out_ch, patch, p) for p in PRECISIONS]

    def over(names) -> list[int]:
        return [
            _bytes(plain, name, tuple(names), in_ch, out_ch, patch, p) - t
            for p, t in zip(PRECISIONS, targets)
        ]

    free = over(())
    if max(free) <= 0:
        return ()
    cfg = _plain(cfg)
    with torch.device("meta"):
        x = torch.zeros(cfg.patch.batch_size, in_ch, *patch)
        model = create_model(resolve_architecture(name), in_ch, out_ch, **model_kwargs(cfg))
        costs = mixed_op_costs(model, x, PRECISIONS)
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


@functools.lru_cache(maxsize=64)
def _bytes(
    plain_json: str,
    name: str | None,
    names: tuple[str, ...],
    in_ch: int,
    out_ch: int,
    patch: tuple[int, ...],
    precision: str,
) -> int:
    """Modelled bytes of a step of ``name`` on ``patch`` with the MixedOps ``names``
    recomputing; ``name=None``: the budget's unit, the single-choice network's retraining
    step. Cached: plans for other budgets share these traces."""
    cfg = Config.model_validate_json(plain_json)
    if name is None:
        ref = default_fixed(cfg)
        spec = ref if isinstance(ref, Architecture) else resolve_architecture(ref)
        kind = "retrain"
    else:
        spec = resolve_architecture(name)
        kind = step_kind(spec)

    def build():
        model = create_model(spec, in_ch, out_ch, **model_kwargs(cfg))
        return set_memory_lean(model, names)

    return built_step_bytes(cfg, build, in_ch, patch, kind, precision)
