"""Preprocessing fitted on the training split: mean image, per-pixel scale, bias trick.

``x_pre = [(x - mean) * scale, 1]``: with ``mean`` the mean training image,
``scale = 1 / std`` (or ones), and the trailing 1 the bias trick (D = 3073).
The parameters are stored with the model so evaluation repeats exactly what
training did. Training never materialises ``x_pre`` for the whole set: an
affine map commutes with a linear model, ``W [(x - m) s, 1] = A x + b`` with
``A = W[:, :P] s`` and ``b = W[:, P] - A m`` (``fold``), and the gradient
unfolds the same way (``unfold``); ``objective`` computes on raw rows.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .rows import convert_rows

__all__ = ["Preprocessor", "fit", "fold", "unfold"]

_BLOCK_BYTES = 1 << 18  # a block of float32 rows while fitting: 256 KB stays in a core's L2 cache
_MIN_BLOCK = 16         # below this many rows a block is mostly the NumPy calls' overhead
_MAX_BLOCK = 256        # rows summed in float32 at a time at most (see _column_sq_dev)
_MIN_STD = 1e-6        # a column whose std is below this fraction of the largest is constant: left unscaled


@dataclass(frozen=True)
class Preprocessor:
    """mean (P,) float32 or None, scale (P,) float32 or None, bias: append a 1 column."""

    mean: np.ndarray | None
    scale: np.ndarray | None
    bias: bool

    @property
    def in_dim(self) -> int | None:
        """Pixels per raw row P (None when neither mean nor scale fixes it)."""
        for a in (self.mean, self.scale):
            if a is not None:
                return len(a)
        return None

    def out_dim(self, in_dim: int) -> int:
        """Columns D of the preprocessed rows for raw rows of ``in_dim`` values."""
        return in_dim + int(self.bias)

    def transform(self, X: np.ndarray, dtype: np.dtype | type = np.float32) -> np.ndarray:
        """Explicit preprocessing of raw rows X (N, P) -> (N, P + bias) in ``dtype``.

        For small sets (gradient checks, a handful of images); training uses the
        folded form instead.
        """
        N, P = X.shape
        out = np.empty((N, P + int(self.bias)), dtype=dtype)
        body = convert_rows(X, out[:, :P])
        if self.mean is not None:
            body -= self.mean.astype(dtype, copy=False)
        if self.scale is not None:
            body *= self.scale.astype(dtype, copy=False)
        if self.bias:
            out[:, P] = 1
        return out

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The parameters as plain arrays for an .npz (absent ones are omitted)."""
        out = {"prep_bias": np.array(self.bias)}
        if self.mean is not None:
            out["prep_mean"] = self.mean
        if self.scale is not None:
            out["prep_scale"] = self.scale
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "Preprocessor":
        """Rebuild from ``to_arrays`` output; raises ValueError on a malformed entry."""
        if "prep_bias" not in arrays:
            raise ValueError("prep_bias is missing")
        bias = arrays["prep_bias"]
        if bias.shape != () or bias.dtype != np.bool_:
            raise ValueError("prep_bias must be a boolean scalar")
        parts = {}
        for key in ("prep_mean", "prep_scale"):
            a = arrays.get(key)
            if a is not None:
                if a.ndim != 1 or a.dtype.kind != "f" or not np.all(np.isfinite(a)):
                    raise ValueError(f"{key} must be a finite float vector, got {a.dtype} {a.shape}")
                a = a.astype(np.float32)
            parts[key] = a
        m, s = parts["prep_mean"], parts["prep_scale"]
        if m is not None and s is not None and m.shape != s.shape:
            raise ValueError(f"prep_mean {m.shape} and prep_scale {s.shape} differ in length")
        return cls(mean=m, scale=s, bias=bool(bias))


def fit(X: np.ndarray, mean: bool = True, std: bool = False, bias: bool = True) -> Preprocessor:
    """Fit on raw training rows X (N, P) (uint8 pixels, float features): mean (P,), 1/std (P,), bias flag.

    Statistics accumulate in float64 over cache-sized blocks of rows, so the
    set is never held as float.
    """
    if len(X) == 0:
        raise ValueError("cannot fit preprocessing on an empty training split")
    m64 = _column_mean(X) if (mean or std) else None
    scale = None
    if std:
        sd = np.sqrt(_column_sq_dev(X, m64) / len(X))
        constant = sd <= _MIN_STD * sd.max()          # relative: features of any scale (1e-6 or 1e18) are scaled
        scale = (1.0 / np.where(constant, 1.0, sd)).astype(np.float32)
    return Preprocessor(mean=m64.astype(np.float32) if mean else None, scale=scale, bias=bias)


