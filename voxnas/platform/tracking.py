"""MLflow tracking: the ONLY module that imports mlflow. The schema is in the README.

One experiment per config, one parent run per `voxnas run` (created on the driver before
any trial), one child run per search trial and per retrain fold (tag ``mlflow.parentRunId``).
A resumed trial re-attaches to its run by the Ray trial id and skips steps already logged.

Over 300 lines by design: every MLflow call of the platform is here (the policy of what is
logged and registered is in ``tracking_policy.py``).
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from voxnas.config import Config, flatten_config
from voxnas.console import verbose
from voxnas.platform.tracking_policy import (
    agreement_metrics,
    child_identity,
    choose_registration,
    genotype_artifact,
    logged_model_name,
    namespace,
    parent_name,
    readable_code,
    result_metrics,
    retrain_tags,
    search_tags,
    tracked_metrics,
    version_description,
)

__all__ = [
    "ProtocolTracker",
    "TrialTracker",
    "check_tracking_server",
    "ensure_experiment",
    "tracking_uri",
    "trial_tracker",
    "ui_links",
]

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bars in trial logs


def quiet_mlflow_loggers() -> None:
    """MLflow's INFO lines (database creation and migration, signature inference) at their
    source, unless verbose."""
    import logging

    if not verbose():
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)


def tracking_uri(cfg: Config) -> str:
    """``--tracking-uri`` / config, then ``MLFLOW_TRACKING_URI``, then sqlite in the workdir."""
    uri = cfg.tracking.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    return uri or f"sqlite:///{(Path(cfg.workdir) / 'mlflow.db').resolve()}"


@contextlib.contextmanager
def using_tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's fluent APIs (log_model, register_model, artifact downloads) read a global URI,
    and ``mlflow.set_tracking_uri`` also writes ``MLFLOW_TRACKING_URI`` into the environment
    that child processes inherit: set both only for the block, then restore them."""
    prev_env = os.environ.get("MLFLOW_TRACKING_URI")
    prev = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(prev)
        if prev_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = prev_env


def _voxnas_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return "v" + version("voxnas")
    except PackageNotFoundError:
        return "v?"


@functools.lru_cache(maxsize=1)
def _source_tags() -> dict[str, str]:
    """MLflow's source tags (shown as Source / Created by): the voxnas command, the user,
    and the git commit of the voxnas checkout when there is one."""
    import getpass
    import subprocess

    tags = {"mlflow.source.name": "voxnas", "mlflow.source.type": "LOCAL"}
    with contextlib.suppress(OSError, KeyError):
        tags["mlflow.user"] = getpass.getuser()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    if len(commit) == 40:
        tags["mlflow.source.git.commit"] = commit
    return tags


def check_tracking_server(cfg: Config, timeout: float = 10.0) -> None:
    """Fail fast when the tracking store is a server that does not answer (MLflow's client
    retries for minutes); sqlite and file stores need no check."""
    import urllib.error
    import urllib.request

    if not cfg.tracking.enabled:
        return
    uri = tracking_uri(cfg)
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
            pass
    except urllib.error.HTTPError:
        return  # it answered (a server without /health, or auth in front of it)
    except (OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise ConnectionError(
            f"MLflow tracking server {uri}: no answer within {timeout:.0f} s ({reason})"
        ) from None


def ensure_experiment(cfg: Config) -> tuple[MlflowClient, str]:
    quiet_mlflow_loggers()
    client = MlflowClient(tracking_uri(cfg))
    name = cfg.tracking.experiment or cfg.name
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return client, exp.experiment_id
    location = None
    if tracking_uri(cfg).startswith("sqlite:"):  # artifacts next to the database
        location = (Path(cfg.workdir) / "mlartifacts").resolve().as_uri()
    try:
        return client, client.create_experiment(name, artifact_location=location)
    except Exception:  # created meanwhile by another process
        return client, client.get_experiment_by_name(name).experiment_id


def _log_params(client: MlflowClient, run_id: str, params: dict[str, str]) -> None:
    items = [Param(k, str(v)[:6000]) for k, v in params.items()]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=items[i : i + 100])


def _log_metrics(client: MlflowClient, run_id: str, metrics: dict[str, float], step: int) -> None:
    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
    for i in range(0, len(items), 500):
        client.log_batch(run_id, metrics=items[i : i + 500])


