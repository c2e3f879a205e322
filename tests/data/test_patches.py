import numpy as np
import pytest
import torch

from voxnas.data.augment import (
    AugParams,
    apply_augmentation,
    augmentation_margin,
    sample_augmentation,
)
from voxnas.data.cache import CachedCase
from voxnas.data.patches import PatchSampler, crop_patch
from voxnas.data.preprocess import Geometry


def _case(shape=(20, 20, 10), seed=0, channels=1):
    rng = np.random.default_rng(seed)
    img = rng.normal(size=(channels, *shape)).astype(np.float32)
    lbl = np.zeros(shape, np.uint8)
    lbl[2:5, 2:5, 2:4] = 1
    lbl[15:17, 15:17, 7:9] = 2
    geom = Geometry(shape, np.eye(4).tolist(), [[0, 1], [1, 1], [2, 1]], shape, (1.0, 1.0, 1.0))
    return CachedCase("c", img, lbl, geom)


def _region(p, size, fill=None, channels=1, seed=0):
    """A random region of ``size`` plus the margin ``p`` needs, and its centre box."""
    m = augmentation_margin(p, size)
    shape = tuple(s + 2 * k for s, k in zip(size, m))
    rng = np.random.default_rng(seed)
    img = rng.normal(size=(channels, *shape)).astype(np.float32) if fill is None else fill
    lbl = rng.choice(np.array([0, 2, 5], np.uint8), size=shape)
    box = tuple(slice(k, k + s) for s, k in zip(size, m))
    return img, lbl, box


def test_crop_pads_outside():
    img = np.ones((1, 4, 4, 4), np.float32)
    lbl = np.ones((4, 4, 4), np.uint8)
    p, lab = crop_patch(img, lbl, (-2, 0, 2), (4, 4, 4))
    assert p[0, :2].sum() == 0 and p[0, 2:, :, :2].all() and not p[0, 2:, :, 2:].any()
    assert lab.shape == (4, 4, 4)


@pytest.mark.parametrize("aug", [{}, {"rotate_degrees": 10.0, "elastic_prob": 1.0}])
def test_patch_shapes_and_small_volume_padding(aug):
    s = PatchSampler([_case((6, 6, 4), channels=4)], (8, 8, 8), seed=0, **aug)
    img, lbl = s.batch(3)
    assert img.shape == (3, 4, 8, 8, 8) and lbl.shape == (3, 8, 8, 8)
    assert img.dtype == np.float32 and lbl.dtype == np.uint8


def test_foreground_share_per_class():
    s = PatchSampler([_case()], (4, 4, 2), seed=1, foreground_ratio=1.0, flip=False)
    seen = {1: 0, 2: 0}
    for _ in range(200):
        _, lbl = s.sample()
        for k in seen:
            seen[k] += int((lbl == k).any())
    assert seen[1] > 60 and seen[2] > 60  # each class centred on about half the time
    s0 = PatchSampler([_case()], (4, 4, 2), seed=1, foreground_ratio=0.0, flip=False)
    hits = sum(int(s0.sample()[1].any()) for _ in range(200))
    assert hits < 100  # random crops rarely hit the small objects


def test_seeded_and_replayable():
    kw = {"rotate90": True, "rotate_degrees": 10.0, "elastic_prob": 0.5}
    a = PatchSampler([_case()], (8, 8, 4), seed=5, **kw)
    b = PatchSampler([_case()], (8, 8, 4), seed=5, **kw)
    c = PatchSampler([_case()], (8, 8, 4), seed=6, **kw)
    for _ in range(5):
        pa, pb = a.sample(), b.sample()
        assert np.array_equal(pa[0], pb[0]) and np.array_equal(pa[1], pb[1])
    assert not np.array_equal(a.sample()[0], c.sample()[0])
    state = a.state()
    x = a.sample()
    a.set_state(state)
    assert np.array_equal(a.sample()[0], x[0])


def test_sampler_leaves_torch_threads_alone():
    before = torch.get_num_threads()
    PatchSampler([_case()], (8, 8, 4), seed=0, rotate_degrees=10.0, elastic_prob=1.0).batch(2)
    assert torch.get_num_threads() == before


def test_augmentation_is_deterministic_given_params():
    rng = np.random.default_rng(0)
    p = sample_augmentation(rng, True, True, 10.0, 1.0)
    assert p.elastic_seed is not None and p.angle
    img, lbl, _ = _region(p, (12, 12, 8))
    i1, l1 = apply_augmentation(img, lbl, p, (12, 12, 8))
    i2, l2 = apply_augmentation(img, lbl, p, (12, 12, 8))
    assert np.array_equal(i1, i2) and np.array_equal(l1, l2)
    assert set(np.unique(l1)) <= {0, 2, 5}  # nearest: never a blend such as 1 or 3


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_flip_keeps_image_and_label_aligned(axis):
    c = _case()
    flips = tuple(i == axis for i in range(3))
    img, lbl = apply_augmentation(np.asarray(c.image), c.label, AugParams(flips=flips))
    assert np.array_equal(img[0], np.flip(c.image[0], axis))
    assert np.array_equal(lbl, np.flip(c.label, axis))


