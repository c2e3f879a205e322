"""Basic layers shared by both search spaces. Tensors are ``(B, C, X, Y, Z)``.

:class:`Conv3d` is ``nn.Conv3d`` with a faster CPU float32 path and the same maths. PyTorch's
backend heuristics send batch-1, few-channel 3D convolutions to its slow native kernels
(``slow_conv3d_forward``, ``slow_conv_dilated3d`` and their backward), and even oneDNN's own
backward is slow at 4-8 channels. Here, on CPU:

- 1x1x1 convolutions are matrix products (GEMM forward and backward);
- a stride-1 convolution runs forward, input gradient and weight gradient as oneDNN
  *forward* convolutions: the input gradient is the convolution of the output gradient with
  the flipped, transposed kernel; the weight gradient is the convolution of the input (batch
  and channel axes swapped) with the output gradient as kernel ("swapped"; at a few voxels and
  many channels, below :data:`SWAPPED_MIN_VOXELS` / :data:`SWAPPED_MIN_VOXELS_STRIDED`,
  PyTorch's own weight gradient is faster and runs instead);
- a strided convolution's input gradient is the transposed convolution; a transposed
  convolution's input gradient is the strided oneDNN convolution with the same kernel, and its
  weight gradient the swapped convolution above (stride and dilation exchanged);
- a transposed convolution whose dilation and padding are multiples of its stride (NAS-3D-U-Net's
  ``u_dil_conv``, and the input gradient of ``d_dil_conv``: stride 2, dilation 2) reaches only
  the output voxels on the stride's lattice: it is one stride-1 oneDNN convolution (flipped,
  transposed kernel) written onto that lattice of a zero output, the same multiply-adds;
- any other strided transposed convolution (``u_conv``: kernel 3, stride 2, padding 1; the
  input gradient of a strided conv) is, on each of the stride's residue classes of output
  voxels (eight for stride 2), a stride-1 convolution of the input with the kernel taps that
  reach that class (1 or 2 per axis for kernel 3): eight oneDNN forward convolutions written
  onto interleaved lattices, the same multiply-adds ("polyphase"). PyTorch's own kernel
  (``slow_conv_transpose3d``) is a GEMM into a column buffer of ``C_out x taps x input``
  values and a col2im over it: fine while that buffer stays in cache, three to four times
  slower than the polyphase path once it passes a few MiB (32^3 inputs, measured), so the
  polyphase path runs from :data:`POLYPHASE_MIN_COLUMN_BYTES` up; grouped transposed
  convolutions keep PyTorch's (oneDNN) kernel.

For a batch of two or more PyTorch sends convolutions to oneDNN itself, whose backward is fast
from 16 channels: there a groups-1 convolution with at least :data:`BATCHED_STOCK_MIN_CHANNELS`
input and output channels, and any 1x1x1 one, runs the stock call; fewer channels,
depthwise and transposed convolutions keep the paths above (``bench_conv_paths.py``).

On CUDA, and for other dtypes, the call is the stock one (cuDNN).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from voxnas.search_spaces.switches import Switch

__all__ = [
    "BATCHED_STOCK_MIN_CHANNELS",
    "POLYPHASE_MIN_COLUMN_BYTES",
    "SWAPPED_MIN_VOXELS",
    "SWAPPED_MIN_VOXELS_STRIDED",
    "Conv3d",
    "ConvTranspose3d",
    "conv_calls",
    "stock_convolutions",
]

_aten = torch.ops.aten
_FAST_CPU = Switch("voxnas_fast_cpu_conv")


def stock_convolutions() -> contextlib.AbstractContextManager[None]:
    """Run convolutions through PyTorch's stock CPU path (for benchmarks and tests)."""
    return _FAST_CPU.off()


