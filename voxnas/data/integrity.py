"""Integrity check: every problem of a dataset in one report, one line per problem and file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voxnas.data.layouts import Case, Dataset, DatasetError, read_dataset
from voxnas.data.nifti import NiftiError, bad_spacing, decode

__all__ = [
    "DataIntegrityError",
    "Problem",
    "check_case",
    "check_dataset",
    "check_folder",
    "format_report",
]

AFFINE_TOL = 1e-3


class DataIntegrityError(ValueError):
    """The dataset failed the integrity check; the message is the full report."""


@dataclass(frozen=True)
class Problem:
    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def _decode(path: Path, problems: list[Problem]) -> tuple[np.ndarray, np.ndarray] | None:
    if not path.exists():
        problems.append(Problem(path, "file missing"))
        return None
    try:
        return decode(path)
    except NiftiError as err:
        problems.append(Problem(path, str(err).split(": ", 1)[1]))
        return None


def check_case(
    case: Case, n_modalities: int, labels: set[int], seen: set[int] | None = None
) -> list[Problem]:
    """Check one case; returns its problems (empty when clean). ``seen`` collects the label
    values found (for the dataset-level no-foreground check)."""
    problems: list[Problem] = []
    shapes: list[tuple[Path, tuple[int, ...], np.ndarray]] = []
    for path in case.images:
        got = _decode(path, problems)
        if got is None:
            continue
        data, affine = got
        want_ndim = 4 if case.four_d else 3
        if data.ndim != want_ndim:
            problems.append(
                Problem(
                    path,
                    f"expected a {want_ndim}D image, found {data.ndim}D with shape {data.shape}",
                )
            )
            continue
        if case.four_d and data.shape[-1] != n_modalities:
            problems.append(
                Problem(
                    path,
                    f"4D image has {data.shape[-1]} modalities, dataset declares {n_modalities}",
                )
            )
        spacing_problem = bad_spacing(affine)
        if spacing_problem:
            problems.append(Problem(path, spacing_problem))
        if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
            bad = int((~np.isfinite(data)).sum())
            problems.append(Problem(path, f"{bad} NaN/Inf voxel(s)"))
        shapes.append((path, data.shape[:3], affine))
    for path, shape, affine in shapes[1:]:
        ref_path, ref_shape, ref_affine = shapes[0]
        if shape != ref_shape:
            problems.append(
                Problem(path, f"modality shape {shape} differs from {ref_path.name} {ref_shape}")
            )
        elif not np.allclose(affine, ref_affine, atol=AFFINE_TOL):
            problems.append(Problem(path, f"affine differs from {ref_path.name}"))
    if case.label is None:
        problems.append(Problem(case.images[0], "no label file for this case"))
        return problems
    got = _decode(case.label, problems)
    if got is None:
        return problems
    label, affine = got
    if label.ndim != 3:
        problems.append(Problem(case.label, f"expected a 3D label, found shape {label.shape}"))
        return problems
    if shapes and label.shape != shapes[0][1]:
        problems.append(
            Problem(case.label, f"label shape {label.shape} differs from image {shapes[0][1]}")
        )
    elif shapes and not np.allclose(affine, shapes[0][2], atol=AFFINE_TOL):
        problems.append(Problem(case.label, "label affine differs from image affine"))
    if np.issubdtype(label.dtype, np.floating) and not np.isfinite(label).all():
        problems.append(Problem(case.label, "NaN/Inf in label"))
    else:
        values = set(np.unique(label).astype(np.int64).tolist())
        if seen is not None:
            seen.update(values)
        if np.issubdtype(label.dtype, np.floating) and not np.all(label == np.round(label)):
            problems.append(Problem(case.label, "non-integer label values"))
        extra = sorted(values - labels)
        if extra:
            problems.append(
                Problem(case.label, f"label values {extra} not among declared {sorted(labels)}")
            )
    return problems


def check_dataset(ds: Dataset, progress: Callable[[int, int], None] | None = None) -> list[Problem]:
    """Check every case of ``ds``; ``progress(i, n)`` is called after each case."""
    problems: list[Problem] = []
    labels, seen = set(ds.labels), set()
    for i, case in enumerate(ds.cases):
        problems.extend(check_case(case, len(ds.modalities), labels, seen))
        if progress:
            progress(i + 1, len(ds.cases))
    return problems + no_foreground(ds, seen, problems)


def no_foreground(ds: Dataset, seen: set[int], problems: list[Problem]) -> list[Problem]:
    """A dataset whose labels hold no foreground at all: nothing to learn, and every DSC
    would read 1.0 (empty prediction of an empty target)."""
    if problems or seen - {0}:
        return []
    where = ds.root / "dataset.json" if ds.layout == "msd" else ds.root
    return [Problem(where, "no label file has any foreground voxel (every label is 0)")]


def check_folder(
    root: Path, layout: str = "auto", progress: Callable[[int, int], None] | None = None
) -> list[Problem]:
    """Read and check a dataset folder; a folder that cannot be read is itself a problem."""
    try:
        ds = read_dataset(root, layout)
    except DatasetError as err:
        path, _, msg = str(err).partition(": ")
        return [Problem(Path(path), msg)]
    return check_dataset(ds, progress)


def format_report(problems: list[Problem], root: Path, n_cases: int | None = None) -> str:
    if not problems:
        extra = f" ({n_cases} cases)" if n_cases is not None else ""
        return f"{root}: OK{extra}"
    lines = [str(p) for p in problems]
    lines.append(f"{len(problems)} problem(s) in {root}")
    return "\n".join(lines)