def test_identity_gives_the_centre_crop_exactly():
    img, lbl, box = _region(AugParams(), (6, 6, 4), channels=2)
    big = np.pad(img, ((0, 0), (2, 2), (3, 3), (1, 1)))
    big_l = np.pad(lbl, ((2, 2), (3, 3), (1, 1)))
    out, out_l = apply_augmentation(big, big_l, AugParams(), (6, 6, 4))
    assert np.array_equal(out, img) and np.array_equal(out_l, lbl)


def test_zero_warp_resamples_to_the_centre_crop():
    # both passes run (a displacement field, all zero): checks the grid's coordinates
    p = AugParams(elastic_seed=1, elastic_alpha=0.0)
    size = (10, 12, 7)
    img, lbl, box = _region(p, size, channels=2)
    img = np.pad(img, ((0, 0), (0, 0), (0, 0), (2, 2)))  # a z margin: pass 2 must find it
    lbl = np.pad(lbl, ((0, 0), (0, 0), (2, 2)))
    box = (box[0], box[1], slice(2, 9))
    out, out_l = apply_augmentation(img, lbl, p, size)
    np.testing.assert_allclose(out, img[(slice(None), *box)], atol=1e-4)
    assert np.array_equal(out_l, lbl[box])


def test_quarter_turn_angle_matches_rot90():
    p = AugParams(angle=90.0)
    size = (9, 9, 3)
    img, lbl, box = _region(p, size)
    out, out_l = apply_augmentation(img, lbl, p, size)
    assert np.array_equal(out_l, np.rot90(lbl[box], -1, (0, 1)))
    np.testing.assert_allclose(out[0], np.rot90(img[0][box], -1, (0, 1)), atol=1e-4)


def _bar_angle(mask: np.ndarray) -> float:
    x, y = np.nonzero(mask.any(axis=2))
    cov = np.cov(np.stack([x, y]).astype(float))
    w, v = np.linalg.eigh(cov)
    return float(np.degrees(np.arctan2(v[1, -1], v[0, -1])) % 180)


@pytest.mark.parametrize("angle", [10.0, -10.0])
def test_rotation_turns_a_planted_bar(angle):
    p = AugParams(angle=angle)
    size = (33, 33, 3)
    m = augmentation_margin(p, size)
    assert m[0] > 0 and m[2] == 0
    lbl = np.zeros(tuple(s + 2 * k for s, k in zip(size, m)), np.uint8)
    cx, cy = m[0] + 16, m[1] + 16
    lbl[cx - 12 : cx + 13, cy - 1 : cy + 2] = 3  # a bar along X through the centre
    img = lbl[None].astype(np.float32)
    out, out_l = apply_augmentation(img, lbl, p, size)
    assert _bar_angle(lbl[m[0] : -m[0], m[1] : -m[1]] == 3) == pytest.approx(0, abs=0.5)
    turned = _bar_angle(out_l == 3)
    assert min(abs(turned - abs(angle)), abs(turned - 180 + abs(angle))) < 2.0
    assert (out_l == 3).sum() == pytest.approx((lbl == 3).sum(), rel=0.15)
    assert np.abs(out[0] - out_l).mean() < 0.1  # image and label moved together


@pytest.mark.parametrize("angle", [20.0, -20.0])
def test_rotation_reads_real_data_not_padding(angle):
    # image = source X and Y coordinates (linear, so bilinear is exact): the output must be
    # the rotated coordinates everywhere; a margin short of data would clamp the corners
    p = AugParams(angle=angle)
    size = (15, 11, 2)
    img, lbl, _ = _region(p, size)
    m = augmentation_margin(p, size)
    ramps = np.indices(img.shape[1:], dtype=np.float32)[:2]
    out, _ = apply_augmentation(ramps, lbl, p, size)
    x, y = np.indices(size[:2], dtype=np.float32)
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    np.testing.assert_allclose(out[0, ..., 0], m[0] + 7 + c * (x - 7) - s * (y - 5), atol=1e-3)
    np.testing.assert_allclose(out[1, ..., 0], m[1] + 5 + s * (x - 7) + c * (y - 5), atol=1e-3)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_elastic_is_bounded_smooth_and_moves(axis):
    alpha = 4.0
    p = AugParams(elastic_seed=7, elastic_alpha=alpha)
    size = (24, 24, 16)
    img, lbl, box = _region(p, size)
    coords = np.indices(img.shape[1:], dtype=np.float32)
    ramp = coords[axis][None]  # value = coordinate, so output - input = displacement
    out, _ = apply_augmentation(ramp, lbl, p, size)
    disp = out[0] - coords[axis][box]
    assert np.abs(disp).max() <= alpha + 1e-3
    assert np.abs(disp).max() > 0.25 * alpha  # it does move
    for ax in range(3):  # smooth: neighbours move alike (white noise would not)
        assert np.abs(np.diff(disp, axis=ax)).max() < 0.25 * alpha


def test_channels_are_warped_alike():
    p = AugParams(angle=7.0, elastic_seed=2, elastic_alpha=3.0, flips=(True, False, True))
    size = (12, 12, 6)
    img, lbl, _ = _region(p, size)
    four = np.concatenate([img * k for k in (1.0, 2.0, -1.0, 0.5)])
    out, out_l = apply_augmentation(four, lbl, p, size)
    one, one_l = apply_augmentation(img, lbl, p, size)
    assert out.shape == (4, *size) and np.array_equal(out_l, one_l)
    for k, f in enumerate((1.0, 2.0, -1.0, 0.5)):
        np.testing.assert_allclose(out[k], f * one[0], atol=1e-5)
