"""Where sweep trials run: this process, local worker processes, or a Dask cluster.

Every executor has ``slots`` (trials it runs at once), ``submit(task)`` and
``next_result()`` (blocks until one submitted trial has finished and returns
its result dict, see ``trial.run_trial``). A trial whose process dies is a
result too, with status ``failed`` and a message naming the cause; the others
go on.

- ``InProcess``: ``jobs=1``, trials run here, one after the other.
- ``ProcessPool``: ``jobs`` one-worker ``ProcessPoolExecutor``s (spawned
  processes, never forked from a process that may hold threads). One worker
  each, so when the OS kills a worker (OOM killer, SIGKILL) the
  ``BrokenProcessPool`` names exactly one trial; that slot gets a new pool.
  Each slot keeps its worker's ``multiprocessing.Process`` (the child that
  appears in ``multiprocessing.active_children()`` as the pool starts it), for
  the exit code of a worker that died and to stop a running trial on close.
- ``DaskExecutor``: a ``dask.distributed`` cluster, at an address or a
  ``LocalCluster`` (processes, one thread each). A trial whose worker dies is
  run again once on another worker, then recorded failed.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import urllib.parse
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from types import ModuleType
from typing import Any, Iterator

from ..errors import LinclfError, UsageError
from .trial import run_trial

__all__ = ["InProcess", "ProcessPool", "DaskExecutor", "SchedulerError", "make_executor", "signal_name",
           "DEFAULT_CONNECT_TIMEOUT"]

DEFAULT_CONNECT_TIMEOUT = 10.0
DASK_HINT = "install it with: pip install 'linclf[dask]'"


class SchedulerError(LinclfError):
    """The Dask scheduler could not be reached or the cluster could not start (exit 1)."""


def signal_name(exitcode: int | None) -> str:
    """``SIGKILL`` for exit code -9; ``exit code N`` for a normal exit; ``an unknown cause`` for None."""
    if exitcode is None:
        return "an unknown cause"
    if exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


def _lost(task: dict, message: str) -> dict:
    """The result of a trial whose process died."""
    return {"trial": task["trial"], "val_accuracy": None, "train_accuracy": None, "final_loss": None,
            "status": "failed", "seconds": None, "message": message, "worker_pid": None, "history": []}


class InProcess:
    """Trials run in this process, in order of submission."""

    slots = 1

    def __init__(self) -> None:
        self._queue: list[dict] = []

    def submit(self, task: dict) -> None:
        """Queue ``task``; it runs in ``next_result``."""
        self._queue.append(task)

    def next_result(self) -> dict:
        """Run the oldest queued task here and return its result."""
        return run_trial(self._queue.pop(0))

    def close(self) -> None:
        """Forget the queued tasks."""
        self._queue.clear()


def _init_worker() -> None:
    """Start of a local worker process: Ctrl-C is left to the parent, which stops the sweep; the worker exits
    when the parent does.

    A pool's worker waits for its next task on a pipe it also holds the write end of, so a parent killed
    (SIGKILL, the OOM killer) or terminated without closing the pool would leave it waiting for good.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), name="linclf-exit-with-parent",
                         daemon=True).start()


def _exit_with(sentinel: int) -> None:
    """Block until the parent process is gone (its sentinel becomes ready), then end this process."""
    multiprocessing.connection.wait([sentinel])
    os._exit(1)


