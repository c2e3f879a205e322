"""Every registered model: builds, runs, finite gradients; supernet/fixed/mix semantics."""

import pytest
import torch

from voxnas.search_spaces.cost import model_cost
from voxnas.search_spaces.genotypes import VNASGenotype
from voxnas.search_spaces.mixed import MixedOp
from voxnas.search_spaces.nas3dunet import NAS3DUNet
from voxnas.search_spaces.registry import create_model, list_models
from voxnas.search_spaces.vnas import VNAS

SMALL_NAS3D = {"init_kernels": 2, "depth": 2, "nodes": 3}


def _build(name):
    if name.startswith("nas3dunet"):
        return create_model(name, 2, 3, **SMALL_NAS3D), (1, 2, 16, 16, 16)
    return create_model(name, 1, 3, width=1 / 16, psp=True), (2, 1, 32, 32, 16)


@pytest.mark.parametrize("name", list(list_models()))
def test_registered_model_forward_backward(name):
    torch.manual_seed(0)
    model, shape = _build(name)
    x = torch.randn(*shape)
    out = model(x)
    assert out.shape == (shape[0], 3, *shape[2:])
    out.square().mean().backward()
    for p in model.weight_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
    for a in model.arch_parameters():
        if a.requires_grad:
            assert a.grad is not None and torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


