"""Pictures of a run or a sweep as PNG files (matplotlib, the optional extra ``plot``).

A run folder gives ``loss.png`` (per-step loss and a smoothed line),
``accuracy.png`` (train / val accuracy per epoch), ``templates.png`` (each
class's row of W as an image) and, given an evaluation, ``confusion.png``. A
sweep folder gives ``sweep_lr_reg.png`` (val accuracy over learning rate and
regularisation) and, when the sweep varies ``optimizer.update``,
``sweep_updates.png`` (the best trial's loss curve per update rule). A run on
k-means features also gives ``centroids.png`` (the learned centroids as colour
patches, un-whitened for display) instead of ``templates.png``.

matplotlib is imported only inside the functions that draw, so importing linclf
never imports it. Figures are built with ``matplotlib.figure.Figure`` and the
Agg renderer, without pyplot: nothing depends on a display, no global figure
state is kept and a caller's own backend (e.g. a notebook's) is left alone.
Files are written atomically. A figure that cannot be drawn from what a folder
holds is skipped with a ``LinclfWarning``; the others are still written.
"""
from __future__ import annotations

import csv
import json
import math
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
import yaml

from .errors import LinclfError, LinclfWarning, UsageError
from .fsutil import atomic_open

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .training.evaluate import Evaluation

__all__ = ["PlotError", "PlotDependencyError", "NothingToPlot", "INSTALL_HINT", "DPI", "SIZES", "require_matplotlib",
           "folder_kind", "plot_run", "plot_sweep", "run_model_file", "read_history", "read_results", "smooth",
           "template_images", "centroid_images", "centroids_figure", "loss_figure", "accuracy_figure",
           "templates_figure", "confusion_figure",
           "sweep_lr_reg_figure", "sweep_updates_figure", "save_figure"]

INSTALL_HINT = "pip install 'linclf[plot]'"
DPI = 100
SIZES = {                                  # inches; pixels = inches * DPI
    "loss.png": (8.0, 4.0),
    "accuracy.png": (8.0, 4.0),
    "templates.png": (8.0, 4.0),
    "centroids.png": (8.0, 8.0),
    "confusion.png": (7.0, 6.0),
    "sweep_lr_reg.png": (8.0, 5.0),
    "sweep_updates.png": (8.0, 4.0),
}
RUN_MARKERS = ("model.npz", "history.csv", "checkpoint.npz")
SWEEP_MARKER = "results.csv"
LR_KEY, REG_KEY, UPDATE_KEY = "optimizer.lr", "model.reg", "optimizer.update"
_RESULT_FIELDS = ("trial", "val_accuracy", "status", "seconds")
_CIFAR_SHAPE = (3, 32, 32)                 # CIFAR row order: 1024 R, 1024 G, 1024 B, each row-major 32x32
_MARKERS = ("o", "s", "^", "D", "v", "P", "*", "h")


class PlotError(LinclfError):
    """A folder holds nothing that can be plotted, or a file in it is malformed (exit 1)."""


class PlotDependencyError(PlotError):
    """matplotlib is not installed (exit 1); the message says how to install it."""


class NothingToPlot(ValueError):
    """The data given to a figure function holds nothing that figure can show."""


def require_matplotlib() -> None:
    """Raise PlotDependencyError (with the install hint) unless matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotDependencyError(f"plots need matplotlib, which is not installed: {INSTALL_HINT}") from None


def _skip(name: str, why: str) -> None:
    """Warn that figure ``name`` is not written and why."""
    warnings.warn(f"{name} skipped: {why}", LinclfWarning, stacklevel=3)


# ----------------------------------------------------------------- reading


def _number(text: str | None) -> float | None:
    """A CSV cell as a float; None for an empty cell, non-numeric text or NaN."""
    if text is None or text.strip() == "":
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return None if math.isnan(value) else value


def read_history(path: str | os.PathLike) -> list[dict]:
    """The rows of a run's history.csv as dicts of floats (None for empty cells)."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "step" not in reader.fieldnames:
            raise PlotError(f"{path} is not a linclf history (no 'step' column); was it written by `linclf train`?")
        return [{k: _number(v) for k, v in row.items() if k is not None} for row in reader]


def _cell(text: str | None) -> Any:
    """A results.csv cell: a float when it is a number, else the text (None when empty)."""
    if text is None or text.strip() == "":
        return None
    try:
        return float(text)
    except ValueError:
        return text


