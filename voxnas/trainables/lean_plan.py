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

The plan depends on the config and the architecture only (meta device): every trial, the
memory model and ``voxnas cost`` see the same one. Tracing it takes seconds to a minute on a
CPU (NAS-3D-U-Net: a dozen traces of the whole supernet), so it is cached per process and on
disk under ``<workdir>/cache/lean_plans/`` once the workdir exists (a run made it; ``voxnas
cost`` before any run creates nothing), keyed by the config, the architecture, the channels
and a fingerprint of voxnas' and torch's code: a trial, a restarted trial or a second ``voxnas
cost`` reads it; a changed config or code traces again. A file that cannot be read is traced
again and rewritten.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from pathlib import Path

import torch

import voxnas
from voxnas.config import Config
from voxnas.search_spaces.mixed import set_memory_lean
from voxnas.search_spaces.recompute_plan import mixed_op_costs, pick
from voxnas.search_spaces.registry import Architecture, create_model, resolve_architecture
from voxnas.trainables.footprint import built_step_bytes, default_fixed, step_kind
from voxnas.trainables.models import model_kwargs
from voxnas.trainables.records import write_json

__all__ = ["plan_file", "recomputed"]

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


@functools.lru_cache(maxsize=1)
def _code_fingerprint() -> str:
    """voxnas' source files and torch's version: what the traces depend on besides the
    config."""
    h = hashlib.sha256(torch.__version__.encode())
    for f in sorted(Path(voxnas.__file__).parent.rglob("*.py")):
        h.update(f.relative_to(Path(voxnas.__file__).parent).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def plan_file(cfg: Config, name: str, in_ch: int, out_ch: int) -> Path:
    """Where the plan of ``name`` built with ``cfg`` is kept on disk."""
    key = json.dumps([cfg.model_dump_json(), name, in_ch, out_ch, _code_fingerprint()])
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return Path(cfg.workdir) / "cache" / "lean_plans" / f"{name.replace('/', '-')}-{digest}.json"


@functools.lru_cache(maxsize=16)
def _plan(cfg_json: str, name: str, in_ch: int, out_ch: int) -> tuple[str, ...] | None:
    cfg = Config.model_validate_json(cfg_json)
    path = plan_file(cfg, name, in_ch, out_ch)
    try:
        kept = json.loads(path.read_text())
        return None if kept["recomputed"] is None else tuple(kept["recomputed"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # none yet, or unreadable: trace it
    plan = _traced_plan(cfg, name, in_ch, out_ch)
    if not Path(cfg.workdir).is_dir():
        return plan
    # atomic: trials starting together never read half a file; a read-only workdir keeps the
    # plan in this process only
    with contextlib.suppress(OSError):
        write_json(path, {"recomputed": None if plan is None else list(plan)})
    return plan


def _traced_plan(cfg: Config, name: str, in_ch: int, out_ch: int) -> tuple[str, ...] | None:
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
