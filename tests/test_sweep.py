"""Hyperparameter sweeps: spec parsing, trial sampling, and real parallel sweeps through the CLI."""
from __future__ import annotations

import csv
import json
import math
import os
import signal

import numpy as np
import pytest

from conftest import invoke, one_line_error, small_config
from sweep_hooks import logged

import linclf.training.sweep as sweep_mod
from linclf.config import Config, from_dict, load_config, with_values
from linclf.data.cifar10 import CIFAR10
from linclf.errors import ConfigError, UsageError
from linclf.training.sweep_params import DEFAULT_TRIALS, ParamSpec, parse_spec, sample_trials, sweep_rng, trial_configs
from linclf.training.sweep_results import format_table

CONFIG = small_config(epochs=2, log_every=5, schedule="constant")
LR_REG = ("--param", "optimizer.lr=log:1e-5:1e-2", "--param", "model.reg=log:1e-4:1e-1")


def sweep(config, data_dir, out, *extra):
    return invoke("sweep", "--config", config, "--data-dir", data_dir, "--out", out, "--quiet", *extra)


def saved_rows(out):
    return json.loads((out / "results.json").read_text())


def spy_on_trials(monkeypatch, log):
    """Record every trial that starts (in whichever process runs it): ``trained_seeds(log)``."""
    monkeypatch.setenv("LINCLF_SWEEP_HOOK", "sweep_hooks:hook")
    monkeypatch.setenv("LINCLF_TEST_LOG", str(log))


def trained_seeds(log):
    return [str(seed) for _, seed, _ in logged(log)]


# ------------------------------------------------------------------ specs


def test_parse_each_kind():
    assert parse_spec("optimizer.lr=log:1e-4:3e-3") == ParamSpec("optimizer.lr", "log", 1e-4, 3e-3)
    assert parse_spec(" model.reg = uniform:0:0.5") == ParamSpec("model.reg", "uniform", 0.0, 0.5)
    assert parse_spec("model.reg=grid:1e-3,0.01,1").values == (0.001, 0.01, 1.0)   # YAML "1e-3" read as a number
    assert parse_spec("optimizer.update=choice:sgd,momentum,adam").values == ("sgd", "momentum", "adam")
    assert parse_spec("preprocess.std=choice:true,false").values == (True, False)
    batch = parse_spec("optimizer.batch_size=log:16:512")
    assert batch.integer and batch.kind == "log"
    assert str(parse_spec("optimizer.lr=log:1e-4:3e-3")) == "optimizer.lr=log:0.0001:0.003"


@pytest.mark.parametrize("text, needle", [
    ("optimizer.lr", "expected KEY=SPEC"),
    ("optimizer.lr=", "expected KEY=SPEC"),
    ("=log:1:2", "expected KEY=SPEC"),
    ("optimizer.lr=log:1e-4", "expected log:LOW:HIGH"),
    ("optimizer.lr=log:1e-4:1e-3:1", "expected log:LOW:HIGH"),
    ("optimizer.lr=log:a:1", "LOW 'a' is not a number"),
    ("optimizer.lr=uniform:nan:1", "must be finite"),
    ("optimizer.lr=log:0:1", "LOW > 0"),
    ("model.reg=log:-1:1", "LOW > 0"),
    ("optimizer.lr=uniform:2:1", "LOW must be less than HIGH"),
    ("optimizer.lr=log:1e-3:1e-3", "LOW must be less than HIGH"),
    ("optimizer.lr=logg:1:2", "did you mean 'log'"),
    ("optimizer.lr=1e-3", "SPEC must start with"),
    ("optimizer.lr=grid:", "no empty value"),
    ("optimizer.lr=grid:1,,2", "no empty value"),
    ("optimizer.lr=grid:1e-3,0.001", "given twice"),
    ("optimizer.update=log:1:2", "not a number"),
    ("optimizer.batch_size=uniform:1.2:1.8", "no integer"),
    ("optimizer.update=choice:sgd,adamm", "did you mean 'adam'"),
    ("optimizer.lr=uniform:-1:1", "optimizer.lr: expected a number > 0"),
    ("optimizer.momentum=uniform:0.5:1", "optimizer.momentum"),
    ("optimizer.batch_size=grid:0,32", "optimizer.batch_size"),
])
def test_malformed_specs_are_usage_errors(text, needle):
    with pytest.raises(UsageError) as e:
        parse_spec(text)
    assert needle in str(e.value) and e.value.exit_code == 2


