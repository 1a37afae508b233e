"""Sweeps that survive faults: a killed trial process, a killed Dask worker, an unreachable scheduler,
bad storage URLs, missing extras; Dask and Optuna only imported by the sweep options that need them.

Faults are made deterministic by the trial hook (tests/sweep_hooks.py), which runs inside whichever process
runs the trial; nothing here sleeps to create timing.
"""
from __future__ import annotations

import csv
import json
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from conftest import invoke, one_line_error, optional, small_config
from sweep_hooks import logged

CONFIG = small_config(epochs=2, log_every=5, schedule="constant")
LR_REG = ("--param", "optimizer.lr=log:1e-5:1e-2", "--param", "model.reg=log:1e-4:1e-1")
TESTS = os.path.dirname(os.path.abspath(__file__))


def sweep(config, data_dir, out, *extra):
    return invoke("sweep", "--config", config, "--data-dir", data_dir, "--out", out, "--quiet", *extra)


def saved_rows(out):
    return {row["trial"]: row for row in json.loads((out / "results.json").read_text())}


def table(out):
    """results.csv without the seconds column (the same sweep anywhere gives the same table)."""
    with open(out / "results.csv", newline="") as fh:
        return [row[:-1] for row in csv.reader(fh)]


@pytest.fixture
def hooked(monkeypatch, tmp_path):
    """The trial hook on, logging to tmp_path/trials.txt; returns the log path."""
    log = tmp_path / "trials.txt"
    monkeypatch.setenv("LINCLF_SWEEP_HOOK", "sweep_hooks:hook")
    monkeypatch.setenv("LINCLF_TEST_LOG", str(log))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]))
    return log


# ------------------------------------------------------------ local processes


def test_a_sigkilled_trial_process_is_failed_with_the_signal_and_a_rerun_retries_it(
        tmp_path, config, learnable_data_dir, hooked, monkeypatch):
    monkeypatch.setenv("LINCLF_TEST_KILL", "1")
    out = tmp_path / "sweep"
    r = sweep(config, learnable_data_dir, out, *LR_REG, "--trials", 5, "--jobs", 2)
    assert r.exit_code == 0, r.output
    rows = saved_rows(out)
    assert sorted(rows) == [0, 1, 2, 3, 4]
    assert rows[1]["status"] == "failed" and "killed by SIGKILL" in rows[1]["message"]
    assert all(rows[t]["status"] == "ok" for t in (0, 2, 3, 4))          # the other trials went on
    assert sorted(t for t, _, _ in logged(hooked)) == [0, 1, 2, 3, 4]     # each started once

    monkeypatch.delenv("LINCLF_TEST_KILL")
    hooked.unlink()
    r = sweep(config, learnable_data_dir, out, *LR_REG, "--trials", 5, "--jobs", 2)
    assert r.exit_code == 0, r.output
    assert [t for t, _, _ in logged(hooked)] == [1]                        # only the failed one ran again
    again = saved_rows(out)
    assert again[1]["status"] == "ok" and all(again[t] == rows[t] for t in (0, 2, 3, 4))


def test_close_stops_a_running_trial_without_waiting_for_it(tmp_path, hooked):
    """ProcessPool.close (Ctrl-C, the end of a sweep) ends a worker whose trial would never finish by itself."""
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    code = textwrap.dedent(f"""
        import os
        from linclf.training.executors import ProcessPool
        from sweep_hooks import logged

        pool = ProcessPool(1)
        pool.submit({{"trial": 0, "config": {{"seed": 1}}, "data": {{}}}})
        with open({str(gate)!r}, "w"):       # opens once the trial waits on the gate, which stays shut
            ((_, _, pid),) = logged({str(hooked)!r})
            pool.close()                     # waiting for the trial here would never return
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                print("stopped", pid)
    """)
    env = {**os.environ, "LINCLF_TEST_GATE": str(gate)}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    ((_, _, pid),) = logged(hooked)
    assert r.stdout.split() == ["stopped", str(pid)] and pid != os.getpid()