def _column_mean(X: np.ndarray) -> np.ndarray:
    """Mean of each column of X (N, P) as float64; exact integer sums for integer pixels.

    Float rows: a block of rows at a time converted to float32 and summed by
    a product with ones (a float16 split is never converted whole, nor
    through NumPy's float16 cast), block sums accumulated in float64.
    """
    if X.dtype.kind in "ui" and X.dtype.itemsize == 1:
        return X.sum(axis=0, dtype=np.int64) / len(X)
    if X.dtype == np.float64:
        return X.mean(axis=0)
    out = np.zeros(X.shape[1], dtype=np.float64)
    ones = np.ones(min(_block_rows(X), len(X)), dtype=np.float32)
    for b in _float32_blocks(X):
        out += ones[:len(b)] @ b
    return out / len(X)


def _column_sq_dev(X: np.ndarray, m64: np.ndarray) -> np.ndarray:
    """sum_i (X[i] - m)^2 per column (P,) float64, a block of rows at a time in float32.

    A block's sums stay below 2^24 for uint8 pixels (at most 256 rows x 255^2),
    where float32 rounds at about 1e-7 relative; blocks accumulate in float64.
    """
    m32 = m64.astype(np.float32)
    out = np.zeros(X.shape[1], dtype=np.float64)
    for b in _float32_blocks(X):
        b -= m32
        out += np.einsum("ij,ij->j", b, b)
    if not np.isfinite(out).all():          # squares beyond float32's range (|x - m| > 1.8e19): again in float64
        out[:] = 0
        for b in _float32_blocks(X):
            d = b - m64
            out += np.einsum("ij,ij->j", d, d)
    return out


def _block_rows(X: np.ndarray) -> int:
    """Rows of X (N, P) per block: what fits in _BLOCK_BYTES of float32, within [_MIN_BLOCK, _MAX_BLOCK]."""
    return min(_MAX_BLOCK, max(_MIN_BLOCK, _BLOCK_BYTES // (4 * X.shape[1])))


def _float32_blocks(X: np.ndarray) -> Iterator[np.ndarray]:
    """X (N, P) as float32 blocks of ``_block_rows`` rows, each converted into one reused buffer (free to change)."""
    block = _block_rows(X)
    buf = np.empty((min(block, len(X)), X.shape[1]), dtype=np.float32)
    for start in range(0, len(X), block):
        rows = X[start:start + block]
        yield convert_rows(rows, buf[:len(rows)])


# ----------------------------------------------------------------------------- folding into the weights

def fold(W: np.ndarray, mean: np.ndarray | None, scale: np.ndarray | None,
         bias: bool) -> tuple[np.ndarray, np.ndarray]:
    """A (C, P), b (C,) with W @ [(x - mean) * scale, 1] == A @ x + b; in W's (floating) dtype."""
    W = np.asarray(W)
    dtype = W.dtype if W.dtype.kind == "f" else np.dtype(np.float64)
    P = W.shape[1] - int(bias)
    A = np.ascontiguousarray(W[:, :P], dtype=dtype)
    if scale is not None:
        A = A * np.asarray(scale, dtype=dtype)                   # (C, P)
    b = W[:, P].astype(dtype) if bias else np.zeros(W.shape[0], dtype=dtype)
    if mean is not None:
        b = b - np.einsum("cp,p->c", A, np.asarray(mean, dtype=dtype))  # (C,)
    return A, b


def unfold(G: np.ndarray, g0: np.ndarray, mean: np.ndarray | None, scale: np.ndarray | None,
           bias: bool, out: np.ndarray | None = None) -> np.ndarray:
    """dW (C, P + bias) from G (C, P) = dS.T @ X and g0 (C,) = dS.sum(0): the chain rule through ``fold``.

    dW[:, :P] = (G - g0 mean) * scale and dW[:, P] = g0. ``out``: a
    (C, P + bias) array of G's dtype to write dW into (G itself may be a view
    of ``out[:, :P]``).
    """
    C, P = G.shape
    dW = np.empty((C, P + int(bias)), dtype=G.dtype) if out is None else out
    body = dW[:, :P]
    if mean is not None:
        body_is_G = np.shares_memory(body, G)
        if body_is_G:
            body -= np.multiply.outer(g0.astype(G.dtype), np.asarray(mean, dtype=G.dtype))
        else:
            np.multiply.outer(g0.astype(G.dtype), np.asarray(mean, dtype=G.dtype), out=body)   # (C, P)
            np.subtract(G, body, out=body)
    elif not np.shares_memory(body, G):
        body[...] = G
    if scale is not None:
        body *= np.asarray(scale, dtype=G.dtype)
    if bias:
        dW[:, P] = g0
    return dW
