"""Candidates that open with the same conv + BatchNorm + ReLU on the same input run that
opening as one convolution with their kernels stacked.

V-NAS' 2D and P3D candidates both begin with a 3x3x1 convolution, same channels and stride, on
the MixedOp's input (encoder X and decoder X, seed 000 eq. 1 and 3). Stacked, the two are one
``c -> 2c`` convolution, one BatchNorm call (per channel, so each half is normalised exactly as
its own layer would: :func:`~voxnas.search_spaces.layers.stacked_batch_norm`) and one ReLU;
backward, one input gradient instead of two and their sum. Each half then goes on through the
rest of its own candidate. Parameters, buffers and checkpoints stay per candidate: only the
calls are shared. It pays where a step is dominated by the number of calls rather than their
arithmetic: ``benchmarks/bench_stacked.py`` measured the demo's V-NAS step at 32^3 ~5%
faster and the 64^3 step unchanged within noise.

Only batch-1 inputs are stacked (a channel half of a batch-1 tensor is contiguous; of a
larger batch it is not, and each half would be copied for its next convolution). It runs on
the folded CPU mixing only (:mod:`voxnas.search_spaces.mixed`); :func:`separate_openings`
turns it off (for tests and benchmarks).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from voxnas.search_spaces.layers import BatchNorm3d, Conv3d, stacked_batch_norm
from voxnas.search_spaces.switches import Switch

__all__ = ["head_groups", "separate_openings", "shared_heads"]

_STACKED = Switch("voxnas_stacked_openings")


def separate_openings() -> contextlib.AbstractContextManager[None]:
    """Run every candidate's opening on its own (the reference for tests and benchmarks)."""
    return _STACKED.off()


def _head(op: nn.Module) -> tuple[Conv3d, BatchNorm3d] | None:
    """``op``'s opening (conv, BatchNorm) when ``op`` is ``Sequential(conv_bn_relu, ...)``."""
    if not (isinstance(op, nn.Sequential) and len(op) >= 2):
        return None
    first = op[0]
    if not (isinstance(first, nn.Sequential) and len(first) == 3):
        return None
    conv, bn, relu = first
    if type(conv) is not Conv3d or conv.bias is not None or type(bn) is not BatchNorm3d:
        return None
    return (conv, bn) if isinstance(relu, nn.ReLU) else None


def head_groups(ops: nn.ModuleList) -> tuple[tuple[int, ...], ...]:
    """Indices of candidates (groups of two or more) whose openings can run as one."""
    groups: dict[tuple, list[int]] = {}
    for i, op in enumerate(ops):
        head = _head(op)
        if head is None:
            continue
        conv, bn = head
        key = (
            conv.in_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
            conv.groups, conv.padding_mode, bn.eps, bn.affine, bn.track_running_stats,
        )  # fmt: skip
        groups.setdefault(key, []).append(i)
    return tuple(tuple(g) for g in groups.values() if len(g) > 1)


def shared_heads(
    ops: nn.ModuleList, groups: tuple[tuple[int, ...], ...], x: torch.Tensor
) -> dict[int, torch.Tensor]:
    """Candidate index -> the output of its opening, for the groups that can run as one now."""
    out: dict[int, torch.Tensor] = {}
    if x.shape[0] != 1 or not _STACKED.on():
        return out
    for group in groups:
        convs, bns = zip(*(_head(ops[i]) for i in group))
        bn = bns[0]
        if any(b.training != bn.training or b.momentum != bn.momentum for b in bns):
            continue
        counted = bn.momentum is None and bn.num_batches_tracked is not None
        if bn.training and counted and len({int(b.num_batches_tracked) for b in bns}) > 1:
            continue  # cumulative averages at different counts
        y = convs[0]._conv_forward(x, torch.cat([c.weight for c in convs]), None)
        y = F.relu(stacked_batch_norm(list(bns), y), inplace=True)
        out.update(zip(group, y.split([c.out_channels for c in convs], dim=1)))
    return out
