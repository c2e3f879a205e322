"""Basic layers shared by both search spaces. Tensors are ``(B, C, X, Y, Z)``.

The convolutions (:class:`Conv3d`, :class:`ConvTranspose3d`) are ``nn.Conv3d`` /
``nn.ConvTranspose3d`` with a faster CPU path: see :mod:`voxnas.search_spaces.onednn_conv`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from voxnas.search_spaces.onednn_conv import Conv3d, ConvTranspose3d, stock_convolutions

__all__ = [
    "BatchNorm3d",
    "batchnorm_layers",
    "stacked_batch_norm",
    "patch_statistics",
    "recalibrate_batchnorm",
    "Conv3d",
    "ConvTranspose3d",
    "conv_bn_relu",
    "group_norm",
    "kernel_padding",
    "stock_convolutions",
    "upsample",
]


def kernel_padding(kernel: tuple[int, int, int], dilation: int = 1) -> tuple[int, int, int]:
    return tuple(dilation * (k - 1) // 2 for k in kernel)


class BatchNorm3d(nn.BatchNorm3d):
    """BatchNorm that does not normalise by statistics of a handful of values.

    V-NAS halves the in-plane size five times and the slice axis four times, so at a 32^3
    patch and batch 1 the deepest stage holds 1x1x2 voxels: batch statistics over two
    values per channel make the output +-1 whatever the input and the gradient of
    ``1/sqrt(var + eps)`` explodes when the two are close (one batch in ~16 gave alpha
    gradients 1,000x the others, which froze Adam's alpha steps and threw SGD off). With
    fewer than ``min_values`` values per channel this layer normalises with its running
    statistics (still updated from the batch, as usual); elsewhere it is plain BatchNorm.
    At the papers' patch (96x96x64) every stage has enough values and nothing changes.
    """

    min_values = 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scaled(x, None)

    def scaled(self, x: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
        """``scale * self(x)`` (``scale`` a 0-d tensor or None), the scale folded into the
        affine weight and bias: no pass over ``x`` of its own (``MixedOp``'s alpha)."""
        weight, bias = self.weight, self.bias
        if scale is not None:
            weight = scale.expand(x.shape[1]) if weight is None else weight * scale
            bias = None if bias is None else bias * scale
        self._check_input_dim(x)
        return stacked_batch_norm([self], x, weight, bias)


def _stacked(tensors: list[torch.Tensor | None]) -> torch.Tensor | None:
    if len(tensors) == 1 or tensors[0] is None:
        return tensors[0]
    return torch.cat(tensors)


def stacked_batch_norm(
    bns: list[BatchNorm3d], x: torch.Tensor, weight=None, bias=None
) -> torch.Tensor:
    """``cat([bn(part) for bn, part in zip(bns, x's channels split as theirs)])`` in one call:
    each part normalised as its layer would (``BatchNorm3d.forward``), with that layer's running
    statistics, counter and few-values rule. The layers must agree in mode, momentum, eps and
    counter; ``weight``/``bias`` default to the layers' own, stacked."""
    bn = bns[0]
    if weight is None and bias is None:
        weight, bias = _stacked([b.weight for b in bns]), _stacked([b.bias for b in bns])
    mean, var = _stacked([b.running_mean for b in bns]), _stacked([b.running_var for b in bns])
    counters = [b.num_batches_tracked for b in bns]
    if not bn.training or x.numel() // x.shape[1] >= bn.min_values:  # nn.BatchNorm3d.forward
        factor = 0.0 if bn.momentum is None else bn.momentum
        if bn.training and bn.track_running_stats and counters[0] is not None:
            for n in counters:
                n.add_(1)
            if bn.momentum is None:  # cumulative moving average
                factor = 1.0 / float(counters[0])
        use_batch = bn.training or (mean is None and var is None)
        track = not bn.training or bn.track_running_stats
        out = F.batch_norm(
            x, mean if track else None, var if track else None, weight, bias, use_batch,
            factor, bn.eps,
        )  # fmt: skip
    else:
        with torch.no_grad():  # update the running statistics as BatchNorm would
            dims = [0, *range(2, x.ndim)]
            n = x.numel() // x.shape[1]
            # bf16 activations under autocast: the statistics stay in the buffers' dtype (fp32)
            x32 = x.to(mean.dtype)
            batch_mean = x32.mean(dims)
            batch_var = x32.var(dims, unbiased=False) * n / max(n - 1, 1)
            for c in counters:
                c.add_(1)
            # momentum None: cumulative average, as nn.BatchNorm (used by recalibration)
            w = 1.0 / float(counters[0]) if bn.momentum is None else bn.momentum
            mean.lerp_(batch_mean, w)
            var.lerp_(batch_var, w)
        out = F.batch_norm(x, mean, var, weight, bias, False, 0.0, bn.eps)
    if len(bns) > 1 and bn.training and mean is not None:  # the stacked copies moved: back
        with torch.no_grad():
            sizes = [b.num_features for b in bns]
            for b, m, v in zip(bns, mean.split(sizes), var.split(sizes)):
                b.running_mean.copy_(m)
                b.running_var.copy_(v)
    return out


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def recalibrate_batchnorm(model: nn.Module, batches) -> int:
    """Replace every BatchNorm's running statistics by their average over ``batches``
    (input tensors), the weights untouched ("precise BN"). Returns the number of layers.

    With batch-1 patches the running statistics are an exponential average over the last
    ~10 patches (momentum 0.1): a noisy, lagging estimate that eval mode then applies to
    every patch. A retrained planted-task network with a training loss of 0.008 scored DSC
    0.001 with them and 0.906 after averaging 100 training patches."""
    bns = batchnorm_layers(model)
    if not bns:  # GroupNorm networks (NAS-3D-U-Net) have nothing to recalibrate
        return 0
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
    was_training = model.training
    model.train()
    with torch.no_grad():
        for x in batches:
            model(x)
    for bn, m in zip(bns, momenta):
        bn.momentum = m
    model.train(was_training)
    return len(bns)


@contextlib.contextmanager
def patch_statistics(model: nn.Module) -> Iterator[None]:
    """Inside, every BatchNorm normalises with the statistics of the batch it is given (for
    inference: each patch its own), and running statistics are left untouched.

    Networks trained on batch-1 patches learn with exactly that normalisation; eval-mode BN
    then applies population statistics they never saw, which cost a retrained planted-task
    network DSC 0.98 -> 0.64 (`eval.bn_stats`, README "Departures")."""
    bns = batchnorm_layers(model)
    saved = [(m.training, m.momentum) for m in bns]
    for m in bns:
        m.train()
        m.momentum = 0.0  # running <- running: nothing is learnt at inference
    try:
        yield
    finally:
        for m, (training, momentum) in zip(bns, saved):
            m.train(training)
            m.momentum = momentum


def group_norm(channels: int) -> nn.GroupNorm:
    """Seed 002 / public code: 16 channels per group, one group when not a multiple of 16."""
    groups = channels // 16 if channels % 16 == 0 else 1
    return nn.GroupNorm(groups, channels)


def conv_bn_relu(
    c_in: int,
    c_out: int,
    kernel: tuple[int, int, int],
    stride: tuple[int, int, int] | int = 1,
    relu: bool = True,
) -> nn.Sequential:
    """Conv + BatchNorm (+ ReLU): the V-NAS cell layer (seed 000: Conv+BN+ReLU)."""
    layers: list[nn.Module] = [
        Conv3d(c_in, c_out, kernel, stride=stride, padding=kernel_padding(kernel), bias=False),
        BatchNorm3d(c_out),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def upsample(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="trilinear", align_corners=False)
