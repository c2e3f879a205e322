import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from voxnas.data.integrity import check_folder
from voxnas.data.layouts import DatasetError, detect_layout, read_dataset
from voxnas.data.nifti import load_volume, save_volume


@pytest.mark.parametrize("layout,n_mod", [("msd", 1), ("brats", 4), ("paired", 1)])
def test_synth_reader_check_round_trip(layout, n_mod, request):
    root = request.getfixturevalue(f"{layout}_dir")
    assert detect_layout(root) == layout
    ds = read_dataset(root)
    assert ds.layout == layout and len(ds.modalities) == n_mod
    assert all(len(c.images) == n_mod and c.label.exists() for c in ds.cases)
    assert check_folder(root) == []


def test_msd_labels_and_affine(msd_dir):
    ds = read_dataset(msd_dir)
    assert ds.labels == {0: "background", 1: "organ", 2: "tumour"}
    img = nib.load(str(ds.cases[0].images[0]))
    assert np.allclose(np.abs(np.diag(img.affine)[:3]), (0.8, 0.8, 2.5))
    lbl, _ = load_volume(ds.cases[0].label)
    assert set(np.unique(lbl)) <= {0, 1, 2}


def test_brats_labels_nested(brats_dir):
    ds = read_dataset(brats_dir)
    img = np.stack([load_volume(p)[0] for p in ds.cases[0].images])
    lbl, _ = load_volume(ds.cases[0].label)
    assert set(np.unique(lbl)) <= {0, 1, 2, 4} and (lbl == 4).any()
    brain = img[0] != 0
    assert (img[:, ~brain] == 0).all() and not brain.all()  # zero background
    assert (lbl[~brain] == 0).all()  # tumour inside the brain


def test_synth_is_deterministic(tmp_path):
    from voxnas.data.synthetic import write_synthetic

    a = write_synthetic(tmp_path / "a", "paired", 2, (16, 16, 8), seed=3)
    b = write_synthetic(tmp_path / "b", "paired", 2, (16, 16, 8), seed=3)
    c = write_synthetic(tmp_path / "c", "paired", 2, (16, 16, 8), seed=4)
    va = load_volume(a / "images" / "synth_000.nii.gz")[0]
    assert np.array_equal(va, load_volume(b / "images" / "synth_000.nii.gz")[0])
    assert not np.array_equal(va, load_volume(c / "images" / "synth_000.nii.gz")[0])


def test_msd_4d_and_nnunet_channel_files(tmp_path):
    aff = np.diag([1.0, 1.0, 2.0, 1.0])
    rng = np.random.default_rng(0)
    lbl = (rng.random((8, 8, 4)) > 0.5).astype(np.uint8)
    save_volume(
        tmp_path / "imagesTr" / "a.nii.gz", rng.random((8, 8, 4, 2)).astype(np.float32), aff
    )
    save_volume(tmp_path / "labelsTr" / "a.nii.gz", lbl, aff)
    for ch in range(2):
        save_volume(
            tmp_path / "imagesTr" / f"b_{ch:04d}.nii.gz",
            rng.random((8, 8, 4)).astype(np.float32),
            aff,
        )
    save_volume(tmp_path / "labelsTr" / "b.nii.gz", lbl, aff)
    meta = {
        "modality": {"0": "T1", "1": "T2"},
        "labels": {"0": "bg", "1": "fg"},
        "training": [
            {"image": "./imagesTr/a.nii.gz", "label": "./labelsTr/a.nii.gz"},
            {"image": "./imagesTr/b.nii.gz", "label": "./labelsTr/b.nii.gz"},
        ],
    }
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    ds = read_dataset(tmp_path)
    a, b = ds.cases
    assert a.four_d and len(a.images) == 1
    assert not b.four_d and [p.name for p in b.images] == ["b_0000.nii.gz", "b_0001.nii.gz"]
    assert check_folder(tmp_path) == []
    from voxnas.data.preprocess import PreprocessSettings, load_case

    img, _, _ = load_case(a, PreprocessSettings(), [0, 1])
    assert img.shape == (2, 8, 8, 4)


def test_escaping_path_rejected(msd_dir, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(msd_dir, root)
    meta = json.loads((root / "dataset.json").read_text())
    meta["training"][0]["label"] = "../../etc/passwd"
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="escapes the dataset root"):
        read_dataset(root)


def test_empty_and_missing(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        read_dataset(tmp_path / "nope")
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    with pytest.raises(DatasetError, match="empty dataset"):
        read_dataset(tmp_path)
