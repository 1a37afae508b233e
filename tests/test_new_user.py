"""Issue 11, what a new user trips over: each item as the user meets it, from the command line."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import CLASSES, invoke, make_arrays, one_line_error, optional, small_config, train_cli

import linclf.data.cifar10 as cifar10_mod
import linclf.training.loop as loop_mod
from linclf.core.gradcheck import check_loss
from linclf.core.losses import softmax_loss, svm_loss
from linclf.fsutil import write_json_atomic, write_text_atomic

ROOT = Path(__file__).resolve().parent.parent
CONFIG = small_config()


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity (what a strict parser does)."""
    def refuse(name):
        raise ValueError(f"not JSON: {name}")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A working directory outside the checkout, and the user cache it should fall back to."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cwd, cache / "linclf"


@pytest.fixture
def offline(monkeypatch):
    """The official URL is a closed local port: a download fails at once, without the network."""
    monkeypatch.setattr(cifar10_mod, "BASE_URL", "http://127.0.0.1:9/")


# ------------------------------------------------------------------ 1. data from any folder

def test_missing_data_names_the_folder_and_the_ways_out_and_leaves_nothing(elsewhere, offline, config):
    cwd, cache = elsewhere
    r = invoke("train", "--config", config, "--set", "data.retries=0", "--quiet")
    assert r.exit_code == 1
    line = one_line_error(r)
    assert str(cache) in line
    for way in ("--data-dir", "$LINCLF_DATA_DIR", "data.dir", "--archive"):
        assert way in line
    assert list(cwd.iterdir()) == []                   # no ./data, no runs/<name>/ holding only config.yaml
    assert not cache.exists()                          # the folder made for the download is gone again


def test_default_data_folder_is_the_user_cache(elsewhere, fake_archive):
    cwd, cache = elsewhere
    path, md5 = fake_archive()
    r = invoke("download", "--archive", path, "--md5", md5)
    assert r.exit_code == 0, r.output
    assert (cache / "cifar-10-batches-bin").is_dir() and not (cwd / "data").exists()
    assert str(cache) in r.output


def test_a_run_remembers_its_data_folder_for_eval_and_plot(tmp_path, elsewhere, config, learnable_data_dir,
                                                         monkeypatch):
    out = tmp_path / "run"
    assert train_cli(config, learnable_data_dir, out).exit_code == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["data"]["dir"] == str(learnable_data_dir)
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)                           # another folder, no --data-dir, an empty user cache
    r = invoke("eval", "--model", out / "model.npz")
    assert r.exit_code == 0, r.output
    assert "test accuracy" in r.output


def test_eval_does_not_create_a_missing_env_data_folder(tmp_path, config, learnable_data_dir, offline,
                                                        monkeypatch):
    out = tmp_path / "run"
    assert train_cli(config, learnable_data_dir, out, "--set", "data.retries=0").exit_code == 0
    missing = tmp_path / "no" / "such" / "folder"
    monkeypatch.setenv("LINCLF_DATA_DIR", str(missing))
    r = invoke("eval", "--model", out / "model.npz")
    assert r.exit_code == 1 and str(missing) in one_line_error(r)
    assert not (tmp_path / "no").exists()


# ------------------------------------------------------------ 2. the README's Python snippet

def _readme_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    snippet = next(b for b in blocks if "SoftmaxClassifier(" in b and "to_model(" in b)
    return snippet


def test_the_readme_snippet_makes_a_model_eval_and_predict_accept(tmp_path, monkeypatch, learnable_data_dir):
    monkeypatch.setenv("LINCLF_DATA_DIR", str(learnable_data_dir))
    monkeypatch.chdir(tmp_path)
    exec(compile(_readme_snippet(), "README.md", "exec"), {})          # as written
    assert (tmp_path / "softmax.npz").is_file()
    r = invoke("eval", "--model", "softmax.npz", "--json")
    assert r.exit_code == 0, r.output
    assert strict_json(r.stdout)["classes"] == CLASSES
    Image = optional("PIL.Image")
    from linclf import load_cifar10

    data = load_cifar10()
    rgb = np.asarray(data.X_test[0]).reshape(3, 32, 32).transpose(1, 2, 0)
    Image.fromarray(rgb).save(tmp_path / "img.png")
    r = invoke("predict", "--model", "softmax.npz", "img.png", "--top", "1")
    assert r.exit_code == 0, r.output
    assert re.fullmatch(r"img\.png: (\w+) \(p=[0-9.]+\)", r.output.strip())
    assert r.output.split(": ")[1].split(" ")[0] in CLASSES