class _RunLogger:
    """Artifact helpers on one run (text, dict, PNG bytes, files)."""

    client: MlflowClient
    run_id: str

    def log_text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, text, name)

    def log_dict(self, data: Any, name: str) -> None:
        self.client.log_dict(self.run_id, data, name)

    def log_png(self, data: bytes, name: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(name).name
            path.write_bytes(data)
            self.client.log_artifact(self.run_id, str(path), str(Path(name).parent or ""))

    def set_tags(self, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v))

    def log_dataset(self, dataset: dict[str, Any], context: str) -> None:
        """``mlflow.log_input`` of the dataset (``PreparedData.describe``): name, source
        folder, digest (the preprocessing cache key) and a profile (layout, cases, ...)."""
        if not self.run_id:
            return
        from mlflow.entities import Dataset, DatasetInput, InputTag

        entity = Dataset(
            name=dataset["name"],
            digest=dataset["digest"],
            source_type="local",
            source=json.dumps({"uri": dataset["source"]}),
            profile=json.dumps(dataset["profile"]),
        )
        tags = [InputTag("mlflow.data.context", context)]
        self.client.log_inputs(self.run_id, datasets=[DatasetInput(entity, tags)])


class TrialTracker(_RunLogger):
    """A child run for one trial (implements the trainables' Tracker protocol)."""

    def __init__(
        self,
        cfg: Config,
        parent_id: str | None,
        stage: str,
        fold: int | None,
        what: str,
        trial_id: str,
        hp: list[str],
    ):
        """A child run named fold-first (``tracking_policy.child_identity``); ``what`` is the
        hyperparameter-set id of a search or the architecture of a retrain."""
        self.client, exp = ensure_experiment(cfg)
        self.cfg, self.stage = cfg, stage
        found = self.client.search_runs([exp], f"tags.`voxnas.trial` = '{trial_id}'")
        if found:
            self.run_id = found[0].info.run_id
            self.client.update_run(self.run_id, "RUNNING")
        else:
            tags = {
                "voxnas.stage": stage,
                "voxnas.fold": "all" if fold is None else str(fold),
                "voxnas.trial": trial_id,
                "voxnas.space": cfg.model.space,
                "voxnas.hp": " ".join(hp),
            }
            if parent_id:
                tags["mlflow.parentRunId"] = parent_id
                tags["voxnas.protocol_id"] = parent_id
            name, params = child_identity(stage, fold, what)
            tags.update(_source_tags())
            tags["mlflow.note.content"] = (
                f"voxnas {stage} of {cfg.name} ({cfg.model.space}), "
                f"{'every training case' if fold is None else f'fold {fold}'}, {what}"
            )
            self.run_id = self.client.create_run(exp, run_name=name, tags=tags).info.run_id
            _log_params(self.client, self.run_id, {**flatten_config(cfg), **params})
            splits = cfg.layout.fold_split(fold) if fold is not None else None
            if splits is not None and splits.is_file():
                self.client.log_artifact(self.run_id, str(splits), "splits")
                stats = cfg.layout.fold_stats(fold)
                self.client.log_artifact(self.run_id, str(stats), "splits")
                # tags, not params: long strings that differ in every fold would be the
                # first columns the compare view's parallel coordinates pick
                ids = json.loads(splits.read_text())
                self.set_tags(
                    {f"voxnas.cases.{k}": ",".join(v)[:5000] for k, v in ids.items() if k != "fold"}
                )
        history = self.client.get_metric_history(self.run_id, f"{namespace(stage)}/train_loss")
        self.last_step = max((m.step for m in history), default=-1)
        # softmax(alpha) per epoch (alpha_history.json, the trajectory plot); a re-attached
        # trial first reads back what it logged before its restart, so both cover every epoch
        self.alpha_by_step: dict[int, dict[str, float]] = {}
        self.jsonl = ""
        if found:
            steps = json.loads(self._artifact_text("alpha_history.json") or "{}")
            self.alpha_by_step = {int(k): v for k, v in steps.items()}
            self.jsonl = self._artifact_text("genotypes.jsonl")
        self.system = _system_metrics(self.run_id, tracking_uri(cfg), bool(found))

    def _artifact_text(self, name: str) -> str:
        try:
            return mlflow.artifacts.load_text(
                f"{self.client.get_run(self.run_id).info.artifact_uri}/{name}"
            )
        except Exception:  # not logged yet
            return ""

    @property
    def alpha_history(self) -> list[dict[str, float]]:
        return [self.alpha_by_step[s] for s in sorted(self.alpha_by_step)]

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        alphas = {k: v for k, v in metrics.items() if k.startswith("alpha/")}
        if alphas:
            self.alpha_by_step[step] = alphas
            self.log_dict(self.alpha_by_step, "alpha_history.json")
        if step <= self.last_step:  # already logged before a restart
            return
        _log_metrics(self.client, self.run_id, tracked_metrics(self.stage, metrics), step)
        self.last_step = step

    def log_text(self, text: str, name: str) -> None:
        if name.endswith(".jsonl"):
            epoch = json.loads(text)["epoch"]
            if any(json.loads(line)["epoch"] == epoch for line in self.jsonl.splitlines()):
                return
            self.jsonl += text
            text = self.jsonl
        super().log_text(text, name)

    def finish_search(self, res) -> None:
        from voxnas.evaluation import plots

        g = res.genotype
        self.log_dict(genotype_artifact(g), "genotype.json")
        self.log_text(g.code() + "\n", "genotype_code.txt")
        self.log_dict(res.alphas, "alphas.json")
        self.set_tags({**search_tags(g), "voxnas.genotype_ops": readable_code(g)[:5000]})
        if self.alpha_history and self.alpha_history[-1]:
            self.log_png(
                plots.alpha_heatmap(self.alpha_history[-1], f"{self.stage}: softmax(alpha)"),
                "plots/alpha_heatmap.png",
            )
            self.log_png(plots.alpha_trajectories(self.alpha_history), "plots/alpha_trajectory.png")

    def finish_retrain(self, res) -> None:
        from voxnas.evaluation import plots
        from voxnas.trainables.bundle import load_bundle

        if res.rows:  # the final model has no test cases
            self.client.log_artifact(self.run_id, str(res.out_dir / "metrics.csv"))
            self.log_png(plots.dice_box_plot(res.rows), "plots/dice_boxplot.png")
        _, meta = load_bundle(res.model_path)  # refuses anything but a voxnas bundle
        with using_tracking_uri(tracking_uri(self.cfg)), mlflow.start_run(run_id=self.run_id):
            # models-from-code: the model is this code file + the weights-only bundle; nothing
            # in the logged model needs unpickling to load. MLflow checks the input example
            # by loading the logged model and predicting it once.
            info = mlflow.pyfunc.log_model(
                name=logged_model_name(res.arch, res.fold),
                python_model=str(Path(__file__).with_name("mlflow_model.py")),
                artifacts={"bundle": str(res.model_path)},
                pip_requirements=["voxnas", "torch", "numpy"],
                metadata={"voxnas": json.dumps(meta.to_dict())},
                signature=_signature(len(meta.modalities)),
                input_example=_input_example(meta),
                tags={"voxnas.fold": "all" if res.fold is None else str(res.fold)},
            )
        self.set_tags(retrain_tags(res, info.model_uri))

    def close(self, status: str = "FINISHED") -> None:
        if self.system is not None:
            self.system.finish()
        self.client.set_terminated(self.run_id, status)


