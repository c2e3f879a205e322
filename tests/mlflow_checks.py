"""Read an MLflow store back and check the voxnas tracking schema."""

from __future__ import annotations

import json

from mlflow.tracking import MlflowClient


def check_store(
    uri: str,
    experiment: str,
    n_search: int,
    n_retrain: int,
    epochs: int,
    model_name: str,
    n_final: int = 1,
) -> dict:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment}"
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("voxnas.role") == "parent"]
    assert len(parents) == 1
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    search = [r for r in children if r.data.tags["voxnas.stage"] == "search"]
    retrain = [r for r in children if r.data.tags["voxnas.stage"] == "retrain"]
    final = [r for r in children if r.data.tags["voxnas.stage"] == "final"]
    assert len(search) == n_search and len(retrain) == n_retrain and len(final) == n_final
    assert len(children) == len(runs) - 1  # everything is nested under the parent
    assert all(" · search · h" in r.info.run_name for r in search)  # fold-first names
    for r in children:  # compare view can group by fold, stage, set; Source is filled
        assert {"fold", "stage"} <= set(r.data.params), r.data.params.keys()
        assert r.data.tags["voxnas.protocol_id"] == parent.info.run_id
        assert r.data.tags["mlflow.source.name"] == "voxnas"
    assert all("hp_set" in r.data.params for r in search)
    assert parent.info.run_name.startswith(experiment.split("-")[-1] + " · ")
    for r in search:
        assert "search.weight_optim.lr" in r.data.params and "cases.test" in r.data.params
        alpha_keys = [k for k in r.data.metrics if k.startswith("alpha/")]
        assert len(alpha_keys) == 21 * 3  # every cell and op of V-NAS
        for key in alpha_keys + ["train_loss", "val_dice", "alpha_entropy"]:
            steps = [m.step for m in client.get_metric_history(r.info.run_id, key)]
            assert sorted(steps) == list(range(epochs)), (key, steps)  # none missing or twice
        art = r.info.artifact_uri
        import mlflow

        g = json.loads(mlflow.artifacts.load_text(f"{art}/genotype.json"))
        assert g["space"] == "vnas" and g["code"] == r.data.tags["voxnas.genotype"]
        assert any(op in g["ops"][0] for op in ("2D", "3D", "P3D"))  # op names, not codes
        lines = mlflow.artifacts.load_text(f"{art}/genotypes.jsonl").splitlines()
        assert [json.loads(x)["epoch"] for x in lines] == list(range(epochs))
        names = {f.path for f in client.list_artifacts(r.info.run_id, "plots")}
        assert {"plots/alpha_heatmap.png", "plots/alpha_trajectory.png"} <= names
    for r in retrain:
        assert "voxnas.model_uri" in r.data.tags
        names = {f.path for f in client.list_artifacts(r.info.run_id)}
        assert "metrics.csv" in names and "overlays" in names
    assert "voxnas.genotype" in parent.data.tags  # the aggregated genotype
    names = {f.path for f in client.list_artifacts(parent.info.run_id, "aggregate")}
    assert "aggregate/genotype.json" in names
    versions = client.search_model_versions(f"name='{model_name}'")
    assert len(versions) >= 1
    assert (
        parent.data.tags["voxnas.registered_model"] == f"models:/{model_name}/{versions[0].version}"
    )
    if n_final:  # the deployable model is the one trained on every training case
        assert versions[0].tags.get("voxnas.stage") == "final"
        assert final[0].data.tags["voxnas.fold"] == "all"
        assert "voxnas.model_uri" in final[0].data.tags
    else:  # without a final stage: a fold model, chosen on search-validation DSC
        assert versions[0].tags.get("voxnas.stage") == "retrain"
    return {"parent": parent, "search": search, "retrain": retrain}