def test_to_model_names_integer_labels_and_checks_the_count():
    from linclf import SoftmaxClassifier

    fake = make_arrays(per_batch=8, seed=2)
    clf = SoftmaxClassifier(epochs=1, batch_size=16).fit(fake.X_train, fake.y_train)
    assert clf.to_model().classes == tuple(str(i) for i in range(10))
    assert clf.to_model(class_names=CLASSES).classes == tuple(CLASSES)
    with pytest.raises(ValueError, match=r"class_names has 3 names for 10 classes \[0, 1, 2, 3, 4, 5, 6, 7, 8, 9\]; "
                                         r"give one name per class.*indexed by label \(10 names\)"):
        clf.to_model(class_names=["a", "b", "c"])


def test_eval_of_a_model_saved_without_class_names_says_how_to_name_them(tmp_path, learnable_data_dir):
    from linclf import SoftmaxClassifier
    from linclf.data.cifar10 import load_cifar10

    data = load_cifar10(learnable_data_dir)
    SoftmaxClassifier(epochs=1).fit(data.X_train, data.y_train).to_model().save(tmp_path / "m.npz")
    r = invoke("eval", "--model", tmp_path / "m.npz", "--data-dir", learnable_data_dir)
    assert r.exit_code == 1
    assert one_line_error(r).endswith("; save it from Python with to_model(class_names=data.classes)")


def test_to_model_of_pixels_scaled_to_one_warns_that_eval_feeds_0_to_255():
    from linclf import SoftmaxClassifier
    from linclf.errors import LinclfWarning

    fake = make_arrays(per_batch=8, seed=2)
    clf = SoftmaxClassifier(epochs=1, batch_size=16).fit(fake.X_train / 255.0, fake.y_train)
    with pytest.warns(LinclfWarning, match=r"fitted on rows whose means all lie in \[0, 1\] \(pixels / 255\?\); "
                                           r"linclf eval and predict feed a saved model pixels 0-255"):
        clf.to_model()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SoftmaxClassifier(epochs=1, batch_size=16).fit(fake.X_train, fake.y_train).to_model()


# ------------------------------------------------------------------ 3. errors that say the truth

def test_a_text_file_named_model_npz_is_not_called_pickled(tmp_path):
    (tmp_path / "model.npz").write_text("hello\n")
    r = invoke("eval", "--model", tmp_path / "model.npz")
    assert r.exit_code == 1
    line = one_line_error(r, only=True)
    assert "not a zip/npz file" in line and "pickle" not in line


