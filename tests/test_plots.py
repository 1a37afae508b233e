"""Figures of a run and of a sweep: the files promised, valid PNGs of the promised size, clear errors."""
from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from conftest import invoke, one_line_error, optional, small_config, train_cli

optional("matplotlib")
Image = optional("PIL.Image")

from linclf.plots import curves, figure, runs, sweeps  # noqa: E402
from linclf.errors import LinclfWarning  # noqa: E402
from linclf.training.run_folder import history_csv  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RUN_FIGURES = ["loss.png", "accuracy.png", "templates.png", "confusion.png"]
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CONFIG = small_config(log_every=2)


def assert_png(path: Path) -> None:
    """A complete PNG whose pixel size is the promised figure size times the dpi."""
    assert path.read_bytes()[:8] == PNG_MAGIC, path
    w, h = figure.SIZES[path.name]
    with Image.open(path) as img:
        img.load()
        assert img.size == (round(w * figure.DPI), round(h * figure.DPI)), path


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


@pytest.fixture
def run_dir(tmp_path, config, learnable_data_dir):
    out = tmp_path / "run"
    r = train_cli(config, learnable_data_dir, out)
    assert r.exit_code == 0, r.output
    return out


# ------------------------------------------------------------------- runs


def test_plot_run_writes_every_figure(run_dir, learnable_data_dir):
    r = invoke("plot", run_dir, "--data-dir", learnable_data_dir)
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == [str(run_dir / f) for f in RUN_FIGURES]
    for f in RUN_FIGURES:
        assert_png(run_dir / f)
    with Image.open(run_dir / "loss.png") as img:
        assert img.size == (800, 400)
    assert no_temp_files(run_dir)


def test_train_plots_writes_the_figures_into_the_run_folder(tmp_path, config, learnable_data_dir):
    out = tmp_path / "run"
    r = train_cli(config, learnable_data_dir, out, "--plots", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["plots"] == [str(out / f) for f in RUN_FIGURES]
    for f in RUN_FIGURES:
        assert_png(out / f)
    r = invoke("train", "--config", config, "--data-dir", learnable_data_dir, "--out", tmp_path / "run2", "--plots")
    assert r.exit_code == 0, r.output
    assert [ln for ln in r.stdout.splitlines() if ln.startswith("figure: ")] == \
        [f"figure: {tmp_path / 'run2' / f}" for f in RUN_FIGURES]
    assert r.stdout.splitlines()[-1].startswith("test accuracy")


def test_plot_out_folder_and_split(run_dir, learnable_data_dir, tmp_path):
    out = tmp_path / "figs" / "here"
    r = invoke("plot", run_dir, "--out", out, "--split", "train", "--data-dir", learnable_data_dir)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == sorted(RUN_FIGURES)
    assert not list(run_dir.glob("*.png"))


def test_confusion_is_skipped_with_a_warning_when_the_data_cannot_be_loaded(run_dir, tmp_path):
    r = invoke("plot", run_dir, "--archive", tmp_path / "missing.tar.gz")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == [str(run_dir / f) for f in RUN_FIGURES[:3]]
    warning = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warning) == 1 and "confusion.png skipped" in warning[0] and "missing.tar.gz" in warning[0]
    assert not (run_dir / "confusion.png").exists()


def test_a_history_alone_gives_the_curves(tmp_path):
    rows = [{"step": s, "epoch": s / 10, "loss": 2.3 * math.exp(-s / 20), "lr": 1e-3} for s in range(1, 41)]
    rows += [{"step": s, "epoch": s / 10, "train_accuracy": 0.2 + s / 100, "val_accuracy": 0.15 + s / 100}
             for s in (10, 20, 30, 40)]
    (tmp_path / "history.csv").write_text(history_csv(sorted(rows, key=lambda r: r["step"])))
    with pytest.warns(LinclfWarning, match="no model.npz"):
        written = runs.plot_run(tmp_path)
    assert [p.name for p in written] == ["loss.png", "accuracy.png"]
    for p in written:
        assert_png(p)


def test_the_library_call_draws_the_confusion_it_is_given(run_dir, learnable_data_dir, tmp_path):
    from linclf.training.evaluate import run_eval

    _, ev = run_eval(run_dir / "model.npz", "val", data_dir=learnable_data_dir)
    written = runs.plot_run(run_dir, tmp_path / "out", evaluation=ev)
    assert [p.name for p in written] == RUN_FIGURES


# ------------------------------------------------------------------ sweeps


def history(final: float, steps: int = 30) -> list[dict]:
    """Loss rows decaying to ``final`` with per-epoch accuracy rows interleaved (the history.csv shape)."""
    rows = []
    for s in range(1, steps + 1):
        rows.append({"step": s, "epoch": s / 10, "loss": final + 2.0 * math.exp(-s / 6), "lr": 1e-3,
                     "train_accuracy": None, "val_accuracy": None})
        if s % 10 == 0:
            rows.append({"step": s, "epoch": s / 10, "loss": None, "lr": None, "train_accuracy": 0.3,
                         "val_accuracy": 0.28})
    return rows