def _system_metrics(run_id: str, uri: str, resumed: bool):
    """MLflow's system metrics (CPU, memory, disk, network; GPU with pynvml) every 10 s, as
    ``system/*`` on the trial's run; None where psutil is missing or the monitor fails."""
    try:
        import psutil  # noqa: F401  (MLflow's CPU monitor needs it)
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(run_id, resume_logging=resumed, tracking_uri=uri)
        monitor.start()
        return monitor
    except Exception:  # tracking must not fail a trial for want of system metrics
        return None


def _signature(channels: int):
    """``predict``: a preprocessed ``(C, X, Y, Z)`` float32 volume in, labels ``(X, Y, Z)``."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (channels, -1, -1, -1))]),
        outputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1))]),
    )


def _input_example(meta):
    """A small zero volume of the model's channels (one test patch's worth would bloat the
    model's folder with JSON)."""
    import numpy as np

    return np.zeros((len(meta.modalities), 16, 16, 16), np.float32)


def trial_tracker(
    cfg: Config,
    parent_id: str | None,
    stage: str,
    fold: int,
    name: str,
    trial_id: str,
    hp: list[str],
) -> TrialTracker | None:
    if not cfg.tracking.enabled:
        return None
    return TrialTracker(cfg, parent_id, stage, fold, name, trial_id, hp)