def test_a_readme_given_as_archive_is_not_to_be_deleted(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# hello\n")
    r = invoke("download", "--archive", readme, "--data-dir", tmp_path / "d")
    assert r.exit_code == 1
    line = one_line_error(r, only=True)
    assert "not a gzip file" in line and "delete" not in line and "--archive" in line
    assert readme.read_text() == "# hello\n" and not (tmp_path / "d").exists()


def test_a_truncated_archive_is_one_error_and_no_structure_warning(tmp_path, fake_archive):
    path, _ = fake_archive()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    r = invoke("download", "--archive", cut, "--data-dir", tmp_path / "d")
    assert r.exit_code == 1
    line = one_line_error(r, only=True)
    assert "truncated or corrupt" in line and "checks out" not in r.output


@pytest.mark.parametrize("args, code, text", [
    (["download", "--md5", "xyz"], 2, "expected 32 hex digits"),
    (["train", "--resume", "missing.npz"], 2, "no checkpoint at "),
    (["config", "--set", "optimizer=3"], 2, "optimizer is a section; set optimizer.KEY=VALUE"),
    (["config", "--set", "seed=-1"], 2, "<= 4294967295, got -1"),
    (["--confg", "x"], 2, "No such option '--confg'"),
    (["train", "--confg", "x"], 2, "No such option '--confg'"),
    (["--quiet", "train"], 2, "--quiet is an option of the command, not of `cli`: write `cli train --quiet ...`"),
    (["--json", "eval", "--model", "m.npz"], 2, "write `cli eval --json ...`"),
    (["--confg", "train"], 2, "No such option '--confg'; see `cli --help`"),     # an option of no command
    (["frobnicate"], 2, "No such command 'frobnicate'"),
    # a global option after the command: where it goes, with the value as typed
    (["train", "--workers", "2"], 2, "No such option '--workers'; --workers is a global option: "
                                     "`cli --workers 2 train ...`"),
    (["eval", "--model", "m.npz", "--workers=3"], 2, "--workers is a global option: `cli --workers=3 eval ...`"),
    (["sweep", "--workers"], 2, "--workers is a global option: `cli --workers N sweep ...`"),
    (["train", "--debug"], 2, "No such option '--debug'; --debug is a global option: `cli --debug train ...`"),
    (["eval", "--version"], 2, "No such option '--version'; --version is a global option: `cli --version`"),
    # a section swept as if it were a key: what --set says of it
    (["sweep", "--param", "optimizer=choice:a,b"], 2, "--param optimizer: optimizer is a section; sweep "
                                                      "optimizer.KEY=SPEC, e.g. --param optimizer.method=..."),
    (["sweep", "--param", "data=grid:1,2"], 2, "data is a section; sweep data.KEY=SPEC, e.g. --param "
                                               "data.num_train=..."),        # not a key the sweep refuses
    (["--workers", "0", "config"], 2, "'--workers': 0 is not in the range"),
    # a config or model file without its option
    (["train", "configs/svm.yaml"], 2, "configs/svm.yaml goes after --config: write `cli train --config "
                                       "configs/svm.yaml ...`"),
    (["train", "--quiet", "my.YML", "--set", "seed=1"], 2, "my.YML goes after --config: write `cli train --config"),
    (["train", "softmax"], 2, "softmax goes after --config: write `cli train --config softmax ...`"),   # shipped
    (["eval", "runs/x/model.npz"], 2, "runs/x/model.npz goes after --model: write `cli eval --model "
                                      "runs/x/model.npz ...`"),
    (["predict", "m.npz", "cat.png"], 2, "m.npz goes after --model: write `cli predict --model m.npz ...`"),
    (["eval", "--split", "val", "m.npz"], 2, "m.npz goes after --model"),
    (["eval", "--json"], 2, "Missing option '--model'; see `cli eval --help`"),                # no file given
    (["plot", "runs/x", "configs/svm.yaml"], 2, "Got unexpected extra argument (configs/svm.yaml); see"),  # no --config
    (["train", "--config", "a.yaml", "b.yaml"], 2, "Got unexpected extra argument (b.yaml)"),   # --config given
])
def test_usage_errors_are_one_line_exit_2(tmp_path, monkeypatch, args, code, text):
    monkeypatch.chdir(tmp_path)
    r = invoke(*args)
    assert r.exit_code == code
    assert text in one_line_error(r, only=True)


def test_no_command_shows_the_help_not_an_error():
    r = invoke()
    assert r.exit_code == 2
    assert r.output.startswith("Usage: cli [OPTIONS] COMMAND")
    assert "error:" not in r.output and "  train " in r.output and "see `" not in r.output


@pytest.mark.parametrize("args, text", [
    (["eval", "--model", "missing.npz"], "no model file at missing.npz"),
    (["predict", "--model", "missing.npz", "x.png"], "no model file at missing.npz"),
    (["eval", "--model", "."], "--model .: a folder without a model.npz; give a model file or the run folder"),
    (["predict", "--model", ".", "x.png"], "--model .: a folder without a model.npz"),
    (["download", "--archive", "missing.tar.gz"], "--archive missing.tar.gz: no such file or folder"),
    (["plot", "missing"], "no folder at missing"),
])
def test_a_wrong_path_on_the_command_line_is_a_usage_error(tmp_path, monkeypatch, args, text):
    monkeypatch.chdir(tmp_path)
    optional("PIL") if args[0] == "predict" else None
    r = invoke(*args)
    assert r.exit_code == 2
    assert text in one_line_error(r, only=True)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["train", "sweep", "plot"])
def test_out_pointing_at_a_file_exits_2_everywhere(tmp_path, config, learnable_data_dir, command):
    blocker = tmp_path / "file"
    blocker.write_text("keep")
    if command == "train":
        r = train_cli(config, learnable_data_dir, blocker)
    elif command == "sweep":
        r = invoke("sweep", "--config", config, "--data-dir", learnable_data_dir, "--param",
                   "optimizer.lr=log:1e-4:1e-3", "--trials", "1", "--jobs", "1", "--out", blocker, "--quiet")
    else:
        optional("matplotlib")
        assert train_cli(config, learnable_data_dir, tmp_path / "run").exit_code == 0
        r = invoke("plot", tmp_path / "run", "--out", blocker, "--quiet")
    assert r.exit_code == 2 and "is a file" in one_line_error(r)
    assert blocker.read_text() == "keep"