def read_results(sweep_dir: str | os.PathLike) -> list[dict]:
    """The trials of a sweep: results.csv rows (numbers as floats), each with the ``history`` of results.json.

    ``history`` is a list of history rows, or None when results.json is absent
    or does not hold that trial.
    """
    sweep_dir = Path(sweep_dir)
    path = sweep_dir / SWEEP_MARKER
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [f for f in ("trial", "val_accuracy", "status") if f not in (reader.fieldnames or ())]
        if missing:
            raise PlotError(f"{path} is not a linclf sweep result: column(s) {', '.join(missing)} missing")
        rows = [{k: _cell(v) for k, v in row.items() if k is not None} for row in reader]
    histories = _read_histories(sweep_dir / "results.json")
    for row in rows:
        row["history"] = histories.get(row["trial"])
    return rows


def _read_histories(path: Path) -> dict[Any, list[dict]]:
    """trial -> history rows from a sweep's results.json ({} when absent or unreadable)."""
    if not path.exists():
        return {}
    try:
        trials = json.loads(path.read_text(encoding="utf-8"))
        return {_cell(str(t["trial"])): t["history"] for t in trials
                if isinstance(t, dict) and isinstance(t.get("history"), list)}
    except (ValueError, TypeError, KeyError, OSError) as e:
        warnings.warn(f"{path} is not readable ({e}); loss curves of the trials are not plotted",
                      LinclfWarning, stacklevel=3)
        return {}


def _finite(value: Any) -> bool:
    """True for a real, finite number."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _series(history: Iterable[dict], x: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) float arrays (n,) of the rows where both keys hold finite numbers."""
    pairs = [(float(r[x]), float(r[y])) for r in history if _finite(r.get(x)) and _finite(r.get(y))]
    if not pairs:
        return np.empty(0), np.empty(0)
    xs, ys = np.array(pairs).T
    return xs, ys


def smooth(values: Sequence[float] | np.ndarray, beta: float | None = None) -> np.ndarray:
    """Bias-corrected exponential moving average (n,) of values (n,).

    ``beta`` defaults to ``1 - 10/n`` clipped to [0, 0.98]: an averaging window
    of about a tenth of the points, none for 10 points or fewer.
    """
    v = np.asarray(values, dtype=np.float64)
    if beta is None:
        beta = float(np.clip(1.0 - 10.0 / max(len(v), 1), 0.0, 0.98))
    out = np.empty_like(v)
    avg = 0.0
    for i, x in enumerate(v):
        avg = beta * avg + (1.0 - beta) * x
        out[i] = avg / (1.0 - beta ** (i + 1)) if beta > 0 else x
    return out


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


def centroid_images(centroids: np.ndarray, patch: int, whiten: np.ndarray | None = None,
                    mean: np.ndarray | None = None, limit: int | None = None) -> np.ndarray:
    """Centroids (k, 3 * patch * patch) -> colour patches (k, patch, patch, 3) float in [0, 1].

    A centroid lives in whitened patch space ``z = (x - mean) @ whiten``; it is
    drawn as ``x = z @ pinv(whiten) + mean`` (the patch it stands for), each
    min-max normalised to [0, 1]. Vectors are channel-major (3, patch, patch),
    the order of CIFAR rows. NothingToPlot unless the shapes fit.
    """
    C = np.asarray(centroids, dtype=np.float64)
    d = 3 * patch * patch
    if C.ndim != 2 or C.shape[1] != d or len(C) == 0:
        raise NothingToPlot(f"centroids of {patch}x{patch} colour patches need shape (k, {d}), got {C.shape}")
    if limit is not None:
        C = C[:limit]
    if whiten is not None:
        Wz = np.asarray(whiten, dtype=np.float64)
        if Wz.shape != (d, d):
            raise NothingToPlot(f"the whitening matrix has shape {Wz.shape}, expected {(d, d)}")
        C = C @ np.linalg.pinv(Wz)
    if mean is not None:
        C = C + np.asarray(mean, dtype=np.float64).reshape(1, d)
    P = C.reshape(len(C), 3, patch, patch).transpose(0, 2, 3, 1)
    lo = P.min(axis=(1, 2, 3), keepdims=True)
    span = P.max(axis=(1, 2, 3), keepdims=True) - lo
    return np.where(span > 0, (P - lo) / np.where(span > 0, span, 1.0), 0.5)


