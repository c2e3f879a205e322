"""Reading and writing NIfTI with nibabel, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = ["NiftiError", "load_header", "load_volume", "save_volume"]


class NiftiError(ValueError):
    """A NIfTI file cannot be read; the message starts with its path."""


def load_header(path: Path) -> nib.Nifti1Image:
    """Open a NIfTI file without decoding its voxels (the proxy image)."""
    try:
        return nib.load(str(path))
    except FileNotFoundError:
        raise NiftiError(f"{path}: file not found") from None
    except Exception as err:  # nibabel raises many types for corrupt headers
        raise NiftiError(f"{path}: unreadable NIfTI ({type(err).__name__}: {err})") from None


def load_volume(path: Path, dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Decode a NIfTI file; returns ``(array, affine)``."""
    img = load_header(path)
    try:
        data = np.asarray(img.dataobj, dtype=dtype)
    except Exception as err:  # truncated gzip, short data block, ...
        raise NiftiError(f"{path}: truncated or corrupt voxel data ({err})") from None
    return data, np.asarray(img.affine, dtype=np.float64)


def save_volume(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    """Write ``data`` with ``affine`` (qform and sform set) to ``path``, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    tmp = path.with_name(path.name + ".tmp" + "".join(path.suffixes))
    nib.save(img, str(tmp))
    tmp.replace(path)
