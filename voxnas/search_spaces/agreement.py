"""How far the fold searches agree, cell by cell.

Per alpha row (a V-NAS cell, a NAS-3D-U-Net hybrid module): which op each fold's final
alphas favour (its vote), softmax(alpha) summed over folds (seed 000's aggregation), the op
the sum chooses, and the share of folds that voted for it. For V-NAS the chosen ops are the
aggregated genotype; NAS-3D-U-Net aggregates by a vote over whole cell structures
(``structure_votes``), so its per-module rows say how settled each module's op is.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from voxnas.search_spaces.genotypes import alpha_probs

__all__ = ["cell_table", "fold_agreement"]


def cell_table(probs: dict[str, float]) -> dict[str, dict[str, float]]:
    """``{"alpha/enc07/p3d": p, ...}`` -> ``{"enc07": {"2d": p, "3d": p, "p3d": p}, ...}``,
    cells and ops in their original order; keys not starting with ``alpha/`` are ignored."""
    table: dict[str, dict[str, float]] = {}
    for key, p in probs.items():
        if key.startswith("alpha/"):
            cell, op = key[len("alpha/") :].rsplit("/", 1)
            table.setdefault(cell, {})[op] = float(p)
    return table


def _top(ops: dict[str, float]) -> str:
    return max(ops, key=ops.__getitem__)  # ties: the first op, as numpy's argmax


def fold_agreement(
    space: str, fold_alphas: list[dict[str, Any]], fold_genotypes: list[Any] | None = None
) -> dict[str, Any]:
    """``{"folds": K, "agreement_mean": a, "cells": {cell: {"chosen", "votes",
    "summed_probability", "agreement"}}}`` (+ ``structure_votes`` for NAS-3D-U-Net)."""
    if not fold_alphas:
        raise ValueError("no fold alphas to compare")
    tables = [cell_table(alpha_probs(space, a)) for a in fold_alphas]
    cells: dict[str, Any] = {}
    for cell, first in tables[0].items():
        summed = {op: sum(t[cell][op] for t in tables) for op in first}
        chosen = _top(summed)
        votes = Counter(_top(t[cell]) for t in tables)
        cells[cell] = {
            "chosen": chosen,
            "votes": {op: votes.get(op, 0) for op in first},
            "summed_probability": {op: round(v, 4) for op, v in summed.items()},
            "agreement": votes.get(chosen, 0) / len(tables),
        }
    out: dict[str, Any] = {
        "folds": len(tables),
        "agreement_mean": float(np.mean([c["agreement"] for c in cells.values()])),
        "cells": cells,
    }
    if space == "nas3dunet" and fold_genotypes:
        out["structure_votes"] = dict(Counter(g.code() for g in fold_genotypes).most_common())
    return out
