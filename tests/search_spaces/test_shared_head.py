"""Candidates that open with the same conv + BatchNorm + ReLU (V-NAS' 2D and P3D) run that
opening as one stacked call: the same outputs, gradients, running statistics and counters as
each candidate running its own, in every BatchNorm mode."""

import copy

import pytest
import torch
from torch import nn

from voxnas.search_spaces.layers import BatchNorm3d, recalibrate_batchnorm, stacked_batch_norm
from voxnas.search_spaces.mixed import MixedOp, set_memory_lean
from voxnas.search_spaces.onednn_conv import conv_calls
from voxnas.search_spaces.ops import (
    NAS3D_DOWN_OPS,
    NAS3D_NORMAL_OPS,
    NAS3D_UP_OPS,
    VNAS_DECODER_OPS,
    VNAS_ENCODER_OPS,
)
from voxnas.search_spaces.registry import create_model
from voxnas.search_spaces.shared_head import head_groups, separate_openings


def test_vnas_2d_and_p3d_openings_group_and_nothing_else_does():
    for table, args in ((VNAS_ENCODER_OPS, (4, 16, 2)), (VNAS_DECODER_OPS, (8, 4))):
        ops = nn.ModuleList(f(*args) for f in table.values())
        names = list(table)
        assert [[names[i][:3] for i in g] for g in head_groups(ops)] == [["2d_", "p3d"]]
    for table in (NAS3D_DOWN_OPS, NAS3D_UP_OPS, NAS3D_NORMAL_OPS):
        assert head_groups(nn.ModuleList(f(4) for f in table.values())) == ()


def _bn_pair(c=3):
    bns = [BatchNorm3d(c), BatchNorm3d(c + 1)]
    with torch.no_grad():
        for i, b in enumerate(bns):
            b.weight.uniform_(0.5, 1.5)
            b.bias.uniform_(-0.5, 0.5)
            b.running_mean.fill_(0.1 * i)
            b.running_var.fill_(1 + i)
    return bns


@pytest.mark.parametrize("mode", ["train", "few-values", "eval", "cumulative"])
def test_stacked_batch_norm_is_each_layer_on_its_channels(mode):
    torch.manual_seed(0)
    bns = _bn_pair()
    spatial = (1, 2, 2) if mode == "few-values" else (4, 4, 3)  # 4 < 32 values per channel
    x = torch.randn(1, 7, *spatial, dtype=torch.float64, requires_grad=True)
    ref = copy.deepcopy(bns)
    for b in bns + ref:
        b.double().train(mode != "eval")
        if mode == "cumulative":
            b.momentum = None
    start = [b.running_mean.clone() for b in ref]
    y = stacked_batch_norm(bns, x)
    y0 = torch.cat([b(part) for b, part in zip(ref, x.split([3, 4], dim=1))], dim=1)
    torch.testing.assert_close(y, y0, rtol=1e-12, atol=1e-12)
    g = torch.autograd.grad((y * y.detach().cos()).sum(), [x, *bns[0].parameters()])
    g0 = torch.autograd.grad((y0 * y0.detach().cos()).sum(), [x, *ref[0].parameters()])
    for a, b in zip(g, g0):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    moved = False
    for b, r, m in zip(bns, ref, start):
        for name, buf in r.named_buffers():
            torch.testing.assert_close(getattr(b, name), buf, rtol=1e-12, atol=1e-12, msg=name)
        moved |= bool((r.running_mean != m).any())
    assert moved == (mode != "eval")  # the comparison saw statistics move (or rightly not)


def _hooked(model):
    """Calls of the first 2D opening conv (not called as a module when stacked)."""
    calls = []
    mixed = next(m for m in model.modules() if isinstance(m, MixedOp))
    mixed.ops[0][0][0].register_forward_hook(lambda *a: calls.append(1))
    return calls


