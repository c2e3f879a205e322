"""The ``voxnas`` command: parses, calls, prints. All work lives in the package.

Longer than 300 lines because each of its twelve subcommands carries its own ``--help``
text and options; no command holds logic beyond turning errors into one-line messages.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from voxnas.config import ConfigError, load_config

__all__ = ["main"]

CONFIG_ARG = click.argument("config", type=click.Path(dir_okay=False), required=False)
SET_OPT = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config value, e.g. --set search.epochs=5 (repeatable).",
)


VERBOSE_OPT = click.option(
    "--verbose",
    is_flag=True,
    help="Every epoch of every trial, Tune's trial tables and Ray's INFO logs.",
)


def _verbose(flag: bool) -> None:
    if flag:
        os.environ["VOXNAS_VERBOSE"] = "1"


def _load(config: str | None, overrides: tuple[str, ...]):
    try:
        return load_config(config, overrides)
    except ConfigError as err:
        raise click.ClickException(str(err)) from None


def _size3(ctx, param, value):
    return tuple(value) if value else None


class _Voxnas(click.Group):
    """Domain errors (bad data, config, model files, unreachable services) end as one
    ``Error: <file or key>: <problem>`` message and exit code 1, not a traceback. Set
    ``VOXNAS_DEBUG=1`` to see the traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except (ValueError, OSError, RuntimeError, KeyError) as err:
            if os.environ.get("VOXNAS_DEBUG"):
                raise
            interrupted = type(err).__name__ == "InterruptedStageError"
            if interrupted:
                click.echo(str(err), err=True)
                sys.exit(130)
            msg = str(err) if not isinstance(err, KeyError) else f"missing key {err}"
            raise click.ClickException(msg or type(err).__name__) from None


@click.group(cls=_Voxnas, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="voxnas")
def main() -> None:
    """voxnas: neural architecture search for 3D medical image segmentation.

    V-NAS (2D/3D/P3D per cell) and NAS-3D-U-Net (DARTS cells for BraTS), searched per
    cross-validation fold on Ray Tune and tracked in MLflow. Start with `voxnas demo`.
    """


@main.command()
@click.option(
    "--layout",
    type=click.Choice(["msd", "brats", "paired"]),
    default="msd",
    show_default=True,
    help="Folder layout to write.",
)
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output folder.")
@click.option(
    "--cases",
    type=click.IntRange(2, 10_000),
    default=8,
    show_default=True,
    help="Labelled cases.",
)
@click.option(
    "--shape",
    type=int,
    nargs=3,
    default=(64, 64, 32),
    show_default=True,
    metavar="X Y Z",
    help="Volume shape in voxels (slice axis last).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--phantom",
    type=click.Choice(["ct", "planted"]),
    default="ct",
    show_default=True,
    help="CT-like volumes: 'ct' (organ, distractor, tumour) or 'planted' (the planted-"
    "architecture task: continuous target columns vs dashed decoys along Z; README).",
)
@click.option(
    "--tumour/--no-tumour", default=True, show_default=True, help="Add a tumour class (ct, msd)."
)
def synth(
    layout: str,
    out: str,
    cases: int,
    shape: tuple[int, int, int],
    seed: int,
    phantom: str,
    tumour: bool,
) -> None:
    """Write a synthetic phantom dataset as real NIfTI files in LAYOUT (into a new or empty
    folder: an existing dataset is never overwritten)."""
    from voxnas.data.synthetic import write_synthetic

    if Path(out).exists() and (not Path(out).is_dir() or any(Path(out).iterdir())):
        raise click.ClickException(f"{out}: exists and is not an empty folder; choose a new one")
    if min(shape) < 8:
        raise click.BadParameter(
            f"every size must be at least 8, got {shape}", param_hint="--shape"
        )

    path = write_synthetic(Path(out), layout, cases, shape, seed, phantom=phantom, tumour=tumour)
    click.echo(f"wrote {cases} {layout} cases of shape {shape} to {path}")