def centroids_figure(images: np.ndarray, *, subtitle: str = "") -> "Figure":
    """Colour patches (k, p, p, 3) in [0, 1] as one grid image (a 1-pixel gap between patches)."""
    k, p = len(images), images.shape[1]
    cols = int(math.ceil(math.sqrt(k)))
    rows = int(math.ceil(k / cols))
    grid = np.ones((rows * (p + 1) + 1, cols * (p + 1) + 1, 3))
    r, c = np.divmod(np.arange(k), cols)
    ys = (r * (p + 1) + 1)[:, None] + np.arange(p)[None, :]        # (k, p)
    xs = (c * (p + 1) + 1)[:, None] + np.arange(p)[None, :]
    grid[ys[:, :, None], xs[:, None, :]] = images
    fig = _figure("centroids.png")
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    fig.suptitle(f"{k} k-means centroids as colour patches (un-whitened, each normalised to [0, 1])"
                 + (f"\n{subtitle}" if subtitle else ""))
    return fig


def folder_kind(path: str | os.PathLike) -> str:
    """"run" (model.npz or history.csv) or "sweep" (results.csv); PlotError for anything else."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"no folder at {p}; give a folder written by `linclf train` or `linclf sweep`")
    if not p.is_dir():
        raise UsageError(f"{p} is a file; give the run or sweep folder that holds it ({p.parent})")
    if (p / SWEEP_MARKER).is_file():
        return "sweep"
    if any((p / m).is_file() for m in RUN_MARKERS):
        return "run"
    raise UsageError(f"{p} is neither a run folder (model.npz, history.csv, checkpoint.npz) nor a sweep folder (results.csv); "
                    "give a folder written by `linclf train` or `linclf sweep`")


# ----------------------------------------------------------------- drawing


def _figure(name: str) -> "Figure":
    """An empty Figure of the size ``SIZES[name]`` at ``DPI`` with constrained layout."""
    require_matplotlib()
    from matplotlib.figure import Figure

    return Figure(figsize=SIZES[name], dpi=DPI, layout="constrained")


def save_figure(fig: "Figure", path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG at ``DPI`` to ``path`` atomically; return the path."""
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=DPI)
    return path


def loss_figure(history: Sequence[dict], *, subtitle: str = "", search: bool = False) -> "Figure":
    """The loss over steps: each logged value and a smoothed line (history rows with ``step``, ``loss``).

    ``search``: the rows are a random search's trials and best loss so far (drawn without smoothing).
    """
    steps, loss = _series(history, "step", "loss")
    if len(steps) == 0:
        raise NothingToPlot("the history holds no loss values")
    fig = _figure("loss.png")
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
    fig = _figure("accuracy.png")
    ax = fig.add_subplot()
    drawn = 0
    for key, label, marker in (("train_accuracy", "train (subset)", "o"), ("val_accuracy", "validation", "s")):
        epochs, acc = _series(history, "epoch", key)
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
    fig = _figure("templates.png")
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
    fig = _figure("confusion.png")
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


# ------------------------------------------------------------ sweep drawing


def _varied(results: Sequence[dict], key: str) -> bool:
    """True when ``key`` takes at least two different values over the trials."""
    return len({r.get(key) for r in results if r.get(key) is not None}) >= 2


def _ok(r: dict) -> bool:
    """A trial that finished with a validation accuracy."""
    return r.get("status") == "ok" and _finite(r.get("val_accuracy"))


def _set_log(ax: "Axes", axis: str, values: Sequence[float]) -> None:
    """A log10 axis; symlog (0 shown) when some value is 0 or negative."""
    positive = [v for v in values if v > 0]
    setter = ax.set_xscale if axis == "x" else ax.set_yscale
    if positive and len(positive) == len(values):
        setter("log")
    else:
        setter("symlog", linthresh=min(positive) if positive else 1.0)


def _groups(results: Sequence[dict]) -> dict[Any, list[dict]]:
    """Trials by update rule when the sweep varies it, else all under None (insertion order)."""
    by: dict[Any, list[dict]] = {}
    split = _varied(results, UPDATE_KEY)
    for r in results:
        by.setdefault(r.get(UPDATE_KEY) if split else None, []).append(r)
    return by


def _best(results: Sequence[dict]) -> dict | None:
    """The ok trial of highest validation accuracy, or None."""
    ok = [r for r in results if _ok(r)]
    return max(ok, key=lambda r: r["val_accuracy"]) if ok else None


def _params(results: Sequence[dict]) -> list[str]:
    """The numeric hyperparameters to plot against: lr and / or reg, those the sweep varies."""
    return [k for k in (LR_KEY, REG_KEY) if _varied([r for r in results if _has(r, k)], k)]


