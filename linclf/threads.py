"""OpenBLAS thread control, for the training loop's small products.

After a multithreaded call, OpenBLAS's idle worker threads spin for about
0.1 s; inside a training loop that shares each step with a worker process,
they take the second core away. ``one_blas_thread()`` pins OpenBLAS to one
thread around the training loop. Only the OpenBLAS that NumPy
loaded is touched (found through /proc/self/maps and ctypes); elsewhere
(other BLAS, other systems) it does nothing. Results do not change: OpenBLAS
splits a product between threads by rows and columns, never along the sum.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

__all__ = ["openblas_threads", "one_blas_thread", "limit_blas_threads"]

_api: tuple[Callable[[], int], Callable[[int], None]] | None | bool = False   # False: not looked up yet


def openblas_threads() -> tuple[Callable[[], int], Callable[[int], None]] | None:
    """(get, set) of the thread count of the OpenBLAS NumPy loaded, through ctypes; None if there is none."""
    global _api
    if _api is False:
        _api = None
        try:
            import ctypes

            with open("/proc/self/maps") as maps:                # Linux; elsewhere nothing is limited
                paths = sorted({f[5].strip() for f in (line.split(None, 5) for line in maps)
                                if len(f) == 6 and "openblas" in f[5].lower()})
            for path in paths:
                lib = ctypes.CDLL(path)                          # already loaded: the same library
                for prefix in ("scipy_openblas_", "openblas_"):
                    for suffix in ("64_", ""):
                        get = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
                        set_ = getattr(lib, f"{prefix}set_num_threads{suffix}", None)
                        if get is not None and set_ is not None:
                            get.restype, get.argtypes = ctypes.c_int, []
                            set_.restype, set_.argtypes = None, [ctypes.c_int]
                            _api = (get, set_)
                            return _api
        except (OSError, ValueError):
            pass
    return _api


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """OpenBLAS on one thread inside (where it is found): around the training loop.

    Its products are small (a minibatch, a 1,000-image scoring) and gain
    nothing from threads, and after a threaded call OpenBLAS's idle threads
    spin for ~0.1 s (about 150 steps), taking the second core from the
    minibatch worker (with the helper thread this replaced: 850 vs 650 us a
    step). Results do not change: OpenBLAS splits a product between
    threads by rows and columns, never along the sum.
    """
    api = openblas_threads()
    n = api[0]() if api is not None else 1
    if n <= 1:
        yield
        return
    api[1](1)
    try:
        yield
    finally:
        api[1](n)


def limit_blas_threads(n: int) -> bool:
    """Set OpenBLAS's thread count for the rest of the process (worker processes); False if not found."""
    api = openblas_threads()
    if api is None:
        return False
    api[1](int(n))
    return True