@contextmanager
def sigint_handler(handler: Any) -> Iterator[None]:
    """Inside, SIGINT has ``handler`` (a function, SIG_IGN or SIG_DFL) and the previous one after; only the main
    thread may set it, elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def _children_ignore_sigint() -> Any:
    """Processes spawned inside start with SIGINT ignored (an ignored signal stays ignored across exec).

    Ctrl-C reaches the terminal's whole process group: a LocalCluster's workers would each print
    their own KeyboardInterrupt traceback while this process stops the sweep and the cluster. A
    Ctrl-C during the cluster's start (a second or two) is ignored too; press it again after.
    """
    return sigint_handler(signal.SIG_IGN)


def _mp_context() -> multiprocessing.context.BaseContext:
    """spawn: a fresh interpreter, safe whatever threads the parent holds (tqdm, BLAS, Dask)."""
    return multiprocessing.get_context("spawn")


class ProcessPool:
    """``jobs`` one-worker process pools; a pool whose worker died is replaced, its trial recorded failed."""

    def __init__(self, jobs: int):
        self.slots = jobs
        self._pools: list[ProcessPoolExecutor | None] = [None] * jobs
        self._workers: list[multiprocessing.process.BaseProcess | None] = [None] * jobs
        self._running: dict[Future, tuple[int, dict]] = {}

    def submit(self, task: dict) -> None:
        """Start ``task`` in a free slot's worker (the caller keeps at most ``slots`` running)."""
        busy = {slot for slot, _ in self._running.values()}
        slot = next(s for s in range(self.slots) if s not in busy)
        starting = self._pools[slot] is None
        if starting:
            self._pools[slot] = ProcessPoolExecutor(1, mp_context=_mp_context(), initializer=_init_worker)
            before = set(multiprocessing.active_children())
        fut = self._pools[slot].submit(run_trial, {**task, "worker": True})
        if starting:
            # A spawn pool starts its worker inside its first submit(): the one new child is that worker. Were
            # it started later (another Python), none is new and a death's cause reads "an unknown cause".
            new = set(multiprocessing.active_children()) - before
            self._workers[slot] = new.pop() if len(new) == 1 else None
        self._running[fut] = (slot, task)

    def next_result(self) -> dict:
        """Block until a running trial finishes; a dead worker's trial comes back failed with the signal."""
        done, _ = wait(list(self._running), return_when=FIRST_COMPLETED)
        fut = min(done, key=lambda f: self._running[f][0])
        slot, task = self._running.pop(fut)
        try:
            return fut.result()
        except BrokenProcessPool:
            pool, worker = self._pools[slot], self._workers[slot]
            pool.shutdown(wait=True, cancel_futures=True)           # joins the dead worker: its exit code is set
            self._pools[slot] = self._workers[slot] = None
            cause = signal_name(None if worker is None else worker.exitcode)
            return _lost(task, f"the trial's process was killed by {cause} (out of memory?); "
                               "run the sweep again to retry it")

    def close(self) -> None:
        """Stop every worker, abandoning running trials (after Ctrl-C or at the end)."""
        for fut in self._running:
            fut.cancel()
        for worker in self._workers:
            if worker is not None:
                worker.terminate()            # a running trial is abandoned (Ctrl-C), not waited for
        for pool in self._pools:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self._pools = [None] * self.slots
        self._workers = [None] * self.slots
        self._running.clear()


