"""Where an Optuna study lives, and how a sweep tells a trial whose process stopped from one that still runs.

``--storage journal:PATH`` is a journal file several processes on one machine
share; an RDB URL (``postgresql://...``, ``mysql://...``, ``sqlite:///...``)
serves machines that share no disk; by default the study is ``study.log`` in
the sweep folder.

A sweep process killed while it holds trials (SIGKILL, the OOM killer, a lost
machine) never tells the study their outcome: they would stay RUNNING, out of
every count, for good. Each trial therefore carries the ``host:pid@start`` of
the sweep process that asked it (user attribute ``OWNER``; the start time
tells that process from a later one given the same pid), and:

- an RDB storage uses Optuna's heartbeats: the owner records a heartbeat of
  each trial it holds every ``HEARTBEAT_INTERVAL`` s (``Heartbeat``), and a
  sweep process fails trials whose last heartbeat is older than
  ``GRACE_PERIOD`` s (``optuna.storages.fail_stale_trials``); the storage's
  stale-trial callback queues their values again (once);
- a journal storage has no heartbeats in Optuna, so a trial whose owner ran on
  this machine and is gone (no such pid) is failed and queued again the same
  way; one held by a process on another machine cannot be judged (the sweep
  says so in one line).
"""
from __future__ import annotations

import copy
import inspect
import os
import socket
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

from ..errors import LinclfError, UsageError

__all__ = ["check_storage", "storage_url", "open_storage", "has_heartbeats", "retry_callback", "retry_again",
           "retried_from", "quiet", "owner_tag", "owner_stopped", "owner_host", "Heartbeat", "OWNER", "STUDY_FILE",
           "HEARTBEAT_INTERVAL", "GRACE_PERIOD", "MAX_RETRY"]

RDB_SCHEMES = ("postgresql", "mysql", "sqlite", "oracle", "mssql")
STUDY_FILE = "study.log"
OWNER = "sweep_process"       # user attribute of a trial: host:pid@start of the sweep process that asked it
HEARTBEAT_INTERVAL = 10       # seconds between two heartbeats of a running trial (RDB storages)
GRACE_PERIOD = 60             # seconds without a heartbeat after which a running trial is taken as stopped
MAX_RETRY = 1                 # a stopped trial's values run once more; stopped again, it is left failed
CREATE_ATTEMPTS = 30          # opening a new database while other processes create its tables (a dozen)


def check_storage(url: str) -> None:
    """UsageError (exit 2) unless ``url`` is ``journal:PATH`` or an RDB URL Optuna can open."""
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower() if ":" in url else ""
    if scheme == "journal":
        path = url[len("journal:"):]
        if not path:
            raise UsageError("--storage journal: needs a file path, e.g. journal:sweeps/study.log")
        if Path(path).expanduser().is_dir():
            raise UsageError(f"--storage {url}: {path} is a folder; give a file in it, e.g. "
                             f"journal:{Path(path) / 'study.log'}")
        return
    if scheme in RDB_SCHEMES and "://" in url:
        return
    raise UsageError(f"--storage {url}: unknown storage; use journal:PATH (a journal file, e.g. "
                     "journal:sweeps/study.log) or an RDB URL (postgresql://user@host/db, mysql://..., "
                     "sqlite:///study.db)")


def storage_url(url: str | None, out_dir: Path) -> str:
    """The storage URL workers open: the journal path made absolute; default ``journal:<out>/study.log``."""
    if url is None:
        return f"journal:{(out_dir / STUDY_FILE).resolve()}"
    if url.startswith("journal:"):
        return f"journal:{Path(url[len('journal:'):]).expanduser().resolve()}"
    return url


def has_heartbeats(url: str) -> bool:
    """Whether the storage at ``url`` keeps Optuna heartbeats (RDB) or not (journal)."""
    return not url.startswith("journal:")


