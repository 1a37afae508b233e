"""The ordered task pool and the BLAS thread limits around it."""
from __future__ import annotations

import threading

import pytest
from threadpoolctl import threadpool_info

from linclf.threads import PARALLEL, TaskPool, task_pool


def blas_limits() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_results_come_back_in_item_order(threads):
    pool = TaskPool(threads, "t")
    got = []
    try:
        pool.run(lambda i: i * i, range(50), lambda i, r: got.append((i, r)))
    finally:
        pool.close()
    assert got == [(i, i * i) for i in range(50)]


@pytest.mark.parametrize("threads", [2, 3])
def test_at_most_twice_the_threads_in_flight(threads):
    """When the first result is handed over, exactly 2 * threads items have been taken from the stream."""
    pulled = []

    def items():
        for i in range(20):
            pulled.append(i)
            yield i

    seen_at_done = []
    pool = TaskPool(threads)
    try:
        pool.run(lambda i: i, items(), lambda i, r: seen_at_done.append(len(pulled)))
    finally:
        pool.close()
    assert seen_at_done[0] == 2 * threads
    assert all(n <= i + 1 + 2 * threads for i, n in enumerate(seen_at_done))
    assert len(seen_at_done) == 20


@pytest.mark.parametrize("threads", [1, 2])
def test_a_failing_task_propagates_and_later_items_are_not_taken(threads):
    pulled, done = [], []

    def items():
        for i in range(100):
            pulled.append(i)
            yield i

    def fn(i):
        if i == 3:
            raise KeyboardInterrupt
        return i

    pool = TaskPool(threads, "boom")
    with pytest.raises(KeyboardInterrupt):
        pool.run(fn, items(), lambda i, r: done.append(i))
    pool.close()
    assert done == [0, 1, 2]                              # in order, nothing after the failure
    assert len(pulled) <= 4 + 2 * threads                 # the stream stopped near the failure
    assert not any(t.name.startswith("boom") for t in threading.enumerate())


@pytest.mark.parametrize("parallel,pool_threads,blas", [("threads", 2, 1), ("blas", 1, 2)])
def test_task_pool_splits_threads_between_workers_and_blas(parallel, pool_threads, blas):
    before = blas_limits()
    names = set()
    with task_pool(2, parallel, "split") as pool:
        assert pool.threads == pool_threads
        assert all(n == blas for n in blas_limits())
        pool.run(lambda i: threading.current_thread().name, range(8), lambda i, name: names.add(name))
    assert blas_limits() == before
    assert not any(t.name.startswith("split") for t in threading.enumerate())
    if pool_threads > 1:
        assert names and all(n.startswith("split") for n in names)
    else:
        assert names == {threading.current_thread().name}     # inline


def test_task_pool_rejects_an_unknown_mode():
    assert PARALLEL == ("threads", "blas")
    with pytest.raises(ValueError, match="parallel: expected one of threads, blas, got 'processes'"):
        with task_pool(2, "processes"):
            pass