class DaskExecutor:
    """Trials as tasks on a ``dask.distributed`` cluster; a lost worker's trial is retried once."""

    def __init__(self, scheduler: str, jobs: int, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT):
        import_dask()                          # a one-line error (exit 2) if Dask is not installed
        import dask.config
        from dask.distributed import Client, LocalCluster

        self._cluster = None
        # A task is given up after it lost this many workers: run once more on another worker, then failed.
        # The workers' stack-sampling profiler and GIL monitor take CPU from a trial's steps: off (they
        # apply to the workers of a LocalCluster; a remote cluster's workers keep their own settings).
        dask.config.set({"distributed.scheduler.allowed-failures": 1,
                         "distributed.worker.profile.enabled": False,
                         "distributed.admin.system-monitor.gil.enabled": False,
                         # Dask's default MALLOC_TRIM_THRESHOLD_ turns every large temporary of a step into
                         # an mmap / munmap pair (page faults each step); one thread per library is kept.
                         "distributed.nanny.pre-spawn-environ": {"OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1,
                                                                 "OPENBLAS_NUM_THREADS": 1}})
        try:
            if scheduler == "local":
                with _children_ignore_sigint():
                    self._cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                                                 dashboard_address=None, silence_logs=40)
                self.client = Client(self._cluster)
            else:
                self.client = Client(scheduler, timeout=connect_timeout)
        except TypeError as e:
            if not scheduler.startswith("tls://"):
                raise
            raise SchedulerError(f"--scheduler {scheduler}: TLS needs the certificates in Dask's config "
                                 f"(distributed.comm.tls; Dask said: {e}); set them, or use tcp://") from None
        except (OSError, TimeoutError) as e:
            if self._cluster is not None:
                self._cluster.close()
            where = "start a local Dask cluster" if scheduler == "local" else \
                f"reach the Dask scheduler at {scheduler} within {connect_timeout:g} s"
            raise SchedulerError(f"--scheduler: cannot {where} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else e}); "
                                 "start it with `dask scheduler` and `dask worker ADDRESS`, or check the "
                                 "address") from None
        nthreads = sum(self.client.nthreads().values())
        self.slots = max(1, nthreads) if scheduler != "local" else jobs
        self._running: dict[Any, dict] = {}
        self._retried: set[int] = set()

    def submit(self, task: dict) -> None:
        """Send ``task`` to the cluster as a task of its own (never cached: ``pure=False``)."""
        fut = self.client.submit(run_trial, {**task, "worker": True}, pure=False,
                                 key=f"linclf-trial-{task['trial']}-{os.getpid()}-{len(self._running)}-"
                                     f"{os.urandom(4).hex()}")
        self._running[fut] = task

    def next_result(self) -> dict:
        """Block until a trial finishes; one whose worker died twice comes back failed."""
        from dask.distributed import wait as dask_wait
        from distributed.scheduler import KilledWorker

        done, _ = dask_wait(list(self._running), return_when="FIRST_COMPLETED")
        fut = min(done, key=lambda f: self._running[f]["trial"])
        task = self._running.pop(fut)
        try:
            return fut.result()
        except KilledWorker as e:
            return _lost(task, f"the trial's worker died twice (run on two workers; {e}); the sweep went on")
        except Exception as e:  # noqa: BLE001 - a cluster-side failure of one trial is recorded
            return _lost(task, f"{type(e).__name__}: {e}")

    def close(self) -> None:
        """Cancel running trials, disconnect, and stop the LocalCluster this executor started."""
        try:
            for fut in self._running:
                fut.cancel()
            self._running.clear()
            self.client.close()
        finally:
            if self._cluster is not None:
                self._cluster.close()


def import_dask() -> ModuleType:
    """The ``dask.distributed`` module, or UsageError (exit 2) saying what to install."""
    try:
        import dask
        import dask.distributed  # noqa: F401
    except ImportError:
        raise UsageError(f"--scheduler needs Dask's distributed scheduler; {DASK_HINT}") from None
    return dask


def make_executor(jobs: int, scheduler: str | None = None,
                  connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> InProcess | ProcessPool | DaskExecutor:
    """The executor for ``--scheduler`` (None: local processes, or this process when ``jobs`` is 1)."""
    if scheduler is not None:
        return DaskExecutor(scheduler, jobs, connect_timeout)
    return InProcess() if jobs == 1 else ProcessPool(jobs)


def check_scheduler(scheduler: str | None) -> None:
    """UsageError unless ``scheduler`` is None, ``local`` or a ``tcp://host:port`` (or ``tls://``, ``ucx://``)
    address, and Dask is installed when it is not None."""
    if scheduler is None:
        return
    if scheduler != "local":
        parts = urllib.parse.urlsplit(scheduler)
        try:
            port = parts.port
        except ValueError:                 # a port that is not a number
            port = None
        if parts.scheme not in ("tcp", "tls", "ucx") or not parts.hostname or not port:
            raise UsageError(f"--scheduler {scheduler}: expected local or a scheduler address like "
                             "tcp://host:8786")
    import_dask()