@main.command("check-data")
@click.argument("root", type=click.Path())
@click.option(
    "--layout",
    type=click.Choice(["auto", "msd", "brats", "paired"]),
    default="auto",
    show_default=True,
)
def check_data(root: str, layout: str) -> None:
    """Check a dataset folder; prints every problem, one line per file. Exit 1 on problems."""
    from voxnas.data.integrity import check_folder, format_report

    def progress(i: int, n: int) -> None:
        click.echo(f"\rchecked {i}/{n} cases", nl=i == n, err=True)

    problems = check_folder(Path(root), layout, progress)
    click.echo(format_report(problems, Path(root)))
    sys.exit(1 if problems else 0)


@main.command()
@click.option(
    "--volume",
    "volume",
    type=click.IntRange(min=1),
    nargs=3,
    metavar="X Y Z",
    help="Volume shape (e.g. 240 240 155).",
)
@click.option(
    "--brain-cube",
    type=click.IntRange(min=1),
    nargs=3,
    metavar="X Y Z",
    callback=_size3,
    help="Brain cube lengths for auto-fit (default: the whole volume).",
)
@click.option(
    "--image",
    type=click.Path(exists=True, dir_okay=False),
    help="A NIfTI image: its shape and non-zero bounding box are used.",
)
@click.option(
    "--patch",
    type=click.IntRange(min=1),
    nargs=3,
    default=(64, 64, 64),
    show_default=True,
    metavar="X Y Z",
)
@click.option(
    "--mode", type=click.Choice(["auto_fit", "sliding"]), default="auto_fit", show_default=True
)
@click.option(
    "--overlap",
    type=click.FloatRange(0.0, 1.0, max_open=True),
    default=0.25,
    show_default=True,
)
def patches(volume, brain_cube, image, patch, mode, overlap) -> None:
    """Print the patch layout (starts per axis) for a volume, as inference tiles it."""
    import numpy as np

    from voxnas.evaluation import tiling

    if image:
        from voxnas.data.nifti import load_header, load_volume

        shape = tuple(load_header(Path(image)).shape)
        if len(shape) not in (3, 4) or np.prod(shape, dtype=np.float64) > 2**31:
            raise click.ClickException(f"{image}: not a 3D/4D image of a sane size: {shape}")
        data, _ = load_volume(Path(image))
        data = data[None] if data.ndim == 3 else np.moveaxis(data, -1, 0)
        volume = data.shape[1:]
        box = tiling.brain_cube(data)
    elif volume:
        cube = brain_cube or volume
        off = [(v - c) // 2 for v, c in zip(volume, cube)]
        box = tuple((o, o + c) for o, c in zip(off, cube))
    else:
        raise click.UsageError("give --volume X Y Z or --image FILE")
    click.echo(f"volume {tuple(volume)}  patch {tuple(patch)}  mode {mode}")
    total = 1
    for axis, ((lo, hi), p, L) in enumerate(zip(box, patch, volume)):
        if mode == "auto_fit":
            starts = [lo + s for s in tiling.auto_fit_axis(hi - lo, p)]
        else:
            starts = tiling.sliding_axis(L, p, overlap)
        total *= len(starts)
        step = starts[1] - starts[0] if len(starts) > 1 else 0
        click.echo(
            f"  axis {'XYZ'[axis]}: cube [{lo}, {hi}) n={len(starts)} step={step} "
            f"overlap={p - step if step else 0} starts={starts} "
            f"covers [{starts[0]}, {starts[-1] + p})"
        )
    click.echo(f"  {total} patches")


@main.command()
@CONFIG_ARG
@SET_OPT
def prepare(config: str | None, overrides: tuple[str, ...]) -> None:
    """Check, preprocess, cache and split the configured dataset (what training does first)."""
    from voxnas.data.prepare import DataIntegrityError, prepare_data, write_split_files

    cfg = _load(config, overrides)
    try:
        prep = prepare_data(cfg, log=click.echo)
        write_split_files(prep)
    except DataIntegrityError as err:
        raise click.ClickException(str(err)) from None
    for k in range(cfg.split.folds):
        s = prep.split_for(k)
        click.echo(f"fold {k}: train {len(s.train)} val {len(s.val)} test {len(s.test)}")
    click.echo(f"splits and statistics in {cfg.layout.splits}")


@main.command()
@click.argument("spec", required=False)
@click.option("--list", "list_", is_flag=True, help="List the registered architecture names.")
def genotype(spec: str | None, list_: bool) -> None:
    """Print an architecture: a registered name, a V-NAS code or a genotype .json file.

    V-NAS genotypes print their paper code and the 2D/3D/P3D choice of every cell;
    NAS-3D-U-Net genotypes print the cell structure (two modules per node).
    """
    from voxnas.search_spaces.registry import list_models, resolve_architecture

    if list_ or not spec:
        for name, desc in list_models().items():
            click.echo(f"{name:<20} {desc}")
        return
    try:
        arch = resolve_architecture(spec)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    if arch.genotype is None:
        click.echo(f"{arch.name}: {arch.space} supernet, mode {arch.mode}")
        return
    click.echo(f"{arch.name} ({arch.space})")
    click.echo(f"code: {arch.genotype.code()}")
    for line in arch.genotype.describe():
        click.echo(f"  {line}")


@main.command()
@CONFIG_ARG
@SET_OPT
@click.option(
    "--arch",
    "archs",
    multiple=True,
    help="Architectures to cost (default: the supernet and, for V-NAS, the published).",
)
def cost(config: str | None, overrides: tuple[str, ...], archs: tuple[str, ...]) -> None:
    """Parameters, GFLOPs, peak training-step memory and projected fold time.

    \b
    1. Parameters and forward+backward GFLOPs at the config's patch sizes and width.
    2. Peak memory of one training step (weights, gradients, optimiser state,
       activations) in fp32 and bf16 autocast: the supernet's search step (weight step +
       arch step) at patch.search, fixed networks' retrain step at patch.train. Set
       model.memory_lean=true to see the recomputing supernet (model.lean_budget: how
       many of its MixedOps recompute; the header says).
    3. Projected time of one fold's search and retrain at the config's iterations, from
       the GFLOP/s benchmarks/bench_throughput.py measured (the device is named), next to
       the paper's figure.

    Computed on PyTorch's meta device: nothing is allocated or run for real.
    """
    from voxnas.trainables.fold_time import time_projection
    from voxnas.trainables.footprint import memory_table
    from voxnas.trainables.models import cost_table

    cfg = _load(config, overrides)
    click.echo(cost_table(cfg, list(archs) or None))
    click.echo("")
    click.echo(memory_table(cfg, list(archs) or None))
    click.echo("")
    click.echo(time_projection(cfg))


def _prepare(cfg):
    from voxnas.data.prepare import DataIntegrityError, prepare_data

    try:
        return prepare_data(cfg, log=click.echo)
    except (DataIntegrityError, ValueError) as err:
        raise click.ClickException(str(err)) from None


def _check_fold(cfg, fold: int) -> None:
    if cfg.search.folds == "one":
        raise click.ClickException(
            "search.folds is 'one' (a single search over every case): run `voxnas search "
            "CONFIG` without --fold"
        )
    if not 0 <= fold < cfg.split.folds:
        raise click.ClickException(
            f"--fold {fold}: there are {cfg.split.folds} folds (0..{cfg.split.folds - 1})"
        )


def _run_fold(fn):
    try:
        return fn()
    except ValueError as err:  # bad fold index, bad architecture, bad shape
        raise click.ClickException(str(err)) from None


@main.command()
@CONFIG_ARG
@SET_OPT
@click.option("--fold", type=int, help="Search this fold in-process (no Ray), to debug it.")
@click.option(
    "--fresh",
    is_flag=True,
    help="Start over: ignore existing checkpoints and finished results of this stage.",
)
@click.option("--address", help="Ray cluster address (default: RAY_ADDRESS or a local Ray).")
def search(config, overrides, fold, fresh, address) -> None:
    """Search architectures: every fold (x hyperparameter set) on Ray Tune, or one fold
    in-process with --fold K. Checkpoints every epoch; reruns resume."""
    cfg = _load(config, overrides)
    if fold is None:
        from voxnas.platform.orchestration import run_search_stage

        run_search_stage(cfg, address=address, resume=not fresh)
        return
    from voxnas.trainables.records import save_search_result
    from voxnas.trainables.search import run_search_fold

    _check_fold(cfg, fold)
    data = _prepare(cfg).fold_data(fold)
    res = _run_fold(lambda: run_search_fold(cfg, fold, data=data, resume=not fresh, log=click.echo))
    path = save_search_result(cfg, res)
    click.echo(f"fold {fold} genotype: {res.genotype.code()}")
    click.echo(f"result: {path}")


@main.command()
@CONFIG_ARG
@SET_OPT
@click.option("--fold", type=int, help="Retrain this fold in-process (no Ray), to debug it.")
@click.option(
    "--genotype",
    "genotype_spec",
    default=None,
    help="Architecture: 'searched' (the aggregated genotype), a registered name "
    "(V-NAS-NIH, mix, P3D/P3D, ...), a V-NAS code or a genotype .json file. "
    "Default: retrain.genotype from the config.",
)
@click.option("--fresh", is_flag=True, help="Ignore an existing checkpoint and start over.")
@click.option("--address", help="Ray cluster address (default: RAY_ADDRESS or a local Ray).")
def retrain(config, overrides, fold, genotype_spec, fresh, address) -> None:
    """Retrain an architecture from scratch per fold and evaluate it on the test folds.
    Every fold on Ray Tune, or one fold in-process with --fold K."""
    cfg = _load(config, overrides)
    spec = genotype_spec or cfg.retrain.genotype
    if spec == "searched":
        from voxnas.trainables.records import load_aggregate

        spec = load_aggregate(cfg)
        if spec is None:
            raise click.ClickException(
                f"no aggregated genotype at {cfg.layout.aggregate}: run "
                "`voxnas aggregate` first or pass --genotype"
            )
    if fold is None:
        from voxnas.platform.orchestration import run_retrain_stage

        run_retrain_stage(
            cfg,
            spec,
            address=address,
            resume=not fresh,
            final=cfg.retrain.final and not isinstance(spec, str),
        )
        return
    from voxnas.evaluation.metrics import format_summary
    from voxnas.trainables.retrain import run_retrain_fold

    _check_fold(cfg, fold)
    data = _prepare(cfg).fold_data(fold)
    res = _run_fold(
        lambda: run_retrain_fold(cfg, fold, spec, data=data, resume=not fresh, log=click.echo)
    )
    click.echo(format_summary(res.summary, f"{res.arch}, fold {fold} ({len(res.rows)} cases)"))
    click.echo(f"model: {res.model_path}\nper-case metrics: {res.out_dir / 'metrics.csv'}")


@main.command()
@CONFIG_ARG
@SET_OPT
def aggregate(config, overrides) -> None:
    """Aggregate the fold genotypes: V-NAS sums softmax(alpha) over folds and takes the argmax
    (seed 000 section 3.1); NAS-3D-U-Net votes over the genotypes the folds returned."""
    from voxnas.trainables.aggregate import aggregate_stage

    cfg = _load(config, overrides)
    try:
        aggregate_stage(cfg, log=click.echo)
    except FileNotFoundError as err:
        raise click.ClickException(str(err)) from None


@main.command()
@CONFIG_ARG
@SET_OPT
def evaluate(config, overrides) -> None:
    """Build the paper-style results table (DSC mean +- std, max, min, median; sensitivity,
    specificity, HD95) from every retrained architecture and fold in the run directory."""
    from voxnas.evaluation.tables import results_tables
    from voxnas.trainables.records import collect_retrain_rows, load_search_results

    cfg = _load(config, overrides)
    rows = collect_retrain_rows(cfg)
    if not rows:
        raise click.ClickException(f"no retrain results under {cfg.layout.retrain}")
    text, _ = results_tables(cfg, rows, list((load_search_results(cfg) or {}).values()))
    click.echo(text)
    click.echo(f"written to {cfg.layout.results}")


@main.command()
@CONFIG_ARG
@SET_OPT
@click.option(
    "--resume",
    is_flag=True,
    help="Continue an interrupted run: finished stages and trials are reused.",
)
@click.option("--address", help="Ray cluster address (default: RAY_ADDRESS or a local Ray).")
@click.option(
    "--tracking-uri",
    help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or sqlite in the workdir).",
)
@VERBOSE_OPT
def run(config, overrides, resume, address, tracking_uri, verbose) -> None:
    """The whole protocol on Ray Tune: check -> cache -> fold searches in parallel ->
    aggregated genotype -> retrains in parallel + the final model on every training case ->
    evaluation -> results table, tracked in MLflow with the final model registered.

    Without --resume an existing run folder is moved aside (<name>.replaced-<time>) and the
    run starts fresh; with --resume finished stages and trials are reused."""
    from voxnas.platform.orchestration import run_protocol
    from voxnas.platform.tune import InterruptedStageError

    _verbose(verbose)
    if tracking_uri:
        overrides = (*overrides, f"tracking.tracking_uri={tracking_uri}")

    cfg = _load(config, overrides)
    try:
        out = run_protocol(cfg, address=address, resume=resume)
    except InterruptedStageError as err:
        click.echo(str(err), err=True)
        sys.exit(130)
    _closing(out)


