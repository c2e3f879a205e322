"""The ``voxnas`` command: parses, calls, prints. All work lives in the package."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .platform.config import ConfigError, load_config

__all__ = ["main"]

CONFIG_ARG = click.argument("config", type=click.Path(dir_okay=False), required=False)
SET_OPT = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config value, e.g. --set search.epochs=5 (repeatable).",
)


def _load(config: str | None, overrides: tuple[str, ...]):
    try:
        return load_config(config, overrides)
    except ConfigError as err:
        raise click.ClickException(str(err)) from None


def _size3(ctx, param, value):
    return tuple(value) if value else None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option("--cases", type=int, default=8, show_default=True, help="Labelled cases.")
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
def synth(layout: str, out: str, cases: int, shape: tuple[int, int, int], seed: int) -> None:
    """Write a synthetic phantom dataset as real NIfTI files in LAYOUT."""
    from .platform.data.synthetic import write_synthetic

    path = write_synthetic(Path(out), layout, cases, shape, seed)
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
    from .platform.data.integrity import check_folder, format_report

    def progress(i: int, n: int) -> None:
        click.echo(f"\rchecked {i}/{n} cases", nl=i == n, err=True)

    problems = check_folder(Path(root), layout, progress)
    click.echo(format_report(problems, Path(root)))
    sys.exit(1 if problems else 0)


@main.command()
@click.option(
    "--volume",
    "volume",
    type=int,
    nargs=3,
    metavar="X Y Z",
    help="Volume shape (e.g. 240 240 155).",
)
@click.option(
    "--brain-cube",
    type=int,
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
    "--patch", type=int, nargs=3, default=(64, 64, 64), show_default=True, metavar="X Y Z"
)
@click.option(
    "--mode", type=click.Choice(["auto_fit", "sliding"]), default="auto_fit", show_default=True
)
@click.option("--overlap", type=float, default=0.25, show_default=True)
def patches(volume, brain_cube, image, patch, mode, overlap) -> None:
    """Print the patch layout (starts per axis) for a volume, as inference tiles it."""
    import numpy as np

    from .platform.data import tiling

    if image:
        from .platform.data.nifti import load_volume

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
    from .platform.data.prepare import DataIntegrityError, prepare_data

    cfg = _load(config, overrides)
    try:
        prep = prepare_data(cfg, log=click.echo)
    except DataIntegrityError as err:
        raise click.ClickException(str(err)) from None
    for k in range(cfg.split.folds):
        s = prep.fold(k)
        click.echo(f"fold {k}: train {len(s.train)} val {len(s.val)} test {len(s.test)}")
    click.echo(f"splits and statistics in {cfg.run_dir / 'splits'}")


@main.command()
@click.argument("spec", required=False)
@click.option("--list", "list_", is_flag=True, help="List the registered architecture names.")
def genotype(spec: str | None, list_: bool) -> None:
    """Print an architecture: a registered name, a V-NAS code or a genotype .json file.

    V-NAS genotypes print their paper code and the 2D/3D/P3D choice of every cell;
    NAS-3D-U-Net genotypes print the cell structure (two modules per node).
    """
    from .search_spaces.registry import list_models, resolve_architecture

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
    """Parameters and forward+backward GFLOPs at the config's patch sizes and width.

    Computed on PyTorch's meta device: nothing is allocated or run for real.
    """
    from .platform.model_factory import cost_table

    cfg = _load(config, overrides)
    click.echo(cost_table(cfg, list(archs) or None))


if __name__ == "__main__":
    main()
