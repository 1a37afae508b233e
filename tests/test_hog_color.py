"""HOG + hue histogram features: the vectorized code equals naive per-pixel references."""
from __future__ import annotations

import colorsys
import math

import numpy as np
import pytest

from conftest import optional
from linclf.features.hog_color import GREY_WEIGHTS, HogColorFeatures, hog_features, hue_histogram


def naive_hog(image: np.ndarray, orientations: int = 9, cell: int = 8) -> np.ndarray:
    """cs231n's hog_feature, one pixel at a time: image (H, W, 3) float -> (cells_x * cells_y * orientations,).

    The orientations come from NumPy's arctan2 on the image's gradient arrays, as in cs231n's code: the bin of
    an angle on a bin boundary hangs on arctan2's last bit, which differs between NumPy builds and from
    ``math.atan2`` (NumPy 1.26 on AVX-512 put 9 of this test's 576 values in a neighbouring bin).
    """
    H, W = image.shape[:2]
    g = [[sum(image[r, c, i] * GREY_WEIGHTS[i] for i in range(3)) for c in range(W)] for r in range(H)]
    cy, cx = H // cell, W // cell
    hist = np.zeros((cx, cy, orientations))
    width = 180.0 / orientations
    GX, GY = np.zeros((H, W)), np.zeros((H, W))
    for r in range(H):
        for c in range(W):
            GX[r, c] = g[r][c + 1] - g[r][c] if c + 1 < W else 0.0
            GY[r, c] = g[r + 1][c] - g[r][c] if r + 1 < H else 0.0
    ORI = np.degrees(np.arctan2(GY, GX + 1e-15)) + 90.0
    for r in range(cy * cell):
        for c in range(cx * cell):
            gx, gy, ori = float(GX[r, c]), float(GY[r, c]), float(ORI[r, c])
            mag = math.sqrt(gx * gx + gy * gy)
            for b in range(orientations):
                if width * b <= ori < width * (b + 1) and ori > 0:
                    hist[c // cell, r // cell, b] += mag / (cell * cell)
    return hist.ravel()


def naive_hue_histogram(image: np.ndarray, bins: int = 10) -> np.ndarray:
    """cs231n's color_histogram_hsv with colorsys, one pixel at a time."""
    hues = [colorsys.rgb_to_hsv(*(image[r, c] / 255.0))[0] * 255.0
            for r in range(image.shape[0]) for c in range(image.shape[1])]
    edges = np.linspace(0, 255, bins + 1)
    counts, _ = np.histogram(hues, bins=edges)
    return counts / len(hues)


def _images(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 256, (n, 32, 32, 3)).astype(np.float64)
    imgs[0] = 128.0                                  # flat: zero gradients, hue 0 everywhere
    imgs[1, :, :, :] = imgs[1, :, :1, :]             # constant along rows: purely vertical gradients
    imgs[2, :, :, 1:] = imgs[2, :, :, :1]            # grey: r == g == b
    return imgs


@pytest.mark.parametrize("orientations,cell", [(9, 8), (4, 5), (12, 16)])
def test_hog_equals_the_naive_loop(orientations, cell):
    imgs = _images(4)
    got = hog_features(imgs, orientations, cell)
    want = np.stack([naive_hog(im, orientations, cell) for im in imgs])
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("bins", [10, 7])
def test_hue_histogram_equals_colorsys_and_np_histogram(bins):
    imgs = _images(4, seed=1)
    imgs[3, :4, :4] = [255, 0, 0]                    # hue exactly 0 and max channel ties
    imgs[3, 4:8, :4] = [255, 0, 255]
    got = hue_histogram(imgs, bins)
    want = np.stack([naive_hue_histogram(im, bins) for im in imgs])
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(got.sum(axis=1), 1.0)


def test_transform_of_cifar_rows_is_hog_then_hue():
    rng = np.random.default_rng(2)
    X = rng.integers(0, 256, (3, 3072), dtype=np.uint8)
    ex = HogColorFeatures().fit(X)
    F = ex.transform(X)
    assert F.shape == (3, ex.n_features) == (3, 4 * 4 * 9 + 10) and F.dtype == np.float32
    img = X[1].reshape(3, 32, 32).transpose(1, 2, 0).astype(np.float64)
    np.testing.assert_allclose(F[1], np.concatenate([naive_hog(img), naive_hue_histogram(img)]), rtol=1e-5, atol=1e-5)
    out = np.zeros((3, ex.n_features), dtype=np.float16)
    assert ex.transform(X, out=out) is out
    np.testing.assert_allclose(out, F, rtol=1e-3, atol=1e-3)


def test_bad_input_and_round_trip():
    ex = HogColorFeatures(orientations=6, cell=4, hue_bins=12)
    with pytest.raises(ValueError, match=r"\(N, 3072\)"):
        ex.transform(np.zeros((2, 100), dtype=np.uint8))
    with pytest.raises(ValueError, match="cell"):
        HogColorFeatures(cell=40).fit(np.zeros((1, 3072), np.uint8))
    back = HogColorFeatures.from_arrays(ex.to_arrays())
    assert back.get_params() == ex.get_params()
    bad = ex.to_arrays()
    bad["cell"] = np.array(0.5)
    with pytest.raises(ValueError, match="cell"):
        HogColorFeatures.from_arrays(bad)
    with pytest.raises(ValueError, match="hue_bins is missing"):
        HogColorFeatures.from_arrays({"orientations": np.array(9), "cell": np.array(8)})


# ----------------------------------------------------------------------------- scikit-learn's protocol

def test_parameters_are_stored_as_given_and_checked_when_used():
    ex = HogColorFeatures(orientations=np.int64(9), cell=40, hue_bins=True)
    assert ex.get_params() == {"orientations": 9, "cell": 40, "hue_bins": True, "progress": False}
    assert type(ex.orientations) is np.int64
    X = np.zeros((2, 3072), np.uint8)
    for call in (ex.check_params, lambda: ex.fit(X), lambda: ex.transform(X), lambda: ex.n_features):
        with pytest.raises(ValueError, match=r"^cell: expected an integer from 1 to 32, got 40$"):
            call()
    ex.set_params(cell=4)
    with pytest.raises(ValueError, match=r"^hue_bins: expected an integer from 1 to 255, got True$"):
        ex.fit(X)
    assert ex.set_params(hue_bins=3) is ex and ex.n_features == 8 * 8 * 9 + 3
    with pytest.raises(ValueError, match="Invalid parameter 'bins' for estimator HogColorFeatures"):
        ex.set_params(bins=3)
    assert repr(ex) == "HogColorFeatures(cell=4, hue_bins=3, orientations=np.int64(9))".replace(
        "np.int64(9)", repr(np.int64(9)))
    assert repr(ex.set_params(orientations=9)) == "HogColorFeatures(cell=4, hue_bins=3)" and repr(HogColorFeatures()) == "HogColorFeatures()"


def test_stateless_transform_needs_no_fit_and_fit_sets_n_features_in():
    X = np.random.default_rng(0).integers(0, 256, (3, 3072), dtype=np.uint8)
    ex = HogColorFeatures(orientations=4)
    assert ex.__sklearn_is_fitted__()
    before = ex.transform(X)
    assert not hasattr(ex, "n_features_in_")
    np.testing.assert_array_equal(ex.fit(X).transform(X), before)
    assert ex.n_features_in_ == 3072


def test_scikit_learn_clone_and_check_is_fitted():
    base = optional("sklearn.base")
    from sklearn.utils import get_tags
    from sklearn.utils.validation import check_is_fitted

    ex = HogColorFeatures(orientations=6, cell=4, hue_bins=12)
    twin = base.clone(ex)
    assert twin is not ex and twin.get_params() == ex.get_params()
    check_is_fitted(twin)                                 # stateless: no NotFittedError
    tags = get_tags(twin)
    assert tags.requires_fit is False and tags.transformer_tags is not None and tags.input_tags.two_d_array
