"""Each defect is planted in a copy of a clean dataset and must be reported, naming its file,
with no other problem reported."""

import gzip
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from voxnas.cli import main
from voxnas.data.integrity import check_folder
from voxnas.data.nifti import load_volume, save_volume


def _copy(src, tmp_path):
    dst = tmp_path / "ds"
    shutil.copytree(src, dst)
    return dst


def _rewrite(path, fn):
    data, aff = load_volume(path)
    data, aff = fn(data, aff)
    save_volume(path, data, aff)


def _first(root, kind):
    if kind == "image":
        return sorted((root / "images").iterdir())[0]
    return sorted((root / "labels").iterdir())[0]


DEFECTS = {
    "unreadable": (lambda p: p.write_bytes(b"not a nifti file at all" * 10), "unreadable"),
    "truncated": (
        lambda p: p.write_bytes(gzip.compress(gzip.decompress(p.read_bytes())[:2000])),
        "truncated",
    ),
    "nan": (
        lambda p: _rewrite(p, lambda d, a: (np.where(d > 100, np.nan, d).astype(np.float32), a)),
        "NaN/Inf",
    ),
    "dimensionality": (lambda p: _rewrite(p, lambda d, a: (d[..., 0], a)), "expected a 3D image"),
    "affine": (
        lambda p: _rewrite(p, lambda d, a: (d, a @ np.diag([1.0, 1.0, 1.5, 1.0]))),
        "affine differs",
    ),
}


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_image_defect_reported_with_file(defect, paired_dir, tmp_path):
    root = _copy(paired_dir, tmp_path)
    target = _first(root, "label" if defect == "affine" else "image")
    plant, needle = DEFECTS[defect]
    plant(target)
    problems = check_folder(root)
    assert len(problems) == 1, problems
    assert problems[0].path == target and needle in problems[0].message


def test_shape_mismatch(paired_dir, tmp_path):
    root = _copy(paired_dir, tmp_path)
    target = _first(root, "label")
    _rewrite(target, lambda d, a: (d[:-2].astype(np.uint8), a))
    (p,) = check_folder(root)
    assert (
        p.path == target and "label shape (30, 32, 16) differs from image (32, 32, 16)" in p.message
    )


def test_label_values_outside_declared(msd_dir, tmp_path):
    root = _copy(msd_dir, tmp_path)
    target = sorted((root / "labelsTr").iterdir())[1]
    _rewrite(target, lambda d, a: (np.where(d == 1, 7, d).astype(np.uint8), a))
    (p,) = check_folder(root)
    assert p.path == target and "[7]" in p.message


def test_missing_label_and_modality(brats_dir, tmp_path):
    root = _copy(brats_dir, tmp_path)
    subs = sorted(d for d in root.iterdir() if d.is_dir())
    flair = next(subs[0].glob("*_flair.nii.gz"))
    seg = next(subs[1].glob("*_seg.nii.gz"))
    flair.unlink()
    seg.unlink()
    problems = check_folder(root)
    assert {(p.path.name, p.message) for p in problems} == {
        (flair.name, "file missing"),
        (seg.name, "file missing"),
    }


def test_modality_shape_mismatch(brats_dir, tmp_path):
    root = _copy(brats_dir, tmp_path)
    sub = sorted(d for d in root.iterdir() if d.is_dir())[0]
    t2 = next(sub.glob("*_t2.nii.gz"))
    _rewrite(t2, lambda d, a: (d[:, :, :-1], a))
    (p,) = check_folder(root)
    assert p.path == t2 and "modality shape" in p.message


def test_empty_dataset(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    (p,) = check_folder(tmp_path)
    assert "empty dataset" in p.message


def test_many_defects_one_report_and_exit_code(paired_dir, tmp_path):
    root = _copy(paired_dir, tmp_path)
    images = sorted((root / "images").iterdir())
    DEFECTS["unreadable"][0](images[0])
    DEFECTS["nan"][0](images[1])
    result = CliRunner().invoke(main, ["check-data", str(root)])
    assert result.exit_code == 1
    assert str(images[0]) in result.output and str(images[1]) in result.output
    assert "2 problem(s)" in result.output
    assert CliRunner().invoke(main, ["check-data", str(paired_dir)]).exit_code == 0
