import numpy as np
import pytest
import torch

from voxnas.evaluation.tiling import (
    auto_fit_axis,
    auto_fit_layout,
    brain_cube,
    sliding_axis,
    sliding_layout,
    stitch,
)


@pytest.mark.parametrize(
    "l_b,l_p,expected",
    [
        # 240: n_p=4, l_o=floor(16/3)=5, first=-floor((256-15-240)/2)=0, step 59
        (240, 64, [0, 59, 118, 177]),
        # 155: n_p=3, l_o=floor(37/2)=18, first=-floor((192-36-155)/2)=0, step 46
        (155, 64, [0, 46, 92]),
        # 140: n_p=3, l_o=floor(52/2)=26, first=-floor((192-52-140)/2)=0, step 38
        (140, 64, [0, 38, 76]),
        # 100: n_p=2, l_o=28, first=-floor((128-28-100)/2)=0, step 36
        (100, 64, [0, 36]),
        # 150: n_p=3, l_o=floor(42/2)=21, first=-floor((192-42-150)/2)=0
        (150, 64, [0, 43, 86]),
        # 129: n_p=3, l_o=floor(63/2)=31, first=-floor((192-62-129)/2)=0
        (129, 64, [0, 33, 66]),
        # 200 with 128: n_p=2, l_o=56, first=0, step 72
        (200, 128, [0, 72]),
        (50, 64, [-7]),  # cube smaller than the patch: one centred patch
    ],
)
def test_auto_fit_worked_examples(l_b, l_p, expected):
    assert auto_fit_axis(l_b, l_p) == expected


@pytest.mark.parametrize("l_b", range(65, 400, 7))
def test_auto_fit_covers_cube_symmetrically(l_b):
    starts = auto_fit_axis(l_b, 64)
    assert starts[0] <= 0 and starts[-1] + 64 >= l_b
    steps = np.diff(starts)
    assert (steps == steps[0]).all() and (steps <= 64).all()
    assert len(starts) == int(np.ceil(l_b / 64))
    left, right = -starts[0], starts[-1] + 64 - l_b
    assert abs(left - right) <= 1  # symmetric overhang


def test_auto_fit_240x240x155_layout():
    img = np.zeros((4, 240, 240, 155), np.float32)
    img[:, 40:200, 30:210, 10:150] = 1.0
    assert brain_cube(img) == ((40, 200), (30, 210), (10, 150))
    layout = auto_fit_layout(img, (64, 64, 64))
    assert layout[0] == [40 + s for s in auto_fit_axis(160, 64)]
    assert [len(a) for a in layout] == [3, 3, 3]


@pytest.mark.parametrize("blend", ["constant", "gaussian"])
@pytest.mark.parametrize("layout_kind", ["sliding", "auto_fit"])
def test_identity_predictor_stitches_input_exactly(blend, layout_kind):
    rng = np.random.default_rng(0)
    vol = torch.from_numpy(rng.normal(size=(2, 37, 29, 21)).astype(np.float32))
    patch = (16, 16, 8)
    if layout_kind == "sliding":
        layout = sliding_layout(vol.shape[1:], patch, 0.5)
    else:
        layout = auto_fit_layout(np.ones(vol.shape, np.float32), patch)
    out = stitch(vol, layout, patch, lambda x: x, out_channels=2, blend=blend, batch_size=3)
    assert torch.allclose(out, vol, atol=1e-5)


def test_sliding_axis():
    assert sliding_axis(64, 64, 0.5) == [0]
    assert sliding_axis(10, 16, 0.5) == [0]
    assert sliding_axis(100, 32, 0.25) == [0, 24, 48, 68]


def test_uncovered_voxels_error_or_fill():
    vol = torch.ones(1, 10, 10, 10)
    with pytest.raises(ValueError, match="does not cover"):
        stitch(vol, [[0], [0], [0]], (5, 5, 5), lambda x: x, 1)
    out = stitch(vol, [[0], [0], [0]], (5, 5, 5), lambda x: x, 1, fill=0.0)
    assert out[0, :5, :5, :5].eq(1).all() and out[0, 6:].eq(0).all()
