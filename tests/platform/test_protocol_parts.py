"""The protocol's pure parts: hyperparameter sets, the best-set choice, the registration
policy, a fresh run's folder, the trial's fold."""

from __future__ import annotations

import pytest

from voxnas.platform.hp_sets import best_set, hp_overrides, hp_tag, param_name
from voxnas.platform.orchestration import move_aside
from voxnas.platform.tracking_policy import choose_registration, result_metrics


def test_hp_names_round_trip_into_overrides():
    config = {param_name("search.weight_optim.lr"): 0.01, param_name("search.epochs"): 3, "x": 1}
    assert hp_overrides(config) == ["search.epochs=3", "search.weight_optim.lr=0.01"]
    assert hp_tag(config) == hp_tag(dict(reversed(list(config.items()))))  # order-free
    assert hp_tag({"fold": 0}) == "0"


def test_best_set_is_the_highest_mean_over_complete_sets():
    a, b, c = {"hp__lr": 0.1}, {"hp__lr": 0.01}, {"hp__lr": 0.5}
    outcomes = [(a, 0, 0.9), (a, 1, 0.5), (b, 0, 0.6), (b, 1, 0.7), (c, 0, 0.99)]
    best, scores = best_set(outcomes, [0, 1])
    assert best.hp == a and best.mean_val_dice == pytest.approx(0.7)
    assert {s.key for s in scores} == {'{"hp__lr": 0.1}', '{"hp__lr": 0.01}'}  # c: one fold
    one, _ = best_set([({}, None, 0.4)], [None])  # the single search
    assert one.mean_val_dice == 0.4
    with pytest.raises(ValueError, match="no hyperparameter set finished"):
        best_set([(c, 0, 0.99)], [0, 1])


def _run(stage, fold, arch="searched", model=True):
    tags = {"voxnas.stage": stage, "voxnas.fold": fold, "voxnas.arch": arch}
    if model:
        tags["voxnas.model_uri"] = f"runs:/{stage}{fold}/model"
    return tags


def test_registration_prefers_the_final_model_then_the_best_validation_fold():
    folds = [_run("retrain", "0"), _run("retrain", "1"), _run("retrain", "0", "P3D/P3D")]
    tags, why = choose_registration([*folds, _run("final", "all")], {0: 0.9, 1: 0.5})
    assert tags["voxnas.stage"] == "final" and "every training case" in why
    tags, why = choose_registration(folds, {0: 0.5, 1: 0.8})
    assert tags["voxnas.fold"] == "1" and "validation" in why
    assert choose_registration([_run("retrain", "0", model=False)], {0: 1.0}) is None


def test_result_metrics_flatten_the_summary():
    summary = {
        "searched": {"overall": {"dice/organ": {"mean": 0.9, "std": 0.1, "median": 0.92}}},
        "search": {"alpha_entropy": [0.8, 1.0], "share_cells_p2d_below_third": 0.75},
    }
    m = result_metrics(summary)
    assert m["results/searched_dice_organ_median"] == 0.92
    assert m["search/alpha_entropy_mean_over_folds"] == pytest.approx(0.9)
    assert all(k.count("/") == 1 for k in m)  # one chart section per namespace
    assert m["search/share_cells_p2d_below_third"] == 0.75


def test_a_fresh_run_moves_the_old_run_folder_aside(tmp_path):
    run = tmp_path / "demo"
    (run / "retrain" / "searched" / "fold0" / "checkpoint").mkdir(parents=True)
    (run / "marker").write_text("old")
    moved = move_aside(run, log=lambda s: None)
    assert moved is not None and (moved / "marker").read_text() == "old"  # kept, not deleted
    assert not run.exists()
    assert move_aside(run, log=lambda s: None) is None  # nothing to move


def test_a_search_trial_without_a_fold_is_an_error():
    pytest.importorskip("ray")
    from voxnas.platform.tune import _trial_fold

    assert _trial_fold({"fold": 1}) == 1
    assert _trial_fold({"__trial_index__": 1, "folds": [0, 1]}) == 1
    assert _trial_fold({"__trial_index__": 0, "folds": [None]}) is None
    with pytest.raises(ValueError, match="names no fold"):
        _trial_fold({"voxnas": {}})  # used to become fold 0 silently