class ProtocolTracker(_RunLogger):
    """The parent run of one `voxnas run` (driver side); a context manager."""

    def __init__(self, cfg: Config, resume: bool = False):
        self.cfg, self.resume = cfg, resume
        self.run_id = ""

    @property
    def parent_id(self) -> str | None:
        return self.run_id or None

    def __enter__(self) -> ProtocolTracker:
        if not self.cfg.tracking.enabled:
            return self
        self.client, exp = ensure_experiment(self.cfg)
        run_dir = str(Path(self.cfg.run_dir).resolve())
        found = (
            self.client.search_runs(
                [exp],
                f"tags.`voxnas.run_dir` = '{run_dir}' and tags.`voxnas.role` = 'parent'",
                order_by=["attributes.start_time DESC"],
            )
            if self.resume
            else []
        )
        if found:
            self.run_id = found[0].info.run_id
            self.client.update_run(self.run_id, "RUNNING")
            print(f"MLflow: continuing parent run {self.run_id}")
            return self
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        source = _source_tags()
        version = source.get("mlflow.source.git.commit", "")[:7] or _voxnas_version()
        run = self.client.create_run(
            exp,
            run_name=parent_name(self.cfg.name, started, version),
            tags={
                "voxnas.role": "parent",
                "voxnas.run_dir": run_dir,
                "voxnas.space": self.cfg.model.space,
                "mlflow.note.content": (
                    f"voxnas protocol of {self.cfg.name}: {self.cfg.model.space}, "
                    f"{self.cfg.split.folds}-fold cross-validation, run folder {run_dir}"
                ),
                **source,
            },
        )
        self.run_id = run.info.run_id
        _log_params(self.client, self.run_id, flatten_config(self.cfg))
        folds = self.cfg.layout.folds_json
        if folds.is_file():
            self.client.log_artifact(self.run_id, str(folds), "splits")
        if self.cfg.layout.config.is_file():
            self.client.log_artifact(self.run_id, str(self.cfg.layout.config))
        print(f"MLflow: parent run {self.run_id} in {tracking_uri(self.cfg)}")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.run_id:
            status = (
                "FINISHED"
                if exc_type is None
                else ("KILLED" if exc_type is KeyboardInterrupt else "FAILED")
            )
            self.client.set_terminated(self.run_id, status)

    def log_aggregate(self, cfg: Config, genotype) -> None:
        """The aggregate's files, its code as tags (digits and op names) and the per-cell
        agreement between folds as ``search_cells/<cell>.agreement`` metrics."""
        if not self.run_id:
            return
        self.client.log_artifact(self.run_id, str(cfg.layout.aggregate), "aggregate")
        self.log_text(genotype.code() + "\n", "aggregate/genotype_code.txt")
        self.set_tags(
            {
                "voxnas.genotype": genotype.code()[:5000],
                "voxnas.genotype_ops": readable_code(genotype)[:5000],
            }
        )
        votes = json.loads(cfg.layout.aggregate.read_text()).get("votes")
        if votes:
            _log_metrics(self.client, self.run_id, agreement_metrics(votes), 0)

    def log_results(self, cfg: Config, text: str, summary: dict[str, Any]) -> None:
        if not self.run_id:
            return
        from voxnas.evaluation import plots

        out = cfg.layout.results
        self.log_text(text, "results/summary.md")
        for name in ("per_case.csv", "summary.json"):
            self.client.log_artifact(self.run_id, str(out / name), "results")
        rows = json.loads((out / "per_case.json").read_text())
        self.log_png(plots.dice_box_plot(rows), "results/dice_boxplot.png")
        metrics = result_metrics(summary)
        _log_metrics(self.client, self.run_id, metrics, 0)

    def register(self, cfg: Config) -> str | None:
        """Register the deployable model (``tracking_policy.choose_registration``) with a
        description (genotype, cross-validated DSC, protocol run), alias ``best`` and tags."""
        if not self.run_id:
            return None
        from voxnas.trainables.records import load_aggregate, load_search_results

        exp = self.client.get_run(self.run_id).info.experiment_id
        runs = self.client.search_runs(
            [exp], f"tags.`mlflow.parentRunId` = '{self.run_id}'", max_results=1000
        )
        results = load_search_results(cfg) or {}
        val = {k: float(r.get("val_dice", 0.0)) for k, r in results.items() if k is not None}
        chosen = choose_registration([r.data.tags for r in runs], val)
        if chosen is None:
            return None
        tags, why = chosen
        name = cfg.tracking.registered_model or cfg.name
        with (
            using_tracking_uri(tracking_uri(cfg)),
            # MLflow prints "Successfully registered ..." / "Created version ..." itself;
            # the line below says the same with the alias and why
            contextlib.nullcontext() if verbose() else contextlib.redirect_stderr(io.StringIO()),
        ):
            version = mlflow.register_model(tags["voxnas.model_uri"], name)
        v = version.version
        uri = f"models:/{name}/{v}"
        parent = self.client.get_run(self.run_id)
        genotype = load_aggregate(cfg)
        cv = _cv_dice(parent.data.metrics)
        self.client.update_model_version(
            name, v, version_description(genotype, cv, why, self.run_id, parent.info.run_name)
        )
        self.client.set_registered_model_alias(name, "best", v)
        version_tags = {
            "voxnas.fold": tags.get("voxnas.fold", ""),
            "voxnas.stage": tags.get("voxnas.stage", ""),
            "voxnas.protocol_id": self.run_id,
            "voxnas.space": cfg.model.space,
            "voxnas.chosen_by": why,
        }
        if genotype is not None:
            version_tags["voxnas.genotype"] = genotype.code()[:5000]
        version_tags.update({f"voxnas.cv_dice.{k}": f"{d:.4f}" for k, d in cv.items()})
        for key, value in version_tags.items():
            self.client.set_model_version_tag(name, v, key, str(value))
        # the version's source run is the child that trained it; say so on the parent (a
        # resumed protocol replaces the line, it does not add another)
        note = parent.data.tags.get("mlflow.note.content", "").split(REGISTERED_NOTE)[0]
        self.set_tags(
            {
                "voxnas.registered_model": uri,
                "mlflow.note.content": f"{note}{REGISTERED_NOTE}{uri} (alias @best), {why}.",
            }
        )
        print(f"MLflow: registered {uri} @best ({why})")
        return uri


