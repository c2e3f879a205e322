"""Fold agreement: per-cell votes, summed probabilities and the share of folds that agree."""

import numpy as np
import pytest

from voxnas.search_spaces.agreement import cell_table, fold_agreement
from voxnas.search_spaces.genotypes import aggregate_genotypes, alpha_probs, derive_genotype


def _vnas(row):
    return {"encoder": np.tile(row, (16, 1)), "decoder": np.tile(row, (5, 1))}


def _nas3d(seed):
    """Random alphas of a 3-node NAS-3D-U-Net (rows per cell: DHM 6 ops x 6 edges, ...)."""
    rng = np.random.default_rng(seed)
    return {
        "down_special": rng.normal(size=(6, 6)),
        "down_normal": rng.normal(size=(3, 5)),
        "up_special": rng.normal(size=(3, 4)),
        "up_normal": rng.normal(size=(6, 5)),
    }


def test_alpha_probs_names_every_cell_and_op_of_both_spaces():
    probs = alpha_probs("vnas", _vnas([0.0, 1.0, 0.0]))
    assert len(probs) == 21 * 3
    assert list(probs)[:3] == ["alpha/enc00/2d", "alpha/enc00/3d", "alpha/enc00/p3d"]
    assert probs["alpha/dec04/3d"] == pytest.approx(np.e / (np.e + 2))
    table = cell_table(alpha_probs("nas3dunet", _nas3d(0)))
    assert len(table) == 18  # 9 hybrid modules per cell type (3 nodes: 2 + 3 + 4 inputs)
    assert all(sum(ops.values()) == pytest.approx(1.0) for ops in table.values())
    assert len(table["dc/node0/hm0"]) == 6 and len(table["uc/node0/hm1"]) == 4
    assert len(table["uc/node0/hm0"]) == 5  # an up cell's X0 edge is a normal module


def test_votes_and_summed_probabilities_can_disagree():
    # fold A strongly prefers 3D, folds B and C weakly prefer 2D: the sum chooses 3D (the
    # aggregate), the votes are 2 for 2D and 1 for 3D: one fold in three agrees
    a, b = _vnas([0.0, 5.0, 0.0]), _vnas([0.3, 0.0, 0.0])
    out = fold_agreement("vnas", [a, b, b])
    cell = out["cells"]["enc00"]
    assert cell["chosen"] == "3d" and cell["votes"] == {"2d": 2, "3d": 1, "p3d": 0}
    assert cell["agreement"] == pytest.approx(1 / 3)
    assert cell["summed_probability"]["3d"] > cell["summed_probability"]["2d"]
    assert out["folds"] == 3 and out["agreement_mean"] == pytest.approx(1 / 3)
    g = aggregate_genotypes("vnas", [a, b, b])  # the chosen ops are the aggregate's
    assert all(c["chosen"] == "3d" for c in out["cells"].values()) and set(g.encoder) == {1}


def test_unanimous_folds_agree_fully_and_nas3d_counts_structures():
    a = _vnas([0.0, 0.0, 2.0])
    assert fold_agreement("vnas", [a, a])["agreement_mean"] == 1.0
    nas = _nas3d(1)
    g = derive_genotype("nas3dunet", nas)
    out = fold_agreement("nas3dunet", [nas, nas, nas], [g, g, g])
    assert out["structure_votes"] == {g.code(): 3} and out["agreement_mean"] == 1.0
    with pytest.raises(ValueError, match="no fold alphas"):
        fold_agreement("vnas", [])
