import numpy as np
import pytest

from voxnas.data.layouts import read_dataset
from voxnas.data.nifti import load_volume
from voxnas.data.preprocess import (
    PreprocessSettings,
    fit_mri_stats,
    invert_geometry,
    load_case,
    normalize_ct,
    normalize_mri,
)


def test_ct_window_then_zscore_hand_computed():
    img = np.array([-1000.0, -100.0, 70.0, 240.0, 1000.0], np.float32)
    clipped = np.array([-100.0, -100.0, 70.0, 240.0, 240.0])
    expected = (clipped - clipped.mean()) / clipped.std()
    assert np.allclose(normalize_ct(img, (-100, 240)), expected, atol=1e-6)


def test_mri_eq1_eq2_hand_computed():
    a = np.array([0.0, 2.0, 4.0, 6.0, 0.0])
    mean, std = 3.0, 2.0  # eq. 1: [-, -0.5, 0.5, 1.5, -]; min -0.5, max 1.5
    expected = np.array([0.0, 100 * (0.0 + 0.1), 100 * (0.5 + 0.1), 100 * (1.0 + 0.1), 0.0])
    assert np.allclose(normalize_mri(a, mean, std, 100.0, 0.1), expected)


def test_mri_result_independent_of_eq1_statistics():
    rng = np.random.default_rng(0)
    a = rng.random((6, 6, 6)) * (rng.random((6, 6, 6)) > 0.3) * 500
    assert np.allclose(
        normalize_mri(a, 10.0, 3.0, 100, 0.1), normalize_mri(a, 250.0, 80.0, 100, 0.1), atol=1e-3
    )


def test_fit_mri_stats_nonzero_only():
    a = np.array([[[[0.0, 1.0], [3.0, 0.0]]]])  # (1 modality, 1, 2, 2)
    b = np.array([[[[5.0, 0.0], [0.0, 0.0]]]])
    (s,) = fit_mri_stats([a, b])
    assert s["voxels"] == 3 and s["mean"] == pytest.approx(3.0)
    assert s["std"] == pytest.approx(np.std([1.0, 3.0, 5.0]))


def test_canonical_orientation_and_inverse(msd_dir):
    ds = read_dataset(msd_dir)
    case = ds.cases[0]
    raw, affine = load_volume(case.label)
    assert affine[0, 0] < 0  # the synthetic MSD layout is stored flipped (LPS-like)
    _, label, geom = load_case(case, PreprocessSettings(), [0, 1, 2])
    assert np.array_equal(label, np.flip(raw, (0, 1)))
    assert geom.spacing == pytest.approx((0.8, 0.8, 2.5))
    assert np.array_equal(invert_geometry(label, geom), raw)


def test_resampling_and_inverse(msd_dir):
    ds = read_dataset(msd_dir)
    settings = PreprocessSettings(target_spacing=(1.6, 1.6, 2.5))
    image, label, geom = load_case(ds.cases[1], settings, [0, 1, 2])
    assert image.shape == (1, 16, 16, 16) and label.shape == (16, 16, 16)
    assert geom.spacing == (1.6, 1.6, 2.5)
    back = invert_geometry(label, geom)
    raw, _ = load_volume(ds.cases[1].label)
    assert back.shape == raw.shape
    fg = raw > 0
    assert (back[fg] > 0).mean() > 0.8  # nearest up-sampling keeps the organ
