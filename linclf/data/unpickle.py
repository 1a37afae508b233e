"""A restricted unpickler for the python-format CIFAR-10 batches, which are pickles from an untrusted file.

``safe_unpickle`` resolves only the few globals a CIFAR-10 batch pickle needs
(numpy's array reconstructor limited to an empty plain ndarray, ``numpy.dtype``,
latin-1 ``_codecs.encode`` and an empty ``bytes()``), each a stand-in that
checks its arguments; any other global, a persistent id or a direct ndarray
call is refused (UnsafeArchiveError) before it could run, naming it as a reader
knows it (``posix.system`` shows as ``os.system``). A dict's bytes keys come
back as str. Python 2 pickles (the official archive's) read as Python 3 ones.
"""
from __future__ import annotations

import _compat_pickle
import io
import math
import pickle
from typing import Any, BinaryIO

import numpy as np

from ..errors import DataError, UnsafeArchiveError, short_reason
from .layout import REDOWNLOAD, REEXTRACT

__all__ = ["safe_unpickle"]

try:  # numpy's array reconstructor: numpy 2 keeps it in numpy._core, numpy 1 in numpy.core
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # pragma: no cover - numpy < 2
    from numpy.core.multiarray import _reconstruct as _np_reconstruct


class _Refused(Exception):
    """Raised inside the unpickler for what a CIFAR-10 pickle never does; its text completes "refusing ..."."""


class _NDArrayRef:
    """Stands for ``numpy.ndarray`` inside a pickle: only ``_reconstruct`` may use it, it cannot be called."""

    def __new__(cls, *args: Any, **kwargs: Any):  # noqa: D102
        raise _Refused("to construct numpy.ndarray directly (numpy pickles go through _reconstruct)")


def _safe_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """numpy's ``_reconstruct`` limited to an empty plain ndarray (what ndarray pickles start from)."""
    if subtype is not _NDArrayRef:
        raise _Refused(f"numpy _reconstruct of {subtype!r} (only numpy.ndarray is allowed)")
    if not (isinstance(shape, tuple) and all(isinstance(n, int) and 0 <= n for n in shape)
            and math.prod(shape) <= 1):
        raise _Refused(f"numpy _reconstruct with shape {shape!r} (numpy pickles start from (0,))")
    return _np_reconstruct(np.ndarray, shape, dtype)


_LATIN1 = {"latin1", "latin-1", "latin_1", "iso-8859-1", "iso8859-1", "iso_8859_1", "l1"}


def _safe_encode(obj: Any, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as Python 3 protocol-2 pickles use it for bytes: str -> bytes via latin-1 only."""
    if not isinstance(obj, str) or not isinstance(encoding, str) or encoding.lower() not in _LATIN1:
        raise _Refused(f"_codecs.encode with encoding {encoding!r} (pickles use it only for latin-1 bytes)")
    return obj.encode("latin-1")


def _empty_bytes(*args: Any) -> bytes:
    """``bytes()`` as Python 3 protocol-2 pickles use it for an empty bytes object; nothing else."""
    if args:
        raise _Refused(f"builtins.bytes with arguments {args!r}"[:100] + " (pickles call it only as bytes())")
    return b""


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy", "ndarray"): _NDArrayRef,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _safe_encode,
    ("__builtin__", "bytes"): _empty_bytes,
    ("builtins", "bytes"): _empty_bytes,
}
_OS_MODULES = {"posix": "os", "nt": "os"}  # os.system pickles as posix.system


class _CifarUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only the globals a CIFAR-10 batch needs (and never imports anything)."""

    def __init__(self, file: BinaryIO) -> None:
        super().__init__(file, encoding="latin1")

    def find_class(self, module: str, name: str) -> Any:
        """Return the allowed stand-in for ``module.name`` or refuse before anything runs."""
        found = _ALLOWED_GLOBALS.get((module, name))
        if found is None:
            raise _Refused(f"to unpickle {_display_global(module, name)}")
        return found

    def persistent_load(self, pid: Any) -> Any:
        """Refuse persistent ids (CIFAR-10 pickles have none)."""
        raise _Refused(f"a persistent id {pid!r}"[:80])


def _display_global(module: str, name: str) -> str:
    """``module.name`` as a reader knows it: ``posix.system`` shows as ``os.system``."""
    raw = f"{module}.{name}"
    # Python-2 names (``commands.Popen``, ``__builtin__.eval``) mapped as pickle itself maps them
    module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    module = _OS_MODULES.get(module, _compat_pickle.IMPORT_MAPPING.get(module, module))
    shown = f"{module}.{name}"
    return shown if shown == raw else f"{shown} (pickled as {raw})"


def safe_unpickle(data: bytes, *, source: str) -> object:
    """Unpickle ``data`` allowing only numpy arrays, dtypes and latin-1 bytes; a dict's keys come back as str.

    ``source`` names the data in messages. Raises UnsafeArchiveError for any
    other global (before it could run) and DataError for any other failure.
    """
    try:
        obj = _CifarUnpickler(io.BytesIO(data)).load()
    except _Refused as e:
        raise UnsafeArchiveError(f"refusing {e} in {source}: a CIFAR-10 batch needs only numpy arrays; "
                                 f"do not use this file, {REDOWNLOAD}") from None
    except RecursionError:
        raise DataError(f"cannot unpickle {source}: nested too deeply, not a CIFAR-10 pickle; {REEXTRACT}") from None
    except Exception as e:  # untrusted bytes can fail in any way; all of them mean "not a good batch"
        raise DataError(f"cannot unpickle {source} ({short_reason(e)}): truncated or not a CIFAR-10 pickle; "
                        f"{REEXTRACT}") from None
    return _str_keys(obj, source) if isinstance(obj, dict) else obj


def _str_keys(d: dict, source: str) -> dict:
    """``d`` with bytes keys decoded (latin-1) to str."""
    out: dict = {}
    for key, value in d.items():
        k = key.decode("latin-1") if isinstance(key, bytes) else key
        if k in out:
            raise DataError(f"{source} has the key {k!r} twice (as bytes and as str); {REEXTRACT}")
        out[k] = value
    return out
