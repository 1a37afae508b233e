"""--search tpe: Optuna's TPE sampler through ask / tell, pruning, and a study in a journal file or an RDB
(sqlite) shared by several processes: an exact trial budget between them, Ctrl-C of one leaves the study
consistent, and the trial of a SIGKILLed one is failed and run again instead of staying RUNNING."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import invoke, one_line_error, optional, small_config
from sweep_hooks import logged

CONFIG = small_config(epochs=4, log_every=5, schedule="constant")
PARAMS = ("--param", "optimizer.lr=log:1e-7:1e-2", "--param", "model.reg=log:1e-4:1e-1")
TESTS = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(autouse=True)
def needs_optuna():
    optional("optuna")


_STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def no_sweep_left_running():
    """A sweep process a failed test left behind (one waiting for a trial that never ends) is killed."""
    yield
    while _STARTED:
        p = _STARTED.pop()
        if p.poll() is None:
            p.kill()
        p.communicate()


def sweep(config, data_dir, out, *extra):
    return invoke("sweep", "--config", config, "--data-dir", data_dir, "--out", out, "--quiet", "--search", "tpe",
                  *extra)


def saved_rows(out):
    return {row["trial"]: row for row in json.loads((out / "results.json").read_text())}


def hook_env(log, **extra):
    env = {**os.environ, "LINCLF_SWEEP_HOOK": "sweep_hooks:hook", "LINCLF_TEST_LOG": str(log),
           "PYTHONPATH": os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")])}
    return {**env, **{k: str(v) for k, v in extra.items()}}


def storage(kind, tmp_path):
    """The --storage URL of a study in tmp_path: a journal file or a sqlite database."""
    return f"journal:{tmp_path / 'shared' / 'study.log'}" if kind == "journal" else f"sqlite:///{tmp_path / 'study.db'}"


def study_trials(url):
    """The trials of the one study in the storage at ``url``, as Optuna reads them."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    where = JournalStorage(JournalFileBackend(url[len("journal:"):])) if url.startswith("journal:") else url
    (summary,) = optuna.get_all_study_summaries(where)
    return optuna.load_study(study_name=summary.study_name, storage=where).get_trials()


def test_the_pruners_epochs_of_a_length_in_steps_count_the_training_split(learnable_data_dir):
    """Hyperband's maximum resource is the epochs a trial trains: steps x batch over the training rows."""
    from linclf.config import Config, with_values
    from linclf.training import sweep as sweep_mod
    from linclf.training.run_data import load_data, make_splits

    cfg = with_values(Config(), {"data.dir": str(learnable_data_dir), "data.num_val": 10, "optimizer.iterations": 200,
                                 "optimizer.batch_size": 10})
    n = len(make_splits(cfg, load_data(cfg)).y_train)
    assert sweep_mod._epochs(cfg, None) == 200 * 10 / n                # it was 200 x 10 / 1 = 2000 epochs
    flipped = with_values(cfg, {"data.flip": True})
    assert sweep_mod._epochs(flipped, None) == 200 * 10 / (2 * n)
    assert sweep_mod._epochs(with_values(cfg, {"optimizer.epochs": 3}), None) == 3.0


@pytest.mark.parametrize("params, warned", [
    (("--param", "optimizer.lr=grid:1e-3,1e-2"), True),                      # 2 combinations, 3 trials
    (("--param", "optimizer.lr=grid:1e-3,1e-2", "--param", "optimizer.update=choice:adam,sgd"), False),   # 4
    (("--param", "optimizer.lr=log:1e-3:1e-2"), False),
])
def test_tpe_over_fewer_value_combinations_than_trials_says_so(tmp_path, config, learnable_data_dir, params, warned):
    r = sweep(config, learnable_data_dir, tmp_path / "sweep", *params, "--trials", 3, "--jobs", 1)
    assert r.exit_code == 0, r.output
    line = "warning: every --param is a list of values (2 combinations), fewer than the 3 trials"
    assert (line in r.output) == warned and ("warning" in r.output) == warned, r.output


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


