"""A trained model and everything needed to use it alone: architecture, genotype, channel
counts, preprocessing settings, patch size and tiling, target kind, label values."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from voxnas.search_spaces.genotypes import genotype_from_json
from voxnas.search_spaces.registry import Architecture, create_model, resolve_architecture

__all__ = ["ModelMeta", "build_from_meta", "load_bundle", "save_bundle"]


@dataclass
class ModelMeta:
    arch: str
    space: str
    mode: str
    genotype: dict[str, Any] | None
    in_channels: int
    out_channels: int
    model_kwargs: dict[str, Any]
    preprocessing: dict[str, Any]
    patch: list[int]
    tiling: str
    overlap: float
    blend: str
    target: str
    label_values: list[int]
    label_names: dict[int, str]
    modalities: list[str]
    extra: dict[str, Any] = field(default_factory=dict)
    # BatchNorm at inference (older bundles: eval-mode running statistics)
    bn_stats: str = "running"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelMeta:
        d = dict(d)
        d["label_names"] = {int(k): v for k, v in d["label_names"].items()}
        return cls(**d)


def build_from_meta(meta: ModelMeta) -> nn.Module:
    if meta.genotype is not None:
        arch = Architecture(meta.arch, meta.space, genotype_from_json(meta.genotype))
    else:
        arch = resolve_architecture(meta.arch)
    return create_model(arch, meta.in_channels, meta.out_channels, **meta.model_kwargs)


def save_bundle(path: Path, model: nn.Module, meta: ModelMeta) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"meta": meta.to_dict(), "state_dict": model.state_dict()}, tmp)
    tmp.replace(path)
    return path


def _why(err: Exception) -> str:
    if "weights only" in str(err).lower():
        return "it holds Python objects that would run code when loaded: refused"
    first = str(err).splitlines()[0][:300] if str(err) else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def load_bundle(path: Path, device: torch.device | str = "cpu") -> tuple[nn.Module, ModelMeta]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model bundle not found")
    try:
        # weights_only: tensors and plain types only; a pickle that would run code is refused
        data = torch.load(path, map_location="cpu", weights_only=True)
        meta = ModelMeta.from_dict(data["meta"])
    except Exception as err:
        raise ValueError(f"{path}: not a voxnas model bundle ({_why(err)})") from None
    try:
        model = build_from_meta(meta)
        model.load_state_dict(data["state_dict"])
    except (RuntimeError, ValueError, TypeError, KeyError) as err:
        first = str(err).splitlines()[0][:300]
        raise ValueError(
            f"{path}: the weights do not fit the bundle's metadata ({first})"
        ) from None
    return model.to(device).eval(), meta
