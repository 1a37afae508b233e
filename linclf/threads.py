"""How many CPUs linclf uses, and BLAS's threads, through threadpoolctl.

``workers`` means CPUs: an explicit argument (``linclf --workers N``), else
``$LINCLF_WORKERS``, else the CPUs this process may run on. The training
engine computes with one BLAS thread per worker: a minibatch's products are
far too small for BLAS's own threads, whose start-up and idle spinning cost
more than the product (``scripts/bench.py`` measures both). threadpoolctl
knows every BLAS NumPy may be built with (OpenBLAS, MKL, BLIS, Accelerate).
A BLAS may round a product differently on one thread and on several (OpenBLAS
on an AVX2 EPYC does), so whatever must not depend on ``workers`` computes on
one BLAS thread.

``task_pool`` runs a stream of tasks in order on a standard thread pool (NumPy
releases the GIL in products and ufuncs), BLAS on one thread per worker, or on
one worker with BLAS's own threads; the k-means features use it.
"""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

from .errors import UsageError

__all__ = ["ENV_WORKERS", "PARALLEL", "usable_cpus", "resolve_workers", "blas_threads", "set_blas_threads",
           "TaskPool", "task_pool"]

ENV_WORKERS = "LINCLF_WORKERS"
PARALLEL = ("threads", "blas")      # how task_pool spends its threads: pool workers, or BLAS's own


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


class TaskPool:
    """Runs tasks in order on ``threads`` threads (inline for 1), at most ``2 * threads`` in flight.

    On any exception (KeyboardInterrupt included) the tasks not started are
    cancelled, the running ones are waited for, and the exception propagates.
    Threads are named ``<name>_<i>``.
    """

    def __init__(self, threads: int, name: str = "linclf"):
        self.threads = threads
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix=name) if threads > 1 else None

    def run(self, fn: Callable[[Any], Any], items: Iterable[Any], done: Callable[[Any, Any], None] | None = None) -> None:
        """fn(item) for every item; done(item, result) in the calling thread, in item order."""
        if self.executor is None:
            for item in items:
                result = fn(item)
                if done is not None:
                    done(item, result)
            return
        pending: deque = deque()
        try:
            for item in items:
                pending.append((item, self.executor.submit(fn, item)))
                if len(pending) >= 2 * self.threads:        # bounded: a task's buffers are not all made at once
                    it, fut = pending.popleft()
                    result = fut.result()
                    if done is not None:
                        done(it, result)
            while pending:
                it, fut = pending.popleft()
                result = fut.result()
                if done is not None:
                    done(it, result)
        except BaseException:
            for _, fut in pending:
                fut.cancel()
            raise

    def close(self) -> None:
        """Wait for the running tasks and end the threads (the tasks not started are cancelled)."""
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)


@contextmanager
def task_pool(threads: int, parallel: str = "threads", name: str = "linclf") -> Iterator[TaskPool]:
    """A pool of ``threads`` workers with one BLAS thread each ("threads"), or one worker with ``threads`` BLAS threads ("blas").

    The BLAS limit is restored and the pool's threads have ended on exit.
    """
    if parallel not in PARALLEL:
        raise ValueError(f"parallel: expected one of {', '.join(PARALLEL)}, got {parallel!r}")
    workers, blas = (threads, 1) if parallel == "threads" else (1, threads)
    pool = TaskPool(workers, name)
    try:
        with blas_threads(blas):
            yield pool
    finally:
        pool.close()
