"""The fast CPU convolution path computes the same outputs and gradients as stock PyTorch."""

import pytest
import torch

from voxnas.search_spaces.onednn_conv import Conv3d, ConvTranspose3d, conv_calls, stock_convolutions

# Without oneDNN both sides would run the stock kernels and every comparison would pass
# whatever the fast path does: skip loudly instead of passing vacuously.
pytestmark = pytest.mark.skipif(
    not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN"
)

CASES = [  # (c_in, c_out, kernel, stride, padding, dilation, groups, bias, batch)
    (4, 4, 3, 1, 1, 1, 1, False, 1),
    (4, 6, 3, 1, 1, 1, 1, True, 2),
    (4, 4, 3, 1, 2, 2, 1, False, 1),
    (4, 4, 3, 1, 1, 1, 4, False, 1),  # depthwise
    (4, 4, 3, 1, 1, 1, 4, True, 2),  # depthwise, batch 2 (fallback)
    (4, 4, 3, 2, 1, 1, 1, False, 1),
    (4, 4, 3, 2, 2, 2, 1, True, 1),
    (4, 4, 3, 2, 1, 1, 4, False, 1),
    (3, 5, 1, 1, 0, 1, 1, True, 1),  # 1x1x1 -> GEMM
    (3, 5, 1, 2, 0, 1, 1, False, 2),
    (2, 4, (7, 7, 1), (2, 2, 1), (3, 3, 0), 1, 1, False, 1),
    (4, 4, (1, 1, 3), 1, (0, 0, 1), 1, 1, False, 1),
]


@pytest.fixture(params=["default", "swapped"])
def weight_grad_path(request, monkeypatch):
    """Each comparison twice: with voxnas' size thresholds, and with the swapped weight
    gradient forced at any size (the tests' volumes are small: by default most strided
    convs here take PyTorch's weight gradient)."""
    if request.param == "swapped":
        from voxnas.search_spaces import onednn_conv

        monkeypatch.setattr(onednn_conv, "SWAPPED_MIN_VOXELS", 0)
        monkeypatch.setattr(onednn_conv, "SWAPPED_MIN_VOXELS_STRIDED", 0)
    return request.param


def _counted(monkeypatch, name: str) -> list:
    """Calls of ``onednn_conv.<name>`` from now on (one entry each); the function still runs."""
    from voxnas.search_spaces import onednn_conv

    calls, fn = [], getattr(onednn_conv, name)
    monkeypatch.setattr(onednn_conv, name, lambda *a: calls.append(1) or fn(*a))
    return calls