def sweep_lr_reg_figure(results: Sequence[dict]) -> "Figure":
    """Val accuracy over log10 lr and log10 reg (a scatter coloured by accuracy), or over the one varied.

    ``results``: one dict per trial with ``optimizer.lr`` / ``model.reg``,
    ``val_accuracy``, ``status`` (ok | diverged | failed) and optionally
    ``optimizer.update`` (drawn as marker shapes). Diverged trials are x marks,
    failed ones are only counted in the title.
    """
    params = _params(results)
    if not params:
        raise NothingToPlot(f"the sweep varies neither {LR_KEY} nor {REG_KEY}")
    fig = _figure("sweep_lr_reg.png")
    ax = fig.add_subplot()
    if len(params) == 2:
        _scatter_2d(fig, ax, results)
    else:
        _scatter_1d(ax, results, params[0])
    counts = [f"{n} {status}" for status in ("diverged", "failed")
              if (n := sum(r.get("status") == status for r in results))]
    best = _best(results)
    head = f"Validation accuracy of {len(results)} trials" + (f" ({', '.join(counts)})" if counts else "")
    if best is not None:
        where = ", ".join(f"{_short(k)} {best[k]:.3g}" for k in params)
        head += f"\nbest {best['val_accuracy']:.3f} at {where}"
    ax.set_title(head)
    ax.grid(alpha=0.3, which="major")
    return fig


def _short(key: str) -> str:
    """``optimizer.lr`` -> ``lr``."""
    return key.rsplit(".", 1)[-1]


def _has(r: dict, *keys: str) -> bool:
    """True when every key of trial ``r`` holds a finite number."""
    return all(_finite(r.get(k)) for k in keys)


def _scatter_2d(fig: "Figure", ax: "Axes", results: Sequence[dict]) -> None:
    """lr on x, reg on y, colour = val accuracy, marker = update rule, x = diverged.

    When the sweep varies the update rule, each rule's markers are shifted a
    little along x so trials of different rules at the same (lr, reg) stay visible.
    """
    from matplotlib.lines import Line2D

    placed = [r for r in results if _has(r, LR_KEY, REG_KEY)]
    accs = [r["val_accuracy"] for r in placed if _ok(r)]
    vmin, vmax = (min(accs), max(accs)) if accs else (0.0, 1.0)
    groups = _groups(placed)
    shift = _dodge(list(groups), [r[LR_KEY] for r in placed])
    key_of = (lambda r: r.get(UPDATE_KEY)) if len(groups) > 1 else (lambda r: None)

    def x(r: dict) -> float:
        return r[LR_KEY] * shift[key_of(r)]

    mappable, handles = None, []
    for (rule, trials), marker in zip(groups.items(), _cycle(_MARKERS, len(groups))):
        good = [r for r in trials if _ok(r)]
        if good:
            mappable = ax.scatter([x(r) for r in good], [r[REG_KEY] for r in good],
                                  c=[r["val_accuracy"] for r in good], cmap="viridis", vmin=vmin, vmax=vmax,
                                  marker=marker, s=70, edgecolors="black", linewidths=0.5)
        if rule is not None:
            handles.append(Line2D([], [], ls="", marker=marker, color="lightgray", markeredgecolor="black",
                                  markersize=8, label=str(rule)))
    div = [r for r in placed if r.get("status") == "diverged"]
    if div:
        ax.scatter([x(r) for r in div], [r[REG_KEY] for r in div], marker="x", color="red", s=50)
        handles.append(Line2D([], [], ls="", marker="x", color="red", markersize=7, label="diverged"))
    best = _best(placed)
    if best is not None:
        ax.scatter([x(best)], [best[REG_KEY]], s=260, facecolors="none", edgecolors="red", linewidths=1.5)
        handles.append(Line2D([], [], ls="", marker="o", markerfacecolor="none", markeredgecolor="red",
                              markersize=13, label="best"))
    _set_log(ax, "x", [r[LR_KEY] for r in placed])
    _set_log(ax, "y", [r[REG_KEY] for r in placed])
    ax.set_xlabel(f"learning rate ({LR_KEY}, log scale)")
    ax.set_ylabel(f"regularisation ({REG_KEY}, log scale)")
    if mappable is not None:
        fig.colorbar(mappable, ax=ax, label="validation accuracy")
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8, frameon=False)


