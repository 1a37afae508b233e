"""The commands as a user runs them: exit codes, one-line errors, outputs on disk."""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import invoke, one_line_error, small_config, train_cli

import linclf.core.gradcheck as gradcheck_mod
import linclf.training.runs as runs_mod
from linclf.training.evaluate import model_config
from linclf.training.run_data import load_data, make_splits
from linclf.core.model import LinearClassifier, save_npz_atomic

CONFIG = small_config()


def test_help_lists_every_command():
    r = invoke("--help")
    assert r.exit_code == 0
    for name in ("download", "train", "eval", "gradcheck", "config"):
        assert name in r.output
    for name in ("download", "train", "eval", "gradcheck", "config"):
        assert invoke(name, "--help").exit_code == 0


def test_python_dash_m_and_console_script():
    r = subprocess.run([sys.executable, "-m", "linclf", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and "linclf" in r.stdout


def test_config_prints_the_resolved_config(config):
    r = invoke("config", "--config", config, "--set", "optimizer.lr=2e-3")
    assert r.exit_code == 0
    assert "lr: 0.002" in r.output and "loss: softmax" in r.output and "reg_bias: true" in r.output


@pytest.mark.parametrize("args, code, text", [
    (["config", "--set", "optimizer.lr=-1"], 2, "optimizer.lr"),
    (["config", "--config", "/nonexistent.yaml"], 2, "does not exist"),
    (["config", "--set", "optimizer.lrr=1"], 2, "did you mean 'lr'"),
    (["train", "--set", "model.loss=hinge"], 2, "model.loss"),
])
def test_config_errors_exit_2_in_one_line(args, code, text):
    r = invoke(*args)
    assert r.exit_code == code
    assert text in one_line_error(r)


@pytest.mark.parametrize("args, env, text", [
    (["--workers", "0", "config"], {}, "0 is not in the range"),
    (["config"], {"LINCLF_WORKERS": "two"}, "$LINCLF_WORKERS must be a positive integer (CPUs to use), got 'two'"),
    (["config"], {"LINCLF_WORKERS": "0"}, "$LINCLF_WORKERS must be a positive integer (CPUs to use), got '0'"),
])
def test_bad_workers_exit_2(args, env, text):
    r = subprocess.run([sys.executable, "-m", "linclf", *args], capture_output=True, text=True,
                       env={**os.environ, **env})
    assert r.returncode == 2 and text in r.stderr


def test_workers_reach_the_training_loop(tmp_path, config, learnable_data_dir, monkeypatch):
    """--workers N, else $LINCLF_WORKERS, is what the training loop gets, and the weights do not depend on it."""
    from linclf.training import runs as runs_module
    from linclf.threads import resolve_workers

    seen = []
    original = runs_module.train

    def recording(*args, **kwargs):
        seen.append(resolve_workers(kwargs["workers"]))
        return original(*args, **kwargs)

    monkeypatch.setattr(runs_module, "train", recording)
    runs = []
    for flags, env in ((["--workers", "1"], None), (["--workers", "2"], None), ([], "3")):
        if env is None:
            monkeypatch.delenv("LINCLF_WORKERS", raising=False)
        else:
            monkeypatch.setenv("LINCLF_WORKERS", env)
        out = tmp_path / f"run{len(runs)}"
        r = invoke(*flags, "train", "--config", config, "--data-dir", learnable_data_dir, "--out", out,
                   "--quiet", "--set", "optimizer.batch_size=128")
        assert r.exit_code == 0, r.output
        runs.append(np.load(out / "model.npz", allow_pickle=False)["W"])
    assert seen == [1, 2, 3]
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_array_equal(runs[0], runs[2])


def test_train_json_names_the_run_folder_it_chose_absolutely(tmp_path, config, learnable_data_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = invoke("train", "--config", config, "--data-dir", learnable_data_dir, "--quiet", "--json")
    assert r.exit_code == 0, r.output
    out_dir = Path(json.loads(r.stdout.strip().splitlines()[-1])["out_dir"])
    assert out_dir.is_absolute() and out_dir.parent == tmp_path / "runs" and (out_dir / "model.npz").is_file()


def test_train_then_eval(tmp_path, config, learnable_data_dir):
    out = tmp_path / "run"
    r = train_cli(config, learnable_data_dir, out, "--json")
    assert r.exit_code == 0, r.output
    metrics = json.loads(r.stdout.strip().splitlines()[-1])
    assert metrics["test_accuracy"] >= 0.9 and 0 <= metrics["train_accuracy"] <= 1
    assert metrics == {**json.loads((out / "metrics.json").read_text()), "out_dir": str(out)}

    r = invoke("eval", "--model", out / "model.npz", "--data-dir", learnable_data_dir)
    assert r.exit_code == 0, r.output
    assert f"test accuracy {metrics['test_accuracy']:.4f}" in r.output and "airplane" in r.output

    r = invoke("eval", "--model", out, "--data-dir", learnable_data_dir, "--json", "--split", "val")  # the run folder
    ev = json.loads(r.output)
    assert ev["model"] == str(out / "model.npz")
    assert ev["split"] == "val" and ev["count"] == 50 and abs(ev["accuracy"] - metrics["val_accuracy"]) < 1e-12
    assert np.array(ev["confusion_matrix"]).sum() == 50


def test_flip_trains_on_the_training_images_and_their_mirrors(tmp_path, config, learnable_data_dir):
    plain = train_cli(config, learnable_data_dir, tmp_path / "plain", "--json")
    flip = train_cli(config, learnable_data_dir, tmp_path / "flip", "--json", "--set", "data.flip=true")
    assert plain.exit_code == 0 and flip.exit_code == 0, flip.output
    m0, m1 = (json.loads(r.stdout.strip().splitlines()[-1]) for r in (plain, flip))
    assert (m0["num_train"], m0["num_val"], m0["num_test"]) == (350, 50, 100)
    assert (m1["num_train"], m1["num_val"], m1["num_test"]) == (700, 50, 100)
    assert m1["steps"] == 2 * m0["steps"]                        # an epoch is a pass over both halves
    assert m1["test_accuracy"] >= 0.9


def test_eval_of_a_flip_model_mirrors_the_training_images_only_for_the_train_split(
        tmp_path, config, learnable_data_dir, monkeypatch):
    import linclf.training.run_data as run_data

    assert train_cli(config, learnable_data_dir, tmp_path / "flip", "--set", "data.flip=true").exit_code == 0
    calls = []
    real = run_data.with_mirrors
    monkeypatch.setattr(run_data, "with_mirrors", lambda s: calls.append(len(s.X_train)) or real(s))
    for split_name, count in (("test", 100), ("val", 50), ("train", 700)):
        r = invoke("eval", "--model", tmp_path / "flip" / "model.npz", "--data-dir", learnable_data_dir,
                   "--split", split_name, "--json")
        assert r.exit_code == 0, r.output
        assert json.loads(r.output)["count"] == count
    assert calls == [350]                                       # the train split only


def test_flip_average_scores_each_image_with_its_mirror(tmp_path, config, learnable_data_dir):
    """model.flip_average: train's val and test accuracy, and eval's, come from the mean of the scores of each
    image and its mirror. An untrained (random) W, so that the mirror changes many predictions."""
    from conftest import preprocessed
    from linclf.data.splits import mirrored

    out = tmp_path / "run"
    r = train_cli(config, learnable_data_dir, out, "--json", "--set", "model.flip_average=true",
                  "--set", "optimizer.lr=1e-30", "--set", "optimizer.iterations=1")
    assert r.exit_code == 0, r.output
    metrics = json.loads(r.stdout.strip().splitlines()[-1])
    model = LinearClassifier.load(out / "model.npz")
    cfg = model_config(model, out)
    splits = make_splits(cfg, load_data(cfg, learnable_data_dir), mirrors=False)
    p, W = model.prep, model.W.astype(np.float64)
    for name in ("val", "test"):
        X, y = getattr(splits, f"X_{name}"), getattr(splits, f"y_{name}")
        plain = preprocessed(X, p.mean, p.scale, p.bias) @ W.T
        both = plain + preprocessed(mirrored(X), p.mean, p.scale, p.bias) @ W.T
        want = float(np.mean(both.argmax(1) == y))
        assert want != float(np.mean(plain.argmax(1) == y))        # the mirror matters here
        assert metrics[f"{name}_accuracy"] == want
        r = invoke("eval", "--model", out / "model.npz", "--data-dir", learnable_data_dir, "--split", name, "--json")
        assert r.exit_code == 0, r.output
        assert json.loads(r.output)["accuracy"] == want
    history = (out / "history.csv").read_text().strip().splitlines()
    assert float(history[-1].split(",")[-1]) == metrics["val_accuracy"]     # the per-epoch accuracy too


def test_flip_average_needs_images(tmp_path, config):
    r = invoke("train", "--config", config, "--set", "features.kind=npz", "--set", "features.path=f.npz",
               "--set", "model.flip_average=true", "--out", tmp_path / "run")
    assert r.exit_code == 2
    assert "model.flip_average: kind npz holds precomputed features, not images" in one_line_error(r)


def test_summary_ends_with_the_test_accuracy(tmp_path, config, learnable_data_dir):
    r = invoke("train", "--config", config, "--data-dir", learnable_data_dir, "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    assert r.output.strip().splitlines()[-1].startswith("test accuracy ")


def test_expect_accuracy_gates_with_exit_3(tmp_path, config, learnable_data_dir):
    """An untrained model (lr 1e-30: the random initial W) is near chance on 4 separable classes; trained, >= 0.9."""
    untrained = tmp_path / "untrained"
    r = train_cli(config, learnable_data_dir, untrained, "--set", "optimizer.lr=1e-30", "--set", "optimizer.iterations=1",
                  "--expect-accuracy", "0.9")
    assert r.exit_code == 3 and "below the expected" in one_line_error(r)
    assert (untrained / "model.npz").is_file()                  # the run is kept; only the gate failed
    r = invoke("eval", "--model", untrained / "model.npz", "--data-dir", learnable_data_dir, "--expect-accuracy", "0.9")
    assert r.exit_code == 3 and "below the expected" in one_line_error(r)
    r = train_cli(config, learnable_data_dir, tmp_path / "run", "--expect-accuracy", "0.9")
    assert r.exit_code == 0, r.output
    r = invoke("eval", "--model", tmp_path / "run" / "model.npz", "--data-dir", learnable_data_dir,
               "--expect-accuracy", "0.9")
    assert r.exit_code == 0, r.output


def test_an_earlier_run_is_not_overwritten(tmp_path, config, learnable_data_dir):
    out = tmp_path / "run"
    assert train_cli(config, learnable_data_dir, out).exit_code == 0
    before = (out / "model.npz").read_bytes()
    r = train_cli(config, learnable_data_dir, out)
    assert r.exit_code == 2 and "already holds a run" in one_line_error(r)
    assert (out / "model.npz").read_bytes() == before
    assert train_cli(config, learnable_data_dir, out, "--overwrite").exit_code == 0


def test_a_run_killed_before_its_first_checkpoint_is_not_offered_to_resume(tmp_path, config, learnable_data_dir):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("seed: 3\n")                  # all a SIGKILLed run leaves
    r = train_cli(config, learnable_data_dir, out)
    assert r.exit_code == 2 and one_line_error(r, only=True) == (
        f"error: --out {out} already holds a run (config.yaml) with no checkpoint to resume; choose another folder "
        "or pass --overwrite")
    assert (out / "config.yaml").read_text() == "seed: 3\n"


def test_unwritable_out(tmp_path, config, learnable_data_dir):
    blocker = tmp_path / "file"
    blocker.write_text("keep")
    r = train_cli(config, learnable_data_dir, blocker / "run")
    assert r.exit_code == 2 and "--out" in one_line_error(r)
    assert blocker.read_text() == "keep"
    r = train_cli(config, learnable_data_dir, blocker)
    assert r.exit_code == 2 and "is a file" in one_line_error(r)


def test_divergence_exits_1_with_the_step(tmp_path, config, learnable_data_dir):
    r = train_cli(config, learnable_data_dir, tmp_path / "run", "--set", "optimizer.update=sgd",
              "--set", "optimizer.lr=1e30")
    assert r.exit_code == 1
    assert "at step" in one_line_error(r) and "optimizer.lr" in one_line_error(r)
    step = int(re.search(r"at step (\d+)", one_line_error(r)).group(1))
    logged = [int(line.split(",")[0]) for line in (tmp_path / "run" / "history.csv").read_text().splitlines()[1:]]
    assert logged[-1] == step - 1 and logged[0] == 1              # the last finite step is in the history


def test_ctrl_c_after_training_says_resume_finishes_the_run(tmp_path, config, learnable_data_dir, monkeypatch):
    real_save = runs_mod.LinearClassifier.save

    def ctrl_c_at_model_npz(self, path, extra=None):
        if os.path.basename(path) == "model.npz":
            raise KeyboardInterrupt
        return real_save(self, path, extra)

    monkeypatch.setattr(runs_mod.LinearClassifier, "save", ctrl_c_at_model_npz)
    out = tmp_path / "run"
    r = train_cli(config, learnable_data_dir, out)
    assert r.exit_code == 130 and one_line_error(r, only=True) == (
        f"error: interrupted after training, while scoring and saving the model; `linclf train --resume {out}` "
        "scores and saves it")
    monkeypatch.setattr(runs_mod.LinearClassifier, "save", real_save)
    r = invoke("train", "--resume", out, "--data-dir", learnable_data_dir, "--quiet")
    assert r.exit_code == 0 and (out / "model.npz").is_file()


def _train_signalled(stop, config, data_dir, out, **run):
    """``linclf train`` in a child process that sends itself signal ``stop`` (e.g. "SIGTERM") at step 9."""
    script = textwrap.dedent("""
        import os, signal, sys
        import linclf.training.runs as runs
        real = runs.train

        def train(*args, **kwargs):
            def at_step(state):
                if state.step == 9:
                    os.kill(os.getpid(), signal.{stop})
            return real(*args, **{**kwargs, "on_step": at_step})

        runs.train = train
        from linclf.cli import main
        main(sys.argv[1:])
    """).replace("{stop}", stop)
    return subprocess.run([sys.executable, "-c", script, "train", "--config", str(config), "--data-dir",
                           str(data_dir), "--out", str(out), "--quiet"], timeout=120, **run)


@pytest.mark.parametrize("stop, code", [("SIGTERM", 143), ("SIGHUP", 129)])
def test_sigterm_and_sighup_stop_training_like_ctrl_c(tmp_path, config, learnable_data_dir, stop, code):
    """`timeout`, a cancelled CI job and `docker stop` send SIGTERM, a dropped ssh session SIGHUP: the checkpoint
    is saved and the run resumes."""
    assert train_cli(config, learnable_data_dir, tmp_path / "whole").exit_code == 0
    out = tmp_path / "cut"
    r = _train_signalled(stop, config, learnable_data_dir, out, capture_output=True, text=True)
    assert r.returncode == code, r.stderr
    steps = json.loads((tmp_path / "whole" / "metrics.json").read_text())["steps"]
    assert r.stderr.splitlines() == [f"error: interrupted at step 9 of {steps}; checkpoint saved to "
                                      f"{out / 'checkpoint.npz'}; continue with `linclf train --resume {out}`"]
    r = invoke("train", "--resume", out, "--data-dir", learnable_data_dir, "--quiet")
    assert r.exit_code == 0, r.output
    a, b = (LinearClassifier.load(tmp_path / name / "model.npz").W for name in ("whole", "cut"))
    np.testing.assert_array_equal(a, b)


def test_sighup_after_the_terminal_is_gone_still_saves_and_exits_129(tmp_path, config, learnable_data_dir):
    """A dropped ssh session: the terminal's writes fail (EIO) before the hang-up signal arrives."""
    pty = pytest.importorskip("pty")
    out = tmp_path / "cut"
    master, slave = pty.openpty()
    os.close(master)                                   # the terminal hangs up: writes to it fail from now on
    try:
        p = _train_signalled("SIGHUP", config, learnable_data_dir, out, stdout=slave, stderr=slave)
    finally:
        os.close(slave)
    assert p.returncode == 129 and (out / "checkpoint.npz").is_file()


@pytest.mark.parametrize("given, name", [("checkpoint.npz", "cut"), ("", "cut"), ("", "my runs/cut")],
                         ids=["checkpoint", "run-folder", "a-path-to-quote"])
def test_ctrl_c_exits_130_and_resume_finishes_the_same_run(tmp_path, config, learnable_data_dir, monkeypatch, given,
                                                           name):
    assert train_cli(config, learnable_data_dir, tmp_path / "whole").exit_code == 0
    real_train = runs_mod.train

    def interrupted_train(*args, **kwargs):
        def at_step(state):
            if state.step == 9:
                os.kill(os.getpid(), signal.SIGINT)
        return real_train(*args, **{**kwargs, "on_step": at_step})

    monkeypatch.setattr(runs_mod, "train", interrupted_train)
    r = train_cli(config, learnable_data_dir, tmp_path / name)
    assert r.exit_code == 130 and "interrupted at step 9" in r.output
    pasted = shlex.quote(str(tmp_path / name))                  # as a shell needs it: quoted when it has a space
    assert f"continue with `linclf train --resume {pasted}`" in r.output
    monkeypatch.setattr(runs_mod, "train", real_train)
    [folder] = shlex.split(pasted)
    r = invoke("train", "--resume", Path(folder) / given, "--data-dir", learnable_data_dir, "--quiet")
    assert r.exit_code == 0, r.output
    a = LinearClassifier.load(tmp_path / "whole" / "model.npz").W
    b = LinearClassifier.load(tmp_path / name / "model.npz").W
    np.testing.assert_array_equal(a, b)


def test_eval_of_a_run_stopped_before_its_model_says_to_resume_it(tmp_path, config, learnable_data_dir):
    out = tmp_path / "run"
    assert train_cli(config, learnable_data_dir, out).exit_code == 0
    (out / "model.npz").unlink()                              # as a run stopped after its checkpoint leaves it
    r = invoke("eval", "--model", out)
    assert r.exit_code == 2 and one_line_error(r, only=True) == (
        f"error: --model {out}: a run that was stopped before it saved model.npz; finish it with "
        f"`linclf train --resume {out}`")


@pytest.mark.parametrize("given, message", [
    ("empty-folder", "--resume {p}: no checkpoint.npz in this folder; give the run folder `linclf train` printed"),
    ("run/model.npz", ("--resume {p}: a model file, not a training checkpoint; resume from its run folder, "
                       "which holds checkpoint.npz: --resume {run}")),
    ("empty.npz", ("{p} is not a zip/npz file (empty (0 bytes)); --resume needs a training checkpoint: give the "
                   "run folder `linclf train` printed")),
    ("a; b/empty.npz", ("{p} is not a zip/npz file (empty (0 bytes)); --resume needs a training checkpoint: give "
                        "the run folder `linclf train` printed")),
    ("cut.npz", "{p} is not a readable model file (truncated or corrupt"),
    ("nope.npz", "--resume {p}: no checkpoint at {p}; give the run folder `linclf train` printed"),
])
def test_resume_of_anything_but_a_checkpoint_exits_2_naming_checkpoint_npz(tmp_path, config, learnable_data_dir,
                                                                           given, message):
    """A folder without a checkpoint, a model file, an empty, truncated or missing file: one line, exit 2,
    saying to give a run folder (or its checkpoint.npz), never to give a model.npz."""
    assert train_cli(config, learnable_data_dir, tmp_path / "run").exit_code == 0
    (tmp_path / "empty-folder").mkdir()
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "a; b").mkdir()
    (tmp_path / "a; b" / "empty.npz").write_bytes(b"")
    (tmp_path / "cut.npz").write_bytes((tmp_path / "run" / "checkpoint.npz").read_bytes()[:300])
    p = tmp_path / given
    r = invoke("train", "--resume", p, "--data-dir", learnable_data_dir, "--quiet")
    line = one_line_error(r, only=True)
    assert r.exit_code == 2 and "checkpoint.npz" in line and "give a model.npz" not in line, r.output
    assert message.format(p=p, run=tmp_path / "run") in line


@pytest.mark.parametrize("key", ["model.loss=svm", "seed=3", "preprocess.std=false", "data.num_train=100"])
def test_resume_refuses_a_set_that_makes_another_run(tmp_path, config, learnable_data_dir, key):
    r = train_cli(config, learnable_data_dir, tmp_path / "run", "--set", "optimizer.iterations=5")
    assert r.exit_code == 0
    r = invoke("train", "--resume", tmp_path / "run", "--set", key, "--data-dir", learnable_data_dir, "--quiet")
    name = key.split("=")[0]
    assert r.exit_code == 2 and one_line_error(r, only=True) == (
        f"error: --resume continues the run {tmp_path / 'run' / 'checkpoint.npz'} holds; --set {name} would make "
        f"it another run (another model, rows or minibatches): start one with --config "
        f"{tmp_path / 'run' / 'config.yaml'} --set {name}=...")
    r = invoke("train", "--resume", tmp_path / "run", "--set", "optimizer.iterations=8", "--data-dir",
               learnable_data_dir, "--quiet")                        # a longer run: allowed
    assert r.exit_code == 0, r.output


def test_resuming_a_finished_run_trains_nothing_and_claims_no_speed(tmp_path, config, learnable_data_dir):
    assert train_cli(config, learnable_data_dir, tmp_path / "run").exit_code == 0
    before = json.loads((tmp_path / "run" / "metrics.json").read_text())
    r = invoke("train", "--resume", tmp_path / "run", "--data-dir", learnable_data_dir, "--quiet", "--json")
    assert r.exit_code == 0, r.output
    after = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert after["samples_per_second"] is None and before["samples_per_second"] > 0
    assert {k: after[k] for k in ("steps", "test_accuracy")} == {k: before[k] for k in ("steps", "test_accuracy")}


def test_overwrite_removes_the_replaced_runs_figures(tmp_path, config, learnable_data_dir):
    out = tmp_path / "run"
    assert train_cli(config, learnable_data_dir, out).exit_code == 0
    for name in ("loss.png", "confusion.png"):
        (out / name).write_bytes(b"the old run's figure")
    (out / "notes.txt").write_text("mine")
    assert train_cli(config, learnable_data_dir, out, "--overwrite", "--set", "seed=1").exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.npz", "config.yaml", "history.csv", "metrics.json",
                                                      "model.npz", "notes.txt"]


@pytest.mark.parametrize("command", [["train", "--config", "smoke"], ["sweep", "--config", "smoke", "--param",
                                                                       "optimizer.lr=log:1e-4:1e-2"], ["plot", "."]])
def test_an_empty_out_is_a_usage_error_not_the_default(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    r = invoke(*command, "--out", "")
    assert r.exit_code == 2 and "Invalid value for '--out': empty; give a folder" in one_line_error(r, only=True)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("length, said", [("optimizer.epochs=3", "optimizer.epochs 3"),
                                          ("optimizer.iterations=5000", "optimizer.iterations 5000")])
def test_a_random_search_says_epochs_are_not_its_length_and_advises_on_trials(tmp_path, config, learnable_data_dir,
                                                                             length, said):
    r = train_cli(config, learnable_data_dir, tmp_path / "run", "--set", "optimizer.method=random_search",
                  "--set", "optimizer.trials=2", "--set", length, "--set", "model.init_scale=1e-12")
    assert r.exit_code == 0, r.output
    warned = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert warned[0] == f"warning: {said} is not used by random_search: it tries optimizer.trials (2) candidates"
    assert all("optimizer.lr" not in w for w in warned)
    assert any(w.endswith("check optimizer.trials (more candidates), model.init_scale and the data") for w in warned)


def test_resume_into_another_run_folder_needs_overwrite(tmp_path, config, learnable_data_dir):
    assert train_cli(config, learnable_data_dir, tmp_path / "src").exit_code == 0
    assert train_cli(config, learnable_data_dir, tmp_path / "other", "--set", "seed=1").exit_code == 0
    before = {f.name: f.read_bytes() for f in (tmp_path / "other").iterdir()}
    r = invoke("train", "--resume", tmp_path / "src", "--out", tmp_path / "other", "--data-dir", learnable_data_dir,
               "--quiet")
    assert r.exit_code == 2 and "already holds a run" in one_line_error(r, only=True)
    assert {f.name: f.read_bytes() for f in (tmp_path / "other").iterdir()} == before
    r = invoke("train", "--resume", tmp_path / "src", "--out", tmp_path / "other", "--data-dir", learnable_data_dir,
               "--quiet", "--overwrite")
    assert r.exit_code == 0, r.output


def test_a_run_folder_another_linclf_is_writing_is_refused(tmp_path, config, learnable_data_dir):
    """Two trainings started together into one --out: the one that finds the folder held is refused."""
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "run"
    out.mkdir()
    with open(out / ".linclf.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)           # the other run, mid-way
        r = train_cli(config, learnable_data_dir, out)
    assert r.exit_code == 2
    assert one_line_error(r, only=True) == (f"error: --out {out}: another linclf is writing a run into it now; "
                                            "wait for it to finish or choose another folder")
    assert sorted(f.name for f in out.iterdir()) == [".linclf.lock"]
    assert train_cli(config, learnable_data_dir, out).exit_code == 0      # free again: trains, lock removed
    assert not (out / ".linclf.lock").exists() and (out / "model.npz").is_file()


# ----------------------------------------------------------------------- eval


@pytest.fixture
def trained(tmp_path, config, learnable_data_dir):
    out = tmp_path / "run"
    assert train_cli(config, learnable_data_dir, out).exit_code == 0
    return out / "model.npz"


def _rewrite(src, dst, **changes):
    with np.load(src, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays.update(changes)
    save_npz_atomic(dst, arrays)
    return dst


def test_eval_refuses_malformed_models(tmp_path, trained, learnable_data_dir):
    good = trained.read_bytes()
    cases = {
        "missing": tmp_path / "nope.npz",
        "truncated": tmp_path / "cut.npz",
        "pickled": tmp_path / "pickled.npz",
        "version": _rewrite(trained, tmp_path / "v.npz", format_version=np.array(7)),
        "shape": _rewrite(trained, tmp_path / "s.npz", W=np.zeros((10, 100), np.float32)),
    }
    cases["truncated"].write_bytes(good[: len(good) // 3])
    import pickle
    cases["pickled"].write_bytes(pickle.dumps({"W": 1}))
    for name, path in cases.items():
        r = invoke("eval", "--model", path, "--data-dir", learnable_data_dir)
        assert r.exit_code == (2 if name == "missing" else 1), (name, r.output)     # a wrong path: usage
        assert str(path) in one_line_error(r), name


def test_eval_refuses_a_model_of_other_classes(tmp_path, trained, learnable_data_dir):
    nine = _rewrite(trained, tmp_path / "nine.npz", W=np.zeros((9, 3073), np.float32),
                    classes=np.array(list("abcdefghi")))
    r = invoke("eval", "--model", nine, "--data-dir", learnable_data_dir)
    assert r.exit_code == 1 and "9 classes, the data has 10" in one_line_error(r)
    renamed = _rewrite(trained, tmp_path / "renamed.npz", classes=np.array(list("abcdefghij")))
    r = invoke("eval", "--model", renamed, "--data-dir", learnable_data_dir)
    assert r.exit_code == 1 and "trained on classes" in one_line_error(r)


def test_eval_refuses_a_model_of_other_preprocessing(tmp_path, trained, learnable_data_dir):
    with np.load(trained, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["prep_mean"] = arrays["prep_mean"][:1024]
    arrays["prep_scale"] = arrays["prep_scale"][:1024]
    arrays["W"] = arrays["W"][:, :1025]
    save_npz_atomic(tmp_path / "gray.npz", arrays)
    r = invoke("eval", "--model", tmp_path / "gray.npz", "--data-dir", learnable_data_dir)
    assert r.exit_code == 1 and "expects rows of 1024 values" in one_line_error(r)


# ------------------------------------------------------------------ gradcheck


@pytest.mark.parametrize("loss,expected", [("svm", 9.0), ("softmax", np.log(10)), ("squared_hinge", 10.0)])
@pytest.mark.parametrize("reg", ["0", "2.5e4"])
def test_gradcheck_synthetic_passes(loss, expected, reg):
    r = invoke("gradcheck", "--synthetic", "--set", f"model.loss={loss}", "--set", f"model.reg={reg}", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["passed"] and set(res["parts"]) == {"data", "reg", "total"}
    assert res["expected_init_loss"] == pytest.approx(expected) and abs(res["init_loss"] - expected) < 0.05
    assert all(p["worst_rel_error"] is None or p["worst_rel_error"] <= 1e-7 for p in res["parts"].values())


def test_gradcheck_table(tmp_path):
    r = invoke("gradcheck", "--synthetic", "--set", "model.loss=softmax", "--checks", "5")
    assert r.exit_code == 0
    assert "[data] ok" in r.output and "[reg] ok" in r.output and "[total] ok" in r.output
    assert "expected about 2.3026" in r.output and r.output.strip().endswith("PASSED")


def test_gradcheck_on_the_configured_dataset(config, learnable_data_dir):
    r = invoke("gradcheck", "--config", config, "--data-dir", learnable_data_dir, "--batch", "50", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["data"] == "cifar-10" and res["batch"] == 50 and res["passed"]


def test_gradcheck_fails_on_a_wrong_gradient(monkeypatch):
    real = gradcheck_mod.linear_loss

    def wrong(loss, W, X, y, reg=0.0, delta=1.0):
        value, dW = real(loss, W, X, y, reg, delta)
        return value, dW * 1.01

    monkeypatch.setattr(gradcheck_mod, "linear_loss", wrong)
    r = invoke("gradcheck", "--synthetic", "--set", "model.loss=softmax", "--set", "model.reg=0")
    assert r.exit_code == 1
    line = one_line_error(r)
    assert "gradient check failed" in line and "W[" in line and "threshold 1e-07" in line


def test_gradcheck_without_a_bias_column_regularises_every_column_even_with_reg_bias_false():
    values = []
    for reg_bias in ("true", "false"):
        r = invoke("gradcheck", "--synthetic", "--config", "softmax", "--set", "preprocess.bias=false", "--set",
                   f"model.reg_bias={reg_bias}", "--set", "model.reg=1", "--json")
        assert r.exit_code == 0, r.output
        values.append(json.loads(r.stdout)["values"]["reg"])
    assert values[0] == values[1]                        # the last pixel's weights were left out with false


def test_gradcheck_that_cannot_judge_at_its_h_is_inconclusive_not_passed():
    r = invoke("gradcheck", "--synthetic", "--config", "softmax", "--h", "1e-14")   # rounding swamps the slope
    assert r.exit_code == 1 and "\nINCONCLUSIVE\n" in r.stdout
    assert one_line_error(r) == (
        "error: gradient check inconclusive: the data part judged none of its 20 coordinates (20 where the centered "
        "difference's error bound at h=1e-14 exceeds 0.1 of the gradient); use --h 1e-5")
    r = invoke("gradcheck", "--synthetic", "--config", "softmax", "--h", "1e-30")
    assert r.exit_code == 2 and "--h 1e-30 is below the spacing of W's float64 values" in one_line_error(r)


def test_gradcheck_reports_svm_kinks_without_failing():
    r = invoke("gradcheck", "--synthetic", "--set", "model.loss=svm", "--set", "model.init_scale=0.05",
               "--set", "model.reg=0", "--checks", "300", "--h", "1e-2", "--json")
    res = json.loads(r.output)
    assert res["parts"]["data"]["kinks"] > 0
    assert r.exit_code == 0 and res["passed"]