# ------------------------------------------------------------------ 4. forward differences

@pytest.mark.parametrize("name", ["softmax", "svm", "smoke", "random_search", "random_local_search", None])
@pytest.mark.parametrize("method", ["forward", "centered"])
def test_gradcheck_passes_every_shipped_config_with_both_methods(name, method, learnable_data_dir):
    cfg = [] if name is None else ["--config", ROOT / "configs" / f"{name}.yaml"]
    for data in (["--synthetic"], ["--data-dir", learnable_data_dir, "--set", "data.num_val=50",
                                   "--set", "data.num_train=null", "--set", "data.num_dev=0"]):
        r = invoke("gradcheck", *cfg, *data, "--method", method, "--json", "--quiet")
        assert r.exit_code == 0, r.output
        assert strict_json(r.stdout)["passed"]


@pytest.mark.parametrize("loss", ["svm", "softmax"])
@pytest.mark.parametrize("method", ["forward", "centered"])
def test_a_one_percent_error_fails_with_both_methods(loss, method):
    rng = np.random.default_rng(0)
    X = np.hstack([rng.standard_normal((60, 40)), np.ones((60, 1))])
    y = rng.integers(0, 10, 60)
    W = 1e-4 * rng.standard_normal((10, 41))
    fn = svm_loss if loss == "svm" else softmax_loss
    ok = check_loss(W, X, y, loss=loss, reg=2.5e4 if loss == "svm" else 0.01, method=method, checks=40,
                    rng=np.random.default_rng(1))
    assert ok["passed"], {k: p["worst_rel_error"] for k, p in ok["parts"].items()}
    bad = check_loss(W, X, y, loss=loss, reg=2.5e4 if loss == "svm" else 0.01, method=method, checks=40,
                     rng=np.random.default_rng(1), grad_fn=lambda V: 1.01 * fn(V, X, y, 0.0)[1])
    assert not bad["passed"] and not bad["parts"]["data"]["passed"]


@pytest.mark.parametrize("w", [1e-3, 1e-6])
def test_forward_l2_error_is_within_its_bound_and_judged_only_where_the_bound_resolves(w):
    # the forward difference of reg * w^2 errs by exactly reg * h; its bound must cover that. Against the
    # gradient 2 reg w that is 0.75 h / w: judged (and passed) at w = 1e-3, not at w = 1e-6 (375x the gradient)
    W = np.full((2, 3), w)
    out = check_loss(W, np.ones((4, 3)), np.array([0, 1, 0, 1]), loss="softmax", reg=2.5e4, method="forward",
                     checks=6, rng=np.random.default_rng(0))
    reg = out["parts"]["reg"]
    for c in reg["checks"]:
        assert abs(c.analytic - c.numerical) == pytest.approx(2.5e4 * 1e-5, rel=1e-3)
        assert c.bound >= abs(c.analytic - c.numerical)
    if w == 1e-3:
        assert reg["passed"] and reg["worst_rel_error"] > 1e-3       # a relative threshold alone would fail it
    else:
        assert not reg["passed"] and reg["inconclusive"] and (reg["checked"], reg["unresolved"]) == (0, 6)
        assert not out["passed"]


# ------------------------------------------------------------------ 5. divergence

def test_a_divergence_of_the_l2_term_alone_names_the_bound_on_lr(tmp_path, learnable_data_dir):
    """Plain SGD with lr x reg > 1 diverges whatever the data: the hint gives the bound, not a probed lr."""
    cfg = tmp_path / "sgd.yaml"
    cfg.write_text(small_config().replace("update: adam", "update: sgd").replace("lr: 1.0e-3", "lr: 1.5e-3"))
    r = train_cli(cfg, learnable_data_dir, tmp_path / "run", "--set", "model.reg=1e4")
    assert r.exit_code == 1
    line = one_line_error(r)
    assert ("(it trained 100 steps from the same start without diverging); with optimizer.update sgd the L2 term "
            "alone grows W when optimizer.lr x model.reg > 1 (here 15: each step multiplies W by 1 - 2 lr reg = -29); "
            "use optimizer.lr below 0.0001 or a smaller model.reg;") in line
    m = re.search(r"--set optimizer\.lr=([0-9.e+-]+) \(it trained", line)
    assert m and float(m.group(1)) == 1.5e-5                  # lr / 10 = 1.5e-4 is above the bound: not tried


