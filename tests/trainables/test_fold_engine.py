"""The fold engine's contract: trials get a data handle and never prepare, decode or write
shared files; resume is explicit; a fresh retrain never picks up another run's checkpoint;
the final stage trains on every case; the single-search mode runs."""

from __future__ import annotations

import json

import pytest
from tiny import TINY_NAS3D, TINY_VNAS

from voxnas.config import load_config
from voxnas.data import nifti
from voxnas.data.prepare import prepare_data, write_split_files
from voxnas.trainables.checkpoint import CheckpointError
from voxnas.trainables.engine import MemoryTracker
from voxnas.trainables.retrain import run_retrain_fold
from voxnas.trainables.search import run_search_fold

pytestmark = pytest.mark.integration

TINY = [
    *TINY_VNAS,
    "search.epochs=2",
    "search.iterations_per_epoch=2",
    "search.warmup_epochs=1",
    "retrain.epochs=2",
    "retrain.iterations_per_epoch=2",
    "retrain.bn_recalibration=2",
    "tracking.enabled=false",
]

NAS3D = [
    *TINY_NAS3D,
    "search.epochs=4",
    "search.iterations_per_epoch=2",
    "search.warmup_epochs=1",
    "search.stop_count=2",
    "search.folds=one",
    "retrain.epochs=1",
    "retrain.iterations_per_epoch=1",
    "tracking.enabled=false",
]


def quiet(_s: str) -> None:
    pass


def cfg_at(workdir, *extra):
    return load_config("configs/demo.yaml", [*TINY, f"workdir={workdir}", *extra])


def test_prepare_decodes_each_file_once_and_reuses_the_cache(tmp_path, monkeypatch):
    cfg = cfg_at(tmp_path)
    calls: list[str] = []
    real = nifti._decode_voxels

    def counting(img):
        calls.append(img.get_filename())
        return real(img)

    monkeypatch.setattr(nifti, "_decode_voxels", counting)
    prep = prepare_data(cfg, quiet)
    files = [str(f) for c in prep.dataset.cases for f in c.files]
    # the integrity check and preprocessing share one decode of every file
    assert sorted(calls) == sorted(files)
    calls.clear()
    prepare_data(cfg, quiet)
    assert calls == []  # the cache of the same files is reused without decoding them


def test_split_for_is_pure_and_only_the_driver_writes_split_files(tmp_path):
    cfg = cfg_at(tmp_path)
    prep = prepare_data(cfg, quiet)
    before = sorted(p.name for p in cfg.layout.splits.iterdir())
    s0 = prep.split_for(0)
    assert sorted(p.name for p in cfg.layout.splits.iterdir()) == before == ["folds.json"]
    write_split_files(prep)
    assert json.loads(cfg.layout.fold_split(0).read_text())["test"] == list(s0.test)
    everything = prep.split_for(None)
    assert everything.test == () and sorted(everything.trainval) == sorted(prep.dataset.case_ids)


def test_trials_with_a_handle_never_prepare_decode_or_write_shared_files(tmp_path, monkeypatch):
    cfg = cfg_at(tmp_path)
    prep = prepare_data(cfg, quiet)
    write_split_files(prep)
    handle = type(prep.fold_data(0)).from_dict(prep.fold_data(0).to_dict())  # as Tune ships it
    shared = {p: p.stat().st_mtime_ns for p in cfg.layout.splits.iterdir()}

    def forbidden(*a, **k):
        raise AssertionError("a trial decoded NIfTI or prepared data")

    monkeypatch.setattr(nifti, "_decode_voxels", forbidden)
    monkeypatch.setattr("voxnas.data.prepare.prepare_data", forbidden)
    monkeypatch.setattr("voxnas.trainables.engine.prepare_data", forbidden)
    res = run_search_fold(cfg, 0, data=handle, log=quiet)
    assert res.epochs_run == 2
    rt = run_retrain_fold(cfg, 0, "P3D/P3D", data=handle, log=quiet)
    assert {r["case"] for r in rt.rows} == set(handle.split.test)
    assert {p: p.stat().st_mtime_ns for p in cfg.layout.splits.iterdir()} == shared


