"""Preprocessing fitted on train: values against a plain float64 reference, round trip, edge cases."""
from __future__ import annotations

import numpy as np
import pytest

from linclf.core.preprocess import Preprocessor, fit


@pytest.fixture
def X() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (1000, 3072), dtype=np.uint8)


def test_mean_and_std_equal_a_float64_reference(X):
    p = fit(X, mean=True, std=True)
    ref = X.astype(np.float64)
    np.testing.assert_allclose(p.mean, ref.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(p.scale, 1.0 / ref.std(axis=0), rtol=1e-5)
    assert p.mean.dtype == np.float32 and p.scale.dtype == np.float32 and p.bias


@pytest.mark.parametrize("N, P, dtype", [(300, 19_200, np.float16), (1000, 20, np.float32)])
def test_feature_rows_wide_or_narrow_equal_a_float64_reference(N, P, dtype):
    """Blocks of 16 rows of float16 features (the last one ragged), or 256 rows of narrow float32 ones."""
    rng = np.random.default_rng(1)
    X = (rng.standard_normal((N, P)) * rng.uniform(0.1, 10.0, P) + 3.0).astype(dtype)
    p = fit(X, mean=True, std=True)
    ref = X.astype(np.float64)
    np.testing.assert_allclose(p.mean, ref.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(p.scale, 1.0 / ref.std(axis=0), rtol=1e-5)


@pytest.mark.parametrize("size", [1e-12, 1e-6, 1e20, 1e30])
def test_features_of_any_scale_are_standardised(size):
    """Tiny features are not taken as constant, huge ones' squares (beyond float32) do not make the scale 0."""
    rng = np.random.default_rng(2)
    X = (rng.standard_normal((500, 6)) * np.arange(1, 7) * size).astype(np.float32)
    X[:, 2] = np.float32(3 * size)                          # a constant column stays unscaled
    p = fit(X, mean=True, std=True)
    ref = X.astype(np.float64)
    varying = np.arange(6) != 2
    np.testing.assert_allclose(p.scale[varying], 1.0 / ref.std(axis=0)[varying], rtol=1e-5)
    assert p.scale[2] == 1.0


def test_transform_is_the_explicit_formula(X):
    p = fit(X, mean=True, std=True)
    out = p.transform(X[:5], np.float64)
    expected = (X[:5].astype(np.float64) - p.mean) * p.scale
    assert out.shape == (5, 3073)
    np.testing.assert_allclose(out[:, :3072], expected, rtol=1e-12)
    np.testing.assert_array_equal(out[:, 3072], 1.0)


@pytest.mark.parametrize("mean, std, bias", [(False, False, False), (True, False, True), (False, True, False)])
def test_options_switch_each_part(X, mean, std, bias):
    p = fit(X, mean=mean, std=std, bias=bias)
    assert (p.mean is not None) == mean and (p.scale is not None) == std and p.bias == bias
    assert p.transform(X[:2]).shape == (2, 3072 + bias)


def test_constant_pixel_is_not_divided_by_zero():
    X = np.full((10, 4), 7, dtype=np.uint8)
    X[:, 1] = np.arange(10)
    p = fit(X, std=True)
    assert np.all(np.isfinite(p.scale)) and p.scale[0] == 1.0
    np.testing.assert_allclose(p.scale[1], 1.0 / np.arange(10).std(), rtol=1e-6)


def test_arrays_round_trip_and_reject_malformed(X):
    p = fit(X, std=True)
    q = Preprocessor.from_arrays(p.to_arrays())
    np.testing.assert_array_equal(q.mean, p.mean)
    np.testing.assert_array_equal(q.scale, p.scale)
    assert q.bias == p.bias
    bad = p.to_arrays()
    bad["prep_mean"] = np.array([np.nan] * 3072, dtype=np.float32)
    with pytest.raises(ValueError, match="prep_mean"):
        Preprocessor.from_arrays(bad)
    with pytest.raises(ValueError, match="prep_bias"):
        Preprocessor.from_arrays({})


def test_empty_training_split_is_refused():
    with pytest.raises(ValueError, match="empty"):
        fit(np.zeros((0, 3072), dtype=np.uint8))