@main.command()
@CONFIG_ARG
@SET_OPT
@click.option(
    "--model",
    "model_uri",
    help="models:/NAME/VERSION, runs:/RUN_ID/model, or a local model.pt bundle. Default: "
    "the config's final model (<run>/final/searched/model.pt).",
)
@click.option(
    "--ensemble",
    type=click.Choice(["folds"]),
    help="Average the probabilities of the config's fold models (nnU-Net's default).",
)
@click.option(
    "--input",
    "input_path",
    required=True,
    type=click.Path(exists=True),
    help="A NIfTI file, a folder of them, or a BraTS subject folder.",
)
@click.option(
    "--output",
    "output_path",
    required=True,
    type=click.Path(),
    help="Output .nii.gz for one input, else a folder (<case>_seg.nii.gz).",
)
@click.option(
    "--tracking-uri",
    help="MLflow tracking URI for models:/ and runs:/ URIs (default: MLFLOW_TRACKING_URI).",
)
@click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True
)
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
def predict(
    config,
    overrides,
    model_uri,
    ensemble,
    input_path,
    output_path,
    tracking_uri,
    device,
    overwrite,
) -> None:
    """Segment new scans with a trained or registered model, by default the config's final
    model (trained on every training case), or the fold ensemble (--ensemble folds). Masks
    keep the input's affine, shape and orientation and use the dataset's label values."""
    from voxnas.device import pick_device
    from voxnas.platform.predict import (
        find_inputs,
        load_fold_ensemble,
        load_model,
        output_paths,
        predict_paths,
    )

    dev = pick_device(device)
    if model_uri and ensemble:
        raise click.ClickException("give --model or --ensemble, not both")
    try:
        if ensemble:
            model, meta = load_fold_ensemble(_load(config, overrides).run_dir, dev)
        else:
            if not model_uri:
                cfg = _load(config, overrides)
                model_uri = str(cfg.layout.bundle(cfg.layout.final("searched")))
            model, meta = load_model(model_uri, dev, tracking_uri)
        cases = find_inputs(Path(input_path), meta, log=click.echo)
        output_paths(cases, Path(output_path), overwrite)  # checked before any work
    except (OSError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    what = f"ensemble of {len(model)} fold models" if isinstance(model, list) else "model"
    click.echo(f"{what} {meta.arch} ({meta.space}), {len(cases)} input(s), device {dev}")
    with click.progressbar(length=len(cases), label="segmenting") as bar:
        written = predict_paths(
            model,
            meta,
            cases,
            Path(output_path),
            dev,
            progress=lambda i, n: bar.update(1),
            overwrite=overwrite,
        )
    for w in written:
        click.echo(f"wrote {w}")


@main.command()
@CONFIG_ARG
@SET_OPT
@click.option("--port", type=click.IntRange(1, 65535), default=5000, show_default=True)
@click.option(
    "--tracking-uri", help="Store to open (default: the config's, or sqlite in the workdir)."
)
@click.option(
    "--compare",
    is_flag=True,
    help="Print the newest protocol's fold searches side by side as the link to open.",
)
def ui(config, overrides, port, tracking_uri, compare) -> None:
    """Start the MLflow UI on the project's store, bound to 127.0.0.1, and print where to look.

    The links open the experiment's runs view in MLflow's "Model training" mode (not its
    GenAI overview), the newest protocol run, and its fold searches side by side. One light
    server: one worker, MLflow's job runner off. Ctrl-C stops it.
    """
    from voxnas.platform.tracking import tracking_uri as uri_of
    from voxnas.platform.tracking import ui_links

    cfg = _load(config, overrides)
    uri = tracking_uri or uri_of(cfg)
    base = f"http://127.0.0.1:{port}"
    links = ui_links(uri, cfg.tracking.experiment or cfg.name, base)
    click.echo(f"MLflow UI for {uri} (Ctrl-C to stop)")
    if compare and "compare" not in links:
        click.echo("no protocol with searches in this store yet: showing the runs view")
    first = "compare" if compare and "compare" in links else "runs"
    labels = {"runs": "runs", "parent": "newest protocol", "compare": "its fold searches"}
    for key in (first, *(k for k in labels if k != first)):
        if key in links:
            click.echo(f"  {labels[key] + ':':<19}{links[key]}")
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    # exec: the server *is* this process, so Ctrl-C and kill reach it (MLflow's launcher
    # forwards them to its uvicorn child: no orphan on the port) and its exit code (a taken
    # port, a bad store) is the command's. Its job runner (GenAI jobs) would add processes
    # and memory this project never uses.
    os.environ["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    sys.stdout.flush()
    os.execv(sys.executable, cmd)


@main.command()
@click.option(
    "--space",
    type=click.Choice(["vnas", "nas3dunet"]),
    default="vnas",
    show_default=True,
    help="V-NAS on MSD-style CT phantoms, or NAS-3D-U-Net on BraTS-style MRI phantoms.",
)
@SET_OPT
@click.option("--quick", is_flag=True, help="Fewer iterations (what CI runs).")
@click.option("--resume", is_flag=True, help="Continue an interrupted demo.")
@click.option("--address", help="Ray cluster address (default: a local Ray).")
@VERBOSE_OPT
def demo(space, overrides, quick, resume, address, verbose) -> None:
    """The main job: synthetic data, local Ray, local MLflow, the whole search -> aggregate
    -> retrain -> evaluate protocol (4 folds in parallel), model registration, and a
    prediction of a held-out volume."""
    from voxnas.platform.demo import demo_config, run_demo
    from voxnas.platform.tune import InterruptedStageError

    _verbose(verbose)

    try:
        cfg = demo_config(space, list(overrides), quick)
    except (ConfigError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from None
    try:
        out = run_demo(cfg, address=address, resume=resume, log=click.echo)
    except InterruptedStageError as err:
        click.echo(str(err), err=True)
        sys.exit(130)
    _closing(out.protocol)
    if out.prediction:
        click.echo(f"held-out prediction: {out.prediction}")
    click.echo(f"wall time:           {out.wall_s:.0f} s")
    demo_yaml = "demo.yaml" if space == "vnas" else "demo_nas3dunet.yaml"
    click.echo(f"open the MLflow UI:  voxnas ui configs/{demo_yaml}")


def _closing(out) -> None:
    """The end of `run` / `demo`: where everything is (``orchestration.ProtocolResult``)."""
    click.echo("\n== done ==")
    click.echo(f"aggregated genotype: {out.genotype.code()}")
    click.echo(f"results:             {out.results / 'summary.md'}")
    click.echo(f"run directory:       {out.run_dir}")
    if out.final_model:
        click.echo(f"final model:         {out.final_model}")
    if out.model_uri:
        click.echo(f"registered model:    {out.model_uri}")
    if out.parent_run_id:
        click.echo(f"MLflow parent run:   {out.parent_run_id} (open with `voxnas ui`)")


if __name__ == "__main__":
    main()
