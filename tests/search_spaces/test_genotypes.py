import json

import numpy as np
import pytest

from voxnas.search_spaces.genotypes import (
    Gene,
    NAS3DGenotype,
    VNASGenotype,
    aggregate_genotypes,
    cell_edges,
    derive_genotype,
    genotype_from_json,
)
from voxnas.search_spaces.registry import PUBLISHED, resolve_architecture

PAPER = {
    "V-NAS-NIH": "[0 0 0, 0 0 0 1, 2 0 2 0 2 2, 0 0 0] [0 0 1 0 1]",  # Table 2
    "V-NAS-Lung": "[0 0 0, 1 2 0 1, 2 1 2 0 0 0, 0 0 0] [0 0 2 1 1]",  # Table 3
    "V-NAS-Pancreas": "[0 2 2, 2 0 0 0, 2 2 1 2 1 1, 0 1 1] [1 0 2 0 1]",  # Table 4
}


@pytest.mark.parametrize("name", list(PAPER))
def test_published_codes_print_back_exactly(name):
    arch = resolve_architecture(name)
    assert arch.genotype.code() == PAPER[name] == PUBLISHED[name]
    assert VNASGenotype.parse(PAPER[name]) == arch.genotype


def test_nih_and_lung_share_11_encoder_and_3_decoder_choices():
    nih, lung = (VNASGenotype.parse(PAPER[n]) for n in ("V-NAS-NIH", "V-NAS-Lung"))
    assert sum(a == b for a, b in zip(nih.encoder, lung.encoder)) == 11  # seed 000 section 3.3
    assert sum(a == b for a, b in zip(nih.decoder, lung.decoder)) == 3


def test_vnas_json_round_trip_and_hash():
    g = VNASGenotype.parse(PAPER["V-NAS-Pancreas"])
    back = genotype_from_json(json.dumps(g.to_dict()))
    assert back == g and hash(back) == hash(g) and {g: 1}[back] == 1


@pytest.mark.parametrize(
    "bad",
    ["[0 0 0] [0]", "[0 0 0, 0 0 0 1, 2 0 2 0 2 3, 0 0 0] [0 0 1 0 1]", "nonsense", "[a b] [c]"],
)
def test_vnas_bad_codes(bad):
    with pytest.raises(ValueError):
        VNASGenotype.parse(bad)


def test_vnas_derive_hand_made():
    enc = np.zeros((16, 3))
    enc[np.arange(16), np.arange(16) % 3] = 1.0
    dec = np.array([[0, 0, 1], [2, 0, 0], [0, 3, 0], [0, 0, 0.5], [1, 1, 2]], float)
    g = derive_genotype("vnas", {"encoder": enc, "decoder": dec})
    assert g.encoder == tuple(i % 3 for i in range(16)) and g.decoder == (2, 0, 1, 2, 2)


def test_vnas_aggregate_sums_probabilities_not_votes():
    # fold A strongly prefers 3D, folds B and C weakly prefer 2D: probabilities sum to 3D
    def fold(row):
        return {"encoder": np.tile(row, (16, 1)), "decoder": np.tile(row, (5, 1))}

    a, b = fold([0.0, 5.0, 0.0]), fold([0.3, 0.0, 0.0])
    g = aggregate_genotypes("vnas", [a, b, b])
    # softmax: A ~ [.007, .987, .007]; B ~ [.40, .30, .30] -> sums [.81, 1.59, .61]
    assert set(g.encoder) == {1} and set(g.decoder) == {1}
    votes = [derive_genotype("vnas", f).encoder[0] for f in (a, b, b)]
    assert votes.count(0) == 2  # a vote would have picked 2D


def test_cell_edges():
    assert cell_edges("down", 3) == [
        (0, 0, True),
        (0, 1, True),
        (1, 0, True),
        (1, 1, True),
        (1, 2, False),
        (2, 0, True),
        (2, 1, True),
        (2, 2, False),
        (2, 3, False),
    ]
    assert [e[2] for e in cell_edges("up", 2)] == [False, True, False, True, False]


