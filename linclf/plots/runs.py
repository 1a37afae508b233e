"""Figures of a run folder: loss.png, accuracy.png, templates.png (or centroids.png), confusion.png.

``plot_run`` writes them from what the folder holds: the loss per step (each
logged value and a smoothed line) and the train / val accuracy per epoch from
history.csv (or an interrupted run's checkpoint), each class's row of W as an
image from model.npz (the k-means centroids for a run on k-means features),
and, given an evaluation, the confusion matrix. A figure the folder cannot
make is skipped with a ``LinclfWarning``; the others are still written.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import yaml

from ..core.search import SEARCH_METHODS
from .centroids import centroids_figure, kmeans_centroids
from .curves import read_history, series, smooth
from .figure import NothingToPlot, PlotError, new_figure, require_matplotlib, warn_skipped, write_figure
from .folders import folder_kind, out_folder, run_model_file

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from ..training.evaluate import Evaluation

__all__ = ["RUN_FIGURES", "plot_run", "template_images", "loss_figure", "accuracy_figure", "templates_figure",
           "confusion_figure"]

RUN_FIGURES = ("loss.png", "accuracy.png", "centroids.png", "templates.png", "confusion.png")   # what plot_run writes

_CIFAR_SHAPE = (3, 32, 32)                 # CIFAR row order: 1024 R, 1024 G, 1024 B, each row-major 32x32


def plot_run(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None, *,
             evaluation: "Evaluation | None" = None, split: str = "val") -> list[Path]:
    """Write a run folder's figures into ``out_dir`` (default: the run folder); return the paths written.

    loss.png and accuracy.png come from history.csv, templates.png (pixel models) or centroids.png
    (k-means models; other features have neither) from model.npz, confusion.png from ``evaluation``
    (e.g. ``evaluate.run_eval(model, split)[1]``) when given; ``split`` names that evaluation's split.
    """
    run_dir = Path(run_dir)
    if folder_kind(run_dir) != "run":
        raise PlotError(f"{run_dir} is a sweep folder, not a run folder; plot it with plot_sweep")
    require_matplotlib()
    out = out_folder(run_dir, out_dir)
    written: list[Path] = []
    label, search = _run_info(run_dir)
    model, history = None, None
    model_file = run_model_file(run_dir)
    if model_file is not None:
        from ..core.model import LinearClassifier, load_npz

        model = LinearClassifier.load(model_file)
        if model_file.name == "checkpoint.npz" and not (run_dir / "history.csv").is_file():
            history = _checkpoint_history(load_npz(model_file))
    if history is None and (run_dir / "history.csv").is_file():
        history = read_history(run_dir / "history.csv")
    if history is not None:
        num_classes = model.num_classes if model is not None else None
        written += write_figure("loss.png", out, lambda: loss_figure(history, subtitle=label, search=search))
        written += write_figure("accuracy.png", out, lambda: accuracy_figure(history, num_classes=num_classes,
                                                                             subtitle=label, search=search))
    else:
        warn_skipped("loss.png and accuracy.png", f"no history.csv in {run_dir}")
    if model is not None and model.features_kind == "kmeans":
        written += write_figure("centroids.png", out,
                                lambda: centroids_figure(*kmeans_centroids(model), subtitle=label))
    elif model is not None and model.features_kind == "pixels":
        written += write_figure("templates.png", out, lambda: templates_figure(
            model.W, model.classes, scale=model.prep.scale, bias=model.prep.bias, subtitle=label))
    if model is not None:
        if evaluation is not None:
            written += write_figure("confusion.png", out, lambda: confusion_figure(evaluation.confusion,
                                                                                   model.classes, split=split))
    else:
        warn_skipped("templates.png and confusion.png", f"no model.npz or checkpoint.npz in {run_dir}")
    return written


def _run_info(run_dir: Path) -> tuple[str, bool]:
    """(``softmax, adam, lr 0.0003, reg 0.01``, is it a random search) from a run's config.yaml."""
    try:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
        m, o = cfg.get("model", {}), cfg.get("optimizer", {})
        method = o.get("method", "sgd")
    except (OSError, yaml.YAMLError, AttributeError):
        return "", False
    search = method in SEARCH_METHODS
    try:
        how = f"{o.get('update', 'sgd')}, lr {o['lr']:g}" if method == "sgd" else method
        how = f"gd, lr {o['lr']:g}" if method == "gd" else how
        return f"{m['loss']}, {how}, reg {m['reg']:g}", search
    except (KeyError, TypeError, ValueError):
        return "", search


def _checkpoint_history(arrays: dict) -> list[dict] | None:
    """The history rows a checkpoint stores (None when it holds none)."""
    if "ckpt_history" not in arrays:
        return None
    try:
        rows = json.loads(str(arrays["ckpt_history"]))
    except ValueError:
        return None
    return rows if isinstance(rows, list) else None


