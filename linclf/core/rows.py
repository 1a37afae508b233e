"""Stored rows into compute floats: the one conversion a block of rows gets.

Rows are stored compact (uint8 pixels, float16 features) and converted a block
at a time into a float buffer. NumPy's own float16 cast runs without SIMD on
x86-64 CPUs without AVX512-FP16, several times slower than gathering float32
rows (``scripts/bench.py --only convert`` measures both), so ``convert_rows`` builds float32
from a float16's bits instead: the 16 bits are sign-extended to 32, shifted
so exponent and mantissa land in float32's places, the bits between the sign
and the exponent cleared, and the value rescaled by 2**112, the difference of
the two exponent biases. That is exact for every finite float16, subnormals
included (infinities and NaNs come out finite: rows are checked finite before
they are stored).
"""
from __future__ import annotations

import numpy as np

__all__ = ["convert_rows", "float16_overflows"]

_KEEP = np.uint32(0x8FFFE000)          # the sign, and the 15 bits of exponent and mantissa after the shift
_REBIAS = np.float32(2.0 ** 112)       # 2 ** (127 - 15): float32's exponent bias minus float16's
_PIECE = 1 << 18                       # values per piece of the bit conversion: its 4 passes stay in a core's L2


def convert_rows(src: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out[...] = src (both (n, P)) as out's dtype; float16 into float32 by its bits (exact). Returns out."""
    if src.dtype == np.float16 and out.dtype == np.float32:
        step = max(1, _PIECE // max(1, src.shape[-1]))
        for start in range(0, len(src), step):
            piece = out[start:start + step]
            bits = piece.view(np.uint32)
            np.copyto(bits, src[start:start + step].view(np.int16), casting="unsafe")   # sign-extended, wrapped
            bits <<= 13
            bits &= _KEEP
            piece *= _REBIAS
    else:
        np.copyto(out, src, casting="unsafe")
    return out


def float16_overflows(X: np.ndarray, block: int = 4096) -> bool:
    """Whether float16 rows X (N, P) hold an infinity or a NaN (all exponent bits set), a block of rows at a time."""
    bits = X.view(np.uint16)
    for start in range(0, len(bits), block):
        if np.max(bits[start:start + block] & np.uint16(0x7FFF), initial=0) >= 0x7C00:
            return True
    return False