def test_the_divergence_hint_is_a_learning_rate_that_trains(tmp_path, learnable_data_dir):
    cfg = tmp_path / "sgd.yaml"
    cfg.write_text(small_config().replace("update: adam", "update: sgd").replace("lr: 1.0e-3", "lr: 1.0e+4")
                   .replace("std: true", "std: false").replace("loss: softmax", "loss: svm"))
    r = train_cli(cfg, learnable_data_dir, tmp_path / "run")
    assert r.exit_code == 1
    line = one_line_error(r)
    m = re.search(r"--set optimizer\.lr=([0-9.e+-]+) \(it trained \d+ steps", line)
    assert m, line
    assert float(m.group(1)) < 1e4
    r = train_cli(cfg, learnable_data_dir, tmp_path / "again", "--set", f"optimizer.lr={m.group(1)}")
    assert r.exit_code == 0, r.output


def test_a_run_at_chance_level_ends_with_a_warning(tmp_path, config, learnable_data_dir):
    # W = 0 and no step: every score ties, every image is called class 0
    r = train_cli(config, learnable_data_dir, tmp_path / "run", "--set", "model.init_scale=0",
                  "--set", "optimizer.epochs=null", "--set", "optimizer.iterations=0")
    assert r.exit_code == 0
    assert re.search(r"warning: the final val accuracy 0\.\d+ is at chance level", r.output), r.output


def test_a_regularisation_that_holds_w_at_zero_is_named(tmp_path, config, learnable_data_dir):
    r = train_cli(config, learnable_data_dir, tmp_path / "run", "--set", "model.reg=1e12")
    assert r.exit_code == 0
    assert re.search(r"warning: the final val accuracy .* at chance level .* check optimizer.lr \(too high or too "
                     r"low\), model.reg \(too high: it holds W at 0\)", r.output), r.output


def test_a_batch_larger_than_the_training_split_is_named(tmp_path, config, learnable_data_dir):
    r = train_cli(config, learnable_data_dir, tmp_path / "run", "--set", "optimizer.batch_size=100000")
    assert r.exit_code == 0
    assert re.search(r"warning: optimizer\.batch_size 100000 is more than the \d+ training rows: every step takes "
                     r"all of them", r.output), r.output


def test_a_good_run_has_no_warning(tmp_path, config, learnable_data_dir):
    r = train_cli(config, learnable_data_dir, tmp_path / "run")
    assert r.exit_code == 0 and "warning" not in r.output


# ------------------------------------------------------------------ 6. nothing half-made

def test_a_bad_archive_leaves_no_run_folder(tmp_path, config):
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"\x1f\x8b not really")
    out = tmp_path / "run"
    r = invoke("train", "--config", config, "--archive", bad, "--data-dir", tmp_path / "d", "--out", out, "--quiet")
    assert r.exit_code == 1
    assert not out.exists() and not (tmp_path / "d").exists()


def test_a_later_failure_keeps_a_checkpoint_that_plot_draws(tmp_path, config, learnable_data_dir, monkeypatch):
    import linclf.training.runs as runs_mod
    from linclf.errors import DivergenceError

    real = runs_mod.train

    def failing_train(*args, **kwargs):
        def at_step(state):
            kwargs["on_step"](state)
            if state.step == 5:
                raise DivergenceError("injected failure at step 5")
        return real(*args, **{**kwargs, "on_step": at_step})

    monkeypatch.setattr(runs_mod, "train", failing_train)
    out = tmp_path / "run"
    r = train_cli(config, learnable_data_dir, out)
    assert r.exit_code == 1
    line = one_line_error(r)
    assert "injected failure at step 5" in line and str(out / "checkpoint.npz") in line
    assert (out / "checkpoint.npz").is_file() and (out / "history.csv").is_file()
    assert not (out / "model.npz").exists()
    optional("matplotlib")
    r = invoke("plot", out, "--data-dir", learnable_data_dir, "--quiet")
    assert r.exit_code == 0, r.output
    assert {"loss.png", "templates.png"} <= {Path(p).name for p in r.stdout.split()}


