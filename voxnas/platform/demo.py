"""`voxnas demo`: the whole protocol on synthetic phantoms, local Ray, local MLflow; then the
deployable models (final, fold ensemble, best fold) scored on held-out labelled scans, and a
prediction of one held-out scan with the registered model."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxnas.config import Config, load_config

__all__ = ["QUICK", "DemoResult", "compare_deployable", "demo_config", "run_demo"]

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# a smaller setting for CI: same protocol, fewer iterations
QUICK = [
    "search.epochs=2",
    "search.iterations_per_epoch=3",
    "search.warmup_epochs=1",
    "retrain.epochs=2",
    "retrain.iterations_per_epoch=5",
]


@dataclass
class DemoResult:
    protocol: Any  # orchestration.ProtocolResult
    prediction: Path | None
    held_out: str | None
    wall_s: float


def demo_config(space: str, overrides: list[str], quick: bool = False) -> Config:
    name = "demo.yaml" if space == "vnas" else "demo_nas3dunet.yaml"
    path = CONFIGS / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: demo config not found (run from a voxnas checkout)")
    return load_config(path, [*(QUICK if quick else []), *overrides])


def compare_deployable(cfg: Config, root: Path, log=print) -> str | None:
    """Final model vs fold ensemble vs best fold on ``root``'s held-out labelled scans;
    writes ``<run>/results/held_out.{md,json}``. None without held-out labels."""
    from voxnas.console import verbose
    from voxnas.device import pick_device
    from voxnas.platform.heldout import held_out_pairs, score_models, write_comparison
    from voxnas.platform.predict import load_fold_ensemble
    from voxnas.trainables.bundle import load_bundle
    from voxnas.trainables.records import load_search_results

    pairs = held_out_pairs(root)
    if not pairs:
        return None
    device = pick_device(cfg.device)
    candidates: dict[str, tuple[Any, Any]] = {}
    final = cfg.layout.bundle(cfg.layout.final("searched"))
    if final.is_file():
        candidates["final (all training cases)"] = load_bundle(final, device)
    models, meta = load_fold_ensemble(cfg.run_dir, device)
    candidates[f"fold ensemble ({len(models)} folds)"] = (models, meta)
    results = load_search_results(cfg) or {}
    scored = {k: float(r.get("val_dice", 0.0)) for k, r in results.items() if k is not None}
    if scored:
        best = max(scored, key=scored.get)
        path = cfg.layout.bundle(cfg.layout.retrain_fold("searched", best))
        candidates[f"best fold (fold {best}, on search val DSC)"] = load_bundle(path, device)
    rows = score_models(candidates, pairs, device, log if verbose() else (lambda s: None))
    return write_comparison(rows, cfg.layout.results)


def run_demo(cfg: Config, address: str | None = None, resume: bool = False, log=print):
    from voxnas.data.prepare import dataset_root
    from voxnas.platform.orchestration import run_protocol
    from voxnas.platform.predict import find_inputs, load_model, predict_paths

    t0 = time.time()
    out = run_protocol(cfg, address=address, resume=resume)
    root = dataset_root(cfg)
    held_out = sorted((root / "imagesTs").glob("*.nii.gz")) if (root / "imagesTs").is_dir() else []
    syn = cfg.data.synthetic
    if not held_out and cfg.data.root is None and syn.layout == "brats":
        # the BraTS layout has no imagesTs: one unseen subject from another seed
        from voxnas.data.synthetic import write_synthetic

        unseen = write_synthetic(
            Path(cfg.workdir) / "data" / "unseen-brats",
            "brats",
            1,
            tuple(syn.shape),
            syn.seed + 999,
        )
        held_out = sorted(d for d in unseen.iterdir() if d.is_dir())
    table = compare_deployable(cfg, root, log)
    if table:
        log("\n" + table)
    prediction = None
    if out.model_uri and held_out:
        from voxnas.platform.tracking import tracking_uri

        model, meta = load_model(out.model_uri, None, tracking_uri(cfg))
        name = held_out[0].name if held_out[0].is_file() else f"{held_out[0].name}_seg.nii.gz"
        dest = cfg.layout.predictions.resolve() / name
        written = predict_paths(  # the demo's own output, rewritten by --resume
            model,
            meta,
            find_inputs(held_out[0], meta),
            dest,
            next(model.parameters()).device,
            overwrite=True,
        )
        prediction = written[0]
        log(f"predicted held-out {held_out[0]} with {out.model_uri} -> {prediction}")
    return DemoResult(out, prediction, table, time.time() - t0)
