"""Segment new scans with a trained model: the model's own preprocessing and tiling, and
masks written with the input's affine, shape and orientation, in the dataset's label values."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from voxnas.data.layouts import Case
from voxnas.data.nifti import load_header, save_volume
from voxnas.data.preprocess import PreprocessSettings, invert_geometry, load_case, preprocess_image
from voxnas.device import pick_device
from voxnas.evaluation.inference import segment
from voxnas.trainables.bundle import ModelMeta, load_bundle

__all__ = ["find_inputs", "load_fold_ensemble", "load_model", "predict_paths"]

_NII = re.compile(r"\.nii(\.gz)?$")


def load_model(uri: str, device: torch.device, tracking_uri: str | None = None):
    """A local ``model.pt`` bundle, or an MLflow URI (``models:/NAME/VERSION``, ``runs:/...``)."""
    path = Path(uri)
    if path.is_file():
        return load_bundle(path, device)
    if "://" not in uri and ":/" not in uri:
        raise FileNotFoundError(f"{uri}: no such model file (or give an MLflow models:/ URI)")
    from voxnas.platform.tracking import download_model_bundle

    with tempfile.TemporaryDirectory() as tmp:
        return load_bundle(download_model_bundle(uri, Path(tmp), tracking_uri), device)


def load_fold_ensemble(run_dir: Path, device: torch.device, arch: str = "searched"):
    """The fold models of ``arch`` in a run folder as one ensemble: ``(models, meta)``; their
    probabilities are averaged at prediction (nnU-Net's default)."""
    from voxnas.run_layout import RunLayout, arch_dirname

    paths = sorted((RunLayout(Path(run_dir)).retrain / arch_dirname(arch)).glob("fold*/model.pt"))
    if not paths:
        raise FileNotFoundError(
            f"{RunLayout(Path(run_dir)).retrain / arch_dirname(arch)}: no fold models "
            "(fold*/model.pt): run the protocol first"
        )
    models, metas = zip(*(load_bundle(p, device) for p in paths))
    ref = {k: v for k, v in metas[0].to_dict().items() if k != "extra"}
    for path, meta in zip(paths[1:], metas[1:]):
        if {k: v for k, v in meta.to_dict().items() if k != "extra"} != ref:
            raise ValueError(f"{path}: not the same architecture and settings as {paths[0]}")
    return list(models), metas[0]


def find_inputs(path: Path, meta: ModelMeta) -> list[Case]:
    """A NIfTI file, a BraTS subject folder, a folder of NIfTI files or of subject folders."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: input not found")
    if path.is_file():
        return [_file_case(path, meta)]
    files = sorted(p for p in path.iterdir() if _NII.search(p.name))
    suffixes = [f"_{m.lower()}" for m in meta.modalities]
    if len(meta.modalities) > 1 and any(_NII.sub("", f.name).endswith(suffixes[0]) for f in files):
        return [_subject_case(path, meta)]
    if files:
        return [_file_case(f, meta) for f in files]
    subs = [d for d in sorted(path.iterdir()) if d.is_dir()]
    if subs:
        return [_subject_case(d, meta) for d in subs]
    raise FileNotFoundError(f"{path}: no NIfTI files or subject folders inside")


def _file_case(f: Path, meta: ModelMeta) -> Case:
    ndim = len(load_header(f).shape)
    want = meta.in_channels
    if (ndim == 3 and want != 1) or (ndim == 4 and load_header(f).shape[-1] != want):
        raise ValueError(
            f"{f}: the model needs {want} modalities ({', '.join(meta.modalities)}),"
            f" the file has shape {load_header(f).shape}"
        )
    return Case(_NII.sub("", f.name), (f,), None, four_d=ndim == 4)


def _subject_case(d: Path, meta: ModelMeta) -> Case:
    images = []
    for m in meta.modalities:
        found = [p for p in d.iterdir() if _NII.sub("", p.name).lower().endswith(f"_{m.lower()}")]
        if not found:
            raise FileNotFoundError(f"{d}: missing modality {m!r} (a *_{m}.nii.gz file)")
        images.append(found[0])
    return Case(d.name, tuple(images), None)


def predict_paths(
    model,
    meta: ModelMeta,
    cases: list[Case],
    output: Path,
    device: torch.device | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Predict every case; ``output`` is a file for one input, else a folder."""
    device = device or pick_device()
    settings = PreprocessSettings.from_dict(meta.preprocessing)
    single = len(cases) == 1 and _NII.search(str(output))
    written = []
    for i, case in enumerate(cases):
        image, _, geom = load_case(case, settings, meta.label_values)
        image = preprocess_image(image, settings)
        labels = segment(model, meta, image, device)
        mask = invert_geometry(labels, geom).astype(np.uint8)
        dest = Path(output) if single else Path(output) / f"{case.case_id}_seg.nii.gz"
        save_volume(dest, mask, np.asarray(geom.source_affine))
        written.append(dest)
        if progress:
            progress(i + 1, len(cases))
    return written
