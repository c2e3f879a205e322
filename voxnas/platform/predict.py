"""Segment new scans with a trained model: the model's own preprocessing and tiling, and
masks written with the input's affine, shape and orientation, in the dataset's label values."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from voxnas.data.layouts import BRATS_MODALITIES, Case
from voxnas.data.nifti import bad_spacing, load_header, save_volume
from voxnas.data.preprocess import PreprocessSettings, invert_geometry, load_case, preprocess_image
from voxnas.device import pick_device
from voxnas.evaluation.inference import segment
from voxnas.trainables.bundle import ModelMeta, load_bundle

__all__ = ["find_inputs", "load_fold_ensemble", "load_model", "output_paths", "predict_paths"]

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


SEG_SUFFIX = "_seg.nii.gz"  # what predict writes next to case ids
MAX_VOXELS = 2**31  # a header claiming more is refused before anything is decoded


def find_inputs(
    path: Path, meta: ModelMeta, log: Callable[[str], None] | None = None
) -> list[Case]:
    """A NIfTI file, a BraTS subject folder, a folder of NIfTI files or of subject folders.
    Files named ``*_seg.nii.gz`` (masks this tool or BraTS wrote) are never inputs."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: input not found")
    if path.is_file():
        return [_file_case(path, meta)]
    files = sorted(p for p in path.iterdir() if _NII.search(p.name))
    skipped = [f for f in files if f.name.endswith(SEG_SUFFIX) or nifti_stem(f).endswith("_seg")]
    files = [f for f in files if f not in skipped]
    if skipped and log:
        log(f"skipping {len(skipped)} *_seg file(s) in {path} (masks, not scans)")
    suffixes = [f"_{m.lower()}" for m in BRATS_MODALITIES]
    brats_like = [f for f in files if any(nifti_stem(f).lower().endswith(s) for s in suffixes)]
    kinds = {s for f in brats_like for s in suffixes if nifti_stem(f).lower().endswith(s)}
    if len(meta.modalities) > 1 and brats_like:
        return [_subject_case(path, meta)]
    if len(meta.modalities) == 1 and len(kinds) >= 2:  # t1 + t2 + ...: one subject's scans
        raise ValueError(
            f"{path}: a BraTS subject folder ({', '.join(f.name for f in brats_like)}), but the "
            f"model takes one modality ({meta.modalities[0]})"
        )
    if files:
        return [_file_case(f, meta) for f in files]
    subs = [d for d in sorted(path.iterdir()) if d.is_dir()]
    if subs:
        return [_subject_case(d, meta) for d in subs]
    raise FileNotFoundError(f"{path}: no NIfTI files or subject folders inside")


def nifti_stem(f: Path) -> str:
    return _NII.sub("", f.name)


def _check_header(f: Path, ndims=(3, 4)) -> tuple[int, ...]:
    """The header's shape; ValueError naming ``f`` for a wrong rank, an absurd size or a
    degenerate voxel spacing (checked before any voxel is decoded)."""
    img = load_header(f)
    shape = tuple(img.shape)
    if len(shape) not in ndims:
        want = " or ".join(f"{n}D" for n in ndims)
        raise ValueError(f"{f}: a {len(shape)}D image (shape {shape}); expected {want}")
    if int(np.prod(shape, dtype=np.float64)) > MAX_VOXELS:
        raise ValueError(
            f"{f}: header claims {shape} = {np.prod(shape, dtype=np.float64):.3g} voxels"
        )
    spacing_problem = bad_spacing(img.affine)
    if spacing_problem:
        raise ValueError(f"{f}: {spacing_problem}")
    return shape


def _file_case(f: Path, meta: ModelMeta) -> Case:
    shape = _check_header(f)
    want = meta.in_channels
    if (len(shape) == 3 and want != 1) or (len(shape) == 4 and shape[-1] != want):
        raise ValueError(
            f"{f}: the model needs {want} modalities ({', '.join(meta.modalities)}),"
            f" the file has shape {shape}"
        )
    return Case(nifti_stem(f), (f,), None, four_d=len(shape) == 4)


def _subject_case(d: Path, meta: ModelMeta) -> Case:
    images = []
    for m in meta.modalities:
        found = [p for p in d.iterdir() if nifti_stem(p).lower().endswith(f"_{m.lower()}")]
        if not found:
            raise FileNotFoundError(f"{d}: missing modality {m!r} (a *_{m}.nii.gz file)")
        if len(found) > 1:
            raise ValueError(
                f"{d}: {len(found)} files for modality {m!r}: {', '.join(p.name for p in found)}"
            )
        shape = _check_header(found[0], ndims=(3,))
        if images and shape != images[0][1]:
            raise ValueError(
                f"{found[0]}: shape {shape} differs from {images[0][0].name} {images[0][1]}"
            )
        images.append((found[0], shape))
    return Case(d.name, tuple(f for f, _ in images), None)


def output_paths(cases: list[Case], output: Path, overwrite: bool = False) -> list[Path]:
    """Where each case's mask goes; refuses to write over an input, or over an existing file
    unless ``overwrite``. ``output`` is a file for one input, else a folder."""
    output = Path(output)
    single = len(cases) == 1 and bool(_NII.search(output.name))
    dests = [output] if single else [output / f"{c.case_id}{SEG_SUFFIX}" for c in cases]
    inputs = {f.resolve() for c in cases for f in c.images}
    seen: dict[Path, Case] = {}
    for case, dest in zip(cases, dests):
        if dest.resolve() in seen:
            raise ValueError(
                f"{case.images[0]} and {seen[dest.resolve()].images[0]}: both would be "
                f"written to {dest} (same case id)"
            )
        seen[dest.resolve()] = case
    for dest in dests:
        if dest.resolve() in inputs:
            raise ValueError(f"{dest}: is an input scan; refusing to overwrite it with a mask")
        if dest.exists() and not overwrite:
            raise FileExistsError(f"{dest}: exists (pass --overwrite to replace it)")
    parent = output.parent if single else output
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise NotADirectoryError(f"{probe}: is a file, not a folder for the output")
    if not os.access(probe, os.W_OK):
        raise PermissionError(f"{probe}: not writable")
    return dests


def predict_paths(
    model,
    meta: ModelMeta,
    cases: list[Case],
    output: Path,
    device: torch.device | None = None,
    progress: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Predict every case; ``output`` is a file for one input, else a folder. All outputs
    are checked (:func:`output_paths`) before the first scan is segmented."""
    device = device or pick_device()
    settings = PreprocessSettings.from_dict(meta.preprocessing)
    dests = output_paths(cases, output, overwrite)
    written = []
    for i, (case, dest) in enumerate(zip(cases, dests)):
        image, _, geom = load_case(case, settings, meta.label_values)
        bad = (~np.isfinite(image)).reshape(image.shape[0], -1).sum(1)
        if bad.any():
            c = int(np.argmax(bad > 0))
            where = case.images[0] if case.four_d else case.images[c]
            raise ValueError(
                f"{where}: {int(bad[c])} NaN/Inf voxel(s); the intensity normalisation would "
                "spread them over the whole scan (fix or mask the input)"
            )
        image = preprocess_image(image, settings)
        labels = segment(model, meta, image, device)
        mask = invert_geometry(labels, geom).astype(np.uint8)
        save_volume(dest, mask, np.asarray(geom.source_affine))
        written.append(dest)
        if progress:
            progress(i + 1, len(cases))
    return written