def test_a_worker_exits_when_its_sweep_process_is_killed(tmp_path, hooked):
    """A SIGKILLed sweep leaves no worker behind waiting for tasks that never come."""
    code = textwrap.dedent(f"""
        import os, signal
        from linclf.training.executors import ProcessPool
        from sweep_hooks import logged

        pool = ProcessPool(1)
        pool.submit({{"trial": 0, "config": {{"seed": 1}}, "data": {{}}}})
        pool.next_result()                   # the worker is idle now, waiting for the next task
        ((_, _, pid),) = logged({str(hooked)!r})
        print(pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    # files, not pipes: a worker left holding a pipe's write end would block run() until the timeout
    with open(tmp_path / "out.txt", "w") as out, open(tmp_path / "err.txt", "w") as err:
        r = subprocess.run([sys.executable, "-c", code], stdout=out, stderr=err, timeout=120)
    printed = (tmp_path / "out.txt").read_text()
    assert r.returncode == -signal.SIGKILL, (tmp_path / "err.txt").read_text()
    ((_, _, pid),) = logged(hooked)
    assert printed.split() == [str(pid)]
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return                               # gone already
    try:
        ready, _, _ = select.select([fd], [], [], 60)   # readable once the process has exited
    finally:
        os.close(fd)
    if not ready:
        os.kill(pid, signal.SIGKILL)
    assert ready, f"worker {pid} still runs 60 s after its sweep process was killed"


# ----------------------------------------------------------------------- Dask


def test_dask_local_cluster_gives_the_same_table_as_local_processes(tmp_path, config, learnable_data_dir,
                                                                   hooked):
    optional("dask.distributed")
    r = sweep(config, learnable_data_dir, tmp_path / "procs", *LR_REG, "--trials", 4, "--jobs", 2)
    assert r.exit_code == 0, r.output
    r = sweep(config, learnable_data_dir, tmp_path / "dask", *LR_REG, "--trials", 4, "--jobs", 2,
              "--scheduler", "local")
    assert r.exit_code == 0, r.output
    assert table(tmp_path / "dask") == table(tmp_path / "procs")
    dask_pids = {pid for _, _, pid in logged(hooked)[4:]}
    assert os.getpid() not in dask_pids and len(logged(hooked)) == 8


def test_a_killed_dask_worker_is_retried_once_then_failed_and_the_sweep_finishes(
        tmp_path, config, learnable_data_dir, hooked, monkeypatch):
    optional("dask.distributed")
    monkeypatch.setenv("LINCLF_TEST_KILL", "2")
    out = tmp_path / "sweep"
    r = sweep(config, learnable_data_dir, out, *LR_REG, "--trials", 4, "--jobs", 2, "--scheduler", "local")
    assert r.exit_code == 0, r.output
    rows = saved_rows(out)
    assert rows[2]["status"] == "failed" and "worker died twice" in rows[2]["message"]
    assert all(rows[t]["status"] == "ok" for t in (0, 1, 3))
    attempts = [pid for t, _, pid in logged(hooked) if t == 2]
    assert len(attempts) == 2 and len(set(attempts)) == 2                   # retried once, on another worker


def test_ctrl_c_of_a_dask_local_sweep_is_one_line_and_exit_130(tmp_path, config, learnable_data_dir, hooked):
    """Ctrl-C signals the terminal's whole process group, the LocalCluster's workers included: only the sweep
    process answers it (its workers ignore SIGINT), with the one-line message, and the rerun finishes."""
    optional("dask.distributed")
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "linclf", "sweep", "--config", str(config), "--data-dir", str(learnable_data_dir),
           "--out", str(out), "--quiet", *LR_REG, "--trials", "3", "--jobs", "1", "--scheduler", "local"]
    with open(tmp_path / "err.txt", "w") as err:
        proc = subprocess.Popen(cmd, env={**os.environ, "LINCLF_TEST_GATE": str(gate)}, stdout=subprocess.DEVNULL,
                                stderr=err, start_new_session=True)
        try:
            with open(gate, "w") as fh:           # opens once the first trial waits on the gate, in a worker
                os.killpg(proc.pid, signal.SIGINT)
                fh.write("go")
            assert proc.wait(timeout=120) == 130
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    lines = (tmp_path / "err.txt").read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: sweep interrupted"), lines
    r = sweep(config, learnable_data_dir, out, *LR_REG, "--trials", 3, "--jobs", 1, "--scheduler", "local")
    assert r.exit_code == 0, r.output
    assert sorted(saved_rows(out)) == [0, 1, 2]


def test_an_unreachable_scheduler_is_a_one_line_error(tmp_path, config, learnable_data_dir):
    optional("dask.distributed")
    with socket.socket() as s:                     # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "sweep"
    r = sweep(config, learnable_data_dir, out, *LR_REG, "--trials", 2, "--scheduler", f"tcp://127.0.0.1:{port}",
              "--connect-timeout", "1")
    assert r.exit_code == 1, r.output
    line = one_line_error(r)
    assert f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port} within 1 s" in line
    assert not out.exists()                        # no folder left that a corrected rerun would have to match
    out.mkdir()
    r = sweep(config, learnable_data_dir, out, *LR_REG, "--trials", 2, "--scheduler", f"tcp://127.0.0.1:{port}",
              "--connect-timeout", "1")
    assert r.exit_code == 1 and out.is_dir()       # a folder it did not make stays


@pytest.mark.parametrize("args, needle", [
    (["--scheduler", "127.0.0.1:8786"], "expected local or a scheduler address"),
    (["--param", "optimizer.epochs=grid:1,2", "--param", "optimizer.iterations=grid:10,20"],
     "--param optimizer.epochs and optimizer.iterations: a trial's length is one or the other"),
    (["--scheduler", "tcp://"], "--scheduler tcp://: expected local or a scheduler address like tcp://host:8786"),
    (["--scheduler", "tcp://host:port"], "--scheduler tcp://host:port: expected local or a scheduler address"),
    (["--search", "tpe", "--storage", "redis://localhost/0"], "unknown storage"),
    (["--search", "tpe", "--storage", "sweeps/study.log"], "unknown storage"),
    (["--search", "tpe", "--storage", "journal:"], "needs a file path"),
    (["--search", "tpe", "--storage", "journal:."], "--storage journal:.: . is a folder; give a file in it"),
    (["--prune", "median"], "--prune needs --search tpe"),
    (["--storage", "journal:x.log"], "--storage needs --search tpe"),
])
def test_bad_search_and_scheduler_options_exit_2(tmp_path, config, learnable_data_dir, args, needle):
    optional("optuna")
    r = sweep(config, learnable_data_dir, tmp_path / "sweep", *LR_REG, "--trials", 2, *args)
    assert r.exit_code == 2, r.output
    assert needle in one_line_error(r)
    assert not (tmp_path / "sweep" / "results.json").exists()


@pytest.mark.parametrize("module, args, hint", [
    ("optuna", ["--search", "tpe"], "pip install 'linclf[optuna]'"),
    ("dask", ["--scheduler", "local"], "pip install 'linclf[dask]'"),
])
def test_without_the_extra_the_option_says_what_to_install(tmp_path, config, learnable_data_dir, monkeypatch,
                                                           module, args, hint):
    monkeypatch.setitem(sys.modules, module, None)          # import fails as if not installed
    r = sweep(config, learnable_data_dir, tmp_path / "sweep", *LR_REG, "--trials", 2, *args)
    assert r.exit_code == 2, r.output
    assert hint in one_line_error(r)


def test_train_and_the_cli_do_not_import_dask_or_optuna(tmp_path, config, learnable_data_dir):
    code = textwrap.dedent(f"""
        import sys
        import linclf.cli
        try:
            linclf.cli.main(["train", "--config", {str(config)!r}, "--data-dir", {str(learnable_data_dir)!r},
                             "--out", {str(tmp_path / "run")!r}, "--quiet"])
        except SystemExit as e:
            assert not e.code, e.code
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed", "optuna"))
        print(loaded)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "run" / "model.npz").exists()


def test_a_tls_scheduler_without_certificates_is_one_line(tmp_path, config, learnable_data_dir):
    optional("distributed")
    r = sweep(config, learnable_data_dir, tmp_path / "sweep", *LR_REG, "--trials", 2,
              "--scheduler", "tls://127.0.0.1:1", "--connect-timeout", "1")
    assert r.exit_code == 1, r.output
    assert "--scheduler tls://127.0.0.1:1: TLS needs the certificates in Dask's config" in one_line_error(r, only=True)
