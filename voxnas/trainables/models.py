"""From a config to networks: which space, which width, how many channels in and out."""

from __future__ import annotations

from typing import Any

from torch import nn

from voxnas.config import Config
from voxnas.search_spaces.cost import model_cost
from voxnas.search_spaces.mixed import set_memory_lean
from voxnas.search_spaces.registry import (
    PUBLISHED,
    Architecture,
    create_model,
    resolve_architecture,
)

__all__ = [
    "build_model",
    "cost_channels",
    "cost_table",
    "model_kwargs",
    "out_channels_for",
    "supernet_name",
]


def supernet_name(cfg: Config, mix: bool = False) -> str:
    if cfg.model.space == "vnas":
        return "mix" if mix else "vnas-supernet"
    return "nas3dunet-mix" if mix else "nas3dunet-supernet"


def model_kwargs(cfg: Config) -> dict[str, Any]:
    """The architecture's keywords (saved in bundles and MLflow metadata). Training-time
    switches such as ``model.memory_lean`` stay out: :func:`build_model` applies them."""
    m = cfg.model
    if m.space == "vnas":
        return {"width": m.width, "psp": m.psp}
    return {
        "init_kernels": m.init_kernels,
        "depth": m.depth,
        "nodes": m.nodes,
        "channel_change": m.channel_change,
    }


def out_channels_for(cfg: Config, n_label_values: int) -> int:
    """BraTS regions: 3 sigmoid channels (WT, TC, ET); otherwise one softmax channel a label."""
    return 3 if cfg.data.target == "brats_regions" else n_label_values


def build_model(
    cfg: Config, spec: str | Architecture | Any, in_channels: int, out_channels: int
) -> nn.Module:
    """Build ``spec`` (``searched`` genotype object, name, code, file) with the config's sizes,
    memory-lean when ``model.memory_lean`` (supernets recompute candidates in backward, those
    :mod:`voxnas.trainables.lean_plan` picks for ``model.lean_budget``; a training switch,
    not part of the architecture)."""
    arch = spec if isinstance(spec, Architecture) else resolve_architecture(spec)
    if arch.space != cfg.model.space:
        raise ValueError(
            f"architecture {arch.name!r} is {arch.space}, the config searches {cfg.model.space}"
        )
    model = create_model(arch, in_channels, out_channels, **model_kwargs(cfg))
    if not cfg.model.memory_lean:
        return model
    from voxnas.trainables.lean_plan import recomputed  # it builds models itself

    names = recomputed(cfg, arch, in_channels, out_channels)
    return set_memory_lean(model, True if names is None else names)


def cost_channels(cfg: Config) -> tuple[int, int]:
    """(in, out) channels the cost figures assume: 1 CT channel / 3 classes, 4 MRI / 3."""
    return (4, 3) if cfg.model.space == "nas3dunet" else (1, 3)


def cost_table(cfg: Config, archs: list[str] | None = None) -> str:
    """Markdown table: params, alphas and GFLOPs (fwd, fwd+bwd) per architecture and patch."""
    in_ch, out_ch = cost_channels(cfg)
    if archs is None:
        archs = [supernet_name(cfg)] + (list(PUBLISHED) if cfg.model.space == "vnas" else [])
    patches = dict.fromkeys(
        [tuple(cfg.patch.search), tuple(cfg.patch.train), tuple(cfg.patch.test)]
    )
    lines = [
        f"{cfg.name}: {cfg.model.space}, {model_kwargs(cfg)}, {in_ch} in, {out_ch} out",
        "| architecture | patch | params (M) | alphas | GFLOPs fwd | GFLOPs fwd+bwd |",
        "|---|---|---|---|---|---|",
    ]
    for name in archs:
        for patch in patches:
            c = model_cost(lambda n=name: build_model(cfg, n, in_ch, out_ch), in_ch, patch)
            lines.append(
                f"| {name} | {'x'.join(map(str, patch))} | {c['params'] / 1e6:.2f} | "
                f"{int(c['alphas'])} | {c['gflops_fwd']:.1f} | "
                f"{c['gflops_fwd_bwd']:.1f} |"
            )
    return "\n".join(lines)