def make_sweep(folder: Path, trials: list[dict], *, with_json: bool = True) -> Path:
    """A sweep folder as `linclf sweep` writes it: results.csv, results.json (with histories), best.yaml."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = [k for k in trials[0] if k not in ("trial", "val_accuracy", "status", "seconds", "history")]
    fields = ["trial", *keys, "val_accuracy", "status", "seconds"]
    with open(folder / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for t in trials:
            w.writerow({k: ("" if t.get(k) is None else t[k]) for k in fields})
    if with_json:
        (folder / "results.json").write_text(json.dumps(trials))
    best = max((t for t in trials if t["status"] == "ok"), key=lambda t: t["val_accuracy"])
    (folder / "best.yaml").write_text("".join(f"# {k}: {best[k]}\n" for k in keys))
    return folder


def grid_trials(updates=("sgd", "adam"), lrs=(1e-4, 1e-3, 1e-2), regs=(1e-3, 1e-1)) -> list[dict]:
    trials = []
    for update in updates:
        for lr in lrs:
            for reg in regs:
                diverged = update == "sgd" and lr == lrs[-1]
                acc = None if diverged else round(0.2 + 0.05 * math.log10(lr / lrs[0]) - reg, 4) + \
                    (0.03 if update == "adam" else 0)
                t = {"trial": len(trials), "optimizer.lr": lr, "model.reg": reg}
                if len(updates) > 1:
                    t["optimizer.update"] = update
                trials.append({**t, "val_accuracy": acc, "status": "diverged" if diverged else "ok",
                               "seconds": 1.5, "history": history(1.0 + reg + (0.2 if update == "sgd" else 0))})
    return trials


def test_plot_sweep_writes_both_figures(tmp_path):
    sweep = make_sweep(tmp_path / "sweep", grid_trials())
    r = invoke("plot", sweep)
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == [str(sweep / "sweep_lr_reg.png"), str(sweep / "sweep_updates.png")]
    for name in ("sweep_lr_reg.png", "sweep_updates.png"):
        assert_png(sweep / name)
    assert no_temp_files(sweep)


def test_sweep_figures_read_the_contract(tmp_path):
    results = sweeps.read_results(make_sweep(tmp_path / "sweep", grid_trials()))
    assert len(results) == 12 and results[0]["optimizer.lr"] == 1e-4 and results[0]["history"]
    fig = sweeps.sweep_lr_reg_figure(results)
    ax = fig.axes[0]
    assert "learning rate" in ax.get_xlabel() and "regularisation" in ax.get_ylabel()
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert "(2 diverged)" in ax.get_title() and "best 0.329" in ax.get_title()
    assert fig.axes[1].get_ylabel() == "validation accuracy"          # the colour bar
    fig = sweeps.sweep_updates_figure(results)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert [lb.split(",")[0] for lb in labels] == ["sgd", "adam"]      # sgd's best is lr 1e-3: 1e-2 diverged
    assert "lr 0.001" in labels[0] and "lr 0.01" in labels[1]


def test_a_one_parameter_sweep_is_a_1d_plot(tmp_path):
    trials = [{k: v for k, v in t.items() if k != "model.reg"}
              for t in grid_trials(updates=("adam",), regs=(1e-3,))]
    sweep = make_sweep(tmp_path / "sweep", trials)
    r = invoke("plot", sweep)
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == [str(sweep / "sweep_lr_reg.png")]      # one update rule: no overlay
    ax = sweeps.sweep_lr_reg_figure(sweeps.read_results(sweep)).axes[0]
    assert "learning rate" in ax.get_xlabel() and ax.get_ylabel() == "validation accuracy"
    best = max(t["val_accuracy"] for t in trials)
    assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] >= best + 0.02     # the best trial's marker is not cut
    reg_only = [{**t, "optimizer.lr": 1e-3, "model.reg": r} for t, r in zip(trials, (0.0, 1e-2, 1.0))]
    ax = sweeps.sweep_lr_reg_figure(reg_only).axes[0]
    assert "regularisation" in ax.get_xlabel() and ax.get_xscale() == "symlog"   # reg 0 still shown


def test_a_sweep_without_histories_skips_the_overlay(tmp_path):
    sweep = make_sweep(tmp_path / "sweep", grid_trials(), with_json=False)
    r = invoke("plot", sweep)
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == [str(sweep / "sweep_lr_reg.png")]
    assert "warning: sweep_updates.png skipped" in r.stderr


def test_an_empty_sweep_is_an_error(tmp_path):
    (tmp_path / "results.csv").write_text("trial,optimizer.lr,val_accuracy,status,seconds\n")
    r = invoke("plot", tmp_path)
    assert r.exit_code == 1 and "holds no trials" in one_line_error(r, only=True)


# ------------------------------------------------------------------ errors


def test_a_folder_that_is_neither_is_a_one_line_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    r = invoke("plot", tmp_path)
    assert r.exit_code == 2 and "neither a run folder" in one_line_error(r, only=True)
    r = invoke("plot", tmp_path / "missing")
    assert r.exit_code == 2 and "no folder at" in one_line_error(r, only=True)
    r = invoke("plot", tmp_path / "notes.txt")
    assert r.exit_code == 2 and "is a file" in one_line_error(r, only=True)


def test_missing_matplotlib_says_how_to_install_it(run_dir, tmp_path, config, learnable_data_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    r = invoke("plot", run_dir, "--data-dir", learnable_data_dir)
    assert r.exit_code == 2 and "pip install 'linclf[plot]'" in one_line_error(r, only=True)
    assert not list(run_dir.glob("*.png"))
    r = train_cli(config, learnable_data_dir, tmp_path / "run2", "--plots")       # refused before training
    assert r.exit_code == 2 and "pip install 'linclf[plot]'" in one_line_error(r, only=True)
    assert not (tmp_path / "run2").exists()
    with pytest.raises(figure.PlotDependencyError):
        runs.loss_figure(history(1.0))


def test_importing_linclf_does_not_import_matplotlib():
    code = "import sys, linclf.plots.runs, linclf.plots.sweeps, linclf.cli; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------ the figure parts


def test_templates_undo_the_scale_and_the_cifar_order():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, 32, 32, 3)).astype(np.float64)
    images[:, 0, 0, :] = (0, 255, 0)                       # every image spans 0..255 exactly
    images[:, 0, 1, :] = (255, 0, 255)
    rows = images.transpose(0, 3, 1, 2).reshape(10, 3072)  # CIFAR order: 1024 R, 1024 G, 1024 B
    pixel_space = rows * 0.01 - 0.5                         # the template acting on raw pixels
    scale = rng.uniform(0.5, 2.0, 3072)                     # 1 / std per pixel
    W = np.hstack([pixel_space / scale, np.full((10, 1), 7.0)])   # acts on (x - mean) * scale; bias last
    out = runs.template_images(W, scale=scale, bias=True)
    assert out.shape == (10, 32, 32, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, images.astype(np.uint8))
    np.testing.assert_array_equal(runs.template_images(pixel_space, bias=False), images.astype(np.uint8))
    flat = runs.template_images(np.zeros((2, 3073)))
    assert (flat == 128).all()                              # a constant template is mid-grey, not NaN
    with pytest.raises(ValueError, match="3072"):
        runs.template_images(np.zeros((10, 1025)))


def test_templates_figure_has_a_labelled_panel_per_class():
    fig = runs.templates_figure(np.random.default_rng(0).standard_normal((10, 3073)), CLASSES)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == CLASSES and any(t.get_text() for t in fig.texts)     # the suptitle (get_suptitle: >= 3.8)


def test_confusion_figure_labels():
    cm = np.diag(np.arange(1, 11)) + 1
    ax = runs.confusion_figure(cm, CLASSES, split="test").axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == CLASSES
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
    assert "test split" in ax.get_title() and "accuracy" in ax.get_title()


def test_curves_need_values():
    with pytest.raises(figure.NothingToPlot):
        runs.loss_figure([{"step": 1.0, "epoch": 0.1, "train_accuracy": 0.5}])
    with pytest.raises(figure.NothingToPlot):
        runs.accuracy_figure([{"step": 1.0, "epoch": 0.1, "loss": 2.0}])
    ax = runs.accuracy_figure(history(1.0), num_classes=10).axes[0]
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "accuracy"
    assert runs.loss_figure(history(1.0), search=True).axes[0].get_xlabel() == "trial"


def test_read_history_round_trips_history_csv(tmp_path):
    rows = history(1.0, steps=10)
    (tmp_path / "history.csv").write_text(history_csv(rows))
    back = curves.read_history(tmp_path / "history.csv")
    assert back[0] == {"step": 1.0, "epoch": 0.1, "loss": pytest.approx(rows[0]["loss"]), "lr": 1e-3,
                       "train_accuracy": None, "val_accuracy": None}
    assert back[-1]["val_accuracy"] == 0.28 and back[-1]["loss"] is None
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(figure.PlotError, match="bad.csv"):
        curves.read_history(tmp_path / "bad.csv")


def test_smooth():
    np.testing.assert_allclose(curves.smooth([3.0] * 50), 3.0)          # bias-corrected: no warm-up dip
    np.testing.assert_array_equal(curves.smooth([1.0, 5.0, 2.0], beta=0.0), [1.0, 5.0, 2.0])
    noisy = 1 + np.random.default_rng(0).standard_normal(200)
    assert curves.smooth(noisy).std() < noisy.std() / 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert curves.smooth([]).shape == (0,)