def _step(model, x, separate: bool):
    model.zero_grad(set_to_none=True)
    with separate_openings() if separate else torch.enable_grad():
        y = model(x)
        (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
    return y.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("lean", [False, True], ids=["plain", "memory-lean"])
def test_vnas_supernet_stacked_equals_separate_float64(lean):
    """Width 1/16 at 32x32x16: the deepest stages take the few-values BatchNorm path."""
    torch.manual_seed(0)
    ref = create_model("vnas-supernet", 1, 3, width=1 / 16, psp=False).double()
    with torch.no_grad():
        for a in ref.arch_parameters():
            a.normal_()
    new = set_memory_lean(copy.deepcopy(ref), lean)
    x = torch.randn(1, 1, 32, 32, 16, dtype=torch.float64)
    calls = _hooked(new)
    for _ in range(2):  # the second step normalises by statistics the first one moved
        y0, g0 = _step(ref, x, separate=True)
        y1, g1 = _step(new, x, separate=False)
        torch.testing.assert_close(y1, y0, rtol=1e-10, atol=1e-12)
        for n in g0:
            scale = g0[n].abs().max().clamp_min(1e-30)
            torch.testing.assert_close(g1[n] / scale, g0[n] / scale, rtol=1e-9, atol=1e-10)
        for (n, b0), b1 in zip(ref.named_buffers(), new.buffers()):
            torch.testing.assert_close(b1, b0, rtol=1e-10, atol=1e-12, msg=n)
    assert not calls  # the stacked path ran
    # precise-BN recalibration (cumulative averages) and eval mode agree too
    batches = [torch.randn(1, 1, 32, 32, 16, dtype=torch.float64) for _ in range(3)]
    with separate_openings():
        recalibrate_batchnorm(ref, batches)
    recalibrate_batchnorm(new, batches)
    for (n, b0), b1 in zip(ref.named_buffers(), new.buffers()):
        torch.testing.assert_close(b1, b0, rtol=1e-10, atol=1e-12, msg=n)
    ref.eval(), new.eval()
    with torch.no_grad(), separate_openings():
        y0 = ref(x)
    with torch.no_grad():
        torch.testing.assert_close(new(x), y0, rtol=1e-10, atol=1e-12)


def test_float32_stacked_conv_takes_the_fast_path_and_agrees():
    """The CPU float32 path (oneDNN convolution with the stacked kernels, its custom
    backward): one encoder MixedOp against its candidates run separately."""
    torch.manual_seed(0)
    ref = MixedOp({n: f(8, 32, 2) for n, f in VNAS_ENCODER_OPS.items()})
    new = copy.deepcopy(ref)
    x = torch.randn(1, 8, 16, 16, 8)
    w = torch.softmax(torch.randn(3), 0)
    outs = []
    for model, separate in ((ref, True), (new, False)):
        xi = x.clone().requires_grad_()
        before = conv_calls()
        with separate_openings() if separate else torch.enable_grad():
            y = model(xi, w)
            y.square().mean().backward()
        outs.append((y.detach(), conv_calls() - before, [xi.grad, *model.parameters()]))
    (y0, n0, g0), (y1, n1, g1) = outs
    assert n1 == n0 - 1 > 0  # one oneDNN call fewer: the two openings ran as one
    torch.testing.assert_close(y1, y0, rtol=1e-4, atol=1e-5)
    for a, b in zip(g1[:1] + [p.grad for p in g1[1:]], g0[:1] + [p.grad for p in g0[1:]]):
        torch.testing.assert_close(a / b.abs().max(), b / b.abs().max(), rtol=1e-4, atol=1e-5)


def test_batches_of_two_run_openings_separately():
    torch.manual_seed(0)
    model = create_model("vnas-supernet", 1, 3, width=1 / 16, psp=False)
    calls = _hooked(model)
    model(torch.randn(2, 1, 32, 32, 16))
    assert len(calls) == 1
    model(torch.randn(1, 1, 32, 32, 16))
    assert len(calls) == 1