REGISTERED_NOTE = "\n\nRegistered model: "
ML_MODE = "workflowType=machine_learning"  # MLflow 3 UI: "Model training", not GenAI


def ui_links(uri: str, experiment: str, base: str) -> dict[str, str]:
    """Where the MLflow UI at ``base`` shows this project: ``runs`` (the experiment's runs
    view, in MLflow 3's "Model training" mode rather than its GenAI overview) and, once a
    protocol has run, ``compare`` (its newest protocol's searches side by side) and
    ``parent`` (that protocol's run). Reads the store; creates nothing."""
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():
        return {"runs": f"{base}/#/experiments"}
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return {"runs": f"{base}/#/experiments"}
    eid = exp.experiment_id
    links = {"runs": f"{base}/#/experiments/{eid}/runs?{ML_MODE}"}
    parents = client.search_runs(
        [eid],
        "tags.`voxnas.role` = 'parent'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if parents:
        pid = parents[0].info.run_id
        links["parent"] = f"{base}/#/experiments/{eid}/runs/{pid}?{ML_MODE}"
        searches = client.search_runs(
            [eid],
            f"tags.`mlflow.parentRunId` = '{pid}' and tags.`voxnas.stage` = 'search'",
            max_results=100,
        )
        ids = sorted(r.info.run_id for r in searches)
        if ids:
            links["compare"] = (
                f"{base}/#/compare-runs?runs={json.dumps(ids, separators=(',', ':'))}"
                f"&experiments={json.dumps([eid])}&{ML_MODE}"
            )
    return links


def _cv_dice(metrics: dict[str, float]) -> dict[str, float]:
    """The searched architecture's cross-validated mean DSC per class/region, from the
    parent's ``results/searched_dice_<class>_mean`` metrics."""
    prefix, suffix = "results/searched_dice_", "_mean"
    return {
        k[len(prefix) : -len(suffix)]: v
        for k, v in metrics.items()
        if k.startswith(prefix) and k.endswith(suffix)
    }


def download_model_bundle(uri: str, dest: Path, store: str | None = None) -> Path:
    """Fetch a logged/registered model's voxnas bundle (``model.pt``) to ``dest`` from the
    tracking ``store`` (default: ``MLFLOW_TRACKING_URI``). Nothing of the MLflow model is
    unpickled or run here: the bundle is then loaded with ``weights_only=True``."""
    if not uri.startswith(("models:/", "runs:/", "file://", "mlflow-artifacts:/")):
        raise FileNotFoundError(
            f"{uri}: not a model file nor an MLflow URI (models:/NAME/VERSION, runs:/ID/model)"
        )
    store = store or os.environ.get("MLFLOW_TRACKING_URI") or mlflow.get_tracking_uri()
    if store.startswith("sqlite:///") and not Path(store[len("sqlite:///") :]).is_file():
        # MLflow would create an empty database here; there is nothing to find in it
        raise FileNotFoundError(f"{uri}: no MLflow store at {store[len('sqlite:///') :]}")
    try:
        with using_tracking_uri(store):
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dest)))
    except MlflowException as err:
        raise FileNotFoundError(f"{uri}: {str(err).splitlines()[0][:300]}") from None
    found = sorted(local.rglob("model.pt")) if local.is_dir() else [local]
    if not found or found[0].name != "model.pt":
        raise FileNotFoundError(f"{uri}: no voxnas bundle (model.pt) among the model's files")
    return found[0]
