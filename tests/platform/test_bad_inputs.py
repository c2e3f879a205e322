"""The bad-input battery: every class of bad input the safety issue names, through the
command line as a user (or an attacker) gives it. For each: a non-zero exit, one error line
naming the file or key and the problem, no traceback, and nothing written before (dataset,
outputs, checkpoints) changed or removed."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from tiny import TINY_VNAS

from voxnas.cli import main
from voxnas.data.synthetic import write_synthetic
from voxnas.search_spaces.registry import create_model
from voxnas.trainables.bundle import ModelMeta, save_bundle

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / "configs" / "demo.yaml")
SMALL = [
    *TINY_VNAS,
    "search.epochs=1",
    "search.iterations_per_epoch=1",
    "search.warmup_epochs=0",
    "tracking.enabled=false",
]


class _Evil:
    """A pickle whose loading would create ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plant_pickle(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump({"meta": _Evil(marker), "state_dict": {}, "objects": _Evil(marker)}, f)
    return path


def nii(path: Path, data: np.ndarray, affine=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def bundle(path: Path, modalities=("CT",)) -> Path:
    meta = ModelMeta(
        arch="P3D/P3D",
        space="vnas",
        mode="fixed",
        genotype=None,
        in_channels=len(modalities),
        out_channels=2,
        model_kwargs={"width": 0.0625, "psp": False},
        preprocessing={
            "intensity": "ct",
            "ct_window": [-100.0, 240.0],
            "mri_xi": 100.0,
            "mri_lambda": 0.1,
            "target_spacing": None,
        },
        patch=[32, 32, 16],
        tiling="sliding",
        overlap=0.25,
        blend="gaussian",
        target="labels",
        label_values=[0, 1],
        label_names={0: "background", 1: "organ"},
        modalities=list(modalities),
    )
    model = create_model("P3D/P3D", len(modalities), 2, width=0.0625, psp=False)
    return save_bundle(path, model, meta)


def predict_argv(e, scan, output, model=None) -> list[str]:
    """``voxnas predict`` with a tiny single-channel bundle unless ``model`` is given."""
    model = model or bundle(e.tmp / "m.pt")
    return ["predict", "--model", str(model), "--input", str(scan), "--output", str(output)]


@dataclass
class Env:
    tmp: Path
    msd: Path  # a clean MSD dataset (copied per test)

    def dataset(self, name: str = "ds") -> Path:
        dest = self.tmp / name
        shutil.copytree(self.msd, dest)
        return dest

    def data_args(self, root: Path, *extra: str) -> list[str]:
        sets = [*SMALL, f"data.root={root}", f"workdir={self.tmp / 'w'}", *extra]
        return [DEMO] + [a for s in sets for a in ("--set", s)]

    def scan(self, name: str = "scan.nii.gz", nan: bool = False) -> Path:
        data = np.random.default_rng(0).normal(0, 50, (32, 32, 16)).astype(np.float32)
        if nan:
            data[3, 4, 5] = np.nan
        return nii(self.tmp / "in" / name, data)


@pytest.fixture(scope="module")
def msd_template(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("tpl"), "msd", cases=4, shape=(32, 32, 16))


@pytest.fixture
def env(tmp_path, msd_template):
    return Env(tmp_path, msd_template)


def _edit_json(path: Path, fn: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


# ---------------------------------------------------------------- the cases
# each returns (argv, needle): the error line must contain the needle (file or key + problem)


def c_set_not_yaml(e):
    return ["prepare", DEMO, "--set", "search.epochs=[1,"], "--set search.epochs: not valid YAML"


def c_set_unknown_key(e):
    return ["prepare", DEMO, "--set", "search.nope=1"], "search.nope"


def c_ct_window_reversed(e):
    return ["prepare", DEMO, "--set", "data.ct_window=[240,-100]"], "ct_window"


def c_ratio_zero(e):
    return ["prepare", DEMO, "--set", "split.train_val_ratio=[0,0]"], "train_val_ratio"


def c_spacing_zero(e):
    return ["prepare", DEMO, "--set", "data.target_spacing=[0,1,1]"], "target_spacing"


def c_name_dotdot(e):
    return ["prepare", DEMO, "--set", "name=../escape"], "name"


def c_name_absolute(e):
    return ["prepare", DEMO, "--set", "name=/tmp/escape"], "name"


def c_patch_not_divisible(e):
    return ["cost", DEMO, "--set", "patch.search=[48,32,16]"], "patch.search (48, 32, 16)"


def c_patch_larger_than_phantoms(e):
    args = ["--set", f"workdir={e.tmp / 'w'}", "--set", "patch.train=[64,64,32]"]
    return ["prepare", DEMO, *args], "patch.train (64, 64, 32) is larger than every volume"


def c_patch_zero(e):
    return ["prepare", DEMO, "--set", "patch.train=[0,32,32]"], "patch.train"


def c_overlap_negative(e):
    return ["prepare", DEMO, "--set", "patch.overlap=-0.5"], "patch.overlap"


def c_anchor_bomb(e):
    rows = ["x"] * 10
    text = "name: bomb\nray:\n  hp_space:\n    a: &a " + json.dumps(rows) + "\n"
    prev = "a"
    for k in "bcdefg":
        text += f"    {k}: &{k} [" + ", ".join([f"*{prev}"] * 10) + "]\n"
        prev = k
    path = e.tmp / "bomb.yaml"
    path.write_text(text)
    return ["prepare", str(path)], "bomb.yaml: expands to more than"


def c_hp_space_unknown(e):
    return [
        "prepare",
        DEMO,
        "--set",
        'ray.hp_space={"search.lrr": {"values": [1]}}',
    ], "ray.hp_space"


def c_config_missing(e):
    return ["prepare", str(e.tmp / "nope.yaml")], "nope.yaml: config file not found"


def c_config_not_yaml(e):
    (e.tmp / "bad.yaml").write_text("name: [unclosed\n")
    return ["prepare", str(e.tmp / "bad.yaml")], "bad.yaml: not valid YAML"


def c_config_list(e):
    (e.tmp / "list.yaml").write_text("- a\n- b\n")
    return ["prepare", str(e.tmp / "list.yaml")], "list.yaml: top level must be a mapping"


def c_empty_folder(e):
    (e.tmp / "empty").mkdir()
    return ["prepare", *e.data_args(e.tmp / "empty")[1:]], "cannot tell the layout"


def c_missing_root(e):
    return ["prepare", *e.data_args(e.tmp / "absent")[1:]], "absent: dataset folder not found"


def c_dataset_json_invalid(e):
    root = e.dataset()
    (root / "dataset.json").write_text("{not json")
    return ["prepare", *e.data_args(root)[1:]], "dataset.json: unreadable dataset.json"


def c_dataset_json_label_key(e):
    root = e.dataset()
    _edit_json(root / "dataset.json", lambda d: d["labels"].update({"organ": "1"}))
    return ["prepare", *e.data_args(root)[1:]], "'labels' key 'organ' is not an integer"


def c_dataset_json_training_type(e):
    root = e.dataset()
    _edit_json(root / "dataset.json", lambda d: d.update(training="imagesTr"))
    return ["prepare", *e.data_args(root)[1:]], "'training' must be a list"


def c_dataset_json_path_type(e):
    root = e.dataset()
    _edit_json(root / "dataset.json", lambda d: d["training"][0].update(image=7))
    return ["prepare", *e.data_args(root)[1:]], "training[0].image must be a path string"


def c_dataset_json_escape(e):
    root = e.dataset()
    _edit_json(root / "dataset.json", lambda d: d["training"][0].update(label="../../etc/x"))
    return ["prepare", *e.data_args(root)[1:]], "escapes the dataset root"


def c_dataset_json_test_entry(e):
    root = e.dataset()
    _edit_json(root / "dataset.json", lambda d: d.update(test=[{"label": "x.nii.gz"}]))
    return ["prepare", *e.data_args(root)[1:]], "dataset.json: test[0] has no 'image'"


def c_name_reserved(e):
    return ["prepare", DEMO, "--set", "name=cache"], "'cache' is the name of another workdir"


def c_two_inputs_one_output(e):
    e.scan("a.nii.gz")
    nii(e.tmp / "in" / "a.nii", np.zeros((32, 32, 16), np.float32))
    return predict_argv(e, e.tmp / "in", e.tmp / "out"), "both would be written to"


def c_folds_more_than_cases(e):
    root = e.dataset()
    args = e.data_args(root, "split.folds=9")[1:]
    return ["prepare", *args], "split.folds=9: the dataset has only 4 cases"


def c_duplicate_case_ids(e):
    root = e.dataset()

    def dup(d):
        d["training"].append(
            dict(d["training"][0], image="./imagesTs/../imagesTr/synth_000.nii.gz")
        )

    _edit_json(root / "dataset.json", dup)
    return ["prepare", *e.data_args(root)[1:]], "case id 'synth_000' also used by"


def c_wrong_layout(e):
    root = e.dataset()
    return ["prepare", *e.data_args(root, "data.layout=brats")[1:]], "empty dataset"


def c_brats_two_files_one_modality(e):
    root = write_synthetic(e.tmp / "brats", "brats", cases=2, shape=(32, 32, 16))
    sub = sorted(d for d in root.iterdir() if d.is_dir())[0]
    shutil.copy(sub / f"{sub.name}_t1.nii.gz", sub / f"{sub.name}_copy_t1.nii.gz")
    return ["check-data", str(root)], "two files for 't1'"


def c_paired_labels_json(e):
    root = write_synthetic(e.tmp / "paired", "paired", cases=2, shape=(32, 32, 16))
    (root / "labels.json").write_text('{"0": "bg", "x": "organ"}')
    return ["check-data", str(root)], "labels.json: 'labels' key 'x' is not an integer"


def c_paired_symlink_outside(e):
    root = write_synthetic(e.tmp / "paired", "paired", cases=2, shape=(32, 32, 16))
    outside = e.scan("outside.nii.gz")
    (root / "images" / "synth_000.nii.gz").unlink()
    (root / "images" / "synth_000.nii.gz").symlink_to(outside)
    return ["check-data", str(root)], "links outside the dataset root"


def c_no_foreground(e):
    root = e.dataset()
    for f in (root / "labelsTr").glob("*.nii.gz"):
        img = nib.load(str(f))
        nib.save(nib.Nifti1Image(np.zeros(img.shape, np.uint8), img.affine), str(f))
    return ["prepare", *e.data_args(root)[1:]], "no label file has any foreground voxel"


def c_nan_in_training_image(e):
    root = e.dataset()
    f = root / "imagesTr" / "synth_001.nii.gz"
    img = nib.load(str(f))
    data = np.asarray(img.dataobj, np.float32)
    data[1, 2, 3] = np.nan
    nib.save(nib.Nifti1Image(data, img.affine), str(f))
    return ["prepare", *e.data_args(root)[1:]], "synth_001.nii.gz: 1 NaN/Inf voxel(s)"


def c_patch_larger_than_volume(e):
    root = e.dataset()
    args = e.data_args(root, "patch.train=[64,32,16]", "patch.search=[64,32,16]")
    return ["prepare", *args[1:]], "patch.search (64, 32, 16) is larger than every volume"


def c_corrupt_cache(e):
    root = e.dataset()
    args = e.data_args(root)
    assert CliRunner().invoke(main, ["prepare", *args[1:]]).exit_code == 0
    for npy in (e.tmp / "w" / "cache").rglob("synth_00*_image.npy"):
        npy.write_bytes(b"garbage")
    return ["search", *args, "--fold", "0"], "_image.npy: corrupt cache file"


def c_planted_checkpoint(e):
    root = e.dataset()
    args = e.data_args(root)
    plant_pickle(e.tmp / "w" / "demo" / "search" / "fold0" / "checkpoint" / "state.pt", e.marker)
    return ["search", *args, "--fold", "0"], "state.pt: not a voxnas checkpoint"


def c_bad_fold(e):
    root = e.dataset()
    return ["search", *e.data_args(root), "--fold", "5"], "--fold 5: there are 2 folds"


def c_model_evil(e):
    evil = plant_pickle(e.tmp / "evil.pt", e.marker)
    return [
        "predict",
        "--model",
        str(evil),
        "--input",
        str(e.scan()),
        "--output",
        str(e.tmp / "out.nii.gz"),
    ], "evil.pt: not a voxnas model bundle"


def c_model_missing(e):
    return [
        "predict",
        "--model",
        str(e.tmp / "none.pt"),
        "--input",
        str(e.scan()),
        "--output",
        str(e.tmp / "o.nii.gz"),
    ], "none.pt: no such model file"


def c_model_runs_uri_no_store(e):
    e.expect_absent = [e.tmp / "w" / "mlflow.db"]
    uri = f"sqlite:///{e.tmp / 'w' / 'mlflow.db'}"
    return [
        "predict",
        "--model",
        "runs:/deadbeef/model",
        "--tracking-uri",
        uri,
        "--input",
        str(e.scan()),
        "--output",
        str(e.tmp / "o.nii.gz"),
    ], "runs:/deadbeef/model: no MLflow store"


def c_model_runs_uri_unknown_run(e):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{e.tmp / 'store.db'}"
    MlflowClient(uri).search_experiments()  # an existing, empty store
    return [
        "predict",
        "--model",
        "runs:/deadbeef/model",
        "--tracking-uri",
        uri,
        "--input",
        str(e.scan()),
        "--output",
        str(e.tmp / "o.nii.gz"),
    ], "runs:/deadbeef/model: "


def _zero_slice_spacing(path: Path, data: np.ndarray) -> Path:
    """A NIfTI whose sform gives the slice axis zero length (nibabel will not write one)."""
    import struct

    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    raw = bytearray(path.read_bytes())
    for off in (280, 296, 312):  # srow_x, srow_y, srow_z: zero their third entry
        raw[off + 8 : off + 12] = struct.pack("<f", 0.0)
    raw[252:256] = struct.pack("<hh", 0, 1)  # qform_code 0, sform_code 1
    path.write_bytes(bytes(raw))
    return path


def c_input_zero_spacing(e):
    (e.tmp / "in").mkdir(exist_ok=True)
    f = _zero_slice_spacing(e.tmp / "in" / "flat.nii", np.zeros((32, 32, 16), np.float32))
    return predict_argv(e, f, e.tmp / "o.nii.gz"), "flat.nii: voxel spacing [1.0, 1.0, 0.0] mm"


def c_training_zero_spacing(e):
    root = write_synthetic(e.tmp / "paired", "paired", cases=2, shape=(32, 32, 16))
    src = root / "images" / "synth_000.nii.gz"
    data = np.asarray(nib.load(str(src)).dataobj)
    src.unlink()
    (root / "labels" / "synth_000.nii.gz").rename(root / "labels" / "synth_000.nii")
    _zero_slice_spacing(root / "images" / "synth_000.nii", data)
    return ["check-data", str(root)], "synth_000.nii: voxel spacing"


def c_model_meta_mismatch(e):
    path = bundle(e.tmp / "m.pt")
    data = torch.load(path, weights_only=True)
    data["meta"]["out_channels"] = 5
    torch.save(data, path)
    return [
        "predict",
        "--model",
        str(path),
        "--input",
        str(e.scan()),
        "--output",
        str(e.tmp / "o.nii.gz"),
    ], "m.pt: the weights do not fit"


def c_output_is_input(e):
    scan = e.scan()
    return predict_argv(e, scan, scan), "is an input scan; refusing to overwrite it"


def c_output_exists(e):
    out = nii(e.tmp / "prev" / "scan_seg.nii.gz", np.zeros((4, 4, 4), np.uint8))
    return predict_argv(e, e.scan(), out), "scan_seg.nii.gz: exists (pass --overwrite"


def c_input_nan(e):
    return predict_argv(e, e.scan(nan=True), e.tmp / "o.nii.gz"), "scan.nii.gz: 1 NaN/Inf voxel(s)"


def c_input_2d(e):
    f = nii(e.tmp / "in" / "flat.nii.gz", np.zeros((32, 32), np.float32))
    return predict_argv(e, f, e.tmp / "o.nii.gz"), "flat.nii.gz: a 2D image"


def c_input_5d(e):
    f = nii(e.tmp / "in" / "five.nii.gz", np.zeros((8, 8, 8, 1, 2), np.float32))
    return predict_argv(e, f, e.tmp / "o.nii.gz"), "five.nii.gz: a 5D image"


def _huge_header(path: Path) -> Path:
    img = nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4))
    img.header.set_data_shape((30000, 30000, 30000))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:  # a header only; the data block is missing
        f.write(img.header.binaryblock + b"\0" * 4)
    return path


def c_input_huge_header(e):
    f = _huge_header(e.tmp / "in" / "huge.nii")
    return predict_argv(e, f, e.tmp / "o.nii.gz"), "huge.nii: header claims"


def c_patches_huge_header(e):
    return ["patches", "--image", str(_huge_header(e.tmp / "in" / "huge.nii"))], "huge.nii: not a"


def c_brats_folder_single_channel(e):
    root = write_synthetic(e.tmp / "brats", "brats", cases=1, shape=(32, 32, 16))
    sub = next(d for d in root.iterdir() if d.is_dir())
    return predict_argv(e, sub, e.tmp / "out"), "a BraTS subject folder"


def c_brats_subject_two_t1(e):
    root = write_synthetic(e.tmp / "brats", "brats", cases=1, shape=(32, 32, 16))
    sub = next(d for d in root.iterdir() if d.is_dir())
    shutil.copy(sub / f"{sub.name}_t1.nii.gz", sub / f"{sub.name}_b_t1.nii.gz")
    model = bundle(e.tmp / "m4.pt", ("t1", "t1ce", "t2", "flair"))
    return [
        "predict",
        "--model",
        str(model),
        "--input",
        str(sub),
        "--output",
        str(e.tmp / "out"),
    ], "2 files for modality 't1'"


def c_output_under_a_file(e):
    (e.tmp / "afile").write_text("x")
    return predict_argv(e, e.scan(), e.tmp / "afile" / "o.nii.gz"), "afile"


def c_ensemble_without_run(e):
    args = ["--set", f"workdir={e.tmp / 'w'}"]
    return [
        "predict",
        DEMO,
        *args,
        "--ensemble",
        "folds",
        "--input",
        str(e.scan()),
        "--output",
        str(e.tmp / "o.nii.gz"),
    ], "no fold models"


def c_synth_non_empty(e):
    root = e.dataset()
    return ["synth", "--out", str(root)], "exists and is not an empty folder"


def c_synth_zero_cases(e):
    return ["synth", "--out", str(e.tmp / "s"), "--cases", "0"], "--cases"


def c_synth_negative_cases(e):
    return ["synth", "--out", str(e.tmp / "s"), "--cases", "-3"], "--cases"


def c_patches_negative_overlap(e):
    return ["patches", "--volume", "64", "64", "64", "--overlap", "-0.5"], "--overlap"


def c_patches_zero_patch(e):
    return ["patches", "--volume", "64", "64", "64", "--patch", "0", "64", "64"], "--patch"


def c_ui_bad_port(e):
    return ["ui", "--port", "99999"], "--port"


def c_tracking_server_unreachable(e):
    e.expect_absent = [e.tmp / "w"]
    return [
        "run",
        DEMO,
        "--set",
        f"workdir={e.tmp / 'w'}",
        "--tracking-uri",
        "http://127.0.0.1:1",
    ], "http://127.0.0.1:1: no answer"


def c_ray_address_unreachable(e):
    e.expect_absent = [e.tmp / "w"]
    return [
        "run",
        DEMO,
        "--set",
        f"workdir={e.tmp / 'w'}",
        "--set",
        "tracking.enabled=false",
        "--address",
        "127.0.0.1:1",
    ], "Ray address 127.0.0.1:1: no answer"


CASES = {name[2:]: fn for name, fn in dict(globals()).items() if name.startswith("c_")}


def snapshot(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_the_battery_has_forty_cases():
    assert len(CASES) >= 40


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, env):
    env.marker = env.tmp / "PWNED"
    env.expect_absent = []
    argv, needle = CASES[name](env)
    before = snapshot(env.tmp)
    result = CliRunner().invoke(main, argv)
    text = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert result.exit_code != 0, text
    assert (
        "Traceback" not in text
        and result.exception is None
        or isinstance(result.exception, SystemExit)
    ), text
    # one line names the file or key and the problem (an "Error: ..." line, or a line of
    # check-data's report, which lists every problem)
    assert any(needle in line for line in text.splitlines()), (needle, text)
    after = snapshot(env.tmp)
    changed = [k for k, v in before.items() if after.get(k) != v]
    assert not changed, f"changed or removed: {changed}"
    assert not env.marker.exists(), "a pickle ran code"
    for path in env.expect_absent:
        assert not path.exists(), f"{path} was written"
