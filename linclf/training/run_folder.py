"""A run folder: its name, the checks before anything is written, holding it for one run, its files, resuming.

A run folder holds ``config.yaml`` (resolved), ``checkpoint.npz`` (to resume),
``model.npz`` (the weights kept, the preprocessing, class names, config,
metrics), ``history.csv`` and ``metrics.json``; ``runs.run_train`` writes them.
"""
from __future__ import annotations

import csv
import io
import os
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Iterator

import yaml

from ..config import Config, from_dict, with_values
from ..core.model import load_npz
from ..errors import ConfigError, LinclfError, ModelFileError, UsageError
from ..fsutil import LOCK_FILE, hold_lock, shell_path, unlink_quiet
from .loop import HISTORY_COLUMNS

__all__ = ["RUN_FILES", "RESUME_FIXED", "OutputError", "default_out_dir", "check_out_dir", "claim_out_dir",
           "prepare_out_dir", "history_csv", "checkpoint_file", "config_of_checkpoint"]

RUN_FILES = ("model.npz", "checkpoint.npz", "metrics.json", "history.csv", "config.yaml")


def default_out_dir(config_path: str | os.PathLike | None, root: str | os.PathLike = "runs",
                    prefix: str = "") -> Path:
    """``runs/<prefix><config name>-<YYYYmmdd-HHMMSS>`` (a numeric suffix if that exists already)."""
    stem = Path(config_path).stem if config_path else "default"
    base = Path(root) / f"{prefix}{stem}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    out, i = base, 1
    while out.exists():
        i += 1
        out = base.with_name(f"{base.name}-{i}")
    return out


class OutputError(LinclfError):
    """The output folder cannot be used (exit 1)."""


def check_out_dir(out: Path, *, overwrite: bool = False, resuming: bool = False) -> Path:
    """Refuse an ``out`` that is a file, holds an earlier run (unless asked) or cannot be created; create nothing.

    ``run_train`` creates the folder only once the data has loaded, so a run that fails before its
    first step leaves no folder behind.
    """
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    if not resuming and not overwrite and out.is_dir():
        taken = [f for f in RUN_FILES if (out / f).exists()]
        if taken:
            if (out / "checkpoint.npz").is_file():
                raise UsageError(f"--out {out} already holds a run ({', '.join(taken)}); choose another folder, "
                                 "pass --overwrite, or continue it with --resume")
            # a run stopped before its first checkpoint (killed, or failed): nothing to resume
            raise UsageError(f"--out {out} already holds a run ({', '.join(taken)}) with no checkpoint to resume; "
                             "choose another folder or pass --overwrite")
    parent = out.absolute()
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"--out {out}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write into --out {out}: {parent} is not writable; choose a writable folder")
    return out


@contextmanager
def claim_out_dir(out: Path, *, overwrite: bool = False) -> Iterator[None]:
    """Create ``out`` and hold it for one run: an exclusive lock on ``out/.linclf.lock`` (removed at the end;
    the OS releases it if the process dies), then ``check_out_dir`` again under it, so of two runs started
    together into one folder the second is refused instead of mixing its files with the first's."""
    out.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl  # noqa: F401 - POSIX only
    except ImportError:             # pragma: no cover - not POSIX: no lock, the check alone
        check_out_dir(out, overwrite=overwrite)
        yield
        return
    lock = out / LOCK_FILE
    try:
        fh = hold_lock(lock, wait=False)
    except BlockingIOError:
        raise UsageError(f"--out {out}: another linclf is writing a run into it now; wait for it to "
                         "finish or choose another folder") from None
    with fh:
        try:
            check_out_dir(out, overwrite=overwrite)
            yield
        finally:
            unlink_quiet(lock)


def prepare_out_dir(out: Path, *, overwrite: bool = False, resuming: bool = False) -> Path:
    """Create ``out`` and prove it is writable; refuse to overwrite an earlier run unless asked."""
    check_out_dir(out, overwrite=overwrite, resuming=resuming)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".linclf-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OutputError(f"cannot write into --out {out}: {e.strerror or e}; choose a writable folder") from None
    return out


def history_csv(history: list[dict]) -> str:
    """The history rows as CSV text (empty cells where a row has no value)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in HISTORY_COLUMNS})
    return buf.getvalue()


# keys a resumed run keeps: they decide the model, its rows and its minibatches (the seed draws them)
RESUME_FIXED = ("seed", "model.", "preprocess.", "features.", "data.num_train", "data.num_val", "data.num_dev",
                "data.flip")
_GIVE_A_RUN = "give the run folder `linclf train` printed (runs/<name>-<time>) or the checkpoint.npz in it"


def checkpoint_file(path: str | os.PathLike) -> Path:
    """The checkpoint ``--resume PATH`` names: PATH, or PATH/checkpoint.npz when PATH is a (run) folder.

    UsageError (exit 2) when there is none; ``config_of_checkpoint`` checks that the file is one.
    """
    p = Path(path)
    if p.is_dir():
        if not (p / "checkpoint.npz").is_file():
            raise UsageError(f"--resume {p}: no checkpoint.npz in this folder; {_GIVE_A_RUN}")
        return p / "checkpoint.npz"
    if not p.exists():
        raise UsageError(f"--resume {p}: no checkpoint at {p.absolute()}; {_GIVE_A_RUN}")
    return p


def config_of_checkpoint(path: str | os.PathLike, overrides: dict | None = None) -> tuple[Config, dict]:
    """The resolved config stored in a checkpoint (with ``overrides`` applied) and all its arrays.

    ``path`` is a checkpoint.npz or a run folder holding one. Anything else (a model file, an empty or
    truncated file) is a UsageError (exit 2) saying what to give instead.
    """
    p = checkpoint_file(path)
    try:
        arrays = load_npz(p)
    except ModelFileError as e:       # its advice is for model files
        raise UsageError(f"{e.problem}; --resume needs a training checkpoint: {_GIVE_A_RUN}") from None
    if "config_yaml" not in arrays or "ckpt_W" not in arrays:
        what = "a model file, not a training checkpoint" if "W" in arrays else "not a training checkpoint"
        sibling = p.with_name("checkpoint.npz")
        todo = (f"resume from its run folder, which holds checkpoint.npz: --resume {shell_path(p.parent)}"
                if sibling != p and sibling.is_file() else _GIVE_A_RUN)
        raise UsageError(f"--resume {p}: {what}; {todo}")
    try:
        raw = yaml.safe_load(str(arrays["config_yaml"]))
        cfg = from_dict(raw)
    except (yaml.YAMLError, ConfigError) as e:
        raise ModelFileError(f"{p}: the stored config is not valid: {e}") from None
    fixed = [k for k in overrides or {} if k.startswith(RESUME_FIXED)]
    if fixed:
        raise UsageError(f"--resume continues the run {p} holds; --set {fixed[0]} would make it another run "
                         f"(another model, rows or minibatches): start one with --config "
                         f"{p.parent / 'config.yaml'} --set {fixed[0]}=...")
    if overrides:
        cfg = with_values(cfg, overrides, source="--set")
    return cfg, arrays
