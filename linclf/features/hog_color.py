"""HOG + hue histogram features (the cs231n features notebook), vectorized over images.

For each 32x32 image: a histogram of oriented gradients of the grey image
(``orientations`` unsigned bins over [0, 180) degrees, the mean gradient
magnitude of each bin over each ``cell`` x ``cell`` cell) followed by a
``hue_bins``-bin histogram of the HSV hue (fractions of the image's pixels).
Rows are CIFAR order (1024 R, 1024 G, 1024 B) uint8; features come out float32,
not standardised (the classifier's preprocessing does that). Nothing is learned:
``fit`` only checks the input.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..estimator_base import Params, transformer_tags
from ..progress import Bar
from .checks import check_int, check_out, check_pixel_rows

__all__ = ["HogColorFeatures", "hog_features", "hue_histogram", "grey"]

SIDE = 32
GREY_WEIGHTS = (0.299, 0.587, 0.114)        # ITU-R 601 luma
_BLOCK = 512                                # images per block: their float64 temporaries stay within ~40 MB


def _images(X: np.ndarray) -> np.ndarray:
    """Checked rows X (N, 3072) -> images (N, 32, 32, 3) float64 in [0, 255]."""
    return X.reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1).astype(np.float64)


def grey(images: np.ndarray) -> np.ndarray:
    """Grey images (N, H, W) from RGB images (N, H, W, 3)."""
    return images @ np.array(GREY_WEIGHTS)


def hog_features(images: np.ndarray, orientations: int = 9, cell: int = 8) -> np.ndarray:
    """HOG of RGB images (N, H, W, 3) -> (N, cells_x * cells_y * orientations) float64.

    As cs231n's ``hog_feature``: gx, gy forward differences (0 in the last
    column / row), orientation ``atan2(gy, gx)`` in degrees + 90, bin ``b`` holding
    pixels with ``180 b / B <= ori < 180 (b + 1) / B`` and ``ori > 0``; each
    cell's value is the bin's magnitude summed over the cell / cell^2. Order of
    the output: (cell column, cell row, bin).
    """
    g = grey(images)                                               # (N, H, W)
    N, H, W = g.shape
    gx = np.zeros_like(g)
    gy = np.zeros_like(g)
    gx[:, :, :-1] = np.diff(g, axis=2)
    gy[:, :-1, :] = np.diff(g, axis=1)
    mag = np.sqrt(gx * gx + gy * gy)
    ori = np.degrees(np.arctan2(gy, gx + 1e-15)) + 90.0            # [0, 180]
    width = 180.0 / orientations
    b = np.floor(ori / width).astype(np.int64)
    # the boundaries exactly as the reference's comparisons (ori < width*(i+1), ori >= width*i)
    b -= (ori < width * b)
    b += (ori >= width * (b + 1))
    valid = (ori > 0) & (b >= 0) & (b < orientations)
    cy, cx = H // cell, W // cell
    rows, cols = np.arange(H) // cell, np.arange(W) // cell
    inside = (rows[:, None] < cy) & (cols[None, :] < cx)            # pixels of whole cells only
    keep = valid & inside
    # flat index of (image, cell column, cell row, bin) for every pixel that counts
    cell_of = (cols[None, :] * cy + rows[:, None])                  # (H, W)
    idx = (np.arange(N)[:, None, None] * (cx * cy) + cell_of) * orientations + np.where(keep, b, 0)
    out = np.bincount(idx[keep], weights=mag[keep], minlength=N * cx * cy * orientations)
    return (out / (cell * cell)).reshape(N, cx * cy * orientations)


def _hue(images: np.ndarray) -> np.ndarray:
    """HSV hue in [0, 1) of RGB images (N, H, W, 3) in [0, 255], computed as ``colorsys.rgb_to_hsv``."""
    rgb = images / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    maxc = rgb.max(axis=-1)
    minc = rgb.min(axis=-1)
    span = maxc - minc
    safe = np.where(span == 0, 1.0, span)
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    h = np.where(r == maxc, bc - gc, np.where(g == maxc, 2.0 + rc - bc, 4.0 + gc - rc))
    h = (h / 6.0) % 1.0
    return np.where(span == 0, 0.0, h)


def hue_histogram(images: np.ndarray, bins: int = 10) -> np.ndarray:
    """Hue histogram of RGB images (N, H, W, 3) -> (N, bins) float64, each row the fraction of pixels per bin.

    As cs231n's ``color_histogram_hsv``: hue scaled to [0, 255], ``bins`` equal
    bins over [0, 255] (the last one closed), normalised to sum 1.
    """
    N = len(images)
    h = _hue(images).reshape(N, -1) * 255.0
    edges = np.linspace(0, 255, bins + 1)
    b = np.searchsorted(edges, h, side="right") - 1                 # np.histogram's bins [e_i, e_i+1)
    b = np.minimum(b, bins - 1)                                     # 255 itself goes to the last bin
    idx = np.arange(N)[:, None] * bins + b
    counts = np.bincount(idx.ravel(), minlength=N * bins).reshape(N, bins)
    return counts / h.shape[1]


class HogColorFeatures(Params):
    """Estimator: image rows (N, 3072) uint8 -> HOG + hue histogram rows (N, n_features) float32.

    Nothing is learned, so it is stateless as scikit-learn's Normalizer is:
    ``transform`` works without ``fit``, which only checks the parameters and
    the rows and sets ``n_features_in_`` (3072); it exists so the extractor
    fits into a scikit-learn Pipeline in front of a classifier. The constructor
    only stores its arguments (``clone``, ``get_params``, ``set_params``, grid
    searches over ``features__cell`` work); a bad one is a ValueError naming it
    in ``fit``, ``transform`` or ``check_params``.
    """

    def __init__(self, orientations: int = 9, cell: int = 8, hue_bins: int = 10, progress: bool = False):
        self.orientations = orientations
        self.cell = cell
        self.hue_bins = hue_bins
        self.progress = progress

    def check_params(self) -> None:
        """Raise a one-line ValueError naming the first parameter that is not an integer in its range."""
        for name, lo, hi in (("orientations", 1, 180), ("cell", 1, SIDE), ("hue_bins", 1, 255)):
            check_int(name, getattr(self, name), lo, hi)

    def __sklearn_is_fitted__(self) -> bool:
        return True                                  # stateless: ready without fit

    def __sklearn_tags__(self) -> Any:
        """scikit-learn >= 1.6 tags: a transformer that needs no fit."""
        return transformer_tags(requires_fit=False)

    def _more_tags(self) -> dict[str, Any]:
        """scikit-learn < 1.6 tags."""
        return {"requires_fit": False, "stateless": True, "preserves_dtype": []}

    @property
    def n_features(self) -> int:
        """Columns of the output: (32 // cell)^2 * orientations + hue_bins."""
        self.check_params()
        return (SIDE // self.cell) ** 2 * self.orientations + self.hue_bins

    def fit(self, X: np.ndarray, y: Any = None) -> "HogColorFeatures":
        """Check the parameters and the rows X (N, 3072); return self."""
        self.check_params()
        check_pixel_rows(X)
        self.n_features_in_ = 3 * SIDE * SIDE
        return self

    def transform(self, X: np.ndarray, out: np.ndarray | None = None, *, desc: str | None = None) -> np.ndarray:
        """Features (N, n_features) of rows X (N, 3072), written into ``out`` (any float dtype) when given.

        ``desc`` labels the progress bar (default "hog+color").
        """
        X = check_pixel_rows(X)
        D = self.n_features
        out = np.empty((len(X), D), dtype=np.float32) if out is None else check_out(out, len(X), D)
        H = (SIDE // self.cell) ** 2 * self.orientations
        bar = Bar(self.progress, len(X), 0, desc or "hog+color", "img")
        try:
            for start in range(0, len(X), _BLOCK):
                imgs = _images(X[start:start + _BLOCK])
                out[start:start + len(imgs), :H] = hog_features(imgs, self.orientations, self.cell)
                out[start:start + len(imgs), H:] = hue_histogram(imgs, self.hue_bins)
                bar.update(len(imgs))
        finally:
            bar.close()
        return out

    def fit_transform(self, X: np.ndarray, y: Any = None) -> np.ndarray:
        """``fit(X).transform(X)``."""
        return self.fit(X).transform(X)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The settings as plain arrays (nothing is learned)."""
        self.check_params()
        return {"orientations": np.array(self.orientations), "cell": np.array(self.cell),
                "hue_bins": np.array(self.hue_bins)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "HogColorFeatures":
        """Rebuild from ``to_arrays``; ValueError naming the key on a bad entry."""
        values = {}
        for key in ("orientations", "cell", "hue_bins"):
            if key not in arrays:
                raise ValueError(f"{key} is missing")
            a = np.asarray(arrays[key])
            if a.shape != () or a.dtype.kind not in "iu":
                raise ValueError(f"{key} must be an integer scalar, got {a.dtype} {a.shape}")
            values[key] = int(a)
        self = cls(**values)
        self.check_params()
        return self