def loss_figure(history: Sequence[dict], *, subtitle: str = "", search: bool = False) -> "Figure":
    """The loss over steps: each logged value and a smoothed line (history rows with ``step``, ``loss``).

    ``search``: the rows are a random search's trials and best loss so far (drawn without smoothing).
    """
    steps, loss = series(history, "step", "loss")
    if len(steps) == 0:
        raise NothingToPlot("the history holds no loss values")
    fig = new_figure("loss.png")
    ax = fig.add_subplot()
    if search:
        ax.plot(steps, loss, color="tab:blue", lw=2, marker="." if len(steps) < 60 else None,
                label="best loss so far")
    else:
        ax.plot(steps, loss, color="tab:blue", alpha=0.35, lw=1, marker="." if len(steps) < 60 else None,
                label="loss (logged steps)")
        ax.plot(steps, smooth(loss), color="tab:blue", lw=2, label="smoothed (moving average)")
    ax.set_xlabel("trial" if search else "step (iteration)")
    ax.set_ylabel("loss (data + regularisation)")
    ax.set_title("Training loss" + (f"\n{subtitle}" if subtitle else ""))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    return fig


def accuracy_figure(history: Sequence[dict], *, num_classes: int | None = None, subtitle: str = "",
                    search: bool = False) -> "Figure":
    """Train and validation accuracy per epoch (history rows with ``epoch`` and the accuracies).

    ``search``: a random search's history, whose ``epoch`` counts trials.
    """
    fig = new_figure("accuracy.png")
    ax = fig.add_subplot()
    drawn = 0
    for key, label, marker in (("train_accuracy", "train (subset)", "o"), ("val_accuracy", "validation", "s")):
        epochs, acc = series(history, "epoch", key)
        if len(epochs):
            ax.plot(epochs, acc, marker=marker, ms=4, lw=1.5, label=label)
            drawn += 1
    if not drawn:
        raise NothingToPlot("the history holds no accuracy values")
    if num_classes:
        ax.axhline(1.0 / num_classes, color="gray", ls=":", lw=1, label=f"chance (1/{num_classes})")
    ax.set_ylim(0, min(1.0, ax.get_ylim()[1] + 0.02))
    ax.set_xlabel("trial" if search else "epoch")
    ax.set_ylabel("accuracy")
    ax.set_title(("Accuracy after the search" if search else "Accuracy per epoch")
                 + (f"\n{subtitle}" if subtitle else ""))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return fig


def templates_figure(W: np.ndarray, classes: Sequence[str], *, scale: np.ndarray | None = None,
                     bias: bool = True, subtitle: str = "") -> "Figure":
    """Each class's row of W (C, 3072 [+1]) as a 32x32 colour image in a grid of 5 columns."""
    images = template_images(W, scale, bias)
    fig = new_figure("templates.png")
    cols = min(5, len(images))
    rows = math.ceil(len(images) / cols)
    for i, (img, name) in enumerate(zip(images, classes)):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(img, interpolation="nearest")
        ax.set_title(name, fontsize=11)
        ax.set_axis_off()
    fig.suptitle("Learned templates: rows of W as images (each min-max scaled)"
                 + (f"\n{subtitle}" if subtitle else ""))
    return fig


def confusion_figure(confusion: np.ndarray, classes: Sequence[str], *, split: str = "val") -> "Figure":
    """The confusion matrix (C, C) (rows true, columns predicted): colour = row fraction, text = count."""
    cm = np.asarray(confusion)
    support = cm.sum(axis=1, keepdims=True)
    frac = cm / np.maximum(support, 1)
    acc = np.trace(cm) / max(cm.sum(), 1)
    fig = new_figure("confusion.png")
    ax = fig.add_subplot()
    top = max(float(frac.max()), 1e-12)                 # colour range 0..largest fraction: contrast
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=top)
    C = len(cm)
    for i in range(C):
        for j in range(C):
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=8 if C <= 12 else 6,
                    color="white" if frac[i, j] > 0.6 * top else "black")
    ax.set_xticks(range(C), labels=classes, rotation=45, ha="right")
    ax.set_yticks(range(C), labels=classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"Confusion matrix ({split} split, {int(cm.sum())} images, accuracy {acc:.3f})")
    fig.colorbar(im, ax=ax, label="fraction of the true class", shrink=0.8)
    return fig


def template_images(W: np.ndarray, scale: np.ndarray | None = None, bias: bool = True) -> np.ndarray:
    """Class templates (C, 32, 32, 3) uint8 from W (C, 3072 [+1 bias]), each min-max scaled to 0..255.

    W acts on preprocessed rows ``(x - mean) * scale``; ``W * scale`` is the
    same template acting on raw pixels (the mean only shifts the score), so
    that is what is drawn. NothingToPlot (a ValueError) unless W holds 32x32x3 pixel weights.
    """
    P = int(np.prod(_CIFAR_SHAPE))
    T = np.asarray(W, dtype=np.float64)[:, :W.shape[1] - int(bias)]
    if T.shape[1] != P:
        raise NothingToPlot(f"templates need {P} pixel weights per class (32x32x3), W has {T.shape[1]}")
    if scale is not None:
        T = T * np.asarray(scale, dtype=np.float64)
    T = T.reshape(len(T), *_CIFAR_SHAPE).transpose(0, 2, 3, 1)          # (C, 32, 32, 3)
    lo = T.min(axis=(1, 2, 3), keepdims=True)
    span = T.max(axis=(1, 2, 3), keepdims=True) - lo
    out = np.where(span > 0, (T - lo) / np.where(span > 0, span, 1.0) * 255.0, 127.5)
    return np.round(out).astype(np.uint8)
