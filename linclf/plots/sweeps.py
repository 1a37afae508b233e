"""Figures of a sweep folder: sweep_lr_reg.png and, when the sweep varies the update rule, sweep_updates.png.

``plot_sweep`` reads results.csv (one row a trial: its hyperparameters,
``val_accuracy``, ``status``) and the trials' loss histories from results.json,
then draws the validation accuracy over learning rate and regularisation (a
scatter over both, or a line over the one varied; diverged trials as x marks)
and the loss curve of the best trial of each update rule.
"""
from __future__ import annotations

import csv
import json
import math
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import LinclfWarning
from .curves import finite, series, smooth
from .figure import NothingToPlot, PlotError, new_figure, require_matplotlib, write_figure
from .folders import SWEEP_MARKER, folder_kind, out_folder

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["LR_KEY", "REG_KEY", "UPDATE_KEY", "plot_sweep", "read_results", "sweep_lr_reg_figure",
           "sweep_updates_figure"]

LR_KEY, REG_KEY, UPDATE_KEY = "optimizer.lr", "model.reg", "optimizer.update"
_MARKERS = ("o", "s", "^", "D", "v", "P", "*", "h")


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
    out = out_folder(sweep_dir, out_dir)
    written = write_figure("sweep_lr_reg.png", out, lambda: sweep_lr_reg_figure(results))
    if _varied(results, UPDATE_KEY):
        written += write_figure("sweep_updates.png", out, lambda: sweep_updates_figure(results))
    return written


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


def _varied(results: Sequence[dict], key: str) -> bool:
    """True when ``key`` takes at least two different values over the trials."""
    return len({r.get(key) for r in results if r.get(key) is not None}) >= 2


def _ok(r: dict) -> bool:
    """A trial that finished with a validation accuracy."""
    return r.get("status") == "ok" and finite(r.get("val_accuracy"))


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
    fig = new_figure("sweep_lr_reg.png")
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
    return all(finite(r.get(k)) for k in keys)


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
    ax.set_ylim(0, min(1.0, ax.get_ylim()[1] + 0.02))                 # room above the best trial
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
        best = next((r for r in ranked if len(series(r.get("history") or [], "step", "loss")[0])), None)
        if best is not None:
            curves.append((rule, best, *series(best["history"], "step", "loss")))
    if not curves:
        raise NothingToPlot("no finished trial has a loss history (results.json)")
    fig = new_figure("sweep_updates.png")
    ax = fig.add_subplot()
    for i, (rule, trial, steps, loss) in enumerate(curves):
        color = f"C{i % 10}"
        ax.plot(steps, loss, color=color, alpha=0.25, lw=1)
        lr = f", lr {trial[LR_KEY]:.3g}" if finite(trial.get(LR_KEY)) else ""
        ax.plot(steps, smooth(loss), color=color, lw=2,
                label=f"{rule}{lr} (val {trial['val_accuracy']:.3f})")
    ax.set_xlabel("step (iteration)")
    ax.set_ylabel("loss (smoothed; raw faint)")
    ax.set_title("Loss of the best trial of each update rule")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=9)
    return fig