def test_a_reattached_trial_keeps_its_whole_alpha_history(tmp_path):
    """After a restart the trajectory plot covers the epochs logged before it too."""
    from voxnas.config import load_config
    from voxnas.platform.tracking import TrialTracker

    cfg = load_config(None, [f"workdir={tmp_path}"])
    first = TrialTracker(cfg, None, "search", 0, "h0", "trial-a", [])
    for step in range(3):
        first.log_metrics({"train_loss": 1.0, "alpha/enc00/2d": 0.3 + 0.1 * step}, step)
    again = TrialTracker(cfg, None, "search", 0, "h0", "trial-a", [])  # restart
    assert again.run_id == first.run_id and again.last_step == 2
    again.log_metrics({"train_loss": 1.0, "alpha/enc00/2d": 0.6}, 2)  # re-run epoch: not logged
    again.log_metrics({"train_loss": 1.0, "alpha/enc00/2d": 0.7}, 3)
    assert [h["alpha/enc00/2d"] for h in again.alpha_history] == pytest.approx([0.3, 0.4, 0.6, 0.7])


def test_a_genotype_file_is_resolved_on_the_driver(tmp_path, monkeypatch):
    """Trials run in their own folders: a relative genotype path must not travel to them."""
    import json

    from voxnas.config import load_config
    from voxnas.platform.orchestration import _job
    from voxnas.search_spaces.genotypes import VNASGenotype

    code = "[0 0 0, 0 0 0 1, 2 0 2 0 2 2, 0 0 0] [0 0 1 0 1]"
    (tmp_path / "mine.json").write_text(json.dumps(VNASGenotype.parse(code).to_dict()))
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, [f"workdir={tmp_path}"])
    job = _job(cfg, "mine.json", 1)
    assert job["arch"] == "mine" and json.loads(job["genotype_json"])["code"] == code
    assert job["out_dir"].endswith("retrain/mine/fold1")
    named = _job(cfg, "P3D/P3D", None)
    assert named["genotype_json"] is None and named["out_dir"].endswith("final/P3D-P3D")


def test_single_modality_scans_named_like_a_brats_modality_are_inputs(tmp_path):
    import nibabel as nib
    import numpy as np

    from voxnas.platform.predict import find_inputs

    for name in ("case01_t2.nii.gz", "case02_t2.nii.gz", "case01_t2_seg.nii.gz"):
        nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.eye(4)), str(tmp_path / name))

    class Meta:
        modalities, in_channels = ["T2"], 1

    cases = find_inputs(tmp_path, Meta())
    assert [c.case_id for c in cases] == ["case01_t2", "case02_t2"]  # the _seg file skipped


def test_patches_pad_a_few_thin_cases_but_not_all(tmp_path):
    from voxnas.config import load_config
    from voxnas.data.prepare import check_patch_fits

    class Cache:
        index = {"cases": {"a": {"shape": [1, 32, 32, 16]}, "b": {"shape": [1, 32, 32, 32]}}}

    lines: list[str] = []
    cfg = load_config(
        None, [f"workdir={tmp_path}", "patch.search=[32,32,32]", "patch.train=[32,32,32]"]
    )
    check_patch_fits(cfg, Cache(), lines.append)
    assert len(lines) == 2 and "larger than 1 of 2 cases" in lines[0]
    cfg = load_config(
        None, [f"workdir={tmp_path}", "patch.search=[64,32,32]", "patch.train=[32,32,32]"]
    )
    with pytest.raises(ValueError, match="larger than every volume"):
        check_patch_fits(cfg, Cache(), lines.append)


def test_run_identity_is_fold_first_with_groupable_params():
    from voxnas.platform.tracking_policy import child_identity, parent_name

    assert child_identity("search", 1, "h0") == (
        "f1 · search · h0",
        {"fold": "1", "stage": "search", "hp_set": "h0"},
    )
    name, params = child_identity("final", None, "searched")
    assert name == "all · final · searched" and params["arch"] == "searched"
    a = parent_name("demo", "2026-11-25 17:50:02", "34d599c")
    b = parent_name("demo", "2026-11-25 17:51:40", "34d599c")
    assert a != b and sorted([b, a]) == [a, b]  # unique and sortable by start time


