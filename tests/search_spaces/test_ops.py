"""Every op of every table: shapes, finite gradients (timm style)."""

import pytest
import torch

from voxnas.search_spaces.ops import (
    NAS3D_DOWN_OPS,
    NAS3D_NORMAL_OPS,
    NAS3D_UP_OPS,
    VNAS_DECODER_OPS,
    VNAS_ENCODER_OPS,
    short_name,
)


def _check_grads(module, x):
    out = module(x)
    out.square().mean().backward()
    assert torch.isfinite(out).all()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for p in module.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
    return out


@pytest.mark.parametrize("name", list(VNAS_ENCODER_OPS))
@pytest.mark.parametrize("stride", [1, 2])
def test_vnas_encoder_ops(name, stride):
    op = VNAS_ENCODER_OPS[name](4, 16, stride)
    x = torch.randn(2, 4, 8, 8, 8, requires_grad=True)
    out = _check_grads(op, x)
    assert out.shape == (2, 16, 8 // stride, 8 // stride, 8 // stride)


@pytest.mark.parametrize("name", list(VNAS_DECODER_OPS))
def test_vnas_decoder_ops(name):
    out = _check_grads(VNAS_DECODER_OPS[name](8, 4), torch.randn(2, 8, 8, 8, 4, requires_grad=True))
    assert out.shape == (2, 4, 8, 8, 4)


def test_vnas_kernels_are_the_papers():
    def kernels(op):
        return [m.kernel_size for m in op.modules() if isinstance(m, torch.nn.Conv3d)]

    assert kernels(VNAS_ENCODER_OPS["2d_3x3x1_1x1x1"](4, 16)) == [(3, 3, 1), (1, 1, 1)]
    assert kernels(VNAS_ENCODER_OPS["3d_3x3x3_1x1x1"](4, 16)) == [(3, 3, 3), (1, 1, 1)]
    assert kernels(VNAS_ENCODER_OPS["p3d_3x3x1_1x1x3"](4, 16)) == [(3, 3, 1), (1, 1, 3)]
    assert kernels(VNAS_DECODER_OPS["2d_3x3x1_3x3x1"](4, 4)) == [(3, 3, 1), (3, 3, 1)]
    assert kernels(VNAS_DECODER_OPS["3d_3x3x3_3x3x3"](4, 4)) == [(3, 3, 3), (3, 3, 3)]
    assert kernels(VNAS_DECODER_OPS["p3d_3x3x1_1x1x3"](4, 4)) == [(3, 3, 1), (1, 1, 3)]
    assert [short_name(n) for n in VNAS_ENCODER_OPS] == ["2d", "3d", "p3d"]


TABLE1 = {
    "down": (
        NAS3D_DOWN_OPS,
        0.5,
        ["d_conv", "d_dil_conv", "d_dep_conv", "d_se_conv", "max_pool", "avg_pool"],
    ),
    "up": (NAS3D_UP_OPS, 2.0, ["u_conv", "u_dil_conv", "u_dep_conv", "u_se_conv"]),
    "normal": (NAS3D_NORMAL_OPS, 1.0, ["conv", "dil_conv", "dep_conv", "se_conv", "identity"]),
}


def test_nas3d_op_sets_are_table1():
    for table, _, names in TABLE1.values():
        assert list(table) == names


@pytest.mark.parametrize("kind,name", [(k, n) for k, (t, _, _) in TABLE1.items() for n in t])
def test_nas3d_ops_shapes_and_grads(kind, name):
    table, scale, _ = TABLE1[kind]
    op = table[name](16)
    x = torch.randn(1, 16, 8, 8, 8, requires_grad=True)
    out = _check_grads(op, x)
    side = int(8 * scale)
    assert out.shape == (1, 16, side, side, side)  # no op changes the channel count


@pytest.mark.parametrize("name", ["conv", "dil_conv", "dep_conv"])
def test_nas3d_convs_end_in_groupnorm_relu(name):
    mods = list(NAS3D_NORMAL_OPS[name](16).modules())
    kinds = [type(m).__name__ for m in mods]
    assert kinds[-2:] == ["GroupNorm", "ReLU"]
    gn = next(m for m in mods if isinstance(m, torch.nn.GroupNorm))
    assert gn.num_groups == 1  # 16 channels -> 16 per group
    assert NAS3D_NORMAL_OPS["conv"](12)[-1][0].num_groups == 1
