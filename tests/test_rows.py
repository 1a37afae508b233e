"""Stored rows into compute floats: float16 by its bits, everything else by NumPy's cast."""
from __future__ import annotations

import numpy as np
import pytest

from linclf.core.rows import convert_rows, float16_overflows


def every_finite_float16() -> np.ndarray:
    h = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    return h[np.isfinite(h)]


def test_float16_converts_exactly_signs_and_subnormals_included():
    h = every_finite_float16().reshape(-1, 62)                            # 63,488 values, 1,024 rows
    out = np.full(h.shape, np.nan, dtype=np.float32)
    assert convert_rows(h, out) is out
    ref = h.astype(np.float32)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(np.signbit(out), np.signbit(ref))     # -0.0 stays -0.0
    assert np.any((ref != 0) & (np.abs(ref) < 2.0 ** -14))              # subnormals were among them


def test_float16_rows_of_a_buffer_and_of_a_memory_map(tmp_path):
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((50, 30)) * 100).astype(np.float16)
    np.save(tmp_path / "x.npy", X)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    buf = np.zeros((64, 30), dtype=np.float32)
    convert_rows(mm[10:40], buf[5:35])
    np.testing.assert_array_equal(buf[5:35], X[10:40].astype(np.float32))
    assert not buf[:5].any() and not buf[35:].any()                     # nothing outside the target rows


def test_float16_rows_converted_in_pieces_come_out_whole():
    h = np.resize(every_finite_float16()[::-1], (5, 100_000))           # 500,000 values: more than one piece
    out = np.full((7, 100_000), np.nan, dtype=np.float32)
    convert_rows(h, out[1:6])
    np.testing.assert_array_equal(out[1:6], h.astype(np.float32))
    assert np.isnan(out[0]).all() and np.isnan(out[6]).all()            # nothing outside the target rows


@pytest.mark.parametrize("src, dtype", [(np.uint8, np.float32), (np.float16, np.float64), (np.float32, np.float32),
                                        (np.float64, np.float32)])
def test_other_dtypes_are_numpys_cast(src, dtype):
    X = (np.random.default_rng(1).standard_normal((7, 9)) * 50).astype(src)
    out = np.empty((7, 9), dtype=dtype)
    np.testing.assert_array_equal(convert_rows(X, out), X.astype(dtype))


@pytest.mark.parametrize("bad, expected", [(65504.0, False), (np.inf, True), (-np.inf, True), (np.nan, True),
                                           (70000.0, True), (-65504.0, False)])
def test_float16_overflows_finds_a_single_bad_value(bad, expected):
    with np.errstate(over="ignore"):
        X = np.ones((9000, 5), dtype=np.float16)                        # more than one block of rows
        X[8500, 3] = bad
    assert float16_overflows(X, block=4096) is expected
    assert not float16_overflows(X[:0])
