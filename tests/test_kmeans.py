"""Coates k-means features: transform against a plain loop, fit determinism, storage, validation."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from conftest import optional
from linclf.errors import LinclfWarning
from linclf.features.hog_color import HogColorFeatures
from linclf.features.kmeans import KMeansFeatures
from linclf.features.patches import normalize_patches, region_bounds, sample_patches


def images(n: int, seed: int = 0) -> np.ndarray:
    """Smooth-ish random uint8 CIFAR rows (N, 3072): a coarse pattern plus noise, so patches differ in contrast."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (n, 3, 4, 4)).repeat(8, axis=2).repeat(8, axis=3)
    noise = rng.integers(-40, 41, (n, 3, 32, 32))
    return np.clip(coarse + noise, 0, 255).astype(np.uint8).reshape(n, 3072)


@pytest.fixture(scope="module")
def X() -> np.ndarray:
    return images(24)


_naive_cache: dict = {}


def naive_features(f: KMeansFeatures, X: np.ndarray) -> np.ndarray:
    """naive_loop, memoised on the settings (the thread parametrisations share it)."""
    key = (tuple(sorted(f.settings().items(), key=str)), X.tobytes(), f.centroids_.tobytes())
    if key not in _naive_cache:
        _naive_cache[key] = naive_loop(f, X)
    return _naive_cache[key]


def naive_loop(f: KMeansFeatures, X: np.ndarray) -> np.ndarray:
    """The textbook loop: every patch position of every image, explicit normalise / whiten / encode / pool."""
    C = f.centroids_.astype(np.float64)
    W = f.whiten_.astype(np.float64)
    m = f.whiten_mean_.astype(np.float64)
    size = (32 - f.patch) // f.stride + 1
    bounds = region_bounds(size, f.pool)
    region = np.searchsorted(bounds, np.arange(size), side="right") - 1
    codes = f.k * (2 if f.split else 1)
    out = np.zeros((X.shape[0], f.pool, f.pool, codes))
    for i in range(X.shape[0]):
        img = X[i].reshape(3, 32, 32).astype(np.float64)
        for r in range(size):
            for c in range(size):
                y0, x0 = r * f.stride, c * f.stride
                p = img[:, y0:y0 + f.patch, x0:x0 + f.patch].reshape(-1)
                p = (p - p.mean()) / np.sqrt(p.var(ddof=1) + f.norm_eps)
                x = (p - m) @ W
                if f.encoder == "triangle":
                    z = np.sqrt(np.sum((x[None, :] - C) ** 2, axis=1))        # (k,) explicit distances
                    code = np.maximum(0, z.mean() - z)
                else:
                    dots = (C / np.linalg.norm(C, axis=1, keepdims=True)) @ x   # unit-length atoms
                    code = np.maximum(0, dots - f.alpha)
                    if f.split:
                        code = np.concatenate([code, np.maximum(0, -dots - f.alpha)])
                out[i, region[r], region[c]] += code
    return out.reshape(X.shape[0], -1) ** f.power


@pytest.fixture(scope="module")
def fitted(X) -> KMeansFeatures:
    return KMeansFeatures(k=12, patch=6, patches=3000, iterations=5, seed=3).fit(X)


def with_settings(f: KMeansFeatures, **changes) -> KMeansFeatures:
    """The fitted arrays of f under other transform settings (encoder, stride, pool...)."""
    arrays = f.to_arrays()
    for key, value in changes.items():
        arrays[key] = np.array(value)
    return KMeansFeatures.from_arrays(arrays)


@pytest.mark.parametrize("changes", [
    {},
    {"stride": 2, "pool": 3},
    {"stride": 3, "pool": 1},
    {"pool": 4},
    {"encoder": "soft", "alpha": 0.25},
    {"encoder": "soft", "alpha": 0.5, "split": True, "stride": 2},
    {"power": 0.5},
    {"encoder": "soft", "power": 0.25, "stride": 2},
])
@pytest.mark.parametrize("threads,parallel", [(1, "threads"), (2, "threads"), (2, "blas")])
def test_transform_matches_naive_loop(fitted, X, changes, threads, parallel):
    f = with_settings(fitted, **changes)
    f.threads, f.parallel = threads, parallel
    got = f.transform(X[:3])
    want = naive_features(f, X[:3])
    assert got.shape == (3, f.n_features) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4 * np.abs(want).max())