def _compare(make, shape):
    torch.manual_seed(0)
    ref = make()
    fast = make()
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(*shape)
    outs, grads = [], []
    for m, stock in ((ref, True), (fast, False)):
        xi = x.clone().requires_grad_()
        before = conv_calls()
        if stock:
            with stock_convolutions():
                y = m(xi)
            assert conv_calls() == before  # the reference really is stock PyTorch
        else:
            y = m(xi)
            assert conv_calls() == before + 1  # ... and the compared side the fast path
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        outs.append(y.detach())
        grads.append([xi.grad] + [p.grad for p in m.parameters()])
    assert outs[0].shape == outs[1].shape
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-4, atol=1e-4)
    for g_ref, g_fast in zip(*grads):
        torch.testing.assert_close(g_fast, g_ref, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_conv_matches_stock(case, weight_grad_path):
    ci, co, k, s, p, d, g, b, n = case
    _compare(
        lambda: Conv3d(ci, co, k, stride=s, padding=p, dilation=d, groups=g, bias=b),
        (n, ci, 10, 8, 8),
    )


@pytest.mark.parametrize(
    "dil,groups,bias,batch",
    [
        (1, 1, False, 1),
        (2, 1, True, 1),  # dilation = stride: one stride-1 conv on the output's lattice
        (2, 4, False, 1),  # ... depthwise
        (2, 1, False, 2),  # ... batch 2
        (1, 4, False, 1),
        (1, 4, False, 2),
        (1, 1, True, 2),
    ],
)
def test_transposed_matches_stock(dil, groups, bias, batch, weight_grad_path):
    _compare(
        lambda: ConvTranspose3d(
            4, 4, 3, stride=2, padding=dil, dilation=dil, output_padding=1, groups=groups, bias=bias
        ),
        (batch, 4, 5, 4, 4),
    )


def test_strided_dilated_conv_input_gradient_on_the_lattice(weight_grad_path):
    """d_dil_conv (stride 2, dilation 2, odd input size): its input gradient is the lattice
    transposed convolution, with the output padding the odd size needs."""
    _compare(lambda: Conv3d(4, 4, 3, stride=2, padding=2, dilation=2, bias=False), (1, 4, 9, 8, 7))


@pytest.mark.parametrize(
    "kernel,stride,padding,dilation,out_pad,bias,batch",
    [
        (3, 2, 1, 1, 1, False, 1),  # NAS-3D-U-Net's u_conv
        (3, 2, 1, 1, 0, True, 2),
        (4, 2, 1, 1, 0, False, 1),
        (2, 2, 0, 1, 0, True, 1),
        (3, (2, 2, 1), (1, 1, 1), 1, (1, 1, 0), False, 1),  # in-plane only
        (3, 2, 1, 3, 1, False, 1),  # dilation 3, not a multiple of the stride
        (5, 3, 2, 1, 2, True, 1),
        (1, 2, 0, 1, 1, False, 1),  # taps reach only one residue class: the rest is zero
    ],
    ids=str,
)
def test_polyphase_transposed_matches_stock(
    monkeypatch, kernel, stride, padding, dilation, out_pad, bias, batch, weight_grad_path
):
    """Every size takes the polyphase path here (threshold 0), forward and as the input
    gradient of the strided conv with the same geometry."""
    from voxnas.search_spaces import onednn_conv

    monkeypatch.setattr(onednn_conv, "POLYPHASE_MIN_COLUMN_BYTES", 0)
    calls = _counted(monkeypatch, "_conv_transpose_polyphase")
    _compare(
        lambda: ConvTranspose3d(
            3, 5, kernel, stride, padding, out_pad, bias=bias, dilation=dilation
        ),
        (batch, 3, 5, 4, 6),
    )
    assert calls  # the forward ran the polyphase path
    calls.clear()
    _compare(
        lambda: Conv3d(3, 5, kernel, stride, padding, dilation, bias=bias), (batch, 3, 11, 9, 12)
    )
    assert calls  # so did the strided conv's input gradient


def test_polyphase_threshold_keeps_small_transposed_convs_on_the_stock_kernel(monkeypatch):
    calls = _counted(monkeypatch, "_conv_transpose_polyphase")
    with torch.no_grad():
        ConvTranspose3d(4, 4, 3, 2, 1, 1, bias=False)(torch.randn(1, 4, 4, 4, 4))  # 27 KiB
        assert not calls
        ConvTranspose3d(4, 12, 3, 2, 1, 1, bias=False)(torch.randn(1, 4, 32, 32, 32))  # 40 MiB
        assert calls


@pytest.mark.parametrize("groups", [1, 4])
def test_polyphase_with_groups_matches_stock(groups):
    """The polyphase function itself handles groups (voxnas calls it for groups 1 only)."""
    from voxnas.search_spaces.onednn_conv import _conv_transpose_polyphase

    torch.manual_seed(0)
    x, w, b = torch.randn(1, 8, 5, 6, 4), torch.randn(8, 3, 3, 3, 3), torch.randn(3 * groups)
    args = ([2, 2, 2], [1, 1, 1], [1, 0, 1], [1, 1, 1])
    want = torch.nn.functional.conv_transpose3d(x, w, b, args[0], args[1], args[2], groups)
    got = _conv_transpose_polyphase(x, w, b, *args, groups)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_weight_gradient_path_follows_the_voxel_thresholds(monkeypatch):
    """Few voxels: PyTorch's weight gradient; enough: the swapped convolution."""
    calls = _counted(monkeypatch, "_grad_weight_swapped")

    def weight_grad(stride, size):
        conv = Conv3d(4, 4, 3, stride=stride, padding=1, bias=False)
        conv(torch.randn(1, 4, size, size, size)).sum().backward()
        n = len(calls)
        calls.clear()
        return n

    assert weight_grad(1, 4) == 0 and weight_grad(1, 5) == 1  # 64 vs 125 voxels
    assert weight_grad(2, 16) == 0 and weight_grad(2, 17) == 1  # 4096 vs 4913 voxels


def test_batches_take_the_stock_call_from_16_channels_and_for_1x1x1():
    """Batch 2+: PyTorch's own call (oneDNN) for 1x1x1 convs and from 16 channels in and out;
    fewer channels and batch 1 keep the fast path; results agree either way."""

    def fast(c_in, c_out, kernel, batch):
        conv = Conv3d(c_in, c_out, kernel, padding=kernel // 2, bias=False)
        x = torch.randn(batch, c_in, 6, 5, 4)
        before = conv_calls()
        y = conv(x)
        with stock_convolutions():
            torch.testing.assert_close(y, conv(x), rtol=1e-4, atol=1e-4)
        return conv_calls() > before

    assert not fast(16, 16, 3, 2) and not fast(8, 8, 1, 2)
    assert fast(8, 16, 3, 2) and fast(16, 16, 3, 1) and fast(8, 8, 1, 1)