def _nas3d_alphas(n=3):
    return {
        "down_special": np.zeros((2 * n, 6)),
        "down_normal": np.zeros((n * (n - 1) // 2, 5)),
        "up_special": np.zeros((n, 4)),
        "up_normal": np.zeros((n * (n + 1) // 2, 5)),
    }


def test_nas3d_derive_hand_made_with_rescaling():
    a = _nas3d_alphas()
    # down node 2 has edges: X0 (DHM row 4), X1 (DHM row 5), n0 (NHM row 1), n1 (NHM row 2)
    a["down_special"][4, 0] = 2.0  # d_conv: p = e^2/(e^2+5) = .596 -> strength .596*6/5 = .715
    a["down_normal"][1, 1] = 2.3  # dil_conv: p = e^2.3/(e^2.3+4) = .713 -> strength .713
    a["down_normal"][2, 3] = 2.2  # se_conv: p = .692
    g = derive_genotype("nas3dunet", a)
    assert g.down[2] == (Gene("d_conv", 0), Gene("dil_conv", 2))
    # uniform rows: all strengths tie at 1/5, ties keep edge order, op = first of the set
    assert g.down[0] == (Gene("d_conv", 0), Gene("d_conv", 1))
    assert g.up[0] == (Gene("conv", 0), Gene("u_conv", 1))


def test_nas3d_validation_json_and_aggregate():
    g = derive_genotype("nas3dunet", _nas3d_alphas())
    assert genotype_from_json(g.to_dict()) == g and "DC:" in str(g)
    with pytest.raises(ValueError, match="not allowed on input 0"):
        NAS3DGenotype(((Gene("conv", 0), Gene("d_conv", 1)),) * 3, g.up)
    with pytest.raises(ValueError, match="out of range"):
        NAS3DGenotype(g.down, ((Gene("conv", 0), Gene("conv", 5)),) * 3)
    other = _nas3d_alphas()
    other["up_normal"][:, 2] = 3.0
    g2 = derive_genotype("nas3dunet", other)
    assert g2 != g
    assert aggregate_genotypes("nas3dunet", [_nas3d_alphas(), other, other]) == g2


def test_nas3d_vote_counts_the_genotypes_the_folds_returned():
    """Folds return the structure seen NC times (or the most common), which can differ from
    what their final alphas derive: the vote must count the returned ones."""
    g = derive_genotype("nas3dunet", _nas3d_alphas())
    other = _nas3d_alphas()
    other["up_normal"][:, 2] = 3.0
    g2 = derive_genotype("nas3dunet", other)
    alphas = [_nas3d_alphas(), other, other]  # final alphas alone would elect g2
    assert aggregate_genotypes("nas3dunet", alphas, [g, g, g2]) == g


def test_search_summary_handles_both_spaces():
    from voxnas.evaluation.tables import summarize_search

    nas = [_nas3d_alphas(), _nas3d_alphas()]
    nas[1]["up_normal"][:, 2] = 3.0
    res = [{"alphas": a, "genotype": derive_genotype("nas3dunet", a), "history": []} for a in nas]
    s = summarize_search("nas3dunet", res)
    assert s["alpha_entropy"][0] > s["alpha_entropy"][1]  # fold 1 decided more
    assert s["differs_from_uniform"] == [False, True] and "p2d_mean_over_folds" not in s
    a = {"encoder": np.zeros((16, 3)), "decoder": np.zeros((5, 3))}
    b = {"encoder": np.tile([0.0, 2.0, 0.0], (16, 1)), "decoder": np.zeros((5, 3))}
    hist = [{"train_loss": 0.5, "val_loss": 0.4}, {"train_loss": 0.3, "arch_loss": 0.2}]
    res = [{"alphas": x, "genotype": derive_genotype("vnas", x), "history": hist} for x in (a, b)]
    s = summarize_search("vnas", res)
    assert abs(s["uniform_entropy"] - np.log(3)) < 1e-9 and s["max_train_loss"] == 0.5
    assert s["share_cells_p2d_below_third"] == 16 / 21  # encoder cells: mean p(2D) < 1/3