@pytest.mark.parametrize("text, hint", [
    ("optimizer.lrr=log:1e-4:1e-3", "did you mean 'optimizer.lr'"),
    ("lr=log:1e-4:1e-3", "did you mean 'optimizer.lr'"),
    ("modle.reg=log:1e-4:1e-3", "did you mean 'model.reg'"),
    ("optimizer.init_scale=log:1e-4:1e-2", "did you mean 'model.init_scale'"),
    ("nothing=grid:1,2", "keys look like section.key"),
    ("data.num_val=grid:10,20", "cannot be swept"),
    ("data.dir=choice:a,b", "cannot be swept"),
])
def test_bad_keys_are_config_errors_with_a_hint(text, hint):
    with pytest.raises(ConfigError) as e:
        parse_spec(text)
    assert hint in str(e.value)


# ----------------------------------------------------------------- trials


def test_grid_is_the_full_product_in_order():
    params = [parse_spec("optimizer.lr=grid:1e-4,1e-3"), parse_spec("model.reg=grid:0,0.1,1")]
    trials = sample_trials(params, None, sweep_rng(0))
    assert trials == [{"optimizer.lr": lr, "model.reg": reg} for lr in (1e-4, 1e-3) for reg in (0.0, 0.1, 1.0)]
    with pytest.raises(UsageError, match="--trials does not apply .* all 6 combinations"):
        sample_trials(params, 6, sweep_rng(0))


def test_random_draws_stay_in_bounds_and_log_is_uniform_in_log_space():
    params = [parse_spec("optimizer.lr=log:1e-6:1"), parse_spec("model.reg=uniform:2:4"),
              parse_spec("optimizer.batch_size=log:16:512"), parse_spec("optimizer.update=choice:sgd,adam"),
              parse_spec("model.delta=grid:1,2")]
    trials = sample_trials(params, 4000, sweep_rng(0))
    lr = np.array([t["optimizer.lr"] for t in trials])
    reg = np.array([t["model.reg"] for t in trials])
    batch = np.array([t["optimizer.batch_size"] for t in trials])
    assert lr.min() >= 1e-6 and lr.max() <= 1 and reg.min() >= 2 and reg.max() <= 4
    assert abs(np.mean(np.log10(lr)) + 3) < 0.1                 # uniform in log10: mean -3
    assert abs(np.mean(lr < 1e-3) - 0.5) < 0.05                  # linear-uniform would give 0.001
    assert abs(np.mean(reg) - 3) < 0.05 and abs(np.mean(reg < 2.5) - 0.25) < 0.03
    assert batch.dtype.kind == "i" and batch.min() >= 16 and batch.max() <= 512
    assert {t["optimizer.update"] for t in trials} == {"sgd", "adam"}
    assert {t["model.delta"] for t in trials} == {1.0, 2.0}     # a grid among random specs: drawn from


def test_draws_are_reproducible_from_the_seed_and_a_longer_sweep_extends_a_shorter_one():
    params = [parse_spec("optimizer.lr=log:1e-5:1e-2"), parse_spec("model.reg=uniform:0:1")]
    a = sample_trials(params, 10, sweep_rng(0))
    assert a == sample_trials(params, 10, sweep_rng(0))
    assert a != sample_trials(params, 10, sweep_rng(1))
    assert sample_trials(params, 25, sweep_rng(0))[:10] == a
    assert len(sample_trials(params, None, sweep_rng(0))) == DEFAULT_TRIALS