@pytest.mark.parametrize("env, threads, expected", [("1", None, 1), ("2", None, 2), ("2", 1, 1), (None, None, 2)])
def test_default_threads_follow_linclf_workers(fitted, X, monkeypatch, env, threads, expected):
    import linclf.features.kmeans as km

    pools = []
    real = km.task_pool

    def spy(n, parallel, name):
        pools.append(n)
        return real(n, parallel, name)

    monkeypatch.setattr(km, "task_pool", spy)
    if env is None:
        monkeypatch.delenv("LINCLF_WORKERS", raising=False)
        monkeypatch.setattr("linclf.threads.usable_cpus", lambda: 2)
    else:
        monkeypatch.setenv("LINCLF_WORKERS", env)
    f = with_settings(fitted)
    f.threads = threads
    f.transform(X[:2])
    assert pools == [expected]


@pytest.mark.parametrize("threads", [1, 2])
def test_the_fit_uses_the_threads_it_is_given(X, monkeypatch, threads):
    """The whitening's products and eigendecomposition run on one BLAS thread (their rounding must not depend on
    ``threads``), the k-means on a pool of ``threads`` workers."""
    import linclf.features.kmeans as km
    from threadpoolctl import threadpool_info

    seen = []
    real_pool, real_eigh = km.task_pool, np.linalg.eigh

    def eigh(a):
        seen.append(("eigh", max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")))
        return real_eigh(a)

    monkeypatch.setattr(km, "task_pool", lambda n, *a: seen.append(("pool", n)) or real_pool(n, *a))
    monkeypatch.setattr(np.linalg, "eigh", eigh)
    monkeypatch.setattr("linclf.threads.usable_cpus", lambda: 2)
    KMeansFeatures(k=4, patches=200, iterations=2, threads=threads).fit(X[:10])
    assert seen == [("eigh", 1), ("pool", threads)]


@pytest.mark.parametrize("encoder", [{}, {"encoder": "soft", "split": True}])
@pytest.mark.parametrize("block_patches,block_images", [(1, 1), (100, 3), (5000, 2)])
def test_blocking_does_not_change_features(fitted, X, block_patches, block_images, encoder):
    """Sub-blocks of a few rows, of whole images, and a last partial task give the same numbers."""
    g = with_settings(fitted, **encoder)
    ref = g.transform(X[:7])
    f = KMeansFeatures.from_arrays(g.to_arrays(), block_patches=block_patches, block_images=block_images)
    np.testing.assert_allclose(f.transform(X[:7]), ref, rtol=2e-4, atol=2e-4 * np.abs(ref).max())


@pytest.mark.parametrize("changes,zeros", [
    ({"encoder": "soft", "split": True}, False),
    ({"encoder": "soft", "split": True, "alpha": 2.0, "power": 0.25}, True),    # codes of 0 under a real power
    ({"encoder": "soft", "split": False, "stride": 2}, False),
])
def test_soft_codes_in_column_blocks_match_naive_loop(fitted, X, monkeypatch, changes, zeros):
    """k = 12 centroids in products of 5, 5 and 2 columns give the plain loop's features (>= 0, no NaN)."""
    import linclf.features.encode as encode

    monkeypatch.setattr(encode, "SOFT_COLUMNS", 5)
    f = with_settings(fitted, **changes)
    got = f.transform(X[:3])
    want = naive_features(f, X[:3])
    assert np.all(got >= 0) and (want == 0).any() == zeros
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4 * np.abs(want).max())


def test_float_rows_give_the_uint8_features(fitted, X):
    np.testing.assert_allclose(fitted.transform(X[:4].astype(np.float64)), fitted.transform(X[:4]),
                               rtol=1e-5, atol=1e-5 * np.abs(fitted.transform(X[:4])).max())


def test_patch_6_map_is_27_by_27_split_14_13():
    f = KMeansFeatures(k=4, patches=10)
    assert f.map_size == 27 and f.n_features == 16
    assert region_bounds(27, 2).tolist() == [0, 14, 27]
    assert region_bounds(10, 3).tolist() == [0, 4, 7, 10]


def test_fit_is_deterministic_for_a_seed(X):
    a = KMeansFeatures(k=10, patches=2000, iterations=4, seed=7, threads=2).fit(X)
    b = KMeansFeatures(k=10, patches=2000, iterations=4, seed=7, threads=1).fit(X)
    c = KMeansFeatures(k=10, patches=2000, iterations=4, seed=8).fit(X)
    np.testing.assert_array_equal(a.centroids_, b.centroids_)
    np.testing.assert_array_equal(a.whiten_, b.whiten_)
    assert not np.array_equal(a.centroids_, c.centroids_)


def test_fit_whitening_and_centroids(X):
    """The whitened sample has (close to) identity covariance shrunk by eps; centroids are cluster means."""
    f = KMeansFeatures(k=8, patches=4000, iterations=3, seed=1, zca_eps=0.1).fit(X)
    rng = np.random.default_rng(1)
    P = sample_patches(X, 4000, 6, rng).astype(np.float64)
    normalize_patches(P, 10.0)
    m = P.mean(axis=0)
    np.testing.assert_allclose(f.whiten_mean_, m, rtol=1e-4, atol=1e-4)
    cov = np.cov(P - m, rowvar=False)
    d, V = np.linalg.eigh(cov)
    W = V @ np.diag(1 / np.sqrt(d + 0.1)) @ V.T
    np.testing.assert_allclose(f.whiten_, W, rtol=1e-3, atol=1e-3 * np.abs(W).max())
    assert f.centroids_.shape == (8, 108) and np.isfinite(f.inertia_)


def test_round_trip_gives_identical_transform(fitted, X):
    arrays = fitted.to_arrays()
    assert all(isinstance(a, np.ndarray) and a.dtype != object for a in arrays.values())
    g = KMeansFeatures.from_arrays(arrays)
    np.testing.assert_array_equal(g.transform(X[:3]), fitted.transform(X[:3]))
    assert g.settings() == fitted.settings()


def test_round_trip_through_npz(fitted, X, tmp_path):
    np.savez(tmp_path / "f.npz", **fitted.to_arrays())
    with np.load(tmp_path / "f.npz", allow_pickle=False) as z:
        g = KMeansFeatures.from_arrays(z)
    np.testing.assert_array_equal(g.transform(X[:2]), fitted.transform(X[:2]))


@pytest.mark.parametrize("key,value,match", [
    ("centroids", np.zeros((11, 108), np.float32), r"centroids: expected shape \(12, 108\)"),
    ("centroids", np.zeros((12, 108), np.int64), "centroids: expected a float array"),
    ("whiten", np.full((108, 108), np.nan, np.float32), "whiten: expected finite"),
    ("whiten_mean", np.zeros(75, np.float32), r"whiten_mean: expected shape \(108,\)"),
    ("k", np.array([12]), "k: expected a scalar"),
    ("encoder", np.array("kmeans"), "encoder: expected one of triangle, soft"),
    ("pool", np.array(40), "pool: expected an integer from 1 to 27"),
    ("format_version", np.array(99), "format_version: expected 1 to 3, got 99"),
    ("format_version", np.array(0), "format_version: expected 1 to 3, got 0"),
    ("power", np.array(0.0), "power: expected a finite number > 0"),
    ("power", np.array("half"), "power: expected a scalar of kind 'fiu'"),
])
def test_from_arrays_rejects_bad_arrays(fitted, key, value, match):
    arrays = fitted.to_arrays()
    arrays[key] = value
    with pytest.raises(ValueError, match=match):
        KMeansFeatures.from_arrays(arrays)


def test_a_version_1_file_has_power_1_and_version_2_needs_it(fitted, X):
    arrays = fitted.to_arrays()
    assert arrays["format_version"] == 3 and arrays["power"] == 1.0
    del arrays["power"]
    with pytest.raises(ValueError, match="power: missing"):
        KMeansFeatures.from_arrays(arrays)
    arrays["format_version"] = np.array(1)             # as written before power existed
    old = KMeansFeatures.from_arrays(arrays)
    assert old.power == 1.0
    np.testing.assert_array_equal(old.transform(X[:2]), fitted.transform(X[:2]))


def test_a_version_2_soft_encoder_is_refused_and_a_version_2_triangle_one_loads(fitted, X):
    arrays = fitted.to_arrays()
    arrays["format_version"] = np.array(2)                 # before the soft encoder used unit-length atoms
    np.testing.assert_array_equal(KMeansFeatures.from_arrays(arrays).transform(X[:2]), fitted.transform(X[:2]))
    arrays["encoder"] = np.array("soft")
    with pytest.raises(ValueError, match="encoder: a soft encoder of format_version 2 .* fit the features again"):
        KMeansFeatures.from_arrays(arrays)


def test_the_soft_encoder_ignores_the_centroids_lengths(fitted, X):
    f = with_settings(fitted, encoder="soft", split=True)
    g = with_settings(fitted, encoder="soft", split=True)
    g.centroids_ = g.centroids_ * np.linspace(0.5, 3.0, g.k, dtype=np.float32)[:, None]
    np.testing.assert_allclose(g.transform(X[:2]), f.transform(X[:2]), rtol=1e-4, atol=1e-4)


def test_power_transforms_the_pooled_sums_and_is_stored(fitted, X):
    f = with_settings(fitted, power=0.5)
    np.testing.assert_allclose(f.transform(X[:2]), np.sqrt(fitted.transform(X[:2])), rtol=1e-6)
    g = KMeansFeatures.from_arrays(f.to_arrays())
    assert g.power == 0.5 and g.settings()["power"] == 0.5


def test_from_arrays_names_a_missing_key(fitted):
    arrays = fitted.to_arrays()
    del arrays["whiten"]
    with pytest.raises(ValueError, match="whiten: missing"):
        KMeansFeatures.from_arrays(arrays)


@pytest.mark.parametrize("kwargs,match", [
    ({"patch": 33}, "patch: expected an integer from 1 to 32"),
    ({"patch": 0}, "patch: expected an integer from 1 to 32"),
    ({"pool": 28}, r"pool: expected an integer from 1 to 27 \(the map of patch 6, stride 1 is 27x27\)"),
    ({"stride": 3, "pool": 10}, "pool: expected an integer from 1 to 9"),
    ({"stride": 0}, "stride: expected an integer from 1 to 27"),
    ({"k": 500, "patches": 100}, r"k: expected at most the number of sampled patches \(patches=100\)"),
    ({"k": 0}, "k: expected an integer >= 1"),
    ({"k": 2.5}, "k: expected an integer >= 1, got 2.5"),
    ({"encoder": "sparse"}, "encoder: expected one of triangle, soft, got 'sparse'"),
    ({"alpha": float("nan")}, "alpha: expected a finite number"),
    ({"zca_eps": 0}, "zca_eps: expected a finite number > 0"),
    ({"norm_eps": 0}, "norm_eps: expected a finite number > 0"),
    ({"power": 0}, "power: expected a finite number > 0"),
    ({"power": -0.5}, "power: expected a finite number > 0"),
    ({"iterations": 0}, "iterations: expected an integer >= 1"),
    ({"dtype": np.float16}, "dtype: expected float32 or float64"),
    ({"threads": 0}, "threads: expected an integer >= 1"),
    ({"split": True}, "split: expected false with encoder 'triangle'"),
    ({"parallel": "processes"}, "parallel: expected one of threads, blas"),
    ({"seed": -1}, "seed: expected an integer >= 0"),
])
def test_argument_validation(kwargs, match, X):
    f = KMeansFeatures(**kwargs)                       # stored as given: scikit-learn estimators check in fit
    assert all(f.get_params()[name] is value for name, value in kwargs.items())
    for call in (f.check_params, lambda: f.fit(X), lambda: f.n_features):
        with pytest.raises(ValueError, match=match) as e:
            call()
        assert "\n" not in str(e.value)
    assert not f.__sklearn_is_fitted__() and not hasattr(f, "centroids_")


def test_a_bad_setting_changed_after_fit_fails_transform_not_the_fitted_state(fitted, X):
    f = KMeansFeatures.from_arrays(fitted.to_arrays())
    f.set_params(encoder="sparse")
    with pytest.raises(ValueError, match="encoder: expected one of triangle, soft, got 'sparse'"):
        f.transform(X[:2])
    np.testing.assert_array_equal(f.centroids_, fitted.centroids_)


def test_bad_inputs(fitted, X):
    with pytest.raises(ValueError, match=r"X: expected CIFAR rows of shape \(N, 3072\)"):
        fitted.transform(X[:, :100])
    with pytest.raises(ValueError, match="not fitted"):
        KMeansFeatures(k=4, patches=10).transform(X)
    with pytest.raises(ValueError, match=r"out: expected a float array of shape \(2, 48\)"):
        fitted.transform(X[:2], out=np.empty((2, 47), np.float32))
    with pytest.raises(ValueError, match="X: expected uint8"):
        fitted.fit(np.zeros((2, 3072), dtype=object))


def test_out_float16_memmap_equals_float32_cast(fitted, X, tmp_path):
    out = np.lib.format.open_memmap(tmp_path / "f.npy", mode="w+", dtype=np.float16, shape=(9, fitted.n_features))
    got = fitted.transform(X[:9], out=out)
    assert got is out
    out.flush()
    np.testing.assert_array_equal(np.load(tmp_path / "f.npy"), fitted.transform(X[:9]).astype(np.float16))


def test_interrupted_fit_leaves_state_untouched(fitted, X, monkeypatch):
    import linclf.features.kmeans as km

    before = {k: v.copy() for k, v in fitted.to_arrays().items()}

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(km, "lloyd", boom)
    with pytest.raises(KeyboardInterrupt):
        fitted.fit(X)
    after = fitted.to_arrays()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_interrupt_during_transform_propagates(fitted, X, monkeypatch):
    import threading

    import linclf.features.encode as encode

    f = KMeansFeatures.from_arrays(fitted.to_arrays(), threads=2, block_images=1)
    real = encode.patch_view
    calls = []
    lock = threading.Lock()

    def interrupting(Xb, patch, stride):                  # called once per task (one image here)
        with lock:
            calls.append(1)
            if len(calls) == 4:
                raise KeyboardInterrupt
        return real(Xb, patch, stride)

    monkeypatch.setattr(encode, "patch_view", interrupting)
    with pytest.raises(KeyboardInterrupt):
        f.transform(X[:12])
    assert len(calls) < 12                                # the tasks not started were cancelled
    assert threading.active_count() == 1 or all(not t.name.startswith("kmeans") for t in threading.enumerate())


def test_progress_bars_only_when_asked(X, capsys):
    KMeansFeatures(k=4, patches=500, iterations=2, progress=True).fit(X).transform(X[:2])
    err = capsys.readouterr().err
    assert "patches" in err and "k-means" in err and "img/s" in err
    KMeansFeatures(k=4, patches=500, iterations=2).fit(X).transform(X[:2])
    assert capsys.readouterr().err == ""


# ----------------------------------------------------------------------------- scikit-learn's protocol

TINY = dict(k=4, patches=500, iterations=2, threads=1)


def test_get_params_are_the_constructor_arguments_as_given():
    f = KMeansFeatures(**TINY, dtype="float64", split=False)
    params = f.get_params()
    assert set(params) == {"k", "patch", "stride", "patches", "iterations", "encoder", "alpha", "pool", "power",
                           "norm_eps", "zca_eps", "seed", "progress", "dtype", "threads", "split", "parallel",
                           "block_patches", "block_images"}
    assert params["dtype"] == "float64" and params["threads"] == 1 and params["k"] == 4
    assert f.get_params(deep=False) == params
    assert repr(f) == "KMeansFeatures(dtype='float64', iterations=2, k=4, patches=500, threads=1)"
    assert repr(KMeansFeatures()) == "KMeansFeatures()"


def test_set_params_changes_the_features_and_refuses_an_unknown_name(X):
    f = KMeansFeatures(**TINY)
    assert f.set_params(k=6, pool=3) is f
    assert (f.k, f.pool, f.n_features) == (6, 3, 54)
    assert f.fit(X).transform(X[:2]).shape == (2, 54)
    with pytest.raises(ValueError, match=r"Invalid parameter 'kk' for estimator KMeansFeatures\(.*\)\. "
                                         r"Valid parameters are: \['alpha', "):
        f.set_params(kk=3)
    assert f.k == 6


def test_transform_before_fit_is_a_not_fitted_error(X):
    from linclf.estimator_base import NotFittedError

    f = KMeansFeatures(**TINY)
    for call in (lambda: f.transform(X[:1]), f.to_arrays):
        with pytest.raises(NotFittedError, match="This KMeansFeatures instance is not fitted yet") as e:
            call()
        assert isinstance(e.value, ValueError) and isinstance(e.value, AttributeError)
    assert not f.__sklearn_is_fitted__()
    assert not [name for name in vars(f) if name.endswith("_")]
    f.fit(X)
    assert f.__sklearn_is_fitted__()
    assert sorted(name for name in vars(f) if name.endswith("_")) == [
        "centroids_", "inertia_", "n_features_in_", "whiten_", "whiten_mean_"]
    assert f.n_features_in_ == 3072


def test_k_or_patch_changed_after_fit_is_refused_until_refit(fitted, X):
    f = KMeansFeatures.from_arrays(fitted.to_arrays())
    f.set_params(k=8)
    with pytest.raises(ValueError, match="k: the extractor was fitted with 12 centroids, got k=8; call fit again"):
        f.transform(X[:1])
    f.set_params(k=12, patch=5)
    with pytest.raises(ValueError, match=r"patch: the fitted centroids are of \(108,\) values, patch=5 needs 75"):
        f.transform(X[:1])
    f.set_params(patch=6, pool=1)                         # a transform setting: fine without refitting
    np.testing.assert_allclose(f.transform(X[:2]), fitted.transform(X[:2]).reshape(2, 4, 12).sum(axis=1),
                               rtol=1e-5, atol=1e-5 * np.abs(fitted.transform(X[:2])).max())


def test_scikit_learn_clone_gives_an_unfitted_twin_that_fits_the_same(X):
    base = optional("sklearn.base")
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    f = KMeansFeatures(**TINY, seed=5, dtype=np.float64).fit(X)
    twin = base.clone(f)
    assert twin.get_params() == f.get_params() and twin.dtype is np.float64
    assert not hasattr(twin, "centroids_")
    with pytest.raises(NotFittedError, match="not fitted"):
        check_is_fitted(twin)
    with pytest.raises(NotFittedError, match="KMeansFeatures instance is not fitted"):   # what scikit-learn users catch
        twin.transform(X[:1])
    check_is_fitted(twin.fit(X))
    np.testing.assert_array_equal(twin.centroids_, f.centroids_)
    np.testing.assert_array_equal(twin.transform(X[:3]), f.transform(X[:3]))
    assert base.clone(twin.set_params(k=3)).k == 3


@pytest.mark.parametrize("make", [lambda: KMeansFeatures(k=4, patches=500, iterations=2), HogColorFeatures],
                         ids=["kmeans", "hog_color"])
def test_extractors_refuse_what_is_not_pixels_and_an_out_that_would_truncate(make):
    X = np.random.default_rng(0).integers(0, 256, (20, 3072), dtype=np.uint8)
    fitted = make().fit(X)
    with pytest.raises(ValueError, match="^X: pixels must be 0-255, got values from -3 to 255$"):
        fitted.transform(np.where(X == 0, -3, X.astype(np.int64)))          # e.g. mean-subtracted integers
    np.testing.assert_array_equal(fitted.transform(X.astype(np.int64)), fitted.transform(X))   # 0-255 ints: fine
    with pytest.raises(ValueError, match=rf"^out: expected a float array of shape \(5, {fitted.n_features}\), got "
                                         r"shape \(5, \d+\) dtype int32$"):
        fitted.transform(X[:5], out=np.zeros((5, fitted.n_features), np.int32))   # would truncate to 0
    with pytest.raises(ValueError, match=r"^out: expected a float array of shape \(5, \d+\), got shape None dtype "
                                         r"list$"):
        fitted.transform(X[:5], out=[])

    class Sparse:                                                  # what scipy.sparse matrices look like here
        shape = (20, 3072)

        def toarray(self):
            return X

    with pytest.raises(TypeError, match=r"^X: sparse input is not supported; pass a dense array \(X.toarray\(\)\)$"):
        fitted.transform(Sparse())


@pytest.mark.parametrize("make", [lambda: KMeansFeatures(k=4, patches=500, iterations=2), HogColorFeatures],
                         ids=["kmeans", "hog_color"])
def test_extractors_refuse_nan_pixels_and_warn_on_pixels_scaled_to_one(make):
    X = np.random.default_rng(0).integers(0, 256, (20, 3072), dtype=np.uint8)
    fitted = make().fit(X)
    bad = X.astype(np.float32)
    bad[3, 7] = np.nan
    with pytest.raises(ValueError, match=r"X: pixels must be finite, got NaN or infinity"):
        fitted.transform(bad)
    with pytest.warns(LinclfWarning, match=r"X holds pixels in \[0, 1\]; the extractors expect 0-255"):
        fitted.transform(X / 255.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fitted.transform(X.astype(np.float32))                 # 0-255 in floats: fine
