"""Candidates of different edges that read the same state run as one convolution.

In a NAS-3D-U-Net cell one state feeds several edges (a down cell's two inputs feed three
hybrid modules each, an up cell's X0 three normal ones), and every edge's MixedOp holds the
same candidates: its ``conv``, ``dil_conv``, ``d_conv``, ``u_conv``... are the same
convolution (same shape, stride, dilation) on the same input with different kernels, each
followed by its own GroupNorm and ReLU. Stacked, the ``k`` kernels are one ``c -> k*c``
convolution, one GroupNorm call with ``k`` times the groups (the channel halves never share a
group, so each is normalised exactly as its own layer would; each edge's alpha weight folded
into its part of the affine, as :mod:`voxnas.search_spaces.weighted` does) and one ReLU;
backward, one input gradient instead of ``k`` and their sum. Each edge then adds its slice of
the result to its MixedOp's sum. Parameters and checkpoints stay per candidate: only the calls
are shared.

A candidate that scales its input by squeeze-and-excitation before the same convolution
(``d_se_conv``) joins the plain ones: for batch 1, ``conv(x * s)`` is the convolution of ``x``
with the kernel scaled per input channel by ``s``, so the scaling costs no pass over ``x``
(forward, nor its two backward), and the attention's input mean is taken once for all of
them. Not ``u_se_conv``: with it the transposed group measured slower at the public code's
64^3 (an ad-hoc A/B: a 2.7% longer step; 1.6% shorter at the demo's 32^3).

At few channels a convolution's cost is mostly per call, not per multiply-add, so this pays
most at a U-Net's full-resolution cells (4 channels at 64^3: three edges' convolutions
forward and backward in 84 ms stacked against 133 ms apart, one thread, an ad-hoc timing).

Only batch-1 inputs are stacked (a channel slice of a batch-1 tensor is contiguous), on the
folded CPU mixing (:mod:`voxnas.search_spaces.mixed`) and not in memory-lean MixedOps (their
recomputation is per MixedOp). :func:`separate_edges` turns it off (for tests and
benchmarks).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from voxnas.search_spaces.onednn_conv import Conv3d, ConvTranspose3d
from voxnas.search_spaces.ops import SqueezeExcite
from voxnas.search_spaces.switches import Switch

__all__ = ["edge_groups", "separate_edges", "stacked_edges", "stacking"]

_STACKED = Switch("voxnas_stacked_edges")

Member = tuple[int, int]  # (edge index, candidate index)


def separate_edges() -> contextlib.AbstractContextManager[None]:
    """Run every edge's candidates on their own (the reference for tests and benchmarks)."""
    return _STACKED.off()


def stacking() -> bool:
    return _STACKED.on()


def _tail(op: nn.Module) -> tuple[nn.Module, nn.GroupNorm] | None:
    """``(conv, GroupNorm)`` when ``op`` is ``Sequential(conv, Sequential(GroupNorm, ReLU))``
    with a dense (not grouped), bias-free convolution and an affine GroupNorm."""
    if not (isinstance(op, nn.Sequential) and len(op) == 2):
        return None
    conv, tail = op
    if type(conv) not in (Conv3d, ConvTranspose3d) or conv.groups != 1 or conv.bias is not None:
        return None
    if not (isinstance(tail, nn.Sequential) and len(tail) == 2):
        return None
    gn, relu = tail
    if type(gn) is not nn.GroupNorm or not gn.affine or type(relu) is not nn.ReLU:
        return None
    return conv, gn


Parts = tuple[SqueezeExcite | None, nn.Module, nn.GroupNorm]


def _parts(op: nn.Module) -> Parts | None:
    """``(squeeze-excitation or None, conv, GroupNorm)`` of a conv + GroupNorm + ReLU
    candidate, or of one that scales its input by squeeze-and-excitation first."""
    if isinstance(op, nn.Sequential) and len(op) == 2 and type(op[0]) is SqueezeExcite:
        tail = _tail(op[1])  # not a transposed conv: stacked, it measured slower at 64^3
        return None if tail is None or type(tail[0]) is not Conv3d else (op[0], *tail)
    tail = _tail(op)
    return None if tail is None else (None, *tail)


def _key(se: SqueezeExcite | None, conv: nn.Module, gn: nn.GroupNorm) -> tuple:
    # not ``se``: a candidate that scales its input first stacks with the plain ones
    return (
        type(conv), conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
        conv.padding, conv.dilation, conv.output_padding, conv.padding_mode, gn.num_groups,
        gn.eps,
    )  # fmt: skip


def edge_groups(edges: list[list[nn.Module]]) -> tuple[tuple[Member, ...], ...]:
    """Groups (two or more) of candidates, each ``(edge, candidate)``, that can run as one
    convolution when the ``edges`` (each a list of candidate ops) read the same input."""
    groups: dict[tuple, list[Member]] = {}
    for e, ops in enumerate(edges):
        if len(ops) < 2:  # a fixed network's chosen op: nothing to mix, nothing to stack
            continue
        for i, op in enumerate(ops):
            parts = _parts(op)
            if parts is not None:
                groups.setdefault(_key(*parts), []).append((e, i))
    return tuple(tuple(g) for g in groups.values() if len(g) > 1)


def _conv(conv: nn.Module, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    if isinstance(conv, ConvTranspose3d):
        return conv.forward_with(x, weight)
    return conv._conv_forward(x, weight, None)


def stacked_edges(
    edges: list[list[nn.Module]],
    groups: tuple[tuple[Member, ...], ...],
    x: torch.Tensor,
    weights: list[torch.Tensor],
) -> dict[Member, torch.Tensor]:
    """``(edge, candidate) -> weights[edge][candidate] * op(x)`` for the candidates of
    ``groups``, each group run as one convolution + GroupNorm + ReLU. ``weights`` are the
    edges' softmax rows (non-negative: the caller checks); empty unless ``x`` is batch 1."""
    out: dict[Member, torch.Tensor] = {}
    if x.shape[0] != 1 or not _STACKED.on():
        return out
    mean = None  # squeeze-and-excitation's input, shared by every SE candidate here
    for group in groups:
        parts = [_parts(edges[e][i]) for e, i in group]
        _, conv, gn = parts[0]
        axis = 1 if isinstance(conv, ConvTranspose3d) else 0  # the out-channel axis
        kernels = []
        for se, c, _ in parts:
            if se is None:
                kernels.append(c.weight)
                continue
            # conv(x * s) = conv with the kernel scaled per input channel (batch 1)
            mean = x.mean(dim=(2, 3, 4)) if mean is None else mean
            s = se.fc(mean)[0]
            kernels.append(c.weight * s.view([-1 if a == 1 - axis else 1 for a in range(5)]))
        y = _conv(conv, x, torch.cat(kernels, dim=axis))
        scale = [weights[e][i] for e, i in group]
        gamma = torch.cat([g.weight * w for (_, _, g), w in zip(parts, scale)])
        beta = torch.cat([g.bias * w for (_, _, g), w in zip(parts, scale)])
        y = F.group_norm(y, gn.num_groups * len(group), gamma, beta, gn.eps)
        # w * relu(z) = relu(w * z) for w >= 0; the norm's output is not saved for backward
        y = F.relu(y, inplace=True)
        out.update(zip(group, y.split(conv.out_channels, dim=1)))
    return out