def test_trial_configs_get_their_own_seed_and_every_value_is_validated():
    cfg = with_values(Config(), {"seed": 7})
    cfgs = trial_configs(cfg, [{"optimizer.lr": 0.1}, {"optimizer.lr": 0.2, "seed": 3}])
    assert [c.seed for c in cfgs] == [8, 3] and [c.optimizer.lr for c in cfgs] == [0.1, 0.2]
    top = with_values(Config(), {"seed": 2**32 - 1})                # the largest seed: its trials wrap to 0, 1
    assert [c.seed for c in trial_configs(top, [{}, {}])] == [0, 1]
    bad = ParamSpec("optimizer.lr", "uniform", -2.0, -1.0)      # bypasses parse_spec's check of the bounds
    with pytest.raises(ConfigError, match=r"trial 0 .*optimizer\.lr: expected a number > 0"):
        trial_configs(cfg, sample_trials([bad], 3, sweep_rng(0)))


def test_table_is_aligned_and_keeps_the_order():
    rows = [{"trial": 1, "optimizer.lr": 0.001, "val_accuracy": 0.5, "train_accuracy": 0.6, "final_loss": 1.2,
             "status": "ok", "seconds": 2.0},
            {"trial": 0, "optimizer.lr": 1e30, "val_accuracy": None, "train_accuracy": None, "final_loss": None,
             "status": "diverged", "seconds": 0.1}]
    lines = format_table(rows, ["optimizer.lr"]).splitlines()
    assert lines[0].split() == ["trial", "optimizer.lr", "val_accuracy", "train_accuracy", "final_loss", "status",
                                "seconds"]
    assert lines[1].split()[:3] == ["1", "0.001", "0.5000"] and lines[2].split()[5] == "diverged"


# ------------------------------------------------------------- real sweeps


def test_sweep_in_parallel_writes_sorted_results_and_a_best_config(tmp_path, config, learnable_data_dir,
                                                                   monkeypatch):
    log = tmp_path / "trained.txt"
    spy_on_trials(monkeypatch, log)
    out = tmp_path / "sweep"
    r = sweep(config, learnable_data_dir, out, *LR_REG, "--trials", 4, "--jobs", 2)
    assert r.exit_code == 0, r.output

    with open(out / "results.csv", newline="") as fh:
        table = list(csv.reader(fh))
    assert table[0] == ["trial", "optimizer.lr", "model.reg", "val_accuracy", "train_accuracy", "final_loss",
                        "status", "seconds"]
    assert sorted(int(row[0]) for row in table[1:]) == [0, 1, 2, 3]
    assert all(row[6] == "ok" for row in table[1:])
    vals = [float(row[3]) for row in table[1:]]
    assert vals == sorted(vals, reverse=True)

    rows = saved_rows(out)
    assert [row["trial"] for row in rows] == [int(row[0]) for row in table[1:]]
    pids = {row["worker_pid"] for row in rows}
    assert len(pids) == 2 and os.getpid() not in pids                      # two worker processes
    assert {pid for _, _, pid in logged(log)} == pids
    for row in rows:
        assert row["config"]["seed"] == 1 + row["trial"]                    # seed + 1 + trial
        assert row["config"]["optimizer"]["lr"] == row["optimizer.lr"]
        assert row["history"] and row["history"][-1]["val_accuracy"] is not None
        assert 1e-5 <= row["optimizer.lr"] <= 1e-2 and 1e-4 <= row["model.reg"] <= 1e-1

    printed = r.output.strip().splitlines()                                  # --quiet: the table only
    assert printed[0].split()[:3] == ["trial", "optimizer.lr", "model.reg"] and len(printed) == 5
    assert [int(line.split()[0]) for line in printed[1:]] == [row["trial"] for row in rows]

    best = load_config(out / "best.yaml")
    assert best == from_dict(rows[0]["config"]) and best.seed == 1 + rows[0]["trial"]
    assert rows[0]["val_accuracy"] == max(vals) >= 0.9
    r = invoke("train", "--config", out / "best.yaml", "--out", tmp_path / "run", "--quiet", "--json")
    assert r.exit_code == 0, r.output                                       # data.dir is in best.yaml
    assert json.loads(r.output)["val_accuracy"] == pytest.approx(rows[0]["val_accuracy"])