def test_a_trial_that_trained_all_its_epochs_is_not_pruned(tmp_path, learnable_data_dir):
    # Hyperband's rungs of 3 epochs are 1 and 3: at 3 the trial has finished, and pruning it then saves
    # nothing and throws its result away. It reports the epoch (later trials compare with it) and is ok.
    config = tmp_path / "three.yaml"
    config.write_text(small_config(epochs=3, log_every=5, schedule="constant"))
    out = tmp_path / "sweep"
    # Hyperband's brackets follow the study's name (what is swept, the seed): seed 1 gives a sweep that prunes
    # on Optuna 4.0 to 5.1 (seed 0 prunes nothing on either since features.seed joined the config)
    r = sweep(config, learnable_data_dir, out, *PARAMS, "--trials", 14, "--jobs", 1, "--prune", "hyperband",
              "--set", "seed=1")
    assert r.exit_code == 0, r.output
    rows = saved_rows(out).values()
    assert any(row["status"] == "pruned" for row in rows)
    assert all(row["pruned_epoch"] < 3 for row in rows if row["status"] == "pruned")
    finished = [row for row in rows if round(row["history"][-1]["epoch"]) == 3]
    assert finished and all(row["status"] == "ok" for row in finished), [
        (row["status"], row.get("pruned_epoch")) for row in rows]


def test_the_pruner_is_told_the_accuracy_of_each_epochs_mean_weights(monkeypatch):
    from linclf.training import search_tpe
    from linclf.training.trial import TrialPruned, pruning_callback

    reports, asked = [], []

    class Trial:
        def report(self, value, step):
            reports.append((step, value))

        def should_prune(self):
            asked.append(reports[-1][0])
            return prune

    monkeypatch.setattr(search_tpe, "open_trial", lambda spec, trial_id: Trial())
    state = SimpleNamespace(W=np.zeros((2, 3), np.float32), history=[])
    prune = False
    on_step = pruning_callback({}, 7, 6, lambda W: float(W[0, 0]))
    for step in range(1, 7):                       # 3 steps an epoch; W is the step number
        state.W[:] = step
        state.history.append({"step": step, "epoch": step / 3, "loss": 1.0})
        if step % 3 == 0:
            state.history.append({"step": step, "epoch": step / 3, "val_accuracy": 0.1})
        on_step(state)
    assert reports == [(1, 2.0), (2, 5.0)]         # the means of steps 1-3 and 4-6, not the iterate's 0.1
    assert asked == [1]                            # not asked after the last step

    prune, state.history = True, []
    on_step = pruning_callback({}, 7, 6, lambda W: float(W[0, 0]))
    with pytest.raises(TrialPruned, match=r"pruned at epoch 1 \(val accuracy 3\.0000 of the epoch's mean"):
        for step, w in ((1, 2), (2, 3), (3, 4)):   # mean 3
            state.W[:] = w
            state.history.append({"step": step, "epoch": step / 3, "val_accuracy": 0.1} if step == 3
                                 else {"step": step, "epoch": step / 3, "loss": 1.0})
            on_step(state)


# A sweep whose trials beat every second, that takes another's trial as stopped after 5 s without a heartbeat
# (not 60 s), and that looks at the study every second while it waits.
SHORT_HEARTBEAT = ("import linclf.training.study_storage as s, linclf.training.search_tpe as t; "
                   "s.HEARTBEAT_INTERVAL, s.GRACE_PERIOD, t.POLL_SECONDS = 1, 5, 1; ")