def _dodge(rules: list[Any], xs: Sequence[float]) -> dict[Any, float]:
    """rule -> factor on x: rules spread over about 6% of the decades spanned (1 for a single rule)."""
    positive = [v for v in xs if v > 0]
    decades = math.log10(max(positive) / min(positive)) if positive else 0.0
    step = 0.06 * max(decades, 1.0) / max(len(rules), 1)
    return {rule: 10 ** ((k - (len(rules) - 1) / 2) * step) for k, rule in enumerate(rules)}


def _scatter_1d(ax: "Axes", results: Sequence[dict], key: str) -> None:
    """val accuracy over ``key`` (log scale), one line per update rule, x = diverged (drawn at 0)."""
    placed = [r for r in results if _has(r, key)]
    for rule, trials in _groups(placed).items():
        good = sorted((r for r in trials if _ok(r)), key=lambda r: r[key])
        if good:
            ax.plot([r[key] for r in good], [r["val_accuracy"] for r in good], marker="o", ls="-", lw=1,
                    label=str(rule) if rule is not None else "trials")
    div = [r for r in placed if r.get("status") == "diverged"]
    if div:
        ax.scatter([r[key] for r in div], [0.0] * len(div), marker="x", color="red", s=50, clip_on=False,
                   label="diverged (no accuracy)")
    _set_log(ax, "x", [r[key] for r in placed])
    ax.set_ylim(bottom=0)
    name = "learning rate" if key == LR_KEY else "regularisation"
    ax.set_xlabel(f"{name} ({key}, log scale)")
    ax.set_ylabel("validation accuracy")
    ax.legend(loc="best", fontsize=8)


def _cycle(items: Sequence[Any], n: int) -> list[Any]:
    """``n`` items taken from ``items`` round-robin."""
    return [items[i % len(items)] for i in range(n)]


def sweep_updates_figure(results: Sequence[dict]) -> "Figure":
    """The loss curves of the best trial of each update rule, overlaid (each a smoothed line over the raw).

    ``results``: trials with ``optimizer.update``, ``val_accuracy``, ``status``
    and ``history`` (history rows with ``step`` and ``loss``).
    """
    curves = []
    for rule, trials in _groups(results).items():
        ranked = sorted((r for r in trials if _ok(r)), key=lambda r: -r["val_accuracy"])
        best = next((r for r in ranked if len(_series(r.get("history") or [], "step", "loss")[0])), None)
        if best is not None:
            curves.append((rule, best, *_series(best["history"], "step", "loss")))
    if not curves:
        raise NothingToPlot("no finished trial has a loss history (results.json)")
    fig = _figure("sweep_updates.png")
    ax = fig.add_subplot()
    for i, (rule, trial, steps, loss) in enumerate(curves):
        color = f"C{i % 10}"
        ax.plot(steps, loss, color=color, alpha=0.25, lw=1)
        lr = f", lr {trial[LR_KEY]:.3g}" if _finite(trial.get(LR_KEY)) else ""
        ax.plot(steps, smooth(loss), color=color, lw=2,
                label=f"{rule}{lr} (val {trial['val_accuracy']:.3f})")
    ax.set_xlabel("step (iteration)")
    ax.set_ylabel("loss (smoothed; raw faint)")
    ax.set_title("Loss of the best trial of each update rule")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=9)
    return fig


# ------------------------------------------------------------- whole folders


def _out(folder: Path, out_dir: str | os.PathLike | None) -> Path:
    """The folder PNGs go into (created when missing)."""
    out = Path(out_dir) if out_dir is not None else folder
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _run_info(run_dir: Path) -> tuple[str, bool]:
    """(``softmax, adam, lr 0.0003, reg 0.01``, is it a random search) from a run's config.yaml."""
    try:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
        m, o = cfg.get("model", {}), cfg.get("optimizer", {})
        method = o.get("method", "sgd")
    except (OSError, yaml.YAMLError, AttributeError):
        return "", False
    search = method in ("random_search", "random_local_search")
    try:
        how = f"{o.get('update', 'sgd')}, lr {o['lr']:g}" if method == "sgd" else method
        how = f"gd, lr {o['lr']:g}" if method == "gd" else how
        return f"{m['loss']}, {how}, reg {m['reg']:g}", search
    except (KeyError, TypeError, ValueError):
        return "", search