def test_the_test_split_is_never_read(tmp_path, config, learnable_data_dir, monkeypatch):
    class Poisoned(np.ndarray):
        """Test images any computation with raises on (slicing still works)."""

        def __array_ufunc__(self, *args, **kwargs):
            raise AssertionError("the test split was read")

        def __array_function__(self, *args, **kwargs):
            raise AssertionError("the test split was read")

        def astype(self, *args, **kwargs):
            raise AssertionError("the test split was read")

        def __array__(self, *args, **kwargs):
            raise AssertionError("the test split was read")

    real_load = sweep_mod.load_data

    def poisoned_load(*args, **kwargs):
        d = real_load(*args, **kwargs)
        return CIFAR10(d.X_train, d.y_train, np.asarray(d.X_test).view(Poisoned),
                       np.asarray(d.y_test).view(Poisoned), d.classes)

    with pytest.raises(AssertionError, match="the test split was read"):
        np.mean(np.zeros((2, 2)).view(Poisoned))
    monkeypatch.setattr(sweep_mod, "load_data", poisoned_load)          # the data trials in this process use
    out = tmp_path / "sweep"
    r = sweep(config, learnable_data_dir, out, *LR_REG, "--trials", 2, "--jobs", 1)
    assert r.exit_code == 0, r.output
    assert [row["status"] for row in saved_rows(out)] == ["ok", "ok"], saved_rows(out)


def test_resume_runs_only_the_missing_trials(tmp_path, config, learnable_data_dir, monkeypatch):
    out = tmp_path / "sweep"
    log = tmp_path / "trained.txt"
    spy_on_trials(monkeypatch, log)
    assert sweep(config, learnable_data_dir, out, *LR_REG, "--trials", 4, "--jobs", 2).exit_code == 0
    assert sorted(trained_seeds(log)) == ["1", "2", "3", "4"]
    rows = saved_rows(out)
    kept = [row for row in rows if row["trial"] in (0, 2)]
    (out / "results.json").write_text(json.dumps(kept))
    log.unlink()

    r = sweep(config, learnable_data_dir, out, *LR_REG, "--trials", 4, "--jobs", 2)
    assert r.exit_code == 0, r.output
    assert sorted(trained_seeds(log)) == ["2", "4"]                   # trials 1 and 3 (seed 1 + trial)
    again = {row["trial"]: row for row in saved_rows(out)}
    assert sorted(again) == [0, 1, 2, 3]
    for row in kept:
        assert again[row["trial"]] == row                                   # untouched, same pid and seconds
    before = {row["trial"]: row for row in rows}
    for t in (1, 3):
        assert again[t]["optimizer.lr"] == before[t]["optimizer.lr"] and again[t]["config"] == before[t]["config"]

    log.unlink()
    r = sweep(config, learnable_data_dir, out, *LR_REG, "--trials", 6, "--jobs", 2)   # a longer sweep: 2 more
    assert r.exit_code == 0, r.output
    assert sorted(trained_seeds(log)) == ["5", "6"]
    assert len(saved_rows(out)) == 6 and len((out / "results.csv").read_text().splitlines()) == 7


def test_resume_refuses_another_sweep_in_the_folder(tmp_path, config, learnable_data_dir):
    out = tmp_path / "sweep"
    assert sweep(config, learnable_data_dir, out, *LR_REG, "--trials", 2, "--jobs", 2).exit_code == 0
    before = (out / "results.json").read_text()
    r = sweep(config, learnable_data_dir, out, "--param", "optimizer.lr=log:1e-5:1e-1", "--trials", 2)
    assert r.exit_code == 2 and "holds a sweep of --param optimizer.lr=log:1e-05:0.01" in one_line_error(r)
    r = sweep(config, learnable_data_dir, out, *LR_REG, "--trials", 2, "--set", "optimizer.epochs=3")
    assert r.exit_code == 2 and "optimizer.epochs=2.0" in one_line_error(r) and "3.0" in one_line_error(r)
    r = sweep(config, learnable_data_dir, out, *LR_REG, "--trials", 2, "--set", "seed=5")
    assert r.exit_code == 2 and "holds another sweep" in one_line_error(r)
    assert (out / "results.json").read_text() == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    r = sweep(config, learnable_data_dir, tmp_path / "other", *LR_REG, "--trials", 2)
    assert r.exit_code == 2 and "holds no sweep" in one_line_error(r)


