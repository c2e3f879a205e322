"""The aggregate stage: one architecture from the fold searches.

V-NAS (seed 000 section 3.1): sum softmax(alpha) over folds, argmax per cell.
NAS-3D-U-Net: seed 002 searches once; per-fold searches are our extension, combined by a
vote over the genotypes each fold's Table 2 rule *returned* (ties: the summed alphas).
With ``search.folds: one`` the single search's genotype is the architecture.
"""

from __future__ import annotations

from voxnas.config import Config
from voxnas.search_spaces.agreement import fold_agreement
from voxnas.search_spaces.genotypes import aggregate_genotypes
from voxnas.trainables.records import load_search_results, save_aggregate

__all__ = ["aggregate_stage"]


def aggregate_stage(cfg: Config, log=print):
    """Read the search results, aggregate, write ``<run>/aggregate/genotype.json``."""
    results = load_search_results(cfg)
    if results is None:
        raise FileNotFoundError(
            f"search results missing under {cfg.layout.search}: run `voxnas search` first"
        )
    alphas = [r["alphas"] for r in results.values()]
    genotypes = [r["genotype"] for r in results.values()]
    genotype = aggregate_genotypes(cfg.model.space, alphas, genotypes)
    agreement = fold_agreement(cfg.model.space, alphas, genotypes)
    path = save_aggregate(cfg, genotype, {k: r["genotype"] for k, r in results.items()}, agreement)
    for k, r in results.items():
        log(f"  {'single search' if r['fold'] is None else f'fold {k}'}: {r['genotype'].code()}")
    log(
        f"aggregated genotype: {genotype.code()} (folds agree on "
        f"{agreement['agreement_mean']:.0%} of cell choices)\n  -> {path}"
    )
    return genotype
