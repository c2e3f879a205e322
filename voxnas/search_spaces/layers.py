"""Basic layers shared by both search spaces. Tensors are ``(B, C, X, Y, Z)``.

:class:`Conv3d` is ``nn.Conv3d`` with a faster CPU float32 path and the same maths. PyTorch's
backend heuristics send batch-1, few-channel 3D convolutions to its slow native kernels
(``slow_conv3d_forward``, ``slow_conv_dilated3d`` and their backward), and even oneDNN's own
backward is slow at 4-8 channels. Here, on CPU:

- 1x1x1 convolutions are matrix products (GEMM forward and backward);
- a stride-1 convolution runs forward, input gradient and weight gradient as oneDNN
  *forward* convolutions: the input gradient is the convolution of the output gradient with
  the flipped, transposed kernel; the weight gradient is the convolution of the input (batch
  and channel axes swapped) with the output gradient as kernel;
- a strided convolution's input gradient is the transposed convolution; a transposed
  convolution's input gradient is the strided oneDNN convolution with the same kernel, and its
  weight gradient the swapped convolution above (stride and dilation exchanged).

On CUDA, and for other dtypes, the call is the stock one (cuDNN).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BatchNorm3d",
    "batchnorm_layers",
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

_aten = torch.ops.aten
_FAST_CPU = ContextVar("voxnas_fast_cpu_conv", default=True)


@contextlib.contextmanager
def stock_convolutions() -> Iterator[None]:
    """Run convolutions through PyTorch's stock CPU path (for benchmarks and tests)."""
    token = _FAST_CPU.set(False)
    try:
        yield
    finally:
        _FAST_CPU.reset(token)


def _onednn_ok(x: torch.Tensor) -> bool:
    return (
        _FAST_CPU.get()
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not x.is_mkldnn
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
    )


def _grad_weight_swapped(inp, go, padding, stride, dilation, groups, kernel):
    """dL/dW of ``conv(inp) -> go`` as one forward conv: input ``inp^T``, kernel ``go^T``
    (the conv's stride becomes the dilation of that kernel, its dilation the stride)."""
    if groups == 1:
        out = _aten.mkldnn_convolution(
            inp.transpose(0, 1).contiguous(),
            go.transpose(0, 1).contiguous(),
            None,
            padding,
            dilation,
            stride,
            1,
        )
    else:  # depthwise, batch 1: one group per channel
        out = _aten.mkldnn_convolution(
            inp, go.transpose(0, 1).contiguous(), None, padding, dilation, stride, groups
        )
    return out.transpose(0, 1)[..., : kernel[0], : kernel[1], : kernel[2]].contiguous()


def _swapped_ok(x: torch.Tensor, weight: torch.Tensor, groups: int) -> bool:
    depthwise = groups > 1 and groups == x.shape[1] and weight.shape[1] == 1
    return groups == 1 or (depthwise and x.shape[0] == 1)


def _conv_input_grad(go, weight, x_shape, stride, padding, dilation, groups):
    """dL/dx of a conv: a flipped-kernel conv (stride 1) or a transposed conv (strided)."""
    kernel = weight.shape[2:]
    if stride == [1, 1, 1]:
        flipped = weight.flip(2, 3, 4)
        if groups == 1:
            flipped = flipped.transpose(0, 1)
        pad = [d * (k - 1) - p for d, k, p in zip(dilation, kernel, padding)]
        return _aten.mkldnn_convolution(
            go, flipped.contiguous(), None, pad, [1, 1, 1], dilation, groups
        )
    out_pad = [
        xs - ((gs - 1) * s - 2 * p + d * (k - 1) + 1)
        for xs, gs, s, p, d, k in zip(x_shape[2:], go.shape[2:], stride, padding, dilation, kernel)
    ]
    return F.conv_transpose3d(go, weight, None, stride, padding, out_pad, groups, dilation)