# A test suite started as a background job of a script (`pytest ... &`, as CI once ran two suites side by side)
# inherits SIGINT ignored: the sweep must stop on it all the same (it "lost its race" there, ignoring it).
@pytest.mark.parametrize("inherited", [signal.default_int_handler, signal.SIG_IGN], ids=["default", "ignored"])
def test_ctrl_c_exits_130_keeps_finished_trials_and_the_rerun_finishes(tmp_path, config, learnable_data_dir,
                                                                        monkeypatch, inherited):
    out = tmp_path / "sweep"
    real_save = sweep_mod.save_results
    calls = []

    def save_then_ctrl_c(*args):
        real_save(*args)
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)       # in this process, after the first trial is saved

    monkeypatch.setattr(sweep_mod, "save_results", save_then_ctrl_c)
    previous = signal.signal(signal.SIGINT, inherited)
    try:
        r = sweep(config, learnable_data_dir, out, *LR_REG, "--trials", 6, "--jobs", 2)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert r.exit_code == 130, r.output
    assert len(calls) == 2                            # the first save, then the one of the interrupted sweep
    assert "interrupted" in r.output and "run the same command again" in r.output
    first = {row["trial"]: row for row in saved_rows(out)}
    assert 1 <= len(first) < 6

    monkeypatch.setattr(sweep_mod, "save_results", real_save)
    log = tmp_path / "trained.txt"
    spy_on_trials(monkeypatch, log)
    r = sweep(config, learnable_data_dir, out, *LR_REG, "--trials", 6, "--jobs", 2)
    assert r.exit_code == 0, r.output
    assert sorted(int(s) - 1 for s in trained_seeds(log)) == sorted(set(range(6)) - set(first))
    final = {row["trial"]: row for row in saved_rows(out)}
    assert sorted(final) == list(range(6)) and all(final[t] == first[t] for t in first)


def test_a_diverging_trial_is_recorded_and_the_sweep_succeeds(tmp_path, config, learnable_data_dir):
    out = tmp_path / "sweep"
    r = sweep(config, learnable_data_dir, out, "--set", "optimizer.update=sgd",
              "--param", "optimizer.lr=grid:1e-3,1e30", "--jobs", 1)
    assert r.exit_code == 0, r.output
    rows = saved_rows(out)
    assert [(row["optimizer.lr"], row["status"]) for row in rows] == [(1e-3, "ok"), (1e30, "diverged")]
    assert "at step" in rows[1]["message"] and rows[1]["val_accuracy"] is None
    assert rows[0]["worker_pid"] == os.getpid()                             # --jobs 1 runs in this process
    assert load_config(out / "best.yaml").optimizer.lr == 1e-3
    last = (out / "results.csv").read_text().splitlines()[-1].split(",")
    assert last[1:] [:1] == ["1e+30"] and last[2:5] == ["", "", ""] and last[5] == "diverged"

    r = sweep(config, learnable_data_dir, tmp_path / "all-bad", "--set", "optimizer.update=sgd",
              "--param", "optimizer.lr=grid:1e30", "--jobs", 1)
    assert r.exit_code == 1 and "no trial finished ok (1 diverged" in one_line_error(r)