def cli_sweep(config, data_dir, out, url, trials, env, prelude=""):
    """``linclf sweep --search tpe --storage url`` in a process of its own (``prelude``: Python run first)."""
    args = ["sweep", "--config", str(config), "--data-dir", str(data_dir), "--out", str(out), "--quiet",
            "--search", "tpe", "--storage", url, "--trials", str(trials), "--jobs", "1", *PARAMS]
    command = ["-c", f"{prelude}from linclf.cli import main; main({args!r})"] if prelude else ["-m", "linclf", *args]
    proc = subprocess.Popen([sys.executable, *command], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    _STARTED.append(proc)
    return proc


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_two_processes_share_one_study_and_run_exactly_the_budget(tmp_path, config, learnable_data_dir, kind):
    url, log = storage(kind, tmp_path), tmp_path / "trials.txt"
    procs = [cli_sweep(config, learnable_data_dir, tmp_path / f"out{i}", url, 8, hook_env(log)) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    ran = [t for t, _, _ in logged(log)]
    assert sorted(ran) == sorted(set(ran)) and len(ran) == 8                # no trial twice, the budget exactly
    trials = study_trials(url)
    finished = [t for t in trials if t.user_attrs.get("status") != "surplus"]
    assert sorted(t.number for t in finished) == sorted(ran)
    assert all(t.state.name == "COMPLETE" for t in finished)
    for i in range(2):                      # the first to finish waited for the other's trials: both have all
        assert sorted(saved_rows(tmp_path / f"out{i}")) == sorted(ran)


def test_ctrl_c_of_one_process_leaves_the_study_consistent_and_the_other_goes_on(tmp_path, config,
                                                                                learnable_data_dir):
    url, log = storage("journal", tmp_path), tmp_path / "trials.txt"
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    other = cli_sweep(config, learnable_data_dir, tmp_path / "other", url, 6, hook_env(log, LINCLF_TEST_GATE=gate))
    # `other` is inside its first trial, waiting on the gate, when this one starts and is interrupted
    with open(gate, "w") as fh:                       # unblocks only once `other` has opened the gate ...
        stopped = cli_sweep(config, learnable_data_dir, tmp_path / "stopped", url, 6,
                            hook_env(log, LINCLF_TEST_SIGINT=1))
        _, err = stopped.communicate(timeout=300)
        assert stopped.returncode == 130, err
        assert "interrupted" in err and "run the same command again" in err
        fh.write("go")                                # ... and `other` goes on when it is closed
    out, err = other.communicate(timeout=300)
    assert other.returncode == 0, err
    trials = study_trials(url)
    states = {t.number: (t.state.name, t.user_attrs.get("status")) for t in trials}
    interrupted = [n for n, s in states.items() if s == ("FAIL", "interrupted")]
    assert len(interrupted) == 1                                              # told, not left running
    assert not any(s[0] == "RUNNING" for s in states.values())
    assert sum(s == ("COMPLETE", "ok") for s in states.values()) == 6        # the budget, by the other process
    rows = saved_rows(tmp_path / "other")
    assert rows[interrupted[0]]["status"] == "interrupted" and sum(r["status"] == "ok" for r in rows.values()) == 6


def test_an_rdb_storage_holds_the_study_and_a_rerun_resumes_it(tmp_path, config, learnable_data_dir, monkeypatch):
    log = tmp_path / "trials.txt"
    for k, v in hook_env(log).items():
        monkeypatch.setenv(k, v)
    url, out = storage("sqlite", tmp_path), tmp_path / "sweep"
    r = sweep(config, learnable_data_dir, out, *PARAMS, "--trials", 4, "--jobs", 2, "--storage", url)
    assert r.exit_code == 0, r.output
    rows = saved_rows(out)
    assert sorted(rows) == [0, 1, 2, 3] and all(row["status"] == "ok" for row in rows.values())
    assert (tmp_path / "study.db").exists() and not (out / "study.log").exists()
    trials = study_trials(url)
    assert {t.number: (t.state.name, t.value) for t in trials} == \
        {t: ("COMPLETE", row["val_accuracy"]) for t, row in rows.items()}
    assert (out / "best.yaml").exists() and sorted(t for t, _, _ in logged(log)) == [0, 1, 2, 3]

    log.unlink()
    r = sweep(config, learnable_data_dir, out, *PARAMS, "--trials", 4, "--jobs", 2, "--storage", url)
    assert r.exit_code == 0, r.output
    assert logged(log) == [] and saved_rows(out) == rows                      # resumed: nothing left to run
    r = sweep(config, learnable_data_dir, out, *PARAMS, "--trials", 6, "--jobs", 2, "--storage", url)
    assert r.exit_code == 0, r.output
    assert sorted(t for t, _, _ in logged(log)) == [4, 5] and sorted(saved_rows(out)) == list(range(6))

    before = {p.name: p.read_bytes() for p in out.iterdir()}
    r = sweep(config, learnable_data_dir, out, *PARAMS, "--trials", 6, "--jobs", 2)     # --storage forgotten
    assert r.exit_code == 2
    assert f"holds a sweep whose study is in --storage {url}; rerun it with that" in one_line_error(r)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before           # no second study, nothing rewritten


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_a_sigkilled_sweep_leaves_no_trial_running_and_a_rerun_finishes_the_budget(tmp_path, config,
                                                                                 learnable_data_dir, kind):
    url, log, out = storage(kind, tmp_path), tmp_path / "trials.txt", tmp_path / "sweep"
    # --jobs 1 runs trials in the sweep process: trial 2 kills the sweep itself while it holds the trial
    killed = cli_sweep(config, learnable_data_dir, out, url, 4, hook_env(log, LINCLF_TEST_KILL=2))
    _, err = killed.communicate(timeout=300)
    assert killed.returncode == -signal.SIGKILL, err
    stuck = study_trials(url)
    assert [(t.number, t.state.name) for t in stuck] == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "RUNNING")]

    log.unlink()
    rerun = cli_sweep(config, learnable_data_dir, out, url, 4, hook_env(log), prelude=SHORT_HEARTBEAT)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    trials = {t.number: t for t in study_trials(url)}
    assert sorted((n, t.state.name) for n, t in trials.items()) == \
        [(0, "COMPLETE"), (1, "COMPLETE"), (2, "FAIL"), (3, "COMPLETE"), (4, "COMPLETE")]
    retry = next(n for n in (3, 4) if trials[n].params == stuck[2].params)   # trial 2's values, run again
    assert sorted(t for t, _, _ in logged(log)) == [3, 4]                     # the retry and one new trial

    with open(out / "results.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert sorted(int(row["trial"]) for row in table) == [0, 1, 2, 3, 4]    # no trial twice
    assert sum(row["status"] == "ok" for row in table) == 4                 # the budget, exactly
    rows = saved_rows(out)
    assert rows[2]["status"] == "interrupted"
    assert rows[2]["message"] == f"its sweep process stopped before it finished; retried as trial {retry}"
    assert {k: rows[retry][k] for k in ("optimizer.lr", "model.reg")} == stuck[2].params


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_a_process_waits_for_anothers_trial_and_runs_it_again_when_that_process_is_killed(
        tmp_path, config, learnable_data_dir, kind):
    url, log, gate = storage(kind, tmp_path), tmp_path / "trials.txt", tmp_path / "gate"
    os.mkfifo(gate)
    killed = cli_sweep(config, learnable_data_dir, tmp_path / "killed", url, 4,
                       hook_env(log, LINCLF_TEST_GATE=gate), prelude=SHORT_HEARTBEAT)
    with open(gate, "w"):                                  # `killed` now holds trial 0, waiting on the gate
        other = cli_sweep(config, learnable_data_dir, tmp_path / "other", url, 4, hook_env(log),
                          prelude=SHORT_HEARTBEAT)
        # `other` runs the rest of the budget, then says it waits for trial 0 (its stderr is otherwise empty)
        line = other.stderr.readline()
        assert "the study's budget is taken; waiting for trial 0 of other sweep processes" in line, line
        killed.kill()
        assert killed.wait(timeout=60) == -signal.SIGKILL
    out, err = other.communicate(timeout=300)
    assert other.returncode == 0, err
    trials = {t.number: t for t in study_trials(url)}
    assert sorted((n, t.state.name) for n, t in trials.items()) == \
        [(0, "FAIL"), (1, "COMPLETE"), (2, "COMPLETE"), (3, "COMPLETE"), (4, "COMPLETE")]
    assert trials[4].params == trials[0].params                               # trial 0's values, run again
    assert sorted(t for t, _, _ in logged(log)) == [0, 1, 2, 3, 4]            # each started once
    rows = saved_rows(tmp_path / "other")
    assert sorted(rows) == [0, 1, 2, 3, 4] and sum(r["status"] == "ok" for r in rows.values()) == 4
    assert rows[0]["message"] == "its sweep process stopped before it finished; retried as trial 4"


def test_a_journal_trial_of_another_machine_is_left_running_with_a_one_line_warning(tmp_path, config,
                                                                                    learnable_data_dir):
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    url, out = storage("journal", tmp_path), tmp_path / "sweep"
    killed = cli_sweep(config, learnable_data_dir, out, url, 4, hook_env(tmp_path / "trials.txt", LINCLF_TEST_KILL=2))
    _, err = killed.communicate(timeout=300)
    assert killed.returncode == -signal.SIGKILL, err
    # as if the killed sweep had run on another machine that shares the journal file
    journal = JournalStorage(JournalFileBackend(url[len("journal:"):]))
    (summary,) = optuna.get_all_study_summaries(journal)
    trial_id = journal.get_trial_id_from_study_id_trial_number(journal.get_study_id_from_name(summary.study_name), 2)
    journal.set_trial_user_attr(trial_id, "sweep_process", "elsewhere:4242")

    r = sweep(config, learnable_data_dir, out, *PARAMS, "--trials", 4, "--jobs", 1, "--storage", url)
    assert r.exit_code == 0, r.output
    assert [line for line in r.output.splitlines() if line.startswith("warning:")] == [
        "warning: trial 2 of the study is still running in a sweep process on elsewhere; a journal storage has no "
        "heartbeats, so if that process was killed the trial stays running and uncounted; use an RDB storage "
        "(--storage postgresql://...) for sweeps on several machines"]
    assert [(t.number, t.state.name) for t in study_trials(url)] == \
        [(0, "COMPLETE"), (1, "COMPLETE"), (2, "RUNNING"), (3, "COMPLETE")]       # not judged, not taken over
    assert sorted(saved_rows(out)) == [0, 1, 3]


def test_an_owner_tag_names_one_process_not_a_reused_pid():
    from linclf.training.study_storage import owner_stopped, owner_tag

    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    _STARTED.append(child)
    host, pid_start = owner_tag().rsplit(":", 1)
    pid, start = pid_start.split("@")
    assert pid == str(os.getpid()) and start.isdigit()
    with open(f"/proc/{child.pid}/stat") as f:
        child_start = f.read().rpartition(")")[2].split()[19]
    assert owner_stopped(f"{host}:{child.pid}@{child_start}") is False       # alive, the same process
    assert owner_stopped(f"{host}:{child.pid}") is False                     # a tag of an older linclf
    assert owner_stopped(f"{host}:{child.pid}@{int(child_start) - 1}") is True   # its pid, another process
    assert owner_stopped(f"elsewhere:{child.pid}@{child_start}") is None     # another machine: not judged
    child.communicate(b"")
    assert owner_stopped(f"{host}:{child.pid}@{child_start}") is True        # gone


def test_an_sqlite_storage_in_a_folder_not_made_yet_is_made(tmp_path, config, learnable_data_dir):
    db = tmp_path / "sweeps" / "new" / "study.db"
    r = sweep(config, learnable_data_dir, tmp_path / "sweep", *PARAMS, "--trials", 2, "--jobs", 1,
              "--storage", f"sqlite:///{db}")
    assert r.exit_code == 0, r.output
    assert db.is_file() and len(study_trials(f"sqlite:///{db}")) == 2
