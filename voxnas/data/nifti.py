"""Reading and writing NIfTI with nibabel, with errors that name the file."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = [
    "NiftiError",
    "bad_spacing",
    "decode",
    "load_header",
    "load_volume",
    "save_volume",
    "shared_decodes",
    "voxel_spacing",
]

MIN_SPACING = 1e-4  # mm: a zero spacing would divide by zero when resampling


class NiftiError(ValueError):
    """A NIfTI file cannot be read; the message starts with its path."""


def voxel_spacing(affine) -> tuple[float, ...]:
    """Voxel size in mm along each voxel axis: the lengths of the affine's columns."""
    return tuple(float(s) for s in np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(0)))


def bad_spacing(affine) -> str | None:
    """The problem with a degenerate (zero or non-finite) voxel spacing, or None."""
    spacing = np.asarray(voxel_spacing(affine))
    if np.all(np.isfinite(spacing)) and spacing.min() >= MIN_SPACING:
        return None
    return f"voxel spacing {np.round(spacing, 6).tolist()} mm in the affine"


def load_header(path: Path) -> nib.Nifti1Image:
    """Open a NIfTI file without decoding its voxels (the proxy image)."""
    try:
        return nib.load(str(path))
    except FileNotFoundError:
        raise NiftiError(f"{path}: file not found") from None
    except Exception as err:  # nibabel raises many types for corrupt headers
        raise NiftiError(f"{path}: unreadable NIfTI ({type(err).__name__}: {err})") from None


_memo: dict[str, tuple[np.ndarray, np.ndarray]] | None = None


@contextlib.contextmanager
def shared_decodes() -> Iterator[None]:
    """Inside the block every file is decoded at most once: the integrity check and the
    preprocessing of a case share the voxels instead of decoding the file twice."""
    global _memo
    prev, _memo = _memo, {}
    try:
        yield
    finally:
        _memo = prev


def _decode_voxels(img: nib.Nifti1Image) -> np.ndarray:
    """The one place voxels are decoded (tests count calls here)."""
    return np.asanyarray(img.dataobj)


def decode(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Decode a NIfTI file in its stored dtype; returns ``(array, affine)``."""
    key = str(Path(path).resolve())
    if _memo is not None and key in _memo:
        return _memo[key]
    img = load_header(path)
    try:
        data = _decode_voxels(img)
    except Exception as err:  # truncated gzip, short data block, ...
        raise NiftiError(
            f"{path}: truncated or corrupt voxel data ({type(err).__name__})"
        ) from None
    out = (data, np.asarray(img.affine, dtype=np.float64))
    if _memo is not None:
        _memo[key] = out
    return out


def load_volume(path: Path, dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Decode a NIfTI file as ``dtype``; returns ``(array, affine)``."""
    data, affine = decode(path)
    return np.asarray(data, dtype=dtype), affine


def save_volume(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    """Write ``data`` with ``affine`` (qform and sform set) to ``path``, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    # unique per process and call: two writers of the same file never share a temp file
    tmp = path.with_name(
        f"{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{''.join(path.suffixes)}"
    )
    nib.save(img, str(tmp))
    tmp.replace(path)