def test_a_failing_trial_is_recorded_with_its_message(tmp_path, config, learnable_data_dir, monkeypatch):
    monkeypatch.setenv("LINCLF_SWEEP_HOOK", "sweep_hooks:hook")
    monkeypatch.setenv("LINCLF_TEST_FAIL_REG", "0.5")                   # in the worker processes
    out = tmp_path / "sweep"
    r = sweep(config, learnable_data_dir, out, "--param", "model.reg=grid:0.001,1", "--jobs", 2)
    assert r.exit_code == 0, r.output
    rows = saved_rows(out)
    assert [row["status"] for row in rows] == ["ok", "failed"]
    assert rows[1]["message"] == "MemoryError: out of memory (simulated)"


@pytest.mark.parametrize("args, code, needle", [
    (["--param", "optimizer.lr=grid:1e-3,1e-2", "--trials", 3], 2, "--trials does not apply"),
    (["--param", "optimizer.lrr=log:1e-4:1e-3"], 2, "did you mean 'optimizer.lr'"),
    (["--param", "optimizer.lr=log:0:1e-3"], 2, "LOW > 0"),
    (["--param", "optimizer.lr=log:1e-4:1e-3", "--set", "data.num_val=0"], 2, "data.num_val"),
    (["--param", "data.num_train=grid:100,100000"], 2, "trial 1: data.num_train"),
    (["--param", "optimizer.lr=log:1e-4:1e-3", "--param", "optimizer.lr=log:1e-4:1e-3"], 2, "more than once"),
    ([], 2, "--param"),
])
def test_usage_and_config_errors_exit_2(tmp_path, config, learnable_data_dir, args, code, needle):
    r = sweep(config, learnable_data_dir, tmp_path / "sweep", *args)
    assert r.exit_code == code, r.output
    assert needle in r.output and "Traceback" not in r.output
    assert not (tmp_path / "sweep" / "results.json").exists()


def test_help_and_default_out(tmp_path, config, learnable_data_dir, monkeypatch):
    r = invoke("sweep", "--help")
    assert r.exit_code == 0 and "log:LOW:HIGH" in r.output and "--jobs" in r.output
    monkeypatch.chdir(tmp_path)
    r = invoke("sweep", "--config", config, "--data-dir", learnable_data_dir, "--param", "model.reg=grid:0.001",
               "--jobs", 1)
    assert r.exit_code == 0, r.output
    (folder,) = (tmp_path / "runs").iterdir()
    assert folder.name.startswith("sweep-small-") and (folder / "best.yaml").exists()
    assert f"sweep folder: {os.path.join('runs', folder.name)}" in r.output
    assert math.isfinite(saved_rows(folder)[0]["final_loss"])


def test_a_folder_left_by_a_config_error_can_be_reused(tmp_path, config, learnable_data_dir):
    out = tmp_path / "sweep"
    r = sweep(config, learnable_data_dir, out, "--param", "data.num_train=grid:100,100000")
    assert r.exit_code == 2 and "data.num_train: 100000 is more than" in one_line_error(r)
    r = sweep(config, learnable_data_dir, out, "--param", "data.num_train=grid:100,200", "--jobs", 2)
    assert r.exit_code == 0, r.output
    assert sorted(row["data.num_train"] for row in saved_rows(out)) == [100, 200]


def test_spawned_workers_map_the_data_themselves(tmp_path, config, learnable_data_dir, monkeypatch):
    out = tmp_path / "sweep"
    r = sweep(config, learnable_data_dir, out, "--param", "model.reg=grid:0.001,0.01", "--jobs", 2)
    assert r.exit_code == 0, r.output
    rows = saved_rows(out)
    assert [row["status"] for row in rows] == ["ok", "ok"] and os.getpid() not in {r["worker_pid"] for r in rows}


def test_a_kmeans_sweep_fits_the_features_once_with_the_sweeps_seed(tmp_path, learnable_data_dir):
    config = tmp_path / "km.yaml"
    config.write_text(CONFIG + "features:\n  kind: kmeans\n  k: 8\n  patches: 2000\n  iterations: 3\n")
    out = tmp_path / "sweep"
    r = sweep(config, learnable_data_dir, out, *LR_REG, "--trials", 3, "--jobs", 2)
    assert r.exit_code == 0, r.output
    rows = saved_rows(out)
    assert [row["status"] for row in rows] == ["ok"] * 3 and {row["config"]["seed"] for row in rows} == {1, 2, 3}
    fitted = list((learnable_data_dir / "features-cache").glob("fit-kmeans-*.npz"))
    assert len(fitted) == 1                                # not one per trial seed