def test_tracked_metrics_namespace_by_stage_and_summarise_cells():
    from voxnas.platform.tracking_policy import tracked_metrics

    epoch = {
        "train_loss": 0.5,
        "val_dice": 0.8,
        "alpha_entropy": 1.0,
        "alpha/enc00/2d": 0.1,
        "alpha/enc00/3d": 0.7,
        "alpha/enc00/p3d": 0.2,
        "alpha/dc/node1/hm0/conv": 0.6,
        "alpha/dc/node1/hm0/dil_conv": 0.4,
        "arch_loss": float("nan"),
    }
    m = tracked_metrics("search", epoch)
    assert m["search/train_loss"] == 0.5 and m["search/alpha_entropy"] == 1.0
    assert m["search_cells/enc00.top_p"] == 0.7 and m["search_cells/enc00.choice"] == 1.0
    assert m["search_cells/dc.node1.hm0.choice"] == 0.0
    assert not any(k.startswith("alpha/") for k in m)
    assert "search/arch_loss" not in m  # no NaN placeholders
    assert all(k.count("/") == 1 for k in m)  # one chart section per namespace
    retrain = tracked_metrics("final", {"train_loss": 0.1, "test/dice/organ/mean": 0.9})
    assert retrain == {"retrain/train_loss": 0.1, "retrain/test_dice_organ_mean": 0.9}


def test_readable_codes_model_names_and_version_description():
    from voxnas.platform.tracking_policy import (
        agreement_metrics,
        logged_model_name,
        readable_code,
        version_description,
    )
    from voxnas.search_spaces.genotypes import VNASGenotype

    g = VNASGenotype.parse("[0 0 0, 0 0 0 1, 2 0 2 0 2 2, 0 0 0] [0 0 1 0 1]")
    assert readable_code(g) == (
        "[2D 2D 2D, 2D 2D 2D 3D, P3D 2D P3D 2D P3D P3D, 2D 2D 2D] [2D 2D 3D 2D 3D]"
    )
    assert logged_model_name("searched", 1) == "searched-f1"
    assert logged_model_name("searched", None) == "searched-final"
    assert logged_model_name("P3D/P3D", 0) == "P3D-P3D-f0"  # MLflow refuses "/" in names
    assert logged_model_name("v1.2: 'x'", 3) == "v1-2-x-f3"
    text = version_description(g, {"organ": 0.91234}, "the final model", "abc123", "demo · x")
    assert g.code() in text and "0.9123" in text and "abc123" in text
    votes = {"agreement_mean": 0.5, "cells": {"enc00": {"agreement": 0.25}}}
    assert agreement_metrics(votes) == {
        "search_cells/enc00.agreement": 0.25,
        "search/fold_agreement_mean": 0.5,
    }


def test_ui_links_open_the_runs_view_and_the_newest_protocols_searches(tmp_path):
    from mlflow.tracking import MlflowClient

    from voxnas.platform.tracking import ui_links

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    base = "http://127.0.0.1:5000"
    assert ui_links(uri, "demo", base) == {"runs": f"{base}/#/experiments"}
    assert not (tmp_path / "mlflow.db").exists()  # reading links creates no store
    client = MlflowClient(uri)
    exp = client.create_experiment("demo")
    old = client.create_run(exp, tags={"voxnas.role": "parent"}).info.run_id
    client.create_run(exp, tags={"mlflow.parentRunId": old, "voxnas.stage": "search"})
    new = client.create_run(exp, tags={"voxnas.role": "parent"}).info.run_id
    kids = [
        client.create_run(exp, tags={"mlflow.parentRunId": new, "voxnas.stage": s}).info.run_id
        for s in ("search", "search", "retrain")
    ]
    links = ui_links(uri, "demo", base)
    assert links["runs"] == f"{base}/#/experiments/{exp}/runs?workflowType=machine_learning"
    assert links["parent"].endswith(f"/runs/{new}?workflowType=machine_learning")
    compare = links["compare"]
    assert compare.startswith(f"{base}/#/compare-runs?runs=[")
    assert all(k in compare for k in kids[:2]) and kids[2] not in compare and old not in compare