def test_plot_of_an_interrupted_run_draws_its_checkpoint(tmp_path, config, learnable_data_dir, monkeypatch):
    import linclf.training.runs as runs_mod

    real = runs_mod.train

    def interrupted(*args, **kwargs):
        def at_step(state):
            kwargs["on_step"](state)
            if state.step == 4:
                os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **{**kwargs, "on_step": at_step})

    monkeypatch.setattr(runs_mod, "train", interrupted)
    out = tmp_path / "cut"
    r = train_cli(config, learnable_data_dir, out)
    assert r.exit_code == 130
    optional("matplotlib")
    (out / "history.csv").unlink()                     # only the checkpoint is left
    r = invoke("plot", out, "--data-dir", learnable_data_dir, "--quiet")
    assert r.exit_code == 0, r.output
    assert {"loss.png", "templates.png", "confusion.png"} <= {Path(p).name for p in r.stdout.split()}


# ------------------------------------------------------------------ 7. strict JSON

def test_metrics_and_json_output_hold_no_nan(tmp_path, config, learnable_data_dir):
    out = tmp_path / "run"
    r = train_cli(config, learnable_data_dir, out, "--json", "--set", "optimizer.epochs=null",
                  "--set", "optimizer.iterations=0", "--set", "data.num_test=3")
    assert r.exit_code == 0, r.output
    printed = strict_json(r.stdout)
    assert printed["final_loss"] is None                         # no step ran: there is no loss
    assert strict_json((out / "metrics.json").read_text())["final_loss"] is None
    r = invoke("eval", "--model", out / "model.npz", "--json")
    assert r.exit_code == 0
    per_class = strict_json(r.stdout)["per_class_accuracy"]
    assert None in per_class.values()                            # classes absent from 3 test images


# ------------------------------------------------------------------ 8. Ctrl-C

@pytest.mark.parametrize("method", ["random_search", "random_local_search"])
def test_search_stops_on_sigint_even_when_the_shell_ignored_it(tmp_path, learnable_data_dir, monkeypatch, method):
    cfg = tmp_path / "search.yaml"
    cfg.write_text(f"data:\n  num_val: 50\noptimizer:\n  method: {method}\n  trials: 200\n")
    name = method
    real = getattr(loop_mod, name)

    def with_sigint(*args, callback, **kwargs):
        def cb(trial, best):
            if trial == 3:
                os.kill(os.getpid(), signal.SIGINT)
            callback(trial, best)
        return real(*args, callback=cb, **kwargs)

    monkeypatch.setattr(loop_mod, name, with_sigint)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        r = train_cli(cfg, learnable_data_dir, tmp_path / "run")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert r.exit_code == 130
    assert f"{method} interrupted at trial 3 of 200" in one_line_error(r)
    assert not (tmp_path / "run").exists()                       # a search keeps nothing to resume


def test_the_cli_undoes_an_inherited_sigint_ignore(monkeypatch):
    from linclf.cli import main

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with pytest.raises(SystemExit) as exited:
            main(["--version"])
        assert exited.value.code == 0
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


def test_an_interrupted_download_says_what_was_kept(tmp_path, monkeypatch):
    def half_then_ctrl_c(urls, dest, **kwargs):
        Path(str(dest) + ".part").write_bytes(b"x" * 1234)
        raise KeyboardInterrupt

    monkeypatch.setattr(cifar10_mod, "fetch", half_then_ctrl_c)
    r = invoke("download", "--data-dir", tmp_path / "d")
    assert r.exit_code == 130
    line = one_line_error(r, only=True)
    assert "1,234 bytes kept in" in line and "cifar-10-binary.tar.gz.part" in line
    assert "run the same command again to resume" in line


# ------------------------------------------------------------------ 11. small ones

def test_pytest_shows_its_summary_line():
    text = (ROOT / "pyproject.toml").read_text()
    assert not re.search(r"^addopts\s*=.*-q", text, flags=re.M)


def test_random_search_summary_names_no_update_rule(tmp_path, learnable_data_dir):
    cfg = tmp_path / "search.yaml"
    cfg.write_text("data:\n  num_val: 50\noptimizer:\n  method: random_search\n  trials: 20\n")
    r = invoke("train", "--config", cfg, "--data-dir", learnable_data_dir, "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    summary = next(line for line in r.output.splitlines() if "svm / random_search" in line)
    assert "(sgd)" not in summary and "trials" in summary


def test_a_read_only_data_folder_is_reported_before_hashing(tmp_path, fake_archive, monkeypatch):
    path, md5 = fake_archive()
    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: not (Path(p) == ro and mode & os.W_OK)
                        and real_access(p, mode, **kw))
    hashed = []
    monkeypatch.setattr(cifar10_mod, "md5sum", lambda p: hashed.append(p) or md5)
    r = invoke("download", "--archive", path, "--data-dir", ro)
    assert r.exit_code == 1 and "not writable" in one_line_error(r), r.output
    assert hashed == []