def test_a_flip_average_sweep_scores_validation_as_its_run_does(tmp_path, learnable_data_dir):
    """model.flip_average: a trial's validation accuracy is the mean-of-mirrors one its run reports. Learning
    rates near 0 keep W near its random start, where the mirror changes many predictions."""
    config = tmp_path / "flip.yaml"
    config.write_text(CONFIG.replace("model:\n", "model:\n  flip_average: true\n"))
    out = tmp_path / "sweep"
    r = sweep(config, learnable_data_dir, out, "--param", "optimizer.lr=log:1e-12:1e-11", "--trials", 1,
              "--jobs", 1)
    assert r.exit_code == 0, r.output
    (row,) = saved_rows(out)
    assert row["status"] == "ok"
    runs = {}
    for name, flip in (("run", "true"), ("plain", "false")):
        r = invoke("train", "--config", out / "best.yaml", "--set", f"model.flip_average={flip}",
                   "--out", tmp_path / name, "--quiet", "--json")
        assert r.exit_code == 0, r.output
        runs[name] = json.loads(r.stdout.strip().splitlines()[-1])["val_accuracy"]
    assert runs["run"] == row["val_accuracy"] != runs["plain"]            # the mirror matters here


def test_a_flip_average_kmeans_sweep_builds_the_mirrors_features_once(tmp_path, learnable_data_dir):
    config = tmp_path / "km.yaml"
    config.write_text(CONFIG.replace("model:\n", "model:\n  flip_average: true\n")
                      + "features:\n  kind: kmeans\n  k: 8\n  patches: 2000\n  iterations: 3\n")
    r = sweep(config, learnable_data_dir, tmp_path / "sweep", *LR_REG, "--trials", 2, "--jobs", 2)
    assert r.exit_code == 0, r.output
    assert [row["status"] for row in saved_rows(tmp_path / "sweep")] == ["ok", "ok"]
    entries = list((learnable_data_dir / "features-cache").glob("kmeans-*/*.npy"))
    assert len(entries) == 3                               # train, val and the validation images' mirrors


# ------------------------------------------------------------------ feature files (kind npz)


def _feature_file(path, separable=True, seed=0, n=300, m=60, D=12):
    """A 3-class feature file; ``separable``: labels a linear probe learns, else labels drawn at random."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((3, D)) * (4 if separable else 0)
    y_train, y_test = rng.integers(0, 3, n), rng.integers(0, 3, m)
    np.savez(path, X_train=(centers[y_train] + rng.standard_normal((n, D))).astype(np.float32), y_train=y_train,
             X_test=(centers[y_test] + rng.standard_normal((m, D))).astype(np.float32), y_test=y_test)
    return path


def _probe_config(path):
    return from_dict({"data": {"num_val": 60}, "features": {"kind": "npz", "path": str(path)},
                      "model": {"loss": "softmax", "reg": 0.001},
                      "optimizer": {"update": "adam", "lr": 1e-2, "batch_size": 32, "epochs": 3}})


@pytest.fixture
def fresh_trial_caches():
    """The trial module's per-process data caches, empty before and after the test."""
    from linclf.training.trial import set_data

    set_data({}, None)
    yield
    set_data({}, None)


