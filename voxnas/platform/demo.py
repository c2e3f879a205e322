"""`voxnas demo`: the whole protocol on synthetic phantoms, local Ray, local MLflow, then a
prediction of one held-out volume with the registered model."""

from __future__ import annotations

import time
from pathlib import Path

from .config import Config, load_config

__all__ = ["QUICK", "demo_config", "run_demo"]

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# a smaller setting for CI: same protocol, fewer iterations
QUICK = [
    "search.epochs=2",
    "search.iterations_per_epoch=3",
    "search.warmup_epochs=1",
    "retrain.epochs=2",
    "retrain.iterations_per_epoch=5",
]


def demo_config(space: str, overrides: list[str], quick: bool = False) -> Config:
    name = "demo.yaml" if space == "vnas" else "demo_nas3dunet.yaml"
    path = CONFIGS / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: demo config not found (run from a voxnas checkout)")
    return load_config(path, [*(QUICK if quick else []), *overrides])


def run_demo(cfg: Config, address: str | None = None, resume: bool = False, log=print) -> dict:
    from .data.prepare import dataset_root
    from .orchestration import run_protocol
    from .predict import find_inputs, load_model, predict_paths

    t0 = time.time()
    out = run_protocol(cfg, address=address, resume=resume)
    root = dataset_root(cfg)
    held_out = sorted((root / "imagesTs").glob("*.nii.gz")) if (root / "imagesTs").is_dir() else []
    syn = cfg.data.synthetic
    if not held_out and cfg.data.root is None and syn.layout == "brats":
        # the BraTS layout has no imagesTs: one unseen subject from another seed
        from .data.synthetic import write_synthetic

        unseen = write_synthetic(
            Path(cfg.workdir) / "data" / "unseen-brats",
            "brats",
            1,
            tuple(syn.shape),
            syn.seed + 999,
        )
        held_out = sorted(d for d in unseen.iterdir() if d.is_dir())
    if out.get("model_uri") and held_out:
        from .tracking import tracking_uri

        model, meta = load_model(out["model_uri"], None, tracking_uri(cfg))
        name = held_out[0].name if held_out[0].is_file() else f"{held_out[0].name}_seg.nii.gz"
        dest = Path(cfg.run_dir).resolve() / "predictions" / name
        written = predict_paths(
            model, meta, find_inputs(held_out[0], meta), dest, next(model.parameters()).device
        )
        out["prediction"] = written[0]
        log(f"predicted held-out {held_out[0]} with {out['model_uri']} -> {written[0]}")
    out["wall_s"] = time.time() - t0
    return out
