"""Read an MLflow store back and check the voxnas tracking schema."""

from __future__ import annotations

import json

from mlflow.tracking import MlflowClient

NAMESPACES = {"search", "retrain", "search_cells", "results", "system"}


def check_store(
    uri: str,
    experiment: str,
    n_search: int,
    n_retrain: int,
    epochs: int,
    model_name: str,
    n_final: int = 1,
    retrain_epochs: int = 1,
) -> dict:
    client = MlflowClient(uri)
    from voxnas.platform.tracking import using_tracking_uri

    # models:/ URIs resolve through MLflow's global URI; using_tracking_uri also restores
    # MLFLOW_TRACKING_URI, which mlflow.set_tracking_uri writes into the environment (a
    # leaked one would send every later test's tracking to this store)
    with using_tracking_uri(uri):
        return _check(
            client, experiment, n_search, n_retrain, epochs, model_name, n_final, retrain_epochs
        )


def _check(client, experiment, n_search, n_retrain, epochs, model_name, n_final, retrain_epochs):
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
    names = [r.info.run_name for r in parents]
    assert len(set(names)) == len(names)  # unique parent names
    import math

    import mlflow

    for r in runs:  # namespaced keys (one "/": one chart section each), no NaN anywhere
        for key in r.data.metrics:
            assert key.count("/") == 1 and key.split("/")[0] in NAMESPACES, key
            assert not key.startswith("alpha/"), key
            history = client.get_metric_history(r.info.run_id, key)
            assert all(math.isfinite(m.value) for m in history), key
    for r in search:
        assert "search.weight_optim.lr" in r.data.params and "voxnas.cases.test" in r.data.tags
        assert not any(k.startswith("cases.") for k in r.data.params)
        cells = [k for k in r.data.metrics if k.startswith("search_cells/")]
        assert len(cells) == 21 * 2  # top-op probability and chosen op of every V-NAS cell
        for key in [*cells, "search/train_loss", "search/val_dice", "search/alpha_entropy"]:
            steps = [m.step for m in client.get_metric_history(r.info.run_id, key)]
            assert sorted(steps) == list(range(epochs)), (key, steps)  # none missing or twice
        art = r.info.artifact_uri
        history = json.loads(mlflow.artifacts.load_text(f"{art}/alpha_history.json"))
        assert sorted(map(int, history)) == list(range(epochs))
        assert len(history["0"]) == 21 * 3  # every op of every cell, every epoch
        g = json.loads(mlflow.artifacts.load_text(f"{art}/genotype.json"))
        assert g["space"] == "vnas" and g["code"] == r.data.tags["voxnas.genotype"]
        assert any(op in g["ops"][0] for op in ("2D", "3D", "P3D"))  # op names, not codes
        assert r.data.tags["voxnas.genotype_ops"].count("D") >= 21  # e.g. [2D 3D P3D, ...]
        lines = mlflow.artifacts.load_text(f"{art}/genotypes.jsonl").splitlines()
        assert [json.loads(x)["epoch"] for x in lines] == list(range(epochs))
        names = {f.path for f in client.list_artifacts(r.info.run_id, "plots")}
        assert {"plots/alpha_heatmap.png", "plots/alpha_trajectory.png"} <= names
    for r in retrain + final:
        assert "voxnas.model_uri" in r.data.tags
        assert r.data.tags["voxnas.model_uri"].startswith("models:/")
        key = "retrain/train_loss"
        assert [m.step for m in client.get_metric_history(r.info.run_id, key)] == list(
            range(retrain_epochs)
        )
    for r in retrain:
        names = {f.path for f in client.list_artifacts(r.info.run_id)}
        assert "metrics.csv" in names and "overlays" in names
        for key in ("retrain/val_loss", "retrain/val_dice"):  # the validation curve
            steps = [m.step for m in client.get_metric_history(r.info.run_id, key)]
            assert steps == list(range(retrain_epochs)), (key, steps)
        assert any(k.startswith("retrain/test_dice_") for k in r.data.metrics)
    logged = {
        mlflow.models.get_model_info(r.data.tags["voxnas.model_uri"]).name for r in retrain + final
    }
    assert len(logged) == len(retrain + final)  # searched-f0, searched-final, ...
    assert "voxnas.genotype" in parent.data.tags  # the aggregated genotype
    assert "voxnas.genotype_ops" in parent.data.tags
    assert any(k.startswith("results/searched_dice_") for k in parent.data.metrics)
    if n_search > 1:  # agreement between the fold searches
        assert "search/fold_agreement_mean" in parent.data.metrics
        assert "search_cells/enc00.agreement" in parent.data.metrics
    assert "config.yaml" in {f.path for f in client.list_artifacts(parent.info.run_id)}
    names = {f.path for f in client.list_artifacts(parent.info.run_id, "aggregate")}
    assert "aggregate/genotype.json" in names
    aggregate = json.loads(
        mlflow.artifacts.load_text(f"{parent.info.artifact_uri}/aggregate/genotype.json")
    )
    assert len(aggregate["ops"]) == 21 and set(aggregate["votes"]["cells"]) >= {"enc00", "dec04"}
    votes = aggregate["votes"]["cells"]["enc00"]["votes"]
    # one vote per aggregated fold search (of the best hyperparameter set)
    assert sum(votes.values()) == aggregate["votes"]["folds"] == len(aggregate["folds"])
    datasets = parent.inputs.dataset_inputs  # mlflow.log_input
    assert len(datasets) == 1
    profile = json.loads(datasets[0].dataset.profile)
    assert profile["cases"] >= 4 and profile["layout"] in ("msd", "brats", "paired")
    versions = client.search_model_versions(f"name='{model_name}'")
    assert len(versions) >= 1
    v = client.get_model_version(model_name, versions[0].version)
    assert parent.data.tags["voxnas.registered_model"] == f"models:/{model_name}/{v.version}"
    assert "best" in v.aliases and client.get_model_version_by_alias(model_name, "best")
    assert parent.data.tags["voxnas.genotype"] in v.description
    assert "cross-validated DSC" in v.description and parent.info.run_id in v.description
    assert v.tags["voxnas.protocol_id"] == parent.info.run_id
    assert any(k.startswith("voxnas.cv_dice.") for k in v.tags)
    info = mlflow.models.get_model_info(f"models:/{model_name}/{v.version}")
    assert info.signature is not None and info.signature.inputs.inputs[0].shape[1:] == (-1,) * 3
    assert info.saved_input_example_info is not None
    if n_final:  # the deployable model is the one trained on every training case
        assert v.tags.get("voxnas.stage") == "final"
        assert final[0].data.tags["voxnas.fold"] == "all"
        assert "voxnas.model_uri" in final[0].data.tags
    else:  # without a final stage: a fold model, chosen on search-validation DSC
        assert v.tags.get("voxnas.stage") == "retrain"
    return {"parent": parent, "search": search, "retrain": retrain}
