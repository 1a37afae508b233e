"""A trial hook for sweep tests (``LINCLF_SWEEP_HOOK=sweep_hooks:hook``), run inside whichever process runs
the trial: a spawned worker, a Dask worker or the test process itself. Driven by environment variables,
so faults are deterministic, not timed:

- LINCLF_TEST_LOG=PATH: append ``trial seed pid`` for every trial that starts;
- LINCLF_TEST_KILL=N: trial N kills its own process with SIGKILL (every attempt): a worker, or with
  ``--jobs 1`` the sweep process itself while it holds the trial;
- LINCLF_TEST_FAIL_REG=X: trials with model.reg > X raise MemoryError;
- LINCLF_TEST_SIGINT=1: the trial sends SIGINT to its own process (Ctrl-C of a sweep running trials in-process);
- LINCLF_TEST_GATE=FIFO: the first trial of the process waits until the test writes to the named pipe FIFO
  (a blocking open, no polling).
"""
from __future__ import annotations

import os
import signal

_gated = []


def hook(task: dict) -> None:
    cfg = task["config"]
    log = os.environ.get("LINCLF_TEST_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(f"{task['trial']} {cfg['seed']} {os.getpid()}\n")
    if os.environ.get("LINCLF_TEST_KILL") == str(task["trial"]):
        os.kill(os.getpid(), signal.SIGKILL)
    gate = os.environ.get("LINCLF_TEST_GATE")
    if gate and not _gated:
        _gated.append(1)
        with open(gate) as fh:
            fh.read()
    if os.environ.get("LINCLF_TEST_SIGINT") == "1":
        os.kill(os.getpid(), signal.SIGINT)
    limit = os.environ.get("LINCLF_TEST_FAIL_REG")
    if limit is not None and cfg["model"]["reg"] > float(limit):
        raise MemoryError("out of memory (simulated)")


def logged(path) -> list[tuple[int, int, int]]:
    """The (trial, seed, pid) lines the hook wrote."""
    if not os.path.exists(path):
        return []
    return [tuple(int(x) for x in line.split()) for line in open(path).read().splitlines()]