def plot_run(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None, *,
             evaluation: "Evaluation | None" = None, split: str = "val") -> list[Path]:
    """Write a run folder's figures into ``out_dir`` (default: the run folder); return the paths written.

    loss.png and accuracy.png come from history.csv, templates.png from
    model.npz, confusion.png from ``evaluation`` (e.g. ``runs.run_eval(model,
    split)[1]``) when given; ``split`` names that evaluation's split.
    """
    run_dir = Path(run_dir)
    if folder_kind(run_dir) != "run":
        raise PlotError(f"{run_dir} is a sweep folder, not a run folder; plot it with plot_sweep")
    require_matplotlib()
    out = _out(run_dir, out_dir)
    written: list[Path] = []
    label, search = _run_info(run_dir)
    model, history = None, None
    model_file = run_model_file(run_dir)
    if model_file is not None:
        from .core.model import LinearClassifier, load_npz

        model = LinearClassifier.load(model_file)
        if model_file.name == "checkpoint.npz" and not (run_dir / "history.csv").is_file():
            history = _checkpoint_history(load_npz(model_file))
    if history is None and (run_dir / "history.csv").is_file():
        history = read_history(run_dir / "history.csv")
    if history is not None:
        num_classes = model.num_classes if model is not None else None
        written += _try("loss.png", out, lambda: loss_figure(history, subtitle=label, search=search))
        written += _try("accuracy.png", out, lambda: accuracy_figure(history, num_classes=num_classes,
                                                                     subtitle=label, search=search))
    else:
        _skip("loss.png and accuracy.png", f"no history.csv in {run_dir}")
    if model is not None and model.features_kind == "kmeans":
        written += _try("centroids.png", out, lambda: centroids_figure(_kmeans_centroids(model), subtitle=label))
    elif model is not None and model.features_kind == "pixels":
        written += _try("templates.png", out, lambda: templates_figure(
            model.W, model.classes, scale=model.prep.scale, bias=model.prep.bias, subtitle=label))
    if model is not None:
        if evaluation is not None:
            written += _try("confusion.png", out, lambda: confusion_figure(evaluation.confusion, model.classes,
                                                                           split=split))
    else:
        _skip("templates.png and confusion.png", f"no model.npz or checkpoint.npz in {run_dir}")
    return written


def run_model_file(run_dir: str | os.PathLike) -> Path | None:
    """A run's model.npz, else its checkpoint.npz (an interrupted or failed run), else None."""
    for name in ("model.npz", "checkpoint.npz"):
        if (Path(run_dir) / name).is_file():
            return Path(run_dir) / name
    return None


def _checkpoint_history(arrays: dict) -> list[dict] | None:
    """The history rows a checkpoint stores (None when it holds none)."""
    if "ckpt_history" not in arrays:
        return None
    try:
        rows = json.loads(str(arrays["ckpt_history"]))
    except ValueError:
        return None
    return rows if isinstance(rows, list) else None


CENTROIDS_SHOWN = 400                      # a 20x20 grid stays legible at the figure's size


def _kmeans_centroids(model: Any) -> np.ndarray:
    """The first CENTROIDS_SHOWN centroids of a k-means model's extractor as display patches."""
    from .features.registry import extractor_from_arrays

    try:
        ex = extractor_from_arrays("kmeans", model.features_arrays)
    except (ValueError, TypeError, KeyError) as e:
        raise NothingToPlot(f"the model's k-means extractor is malformed: {e}") from None
    return centroid_images(ex.centroids_, ex.patch, ex.whiten_, ex.whiten_mean_, limit=CENTROIDS_SHOWN)


def plot_sweep(sweep_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> list[Path]:
    """Write a sweep folder's figures into ``out_dir`` (default: the sweep folder); return the paths written.

    sweep_lr_reg.png always (when lr or reg was swept), sweep_updates.png when
    the sweep varies ``optimizer.update``.
    """
    sweep_dir = Path(sweep_dir)
    if folder_kind(sweep_dir) != "sweep":
        raise PlotError(f"{sweep_dir} is a run folder, not a sweep folder; plot it with plot_run")
    require_matplotlib()
    results = read_results(sweep_dir)
    if not results:
        raise PlotError(f"{sweep_dir / SWEEP_MARKER} holds no trials yet")
    out = _out(sweep_dir, out_dir)
    written = _try("sweep_lr_reg.png", out, lambda: sweep_lr_reg_figure(results))
    if _varied(results, UPDATE_KEY):
        written += _try("sweep_updates.png", out, lambda: sweep_updates_figure(results))
    return written


def _try(name: str, out: Path, build: Any) -> list[Path]:
    """[the written path] of figure ``build()`` saved as ``out/name``; [] and a warning when it cannot be drawn."""
    try:
        fig = build()
    except NothingToPlot as e:
        _skip(name, str(e))
        return []
    return [save_figure(fig, out / name)]
