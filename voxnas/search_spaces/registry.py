"""Registry of named architectures: ``create_model(name_or_genotype, in_channels, ...)``.

Names: ``vnas-supernet``, ``mix`` (seed 000's Mix baseline), the published ``V-NAS-NIH``,
``V-NAS-Lung``, ``V-NAS-Pancreas`` (seed 000 Tables 2-4), the nine manual ``E/D``
configurations of seed 000 Table 1 (``3D/3D`` ... ``P3D/P3D``), ``nas3dunet-supernet`` and
``nas3dunet-mix``. A V-NAS paper code string, a genotype JSON file or a genotype object work
too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from voxnas.search_spaces.genotypes import (
    N_DECODER,
    N_ENCODER,
    NAS3DGenotype,
    VNASGenotype,
    genotype_from_json,
)
from voxnas.search_spaces.nas3dunet import NAS3DUNet
from voxnas.search_spaces.vnas import VNAS

__all__ = ["PUBLISHED", "Architecture", "create_model", "list_models", "resolve_architecture"]

PUBLISHED = {
    "V-NAS-NIH": "[0 0 0, 0 0 0 1, 2 0 2 0 2 2, 0 0 0] [0 0 1 0 1]",
    "V-NAS-Lung": "[0 0 0, 1 2 0 1, 2 1 2 0 0 0, 0 0 0] [0 0 2 1 1]",
    "V-NAS-Pancreas": "[0 2 2, 2 0 0 0, 2 2 1 2 1 1, 0 1 1] [1 0 2 0 1]",
}
_KINDS = {"2D": 0, "3D": 1, "P3D": 2}
MANUAL = {
    f"{e}/{d}": VNASGenotype((_KINDS[e],) * N_ENCODER, (_KINDS[d],) * N_DECODER)
    for e in ("3D", "2D", "P3D")
    for d in ("3D", "2D", "P3D")
}
SUPERNETS = {
    "vnas-supernet": ("vnas", "search"),
    "mix": ("vnas", "mix"),
    "nas3dunet-supernet": ("nas3dunet", "search"),
    "nas3dunet-mix": ("nas3dunet", "mix"),
}


class Architecture:
    """A resolved architecture: its space, genotype (None for supernets) and mode."""

    def __init__(self, name: str, space: str, genotype: Any = None, mode: str = "fixed"):
        self.name, self.space, self.genotype, self.mode = name, space, genotype, mode

    def __repr__(self) -> str:
        return f"Architecture({self.name!r}, {self.space}, {self.mode})"


def list_models() -> dict[str, str]:
    """Registered names -> one-line description."""
    out = {n: f"{s} supernet ({m})" for n, (s, m) in SUPERNETS.items()}
    out.update({n: f"V-NAS published: {c}" for n, c in PUBLISHED.items()})
    out.update({n: f"V-NAS manual: {g.code()}" for n, g in MANUAL.items()})
    return out


def resolve_architecture(spec: str | VNASGenotype | NAS3DGenotype) -> Architecture:
    """Name, V-NAS code, genotype JSON path or genotype object -> :class:`Architecture`."""
    if isinstance(spec, (VNASGenotype, NAS3DGenotype)):
        return Architecture(spec.code(), spec.space, spec)
    if spec in SUPERNETS:
        space, mode = SUPERNETS[spec]
        return Architecture(spec, space, None, mode)
    if spec in PUBLISHED:
        return Architecture(spec, "vnas", VNASGenotype.parse(PUBLISHED[spec]))
    if spec in MANUAL:
        return Architecture(spec, "vnas", MANUAL[spec])
    path = Path(spec)
    if path.suffix == ".json" and path.is_file():
        data = json.loads(path.read_text())
        g = genotype_from_json(data.get("genotype", data))
        return Architecture(path.stem, g.space, g)
    if spec.strip().startswith("["):
        return Architecture(spec, "vnas", VNASGenotype.parse(spec))
    known = ", ".join(list_models())
    raise ValueError(
        f"unknown architecture {spec!r}: not a registered name ({known}), "
        "a V-NAS code or a genotype .json file"
    )


_KWARGS = {
    "vnas": ("width", "psp", "dense_layers"),
    "nas3dunet": ("init_kernels", "depth", "nodes", "channel_change"),
}


def create_model(
    spec: str | VNASGenotype | NAS3DGenotype | Architecture,
    in_channels: int,
    out_channels: int,
    **kw: Any,
) -> nn.Module:
    """Build a supernet or fixed network. ``kw``: V-NAS ``width``, ``psp``, ``dense_layers``;
    NAS-3D-U-Net ``init_kernels``, ``depth``, ``nodes``, ``channel_change``. Any other keyword
    (a typo, or ``width`` for NAS-3D-U-Net) is a TypeError, never silently ignored."""
    arch = spec if isinstance(spec, Architecture) else resolve_architecture(spec)
    unknown = sorted(set(kw) - set(_KWARGS[arch.space]))
    if unknown:
        raise TypeError(
            f"create_model({arch.name!r}): unknown option(s) {unknown} for the {arch.space} "
            f"space (accepted: {', '.join(_KWARGS[arch.space])})"
        )
    mode = arch.mode if arch.genotype is None else "search"
    if arch.space == "vnas":
        return VNAS(in_channels, out_channels, genotype=arch.genotype, mode=mode, **kw)
    return NAS3DUNet(in_channels, out_channels, genotype=arch.genotype, mode=mode, **kw)