# ------------------------------------------------------------------ 12. a reader that stops early (`| head`)

def _linclf(*args, stdout, code: str = "") -> subprocess.Popen:
    """The CLI ``linclf ARGS`` in a new Python, stdout ``stdout`` (a pipe end or PIPE), stderr captured; ``code``
    runs before it."""
    main = f"import sys\n{code}\nfrom linclf.cli import main\nmain(sys.argv[1:])"
    return subprocess.Popen([sys.executable, "-c", main, *map(str, args)], stdout=stdout, stderr=subprocess.PIPE,
                            cwd=ROOT)


def test_features_list_into_head_1_ends_quietly(tmp_path):
    folder = tmp_path / "features-cache" / "pixels-0123456789abcdef"
    folder.mkdir(parents=True)
    for i in range(1000):        # a listing far longer than a pipe holds (64 KB): it has to wait for its reader
        (folder / f"{i:016x}.npy").write_bytes(b"")
    p = _linclf("features", "--list", "--data-dir", tmp_path, stdout=subprocess.PIPE)
    first = p.stdout.readline().decode()
    p.stdout.close()                                               # what `head -1` does after one line
    err = p.stderr.read().decode()
    assert p.wait() == 141 and err == ""                           # 128 + SIGPIPE, as for `git log | head`
    assert first == f"{tmp_path / 'features-cache'}: 1000 entries, 0 B\n"


def test_a_command_started_with_stderr_or_stdout_closed():
    """`linclf ... 2>&-` (a daemon, a cron line): the result on stdout; with stdout closed, --json fails in one line."""
    cmd = f"{sys.executable} -m linclf gradcheck --config softmax --synthetic --checks 3 --json 2>&-"
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0 and json.loads(r.stdout)["passed"] is True
    cmd = f"{sys.executable} -m linclf gradcheck --config softmax --synthetic --checks 3 --json >&-"
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert (r.returncode, r.stderr) == (1, "error: stdout is closed, so the JSON result cannot be printed\n")


def test_a_json_document_cut_by_its_reader_ends_141(tmp_path):
    """One document far longer than a pipe holds, its reader gone after 10 bytes: 141, not 0 with half of it."""
    folder = tmp_path / "features-cache" / "pixels-0123456789abcdef"
    folder.mkdir(parents=True)
    for i in range(1000):
        (folder / f"{i:016x}.npy").write_bytes(b"")
    p = _linclf("features", "--list", "--json", "--data-dir", tmp_path, stdout=subprocess.PIPE)
    assert p.stdout.read(10) == b'{"cache": '
    p.stdout.close()
    assert (p.wait(), p.stderr.read().decode()) == (141, "")


@pytest.mark.parametrize("args", [["config"], ["--help"], ["--version"], ["eval", "--help"]])
def test_every_command_ends_quietly_when_stdout_is_already_closed(args):
    read, write = os.pipe()
    os.close(read)
    p = _linclf(*args, stdout=write)
    os.close(write)
    assert (p.wait(), p.stderr.read().decode()) == (141, "")


def test_a_broken_pipe_that_is_not_stdout_is_still_an_error():
    p = _linclf("config", stdout=subprocess.PIPE, code="import linclf.config as c; "
                "c.to_yaml = lambda cfg: (_ for _ in ()).throw(BrokenPipeError(32, 'Broken pipe'))")
    out, err = p.communicate()
    assert (p.returncode, out, err.decode()) == (1, b"", "error: Broken pipe\n")


# ------------------------------------------------------------------ 13. an atomic write to a folder

@pytest.mark.parametrize("write", [lambda p: write_text_atomic(p, "x"), lambda p: write_json_atomic(p, {})])
def test_an_atomic_write_to_a_folder_says_so_before_writing(tmp_path, write):
    folder = tmp_path / "nc"
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match=f"^{re.escape(str(folder))} is a folder, so no file can be written under that "
                                                "name; give another file name or move the folder away$"):
        write(folder)
    assert [p.name for p in tmp_path.iterdir()] == ["nc"] and list(folder.iterdir()) == []