@contextmanager
def quiet(optuna: ModuleType) -> Iterator[None]:
    """Hide Optuna's notices that do not concern a sweep's user: heartbeats and their retry callback are
    experimental (so are TPE's multivariate and constant_liar in Optuna 4.0), and "heartbeat ... supposed
    to be used with Study.optimize" (this sweep beats itself)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
        yield


def _retry_class(optuna: ModuleType) -> type:
    """Optuna's callback class that queues a stopped trial's values again (its name since Optuna 4.9, or before)."""
    return getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or \
        optuna.storages.RetryFailedTrialCallback


def retry_callback(optuna: ModuleType) -> Any:
    """That callback, retrying a trial ``MAX_RETRY`` times."""
    with quiet(optuna):
        return _retry_class(optuna)(max_retry=MAX_RETRY)


def open_storage(optuna: ModuleType, url: str, heartbeat: bool = False) -> Any:
    """An Optuna storage object for a checked URL; ``heartbeat``: an RDB storage that fails stale trials."""
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url[len("journal:"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if url.startswith("sqlite:///"):                # its folder made, as a journal's is
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {}
    if heartbeat:
        params = inspect.signature(optuna.storages.RDBStorage).parameters
        callback = ("heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in params
                    else "failed_trial_callback")      # Optuna before 4.9
        kwargs = {"heartbeat_interval": HEARTBEAT_INTERVAL, "grace_period": GRACE_PERIOD,
                  callback: retry_callback(optuna)}
    for _ in range(CREATE_ATTEMPTS - 1):
        try:
            return _rdb_storage(optuna, url, kwargs)
        except LinclfError as e:
            if not _lost_creation_race(e):
                raise
    return _rdb_storage(optuna, url, kwargs)


def _rdb_storage(optuna, url: str, kwargs: dict[str, Any]):
    """``optuna.storages.RDBStorage(url, **kwargs)``; its failures as one-line errors."""
    try:
        with quiet(optuna):
            return optuna.storages.RDBStorage(url, **kwargs)
    except ImportError as e:
        raise UsageError(f"--storage {url}: the database driver is not installed ({e})") from None
    except Exception as e:  # noqa: BLE001 - SQLAlchemy's connection errors have many types
        raise LinclfError(f"--storage {url}: cannot open the study storage ({type(e).__name__}: "
                          f"{str(e).splitlines()[0]})") from None


def _lost_creation_race(error: Exception) -> bool:
    """Whether opening failed because another process created the new database's tables at the same time
    (Optuna creates the missing ones as each process opens it, optuna issue 4621). Each such failure means
    the other process made one more table, so opening again soon finds them all."""
    text = str(error).lower()
    return "already exists" in text or "unique constraint" in text or "duplicate" in text


def retry_again(optuna: ModuleType, study: Any, trial: Any) -> None:
    """Queue the values of ``trial`` (a FrozenTrial this process just failed) again, as Optuna's heartbeat
    check would: the same callback, with its values but none of its user attributes (the dead process's
    ``OWNER``, any partial result); the retry gets its own."""
    stopped = copy.deepcopy(trial)
    stopped.user_attrs = {}
    with quiet(optuna):
        retry_callback(optuna)(study, stopped)


def retried_from(optuna: ModuleType, trial: Any) -> int | None:
    """The number of the stopped trial whose values ``trial`` runs again, or None."""
    with quiet(optuna):
        history = _retry_class(optuna).retry_history(trial)
    return history[-1] if history else None


def owner_tag() -> str:
    """``host:pid@start`` of this process (``host:pid`` where the start time cannot be read)."""
    start = _start_time(os.getpid())
    return f"{socket.gethostname()}:{os.getpid()}" + (f"@{start}" if start else "")


def _start_time(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), or None where that cannot be read.

    With it an owner tag names one process, not a pid the system may since have given to another.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()     # after "pid (comm)", which may hold spaces
        return fields[19].decode()                             # field 22 of proc(5): starttime
    except (OSError, IndexError):
        return None


def owner_host(tag: Any) -> str | None:
    """The host of an ``OWNER`` tag, or None when the trial has none (asked by an older linclf)."""
    if not isinstance(tag, str) or ":" not in tag:
        return None
    return tag.rpartition(":")[0]


def owner_stopped(tag: Any) -> bool | None:
    """Whether the sweep process of an ``OWNER`` tag is gone: True or False for a process of this machine,
    None for one elsewhere or no tag. Call it only for trials this process does not hold: a tag with this
    process's own pid is then a dead process whose pid was reused, and so is a live process that started at
    another time than the tag says."""
    host, _, pid_start = tag.rpartition(":") if isinstance(tag, str) else ("", "", "")
    pid, _, start = pid_start.partition("@")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:          # another user's process: alive
        pass
    now = _start_time(int(pid))
    return bool(start and now and now != start)


class Heartbeat:
    """Records the heartbeat of every trial this process holds: when it is added, then every heartbeat interval
    of the storage (an RDB storage opened with ``heartbeat=True``).

    Optuna's own heartbeat thread runs only inside ``Study.optimize``; an ask-and-tell sweep keeps one thread of
    a ThreadPoolExecutor for it, blocked on an Event between beats, so trials running in this process
    (``--jobs 1``) beat too. ``close()`` stops it.
    """

    def __init__(self, storage):
        self._storage, self._interval = storage, storage.get_heartbeat_interval()
        self._ids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool: ThreadPoolExecutor | None = None

    def add(self, trial_id: int) -> None:
        """Beat for ``trial_id`` now and until ``discard``."""
        self._storage.record_heartbeat(trial_id)
        with self._lock:
            self._ids.add(trial_id)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="linclf-heartbeat")
            self._pool.submit(self._run)

    def discard(self, trial_id: int) -> None:
        """Stop beating for ``trial_id`` (it is about to be told)."""
        with self._lock:
            self._ids.discard(trial_id)

    def beat(self) -> None:
        """Record a heartbeat of every held trial now."""
        with self._lock:
            ids = sorted(self._ids)
        for trial_id in ids:
            self._storage.record_heartbeat(trial_id)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - a beat lost to a busy database is covered by the grace period
                pass

    def close(self) -> None:
        """Stop the heartbeat thread."""
        self._stop.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