def test_a_worker_in_another_directory_reads_the_sweeps_relative_feature_file(tmp_path, monkeypatch,
                                                                             fresh_trial_caches):
    """A Dask worker runs in its own folder: the task names the feature file by its absolute path."""
    from linclf.config import to_dict
    from linclf.training.trial import data_location, run_trial

    (tmp_path / "cfg").mkdir()
    (tmp_path / "elsewhere").mkdir()
    _feature_file(tmp_path / "cfg" / "emb.npz")
    monkeypatch.chdir(tmp_path / "cfg")
    cfg = _probe_config("emb.npz")
    location = data_location(cfg, tmp_path / "d")
    monkeypatch.chdir(tmp_path / "elsewhere")
    res = run_trial({"trial": 0, "config": to_dict(cfg), "data": location})
    assert res["status"] == "ok", res["message"]
    assert res["val_accuracy"] > 0.9


def test_a_worker_keeps_the_feature_files_of_two_sweeps_apart(tmp_path, fresh_trial_caches):
    """A Dask worker outlives a sweep: the next sweep's trials read their own feature file, not the rows
    the worker loaded for the last one."""
    from linclf.config import to_dict
    from linclf.training.trial import data_location, run_trial

    val = {}
    for name, separable in (("noise", False), ("signal", True)):
        cfg = _probe_config(_feature_file(tmp_path / f"{name}.npz", separable=separable))
        res = run_trial({"trial": 0, "config": to_dict(cfg), "data": data_location(cfg, tmp_path / "d")})
        assert res["status"] == "ok", res["message"]
        val[name] = res["val_accuracy"]
    assert val["noise"] < 0.6 and val["signal"] > 0.9


def test_the_best_config_of_a_probe_sweep_trains_from_any_directory(tmp_path, monkeypatch, fresh_trial_caches):
    """best.yaml records the feature file (and the data folder) absolute, as a run's config.yaml does."""
    from linclf.config import to_yaml

    (tmp_path / "cfg").mkdir()
    (tmp_path / "elsewhere").mkdir()
    f = _feature_file(tmp_path / "cfg" / "emb.npz")
    (tmp_path / "cfg" / "probe.yaml").write_text(to_yaml(_probe_config("emb.npz")))
    monkeypatch.chdir(tmp_path / "cfg")
    r = sweep("probe.yaml", tmp_path / "d", tmp_path / "sw", "--param", "model.reg=grid:0.001,0.01", "--jobs", "1")
    assert r.exit_code == 0, r.output
    monkeypatch.chdir(tmp_path / "elsewhere")
    best = load_config(tmp_path / "sw" / "best.yaml")
    assert best.features.path == str(f) and os.path.isabs(best.data.dir)
    r = invoke("train", "--config", tmp_path / "sw" / "best.yaml", "--out", tmp_path / "run", "--quiet")
    assert r.exit_code == 0, r.output


def test_a_worker_fits_the_preprocessing_of_each_data_folder_apart(tmp_path, monkeypatch, fresh_trial_caches):
    """Two sweeps with the same settings on two data folders, one long-lived worker: each trial is standardised
    with its own training split's statistics, not the first sweep's."""
    from conftest import binary_members, make_arrays, write_tar_gz

    import linclf.training.trial as trial_mod
    from linclf.config import to_dict
    from linclf.data.cifar10 import load_cifar10
    from linclf.training.trial import data_location

    fitted = []
    real_fit = trial_mod.fit
    monkeypatch.setattr(trial_mod, "fit", lambda X, **kw: (fitted.append(float(X.mean())), real_fit(X, **kw))[1])
    cfg = load_config(None, ["preprocess.std=true", "optimizer.iterations=5", "data.num_val=20"])
    for seed in (1, 2):
        fake = make_arrays(per_batch=20, n_test=10, seed=seed, separable=True)
        archive = tmp_path / f"a{seed}.tar.gz"
        md5 = write_tar_gz(archive, binary_members(fake))
        load_cifar10(tmp_path / f"d{seed}", archive=archive, md5=md5)
        for trial in (0, 1):                                    # the second trial of a sweep reuses its fit
            task = {"trial": trial, "config": to_dict(cfg), "data": data_location(cfg, tmp_path / f"d{seed}")}
            assert trial_mod.run_trial(task)["status"] == "ok"
    assert len(fitted) == 2 and fitted[0] != fitted[1]
