"""Scoring deployable models on held-out labelled scans (``imagesTs`` + ``labelsTs``): the
final model, the fold ensemble and the best single fold, as nnU-Net users compare them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from voxnas.data.layouts import Case
from voxnas.data.nifti import load_volume, voxel_spacing
from voxnas.data.preprocess import PreprocessSettings, invert_geometry, load_case, preprocess_image
from voxnas.evaluation.inference import masks_by_name, segment
from voxnas.evaluation.metrics import case_metrics, summarize
from voxnas.platform.predict import nifti_stem

__all__ = ["held_out_pairs", "score_models", "write_comparison"]


def held_out_pairs(root: Path) -> list[tuple[Path, Path]]:
    """``(image, label)`` pairs of ``root/imagesTs`` with a label in ``root/labelsTs``."""
    images = sorted(Path(root, "imagesTs").glob("*.nii*"))
    return [
        (i, Path(root, "labelsTs", i.name))
        for i in images
        if Path(root, "labelsTs", i.name).is_file()
    ]


def score_models(
    candidates: dict[str, tuple[Any, Any]], pairs: list[tuple[Path, Path]], device, log=print
) -> list[dict[str, Any]]:
    """Per-case metrics of each candidate ``name -> (model or list of models, meta)`` on the
    original voxel grid of the held-out scans (labels in the dataset's values)."""
    rows = []
    for name, (models, meta) in candidates.items():
        settings = PreprocessSettings.from_dict(meta.preprocessing)
        for image_path, label_path in pairs:
            case = Case(nifti_stem(image_path), (image_path,), None)
            image, _, geom = load_case(case, settings, meta.label_values)
            pred = invert_geometry(
                segment(models, meta, preprocess_image(image, settings), device), geom
            )
            gt, affine = load_volume(label_path, np.float32)
            m = case_metrics(
                masks_by_name(pred, meta.target, meta.label_names),
                masks_by_name(np.rint(gt).astype(np.uint8), meta.target, meta.label_names),
                voxel_spacing(affine),
            )
            rows.append({"model": name, "case": case.case_id, **m})
        log(f"  held-out scans scored with the {name} model")
    return rows


def _of(rows: list[dict[str, Any]], model: str) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "model"} for r in rows if r["model"] == model]


def write_comparison(rows: list[dict[str, Any]], out: Path) -> str:
    """``held_out.md`` / ``held_out.json`` in ``out``: mean +- std DSC per model."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    cols = [k for k in rows[0] if k.startswith("dice/")] if rows else []
    lines = [
        f"Held-out scans ({len({r['case'] for r in rows})}, labels never seen by any stage):",
        "",
        "| model | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    data = {}
    for m in models:
        s = summarize(
            [{k: v for k, v in r.items() if k != "model"} for r in rows if r["model"] == m]
        )
        data[m] = s
        lines.append(
            f"| {m} | "
            + " | ".join(f"{100 * s[c]['mean']:.2f} +- {100 * s[c]['std']:.2f}%" for c in cols)
            + " |"
        )
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "held_out.md").write_text(text)
    (out / "held_out.json").write_text(json.dumps({"summary": data, "rows": rows}, indent=1))
    return text