def _onednn_ok(x: torch.Tensor) -> bool:
    return (
        _FAST_CPU.on()
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


# Below these voxel counts (of the larger of a conv's input and output) a groups-1 weight
# gradient runs PyTorch's own backward: the swapped convolution's "kernel" is then tiny and its
# channels many, and for a strided conv its output overshoots the kernel and is sliced; at
# 2^3 with 384 -> 64 channels it took 17 ms against 0.2 ms (bench_conv_paths.py)
SWAPPED_MIN_VOXELS = 4**3 + 1  # stride 1
SWAPPED_MIN_VOXELS_STRIDED = 16**3 + 1


def _swapped_ok(x: torch.Tensor, weight: torch.Tensor, groups: int, stride) -> bool:
    """Whether the weight gradient runs as the swapped convolution; ``x`` is the larger of
    the conv's input and output (the input of a conv, the output of a transposed conv). The
    thresholds are read at call time: tests set them to 0 to run the swapped path at any
    size."""
    if groups == 1:
        least = SWAPPED_MIN_VOXELS_STRIDED if any(s > 1 for s in stride) else SWAPPED_MIN_VOXELS
        return x[0, 0].numel() >= least
    depthwise = groups == x.shape[1] and weight.shape[1] == 1
    return depthwise and x.shape[0] == 1


# slow_conv_transpose3d's column buffer (C_out x kernel taps x input voxels, float32) from which
# the polyphase path is used: on an AMD EPYC the crossover lies between 5 MiB (stock 1.3-1.4x
# faster) and 13.5 MiB (polyphase 1.07-1.4x faster); from 40 MiB it is 3-4x (bench_conv_paths.py)
POLYPHASE_MIN_COLUMN_BYTES = 8 << 20


def _residue_taps(r: int, s: int, p: int, d: int, k: int, n_in: int, n_out: int):
    """Output voxels ``s*m + r`` of a transposed conv along one axis as a stride-1 correlation
    of the input: ``y[s m + r] = sum_j x[m + c0 + e j] w[taps[j]]``. Returns ``(taps, c0, e,
    count, pad)``: the kernel indices in correlation order, the first input offset, the
    dilation, the number of such outputs and the symmetric padding that covers them (the
    result starts at index ``pad + c0``); None when no tap reaches the class."""
    taps = [j for j in range(k) if (r + p - d * j) % s == 0][::-1]
    count = len(range(r, n_out, s))
    if not taps or not count:
        return None
    offsets = [(r + p - d * j) // s for j in taps]
    e = offsets[1] - offsets[0] if len(offsets) > 1 else 1
    pad = max(0, -offsets[0], count + offsets[0] + e * (len(taps) - 1) - n_in)
    return taps, offsets[0], e, count, pad


def _polyphase_pays(x: torch.Tensor, weight: torch.Tensor, groups: int, stride) -> bool:
    """Whether a (non-lattice) transposed conv runs the polyphase path: groups 1, strided, and
    PyTorch's column buffer (C_out x kernel taps x input voxels) at least
    :data:`POLYPHASE_MIN_COLUMN_BYTES`."""
    column_bytes = weight.shape[1] * weight[0, 0].numel() * x[0, 0].numel() * x.element_size()
    return groups == 1 and any(s > 1 for s in stride) and column_bytes >= POLYPHASE_MIN_COLUMN_BYTES


def _conv_transpose_polyphase(x, weight, bias, stride, padding, out_pad, dilation, groups):
    """``F.conv_transpose3d`` as one stride-1 oneDNN conv per residue class of the output (see
    the module docstring; voxnas takes it for groups 1 only, ``bench_conv_paths.py``)."""
    kernel = weight.shape[2:]
    size = [
        (i - 1) * s - 2 * p + d * (k - 1) + op + 1
        for i, s, p, d, k, op in zip(x.shape[2:], stride, padding, dilation, kernel, out_pad)
    ]
    c_in, c_out_g = weight.shape[:2]  # a forward conv's layout: (C_out, C_in / groups, k...)
    w = weight.view(groups, c_in // groups, c_out_g, *kernel).transpose(1, 2)
    w = w.reshape(groups * c_out_g, c_in // groups, *kernel)
    y = x.new_empty(x.shape[0], w.shape[0], *size)
    axes = [
        [_residue_taps(r, s, p, d, k, n, o) for r in range(s)]
        for s, p, d, k, n, o in zip(stride, padding, dilation, kernel, x.shape[2:], size)
    ]
    for rx, ax in enumerate(axes[0]):
        for ry, ay in enumerate(axes[1]):
            for rz, az in enumerate(axes[2]):
                dst = y[:, :, rx :: stride[0], ry :: stride[1], rz :: stride[2]]
                if ax is None or ay is None or az is None:  # no tap reaches these voxels
                    if bias is None:
                        dst.zero_()
                    else:
                        dst.copy_(bias.view(-1, 1, 1, 1).expand_as(dst))
                    continue
                sub = w[:, :, ax[0]][:, :, :, ay[0]][..., az[0]].contiguous()
                out = _aten.mkldnn_convolution(
                    x, sub, bias, [ax[4], ay[4], az[4]], [1, 1, 1], [ax[2], ay[2], az[2]], groups
                )
                lo = [a[4] + a[1] for a in (ax, ay, az)]
                dst.copy_(
                    out[:, :, lo[0] : lo[0] + ax[3], lo[1] : lo[1] + ay[3], lo[2] : lo[2] + az[3]]
                )
    return y


def _conv_transpose(x, weight, bias, stride, padding, out_pad, groups, dilation):
    """``F.conv_transpose3d``; on the stride's lattice as one stride-1 conv where it can."""
    kernel = weight.shape[2:]
    lattice = any(s > 1 for s in stride) and all(
        d % s == 0 and p % s == 0 and (d // s) * (k - 1) >= p // s
        for s, p, d, k in zip(stride, padding, dilation, kernel)
    )
    if not lattice:
        if _polyphase_pays(x, weight, groups, stride):
            return _conv_transpose_polyphase(x, weight, bias, stride, padding, out_pad, dilation, 1)
        return F.conv_transpose3d(x, weight, bias, stride, padding, out_pad, groups, dilation)
    # y[s*m] = sum_k x[m + p/s - (d/s) k] w[k]: a correlation with the flipped kernel,
    # dilation d/s, padding (d/s)(k-1) - p/s, output the lattice's extent
    c_in, c_out_g = weight.shape[:2]
    w = weight.view(groups, c_in // groups, c_out_g, *kernel).transpose(1, 2)
    w = w.reshape(groups * c_out_g, c_in // groups, *kernel).flip(2, 3, 4).contiguous()
    dil = [d // s for d, s in zip(dilation, stride)]
    pad = [(d // s) * (k - 1) - p // s for s, p, d, k in zip(stride, padding, dilation, kernel)]
    core = _aten.mkldnn_convolution(x, w, None, pad, [1, 1, 1], dil, groups)
    size = [
        (i - 1) * s - 2 * p + d * (k - 1) + op + 1
        for i, s, p, d, k, op in zip(x.shape[2:], stride, padding, dilation, kernel, out_pad)
    ]
    y = x.new_zeros(x.shape[0], core.shape[1], *size)
    y[:, :, :: stride[0], :: stride[1], :: stride[2]] = core
    return y if bias is None else y + bias.view(-1, 1, 1, 1)


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
    return _conv_transpose(go, weight, None, stride, padding, out_pad, groups, dilation)


class _OneDNNConv3d(torch.autograd.Function):
    """A conv (``transposed=False``) or transposed conv on CPU, backward as forward convs."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups, transposed, out_pad):
        ctx.save_for_backward(x, weight)
        ctx.conf = (stride, padding, dilation, groups, bias is not None, transposed)
        ctx.out_pad = out_pad or [0, 0, 0]
        if transposed:
            return _conv_transpose(x, weight, bias, stride, padding, out_pad, groups, dilation)
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
                if _swapped_ok(grad_out, weight, groups, stride):
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
            if _swapped_ok(x, weight, groups, stride):
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


_FAST_CALLS = [0]


def conv_calls() -> int:
    """How many convolutions took the fast path in this process (tests assert it ran)."""
    return _FAST_CALLS[0]


def _fast_path(module: nn.modules.conv._ConvNd, x: torch.Tensor) -> bool:
    fast = module.padding_mode == "zeros" and isinstance(module.padding, tuple) and _onednn_ok(x)
    _FAST_CALLS[0] += fast
    return fast


# A batch of 2+: PyTorch's own call (oneDNN) from this many channels in and out (groups 1);
# 16 -> 16 at 16x16x32, batch 2, fwd+bwd: 4.1 ms stock against 6.4 ms here; 4 -> 4 at 32^3:
# 21 against 12 ms (bench_conv_paths.py). BATCHED_STOCK = False turns the rule off (benchmarks)
BATCHED_STOCK_MIN_CHANNELS = 16
BATCHED_STOCK = True


def _batched_stock(module: nn.modules.conv._ConvNd, x: torch.Tensor, weight) -> bool:
    if not BATCHED_STOCK or x.shape[0] == 1 or module.groups != 1:
        return False
    gemm = weight.shape[2:] == (1, 1, 1) and module.stride == (1, 1, 1)
    return gemm or min(weight.shape[:2]) >= BATCHED_STOCK_MIN_CHANNELS


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` with the fast CPU float32 path described in the module docstring."""

    def _conv_forward(self, x, weight, bias):
        if _batched_stock(self, x, weight) or not _fast_path(self, x):
            return super()._conv_forward(x, weight, bias)
        if self.kernel_size == (1, 1, 1) and self.stride == (1, 1, 1) and self.groups == 1:
            b, c = x.shape[:2]
            w2 = weight.view(weight.shape[0], c)
            if b == 1:  # matmul would fold (1, c, n) by copying x to (n, c)
                y = torch.mm(w2, x.reshape(c, -1))[None]
            else:
                y = torch.matmul(w2, x.reshape(b, c, -1))
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
        if output_size is not None:
            return super().forward(x, output_size)
        return self.forward_with(x, self.weight)

    def forward_with(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """This convolution with another kernel of the same layout (``weight``'s out-channel
        axis, 1, may be longer: :mod:`voxnas.search_spaces.edge_stack`)."""
        if not _fast_path(self, x):
            return F.conv_transpose3d(
                x,
                weight,
                self.bias,
                self.stride,
                self.padding,
                self.output_padding,
                self.groups,
                self.dilation,
            )
        return _OneDNNConv3d.apply(
            x.contiguous(),
            weight.contiguous(),
            self.bias,
            list(self.stride),
            list(self.padding),
            list(self.dilation),
            self.groups,
            True,
            list(self.output_padding),
        )
