"""How many CPUs linclf uses, and BLAS's threads, through threadpoolctl.

``workers`` means CPUs: an explicit argument (``linclf --workers N``), else
``$LINCLF_WORKERS``, else the CPUs this process may run on. The training
engine computes with one BLAS thread per worker: a minibatch's products are
far too small for BLAS's own threads, whose start-up and idle spinning cost
more than the product (``scripts/bench.py`` measures both). threadpoolctl
knows every BLAS NumPy may be built with (OpenBLAS, MKL, BLIS, Accelerate);
limits set here do not change a product's value (BLAS threads split rows and
columns, not the sum), so results do not depend on them.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

from .errors import UsageError

__all__ = ["ENV_WORKERS", "usable_cpus", "resolve_workers", "blas_threads", "set_blas_threads"]

ENV_WORKERS = "LINCLF_WORKERS"


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def resolve_workers(workers: int | None = None) -> int:
    """CPUs to use: ``workers`` if given, else $LINCLF_WORKERS, else ``usable_cpus()``.

    A bad value raises UsageError naming where it came from (the argument or
    the environment variable).
    """
    if workers is not None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise UsageError(f"workers must be a positive integer (CPUs to use), got {workers!r}")
        return workers
    env = os.environ.get(ENV_WORKERS, "").strip()
    if not env:
        return usable_cpus()
    if not env.isdigit() or int(env) < 1:
        raise UsageError(f"${ENV_WORKERS} must be a positive integer (CPUs to use), got {env!r}; "
                         f"unset it or set e.g. {ENV_WORKERS}=1")
    return int(env)


@contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Inside, BLAS uses at most ``n`` threads (every BLAS loaded so far); restored on exit."""
    from threadpoolctl import threadpool_limits   # inspects the libraries loaded now, so call it late

    with threadpool_limits(limits=int(n), user_api="blas"):
        yield


def set_blas_threads(n: int) -> None:
    """For the rest of this process BLAS uses at most ``n`` threads (a worker process of a sweep: 1)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=int(n), user_api="blas")
