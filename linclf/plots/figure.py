"""What every figure module shares: matplotlib imported only when drawing, sized Figures, atomic PNGs.

Figures are built with ``matplotlib.figure.Figure`` and the Agg renderer,
without pyplot: nothing depends on a display, no global figure state is kept
and a caller's own backend (e.g. a notebook's) is left alone. matplotlib is
imported only inside ``new_figure`` (and the drawing functions), so importing
any plots module never imports it; ``require_matplotlib`` refuses early, with
the install hint, when it is missing. ``SIZES`` holds the size of every figure
file, ``save_figure`` writes a PNG atomically, and ``write_figure`` writes one
figure or, when the data cannot make it (``NothingToPlot``), skips it with a
``LinclfWarning`` so that the other figures of a folder are still written.
"""
from __future__ import annotations

import importlib
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..errors import LinclfError, LinclfWarning
from ..fsutil import atomic_open

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["PlotError", "PlotDependencyError", "NothingToPlot", "INSTALL_HINT", "DPI", "SIZES",
           "require_matplotlib", "new_figure", "save_figure", "write_figure", "warn_skipped"]

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


class PlotError(LinclfError):
    """A folder holds nothing that can be plotted, or a file in it is malformed (exit 1)."""


class PlotDependencyError(PlotError):
    """matplotlib is not installed (exit 2, as for every missing extra); the message says how to install it."""

    exit_code = 2


class NothingToPlot(ValueError):
    """The data given to a figure function holds nothing that figure can show."""


def require_matplotlib() -> None:
    """Raise PlotDependencyError (with the install hint) unless matplotlib can be imported."""
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        raise PlotDependencyError(f"plots need matplotlib, which is not installed: {INSTALL_HINT}") from None


def new_figure(name: str) -> "Figure":
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


def write_figure(name: str, out: Path, build: "Callable[[], Figure]") -> list[Path]:
    """[the written path] of figure ``build()`` saved as ``out/name``; [] and a warning when it cannot be drawn."""
    try:
        fig = build()
    except NothingToPlot as e:
        warn_skipped(name, str(e))
        return []
    return [save_figure(fig, out / name)]


def warn_skipped(name: str, why: str) -> None:
    """Warn that figure ``name`` is not written and why."""
    warnings.warn(f"{name} skipped: {why}", LinclfWarning, stacklevel=3)