class _OneDNNConv3d(torch.autograd.Function):
    """A conv (``transposed=False``) or transposed conv on CPU, backward as forward convs."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups, transposed, out_pad):
        ctx.save_for_backward(x, weight)
        ctx.conf = (stride, padding, dilation, groups, bias is not None, transposed)
        ctx.out_pad = out_pad or [0, 0, 0]
        if transposed:
            return F.conv_transpose3d(x, weight, bias, stride, padding, out_pad, groups, dilation)
        return _aten.mkldnn_convolution(x, weight, bias, padding, stride, dilation, groups)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups, has_bias, transposed = ctx.conf
        grad_out = grad_out.contiguous()
        kernel = weight.shape[2:]
        gb = grad_out.sum((0, 2, 3, 4)) if has_bias else None
        gi = gw = None
        if transposed:  # y = conv^T(x): x is the conv of y's gradient with the same kernel
            if ctx.needs_input_grad[0]:
                gi = _aten.mkldnn_convolution(
                    grad_out, weight, None, padding, stride, dilation, groups
                )
            if ctx.needs_input_grad[1]:
                if _swapped_ok(grad_out, weight, groups):
                    gw = _grad_weight_swapped(
                        grad_out, x, padding, stride, dilation, groups, kernel
                    )
                else:
                    gw = _aten.convolution_backward(
                        grad_out,
                        x,
                        weight,
                        None,
                        stride,
                        padding,
                        dilation,
                        True,
                        ctx.out_pad,
                        groups,
                        [False, True, False],
                    )[1]
            return gi, gw, gb, None, None, None, None, None, None
        if ctx.needs_input_grad[0]:
            gi = _conv_input_grad(grad_out, weight, x.shape, stride, padding, dilation, groups)
        if ctx.needs_input_grad[1]:
            if _swapped_ok(x, weight, groups):
                gw = _grad_weight_swapped(x, grad_out, padding, stride, dilation, groups, kernel)
            else:
                gw = _aten.convolution_backward(
                    grad_out,
                    x,
                    weight,
                    None,
                    stride,
                    padding,
                    dilation,
                    False,
                    [0, 0, 0],
                    groups,
                    [False, True, False],
                )[1]
        return gi, gw, gb, None, None, None, None, None, None


def _fast_path(module: nn.modules.conv._ConvNd, x: torch.Tensor) -> bool:
    return module.padding_mode == "zeros" and isinstance(module.padding, tuple) and _onednn_ok(x)


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` with the fast CPU float32 path described in the module docstring."""

    def _conv_forward(self, x, weight, bias):
        if not _fast_path(self, x):
            return super()._conv_forward(x, weight, bias)
        if self.kernel_size == (1, 1, 1) and self.stride == (1, 1, 1) and self.groups == 1:
            b, c = x.shape[:2]
            y = torch.matmul(weight.view(weight.shape[0], c), x.reshape(b, c, -1))
            if bias is not None:
                y = y + bias[:, None]
            return y.view(b, -1, *x.shape[2:])
        return _OneDNNConv3d.apply(
            x.contiguous(),
            weight.contiguous(),
            bias,
            list(self.stride),
            list(self.padding),
            list(self.dilation),
            self.groups,
            False,
            None,
        )


class ConvTranspose3d(nn.ConvTranspose3d):
    """``nn.ConvTranspose3d`` whose CPU float32 backward runs as oneDNN forward convs."""

    def forward(self, x, output_size=None):
        if output_size is not None or not _fast_path(self, x):
            return super().forward(x, output_size)
        return _OneDNNConv3d.apply(
            x.contiguous(),
            self.weight.contiguous(),
            self.bias,
            list(self.stride),
            list(self.padding),
            list(self.dilation),
            self.groups,
            True,
            list(self.output_padding),
        )


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
        if not self.training or x.numel() // x.shape[1] >= self.min_values:
            return super().forward(x)
        with torch.no_grad():  # update the running statistics as BatchNorm would
            dims = [0, *range(2, x.ndim)]
            n = x.numel() // x.shape[1]
            mean, var = x.mean(dims), x.var(dims, unbiased=False) * n / max(n - 1, 1)
            self.num_batches_tracked += 1
            # momentum None: cumulative average, as nn.BatchNorm (used by recalibration)
            w = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            self.running_mean.lerp_(mean, w)
            self.running_var.lerp_(var, w)
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
        )


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