def test_mixed_op_one_hot_equals_single_op():
    torch.manual_seed(0)
    ops = {n: torch.nn.Conv3d(2, 2, k, padding=k // 2) for n, k in (("a", 1), ("b", 3), ("c", 5))}
    mixed = MixedOp(ops)
    x = torch.randn(1, 2, 6, 6, 6)
    for i, op in enumerate(ops.values()):
        w = torch.nn.functional.one_hot(torch.tensor(i), 3).float()
        assert torch.equal(mixed(x, w), op(x))
    w = torch.tensor([0.2, 0.3, 0.5])
    torch.testing.assert_close(mixed(x, w), sum(wi * op(x) for wi, op in zip(w, ops.values())))


@pytest.mark.parametrize("name", ["mix", "nas3dunet-mix"])
def test_mix_mode_equal_frozen_alphas(name):
    model, shape = _build(name)
    alphas = model.arch_parameters()
    assert alphas and all(not a.requires_grad and a.eq(0).all() for a in alphas)
    model(torch.randn(*shape)).sum().backward()
    assert all(a.grad is None for a in alphas)


@pytest.mark.parametrize("name", ["vnas-supernet", "nas3dunet-supernet"])
def test_arch_and_weight_parameters_partition(name):
    model, _ = _build(name)
    arch, weights = model.arch_parameters(), model.weight_parameters()
    ids = {id(p) for p in arch}
    assert ids and not ids & {id(p) for p in weights}
    assert len(arch) + len(weights) == len(list(model.parameters()))
    keys = [k for k in model.state_dict() if k.startswith("alpha_")]
    assert len(keys) == len(arch)  # alphas are saved with the weights


def test_vnas_space_size():
    model, _ = _build("vnas-supernet")
    assert model.alpha_encoder.shape == (16, 3) and model.alpha_decoder.shape == (5, 3)
    mixed = [m for m in model.modules() if isinstance(m, MixedOp)]
    assert all(len(m.ops) == 3 for m in mixed)
    # ~1e10 architectures (seed 000 section 3.1): 3 choices in each of the 21 alpha rows
    rows = model.alpha_encoder.shape[0] + model.alpha_decoder.shape[0]
    assert model.alpha_encoder.shape[1] ** rows == 10_460_353_203
    assert len(model.alpha_probs()) == 21 * 3 and "alpha/enc07/p3d" in model.alpha_probs()


def test_fixed_network_has_only_chosen_ops():
    g = VNASGenotype.parse("[0 0 0, 0 0 0 1, 2 0 2 0 2 2, 0 0 0] [0 0 1 0 1]")
    model = VNAS(1, 2, width=1 / 16, genotype=g)
    assert model.arch_parameters() == [] and not any("alpha" in k for k in model.state_dict())
    enc = [m.branch for m in model.encoder]
    assert [m.names[0].split("_")[0] for m in enc] == [["2d", "3d", "p3d"][c] for c in g.encoder]
    assert all(len(m.ops) == 1 for m in model.modules() if isinstance(m, MixedOp))
    supernet = VNAS(1, 2, width=1 / 16)
    n_fixed = sum(p.numel() for p in model.parameters())
    assert n_fixed < sum(p.numel() for p in supernet.weight_parameters())


def test_nas3d_fixed_network_from_derived_genotype():
    from voxnas.search_spaces.genotypes import derive_genotype

    supernet = NAS3DUNet(2, 3, **SMALL_NAS3D)
    with torch.no_grad():
        for a in supernet.arch_parameters():
            a.normal_()
    g = derive_genotype("nas3dunet", supernet.alphas())
    fixed = NAS3DUNet(2, 3, genotype=g, **SMALL_NAS3D)
    assert fixed.arch_parameters() == []
    for cell in list(fixed.down) + list(fixed.up):
        assert len(cell.edges) == 2 * 3  # two modules per node
        assert all(len(m.ops) == 1 for m in cell.edges.values())
    assert fixed(torch.randn(1, 2, 16, 16, 16)).shape == (1, 3, 16, 16, 16)


def test_public_code_configuration():
    model = NAS3DUNet(4, 3)  # 4 modalities, 3 outputs, depth 4, 4 kernels, 3 nodes
    n = sum(p.numel() for p in model.weight_parameters())
    assert 6.7e6 < n < 7.0e6  # public implementation: 6.85 M
    shapes = [a.shape for a in model.arch_parameters()]
    assert shapes == [(6, 6), (3, 5), (3, 4), (6, 5)]
    cost = model_cost(lambda: NAS3DUNet(4, 3), 4, (32, 32, 32))
    assert cost["params"] == n and cost["alphas"] == 93


@pytest.mark.parametrize("shape", [(1, 1, 33, 32, 16), (1, 1, 32, 32, 8)])
def test_vnas_rejects_bad_sizes(shape):
    model, _ = _build("V-NAS-NIH")
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.randn(*shape))


def test_nas3d_rejects_bad_sizes():
    model, _ = _build("nas3dunet-supernet")
    with pytest.raises(ValueError, match="multiple of 8"):
        model(torch.randn(1, 2, 16, 16, 12))


def test_cost_counts_a_conv_exactly():
    conv = lambda: torch.nn.Conv3d(2, 4, 3, padding=1, bias=False)  # noqa: E731
    c = model_cost(conv, 2, (4, 4, 4))
    macs = 4 * 4 * 4 * 4 * 2 * 27
    assert c["params"] == 4 * 2 * 27 and c["gflops_fwd"] * 1e9 == pytest.approx(2 * macs)
    # the input needs no gradient: backward is the weight gradient only (as for a network's
    # first layer), one more conv's worth of FLOPs
    assert c["gflops_fwd_bwd"] * 1e9 == pytest.approx(2 * macs + 2 * macs)


@pytest.mark.parametrize(
    "name,kw",
    [("vnas-supernet", {"widht": 0.5}), ("nas3dunet-supernet", {"width": 0.5})],
)
def test_create_model_refuses_unknown_options(name, kw):
    with pytest.raises(TypeError, match="unknown option"):
        create_model(name, 1, 2, **kw)


@pytest.mark.parametrize("size", [(16, 16, 8), (48, 48, 4), (12, 20, 3), (8, 8, 4)])
def test_pyramid_pooling_equals_pooling_each_scale_from_its_input(size):
    """The pyramid pools each scale from the previous one where windows nest: same output and
    same input gradient as pooling the full input at every scale (values without ties)."""
    import torch.nn.functional as F

    from voxnas.search_spaces.layers import upsample
    from voxnas.search_spaces.vnas import PyramidPooling

    torch.manual_seed(0)
    psp = PyramidPooling(3)
    x = torch.randn(2, 3, *size, requires_grad=True)
    outs = [x]
    for k, conv in zip(psp.scales, psp.convs):
        kk = (min(k, size[0]), min(k, size[1]), 1)
        outs.append(upsample(conv(F.max_pool3d(x, kk, kk)), size))
    ref = torch.cat(outs, dim=1)
    (g_ref,) = torch.autograd.grad(ref.square().sum(), x)
    out = psp(x)
    (g,) = torch.autograd.grad(out.square().sum(), x)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    torch.testing.assert_close(g, g_ref)
