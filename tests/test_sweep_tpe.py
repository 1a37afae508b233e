"""--search tpe: Optuna's TPE sampler through ask / tell, pruning, and a study shared through a journal file
by several processes (an exact trial budget between them, Ctrl-C of one leaves the study consistent)."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from conftest import invoke, one_line_error, optional, small_config
from sweep_hooks import logged

CONFIG = small_config(epochs=4, log_every=5, schedule="constant")
PARAMS = ("--param", "optimizer.lr=log:1e-7:1e-2", "--param", "model.reg=log:1e-4:1e-1")
TESTS = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(autouse=True)
def needs_optuna():
    optional("optuna")


def sweep(config, data_dir, out, *extra):
    return invoke("sweep", "--config", config, "--data-dir", data_dir, "--out", out, "--quiet", "--search", "tpe",
                  *extra)


def saved_rows(out):
    return {row["trial"]: row for row in json.loads((out / "results.json").read_text())}


def hook_env(log, **extra):
    env = {**os.environ, "LINCLF_SWEEP_HOOK": "sweep_hooks:hook", "LINCLF_TEST_LOG": str(log),
           "PYTHONPATH": os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")])}
    return {**env, **{k: str(v) for k, v in extra.items()}}


def study_trials(journal):
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(journal)))
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage).get_trials()


def test_tpe_writes_the_usual_files_from_the_study_and_a_rerun_resumes(tmp_path, config, learnable_data_dir,
                                                                      monkeypatch):
    log = tmp_path / "trials.txt"
    for k, v in hook_env(log).items():
        monkeypatch.setenv(k, v)
    out = tmp_path / "sweep"
    r = sweep(config, learnable_data_dir, out, *PARAMS, "--trials", 5, "--jobs", 2)
    assert r.exit_code == 0, r.output
    rows = saved_rows(out)
    assert sorted(rows) == [0, 1, 2, 3, 4] and all(row["status"] == "ok" for row in rows.values())
    with open(out / "results.csv", newline="") as fh:
        header = next(csv.reader(fh))
    assert header == ["trial", "optimizer.lr", "model.reg", "val_accuracy", "train_accuracy", "final_loss",
                      "status", "seconds"]
    for t, row in rows.items():
        assert row["config"]["seed"] == 1 + t and row["config"]["optimizer"]["lr"] == row["optimizer.lr"]
        assert 1e-7 <= row["optimizer.lr"] <= 1e-2
    assert (out / "best.yaml").exists() and (out / "study.log").exists()
    assert sorted(t for t, _, _ in logged(log)) == [0, 1, 2, 3, 4]

    log.unlink()
    r = sweep(config, learnable_data_dir, out, *PARAMS, "--trials", 5, "--jobs", 2)    # resumes: nothing left
    assert r.exit_code == 0, r.output
    assert logged(log) == [] and saved_rows(out) == rows
    r = sweep(config, learnable_data_dir, out, *PARAMS, "--trials", 7, "--jobs", 2)    # a bigger budget: 2 more
    assert r.exit_code == 0, r.output
    assert sorted(t for t, _, _ in logged(log)) == [5, 6] and sorted(saved_rows(out)) == list(range(7))

    r = invoke("sweep", "--config", config, "--data-dir", learnable_data_dir, "--out", out, "--quiet", *PARAMS,
               "--trials", 7)                                                             # not a random sweep
    assert r.exit_code == 2 and "--search tpe --prune none" in one_line_error(r)


def test_pruned_trials_are_recorded_with_their_epoch(tmp_path, config, learnable_data_dir):
    out = tmp_path / "sweep"
    r = sweep(config, learnable_data_dir, out, *PARAMS, "--trials", 14, "--jobs", 1, "--prune", "median")
    assert r.exit_code == 0, r.output
    rows = saved_rows(out).values()
    pruned = [row for row in rows if row["status"] == "pruned"]
    assert pruned, [(row["optimizer.lr"], row["val_accuracy"]) for row in rows]
    for row in pruned:
        assert 1 <= row["pruned_epoch"] < 4 and f"pruned at epoch {row['pruned_epoch']}" in row["message"]
        assert round(row["history"][-1]["epoch"]) == row["pruned_epoch"]  # it stopped there
        assert row["train_accuracy"] is None
    best = max((row for row in rows if row["status"] == "ok"), key=lambda row: row["val_accuracy"])
    assert "val accuracy" in (out / "best.yaml").read_text() and f"({best['trial']})" in (out / "best.yaml").read_text()


def cli_sweep(config, data_dir, out, journal, trials, env):
    return subprocess.Popen([sys.executable, "-m", "linclf", "sweep", "--config", str(config), "--data-dir",
                             str(data_dir), "--out", str(out), "--quiet", "--search", "tpe", "--storage",
                             f"journal:{journal}", "--trials", str(trials), "--jobs", "1", *PARAMS],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_share_one_study_and_run_exactly_the_budget(tmp_path, config, learnable_data_dir):
    journal, log = tmp_path / "shared" / "study.log", tmp_path / "trials.txt"
    procs = [cli_sweep(config, learnable_data_dir, tmp_path / f"out{i}", journal, 8, hook_env(log))
             for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    ran = [t for t, _, _ in logged(log)]
    assert sorted(ran) == sorted(set(ran)) and len(ran) == 8                # no trial twice, the budget exactly
    trials = study_trials(journal)
    finished = [t for t in trials if t.user_attrs.get("status") != "surplus"]
    assert sorted(t.number for t in finished) == sorted(ran)
    assert all(t.state.name == "COMPLETE" for t in finished)
    assert len(saved_rows(tmp_path / "out1")) == 8 or len(saved_rows(tmp_path / "out0")) == 8


def test_ctrl_c_of_one_process_leaves_the_study_consistent_and_the_other_goes_on(tmp_path, config,
                                                                                learnable_data_dir):
    journal, log = tmp_path / "study.log", tmp_path / "trials.txt"
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    other = cli_sweep(config, learnable_data_dir, tmp_path / "other", journal, 6, hook_env(log, LINCLF_TEST_GATE=gate))
    # `other` is inside its first trial, waiting on the gate, when this one starts and is interrupted
    with open(gate, "w") as fh:                       # unblocks only once `other` has opened the gate ...
        stopped = cli_sweep(config, learnable_data_dir, tmp_path / "stopped", journal, 6,
                            hook_env(log, LINCLF_TEST_SIGINT=1))
        _, err = stopped.communicate(timeout=300)
        assert stopped.returncode == 130, err
        assert "interrupted" in err and "run the same command again" in err
        fh.write("go")                                # ... and `other` goes on when it is closed
    out, err = other.communicate(timeout=300)
    assert other.returncode == 0, err
    trials = study_trials(journal)
    states = {t.number: (t.state.name, t.user_attrs.get("status")) for t in trials}
    interrupted = [n for n, s in states.items() if s == ("FAIL", "interrupted")]
    assert len(interrupted) == 1                                              # told, not left running
    assert not any(s[0] == "RUNNING" for s in states.values())
    assert sum(s == ("COMPLETE", "ok") for s in states.values()) == 6        # the budget, by the other process
    rows = saved_rows(tmp_path / "other")
    assert rows[interrupted[0]]["status"] == "interrupted" and sum(r["status"] == "ok" for r in rows.values()) == 6
