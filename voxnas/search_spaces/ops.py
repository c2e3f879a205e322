"""Op tables, one per kind of searchable slot: ``name -> factory``. The same table feeds the
supernet (all candidates in a MixedOp) and the fixed network (the chosen one alone).

V-NAS (seed 000 eq. 1 and 3), ``factory(c_in, c_out, stride)``; names spell the [X; Y] kernels:
  encoder cell (inside a bottleneck): 2D [3x3x1; 1x1x1], 3D [3x3x3; 1x1x1], P3D [3x3x1; 1x1x3]
  decoder dense layer: 2D [3x3x1; 3x3x1], 3D [3x3x3; 3x3x3], P3D [3x3x1; 1x1x3]
NAS-3D-U-Net (seed 002 Table 1), ``factory(channels)``; no op changes the channel count:
  DHM (stride 2), UHM (transposed, doubles resolution), NHM (stride 1). Every conv is
  followed by GroupNorm and ReLU; identity is GroupNorm + ReLU; pools are 2x2x2 stride 2;
  the normal ``se_conv`` is squeeze-and-excitation scaling alone (public code).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from voxnas.search_spaces.layers import Conv3d, ConvTranspose3d, conv_bn_relu, group_norm

__all__ = [
    "NAS3D_DOWN_OPS",
    "NAS3D_NORMAL_OPS",
    "NAS3D_UP_OPS",
    "VNAS_DECODER_OPS",
    "VNAS_ENCODER_OPS",
    "short_name",
]


def short_name(op: str) -> str:
    """``p3d_3x3x1_1x1x3`` -> ``p3d`` (V-NAS); NAS-3D-U-Net names are already short."""
    head = op.split("_")[0]
    return head if head in ("2d", "3d", "p3d") else op


# ---- V-NAS -------------------------------------------------------------------------------
def _vnas_pair(x_kernel, y_kernel, y_relu: bool):
    def factory(c_in: int, c_out: int, stride=1) -> nn.Module:
        return nn.Sequential(
            conv_bn_relu(c_in, c_in, x_kernel, stride),
            conv_bn_relu(c_in, c_out, y_kernel, relu=y_relu),
        )

    return factory


# encoder: X keeps the bottleneck width (and carries the stride), Y expands; the residual
# addition and its ReLU follow outside the op, as in a ResNet bottleneck
VNAS_ENCODER_OPS: dict[str, Callable[..., nn.Module]] = {
    "2d_3x3x1_1x1x1": _vnas_pair((3, 3, 1), (1, 1, 1), y_relu=False),
    "3d_3x3x3_1x1x1": _vnas_pair((3, 3, 3), (1, 1, 1), y_relu=False),
    "p3d_3x3x1_1x1x3": _vnas_pair((3, 3, 1), (1, 1, 3), y_relu=False),
}
VNAS_DECODER_OPS: dict[str, Callable[..., nn.Module]] = {
    "2d_3x3x1_3x3x1": _vnas_pair((3, 3, 1), (3, 3, 1), y_relu=True),
    "3d_3x3x3_3x3x3": _vnas_pair((3, 3, 3), (3, 3, 3), y_relu=True),
    "p3d_3x3x1_1x1x3": _vnas_pair((3, 3, 1), (1, 1, 3), y_relu=True),
}


# ---- NAS-3D-U-Net ------------------------------------------------------------------------
class _GNReLU(nn.Sequential):
    def __init__(self, c: int):
        super().__init__(group_norm(c), nn.ReLU(inplace=False))


class SqueezeExcite(nn.Module):
    """Channel attention squeezed to one hidden unit (public code), then a scaling."""

    def __init__(self, c: int):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(c, 1), nn.ReLU(), nn.Linear(1, c), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scaled(x, None)

    def scaled(self, x: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
        """``scale * self(x)`` with the scale folded into the per-channel attention."""
        w = self.fc(x.mean(dim=(2, 3, 4)))
        if scale is not None:
            w = w * scale
        return x * w[:, :, None, None, None]


def _conv(
    c: int, stride: int = 1, dilation: int = 1, depthwise: bool = False, transposed: bool = False
) -> nn.Module:
    """3x3x3 conv (dilated / depthwise-separable / transposed) + GroupNorm + ReLU."""
    pad = dilation
    groups = c if depthwise else 1
    if transposed:
        conv: nn.Module = ConvTranspose3d(
            c,
            c,
            3,
            stride=2,
            padding=pad,
            dilation=dilation,
            output_padding=1,
            groups=groups,
            bias=False,
        )
    else:
        conv = Conv3d(
            c, c, 3, stride=stride, padding=pad, dilation=dilation, groups=groups, bias=False
        )
    layers = [conv]
    if depthwise:
        layers.append(Conv3d(c, c, 1, bias=False))  # pointwise half of the separable conv
    return nn.Sequential(*layers, _GNReLU(c))


def _se(c: int, **kw) -> nn.Module:
    """SE attention; the down/up variants follow it with their strided/transposed conv. The
    normal ``se_conv`` is the attention alone, as in the public code."""
    return nn.Sequential(SqueezeExcite(c), _conv(c, **kw)) if kw else SqueezeExcite(c)


NAS3D_DOWN_OPS: dict[str, Callable[[int], nn.Module]] = {
    "d_conv": lambda c: _conv(c, stride=2),
    "d_dil_conv": lambda c: _conv(c, stride=2, dilation=2),
    "d_dep_conv": lambda c: _conv(c, stride=2, depthwise=True),
    "d_se_conv": lambda c: _se(c, stride=2),
    "max_pool": lambda c: nn.MaxPool3d(2, 2),
    "avg_pool": lambda c: nn.AvgPool3d(2, 2),
}
NAS3D_UP_OPS: dict[str, Callable[[int], nn.Module]] = {
    "u_conv": lambda c: _conv(c, transposed=True),
    "u_dil_conv": lambda c: _conv(c, dilation=2, transposed=True),
    "u_dep_conv": lambda c: _conv(c, depthwise=True, transposed=True),
    "u_se_conv": lambda c: _se(c, transposed=True),
}
NAS3D_NORMAL_OPS: dict[str, Callable[[int], nn.Module]] = {
    "conv": lambda c: _conv(c),
    "dil_conv": lambda c: _conv(c, dilation=2),
    "dep_conv": lambda c: _conv(c, depthwise=True),
    "se_conv": lambda c: _se(c),
    "identity": lambda c: _GNReLU(c),
}
