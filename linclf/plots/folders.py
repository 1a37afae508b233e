"""The folders figures come from and go to: which kind a folder is, its model file, the output folder.

A run folder (``linclf train``) holds model.npz, history.csv or, when
interrupted, checkpoint.npz; a sweep folder (``linclf sweep``) holds
results.csv. Figures are written into the folder itself unless ``--out``
names another one.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import UsageError

__all__ = ["RUN_MARKERS", "SWEEP_MARKER", "folder_kind", "run_model_file", "out_folder"]

RUN_MARKERS = ("model.npz", "history.csv", "checkpoint.npz")
SWEEP_MARKER = "results.csv"


def folder_kind(path: str | os.PathLike) -> str:
    """"run" (model.npz or history.csv) or "sweep" (results.csv); UsageError for anything else."""
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


def run_model_file(run_dir: str | os.PathLike) -> Path | None:
    """A run's model.npz, else its checkpoint.npz (an interrupted or failed run), else None."""
    for name in ("model.npz", "checkpoint.npz"):
        if (Path(run_dir) / name).is_file():
            return Path(run_dir) / name
    return None


def out_folder(folder: Path, out_dir: str | os.PathLike | None) -> Path:
    """The folder PNGs go into (created when missing)."""
    out = Path(out_dir) if out_dir is not None else folder
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    return out