def test_fresh_retrain_ignores_a_stale_checkpoint_and_resume_is_explicit(tmp_path):
    cfg = cfg_at(tmp_path)
    out = tmp_path / "shared-folder"
    run_retrain_fold(cfg, 0, "P3D/P3D", out_dir=out, log=quiet)
    assert (out / "checkpoint" / "state.pt").is_file()
    # another architecture into the same folder: a fresh run starts from scratch (it used
    # to load the old checkpoint: a silent reuse, or a state_dict crash as here)
    lines: list[str] = []
    fresh = run_retrain_fold(cfg, 0, "2D/2D", out_dir=out, log=lines.append)
    assert not fresh.resumed and [h["epoch"] for h in fresh.history] == [0, 1]
    assert not any("resumed" in s for s in lines)
    # resuming is asked for, said in the log and tagged
    trk, lines = MemoryTracker(), []
    again = run_retrain_fold(
        cfg, 0, "2D/2D", tracker=trk, out_dir=out, resume=True, log=lines.append
    )
    assert again.resumed and trk.tags["voxnas.resumed"] == "after epoch 1"
    assert any("resumed after epoch 1" in s for s in lines)
    # resuming into a checkpoint of another architecture is a clear error, not a traceback
    with pytest.raises(CheckpointError, match="does not fit"):
        run_retrain_fold(cfg, 0, "P3D/P3D", out_dir=out, resume=True, log=quiet)


def test_final_stage_trains_on_every_case_without_test_cases(tmp_path):
    cfg = cfg_at(tmp_path)
    res = run_retrain_fold(cfg, None, "P3D/P3D", log=quiet)
    assert res.fold is None and res.rows == [] and res.summary == {}
    assert res.model_path == cfg.layout.final("P3D/P3D") / "model.pt"
    from voxnas.trainables.bundle import load_bundle

    _, meta = load_bundle(res.model_path)
    assert meta.extra["stage"] == "final" and meta.extra["fold"] is None


def test_retrain_validation_curve_watches_without_changing_the_training(tmp_path):
    from voxnas.trainables.engine import MemoryTracker

    cfg = cfg_at(tmp_path)
    trk = MemoryTracker()
    watched = run_retrain_fold(cfg, 0, "P3D/P3D", tracker=trk, log=quiet)
    assert set(trk.metrics["val_loss"]) == set(trk.metrics["val_dice"]) == {0, 1}  # per epoch
    assert all(0 <= h["val_dice"] <= 1 and h["val_loss"] > 0 for h in watched.history)
    blind = run_retrain_fold(
        cfg_at(tmp_path / "b", "retrain.val_batches=0"), 0, "P3D/P3D", log=quiet
    )
    assert "val_loss" not in blind.history[0]
    # its own patch stream, scored without touching BatchNorm statistics: same training
    assert [h["train_loss"] for h in blind.history] == [h["train_loss"] for h in watched.history]
    assert blind.rows == watched.rows
    final = run_retrain_fold(cfg, None, "P3D/P3D", log=quiet)  # no test cases: no curve
    assert "val_loss" not in final.history[0]


def test_single_search_nas3dunet_mode(tmp_path):
    from voxnas.trainables.aggregate import aggregate_stage
    from voxnas.trainables.records import load_search_results, save_search_result

    cfg = load_config("configs/nas3dunet_brats.yaml", [*NAS3D, f"workdir={tmp_path}"])
    res = run_search_fold(cfg, None, log=quiet)
    assert res.fold is None and res.history
    save_search_result(cfg, res)
    assert list(load_search_results(cfg)) == [None]
    assert cfg.layout.search_result(None).parent.name == "all"
    # the single search's Table 2 genotype is the architecture
    assert aggregate_stage(cfg, quiet) == res.genotype
