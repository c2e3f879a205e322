import numpy as np
import pytest

from voxnas.data.cache import CachedCase
from voxnas.data.patches import (
    AugParams,
    PatchSampler,
    apply_augmentation,
    crop_patch,
    sample_augmentation,
)
from voxnas.data.preprocess import Geometry


def _case(shape=(20, 20, 10), seed=0):
    rng = np.random.default_rng(seed)
    img = rng.normal(size=(1, *shape)).astype(np.float32)
    lbl = np.zeros(shape, np.uint8)
    lbl[2:5, 2:5, 2:4] = 1
    lbl[15:17, 15:17, 7:9] = 2
    geom = Geometry(shape, np.eye(4).tolist(), [[0, 1], [1, 1], [2, 1]], shape, (1.0, 1.0, 1.0))
    return CachedCase("c", img, lbl, geom)


def test_crop_pads_outside():
    img = np.ones((1, 4, 4, 4), np.float32)
    lbl = np.ones((4, 4, 4), np.uint8)
    p, lab = crop_patch(img, lbl, (-2, 0, 2), (4, 4, 4))
    assert p[0, :2].sum() == 0 and p[0, 2:, :, :2].all() and not p[0, 2:, :, 2:].any()
    assert lab.shape == (4, 4, 4)


def test_patch_shapes_and_small_volume_padding():
    s = PatchSampler([_case((6, 6, 4))], (8, 8, 8), seed=0)
    img, lbl = s.batch(3)
    assert img.shape == (3, 1, 8, 8, 8) and lbl.shape == (3, 8, 8, 8)


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
    a = PatchSampler([_case()], (8, 8, 4), seed=5, rotate90=True)
    b = PatchSampler([_case()], (8, 8, 4), seed=5, rotate90=True)
    for _ in range(5):
        pa, pb = a.sample(), b.sample()
        assert np.array_equal(pa[0], pb[0]) and np.array_equal(pa[1], pb[1])
    state = a.state()
    x = a.sample()
    a.set_state(state)
    assert np.array_equal(a.sample()[0], x[0])


def test_augmentation_is_deterministic_given_params():
    c = _case()
    rng = np.random.default_rng(0)
    p = sample_augmentation(rng, True, True, 10.0, 1.0)
    assert p.elastic_seed is not None
    i1, l1 = apply_augmentation(np.asarray(c.image), c.label, p)
    i2, l2 = apply_augmentation(np.asarray(c.image), c.label, p)
    assert np.array_equal(i1, i2) and np.array_equal(l1, l2)
    assert set(np.unique(l1)) <= {0, 1, 2}


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_flip_keeps_image_and_label_aligned(axis):
    c = _case()
    flips = tuple(i == axis for i in range(3))
    img, lbl = apply_augmentation(np.asarray(c.image), c.label, AugParams(flips=flips))
    assert np.array_equal(img[0], np.flip(c.image[0], axis))
    assert np.array_equal(lbl, np.flip(c.label, axis))
