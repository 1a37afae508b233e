"""The sweep folder's files: what is swept (``sweep.json``), the trials' results, and the table.

Each file is written atomically. ``sweep.json`` records the params (and the
search of a TPE sweep); after every finished trial ``results.csv`` (a row a
trial, best validation accuracy first), ``results.json`` (with each trial's
config and history) and ``best.yaml`` (the best ok trial's config) are
rewritten. Running the same sweep again with the same folder keeps the trials
recorded there as ok or diverged (failed ones run again); a folder holding
another sweep (other params, config, seed or search) is refused.
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Sequence

from ..config import from_dict, to_yaml
from ..errors import UsageError
from ..fsutil import write_json_atomic, write_text_atomic
from .sweep_params import LOCATION_KEYS, ParamSpec, describe, show_value

__all__ = ["save_results", "load_results", "sort_key", "flat", "check_manifest", "resumed_rows", "format_table",
           "RESULT_COLUMNS", "FINISHED", "STATUSES", "MANIFEST", "RESULTS_JSON", "RESULTS_CSV", "BEST_YAML"]

RESULT_COLUMNS = ("val_accuracy", "train_accuracy", "final_loss", "status", "seconds")
FINISHED = ("ok", "diverged")   # statuses a resumed sweep keeps; "failed" trials run again
STATUSES = ("ok", "diverged", "pruned", "failed", "interrupted")
MANIFEST, RESULTS_JSON, RESULTS_CSV, BEST_YAML = "sweep.json", "results.json", "results.csv", "best.yaml"


def sort_key(row: dict) -> tuple:
    """Best validation accuracy first, trials without one last, then by trial index."""
    val = row.get("val_accuracy")
    return (val is None, -(val or 0.0), row["trial"])


def _csv_text(rows: Sequence[dict], keys: Sequence[str]) -> str:
    """results.csv: trial, the swept keys, then RESULT_COLUMNS; empty cells for missing values."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["trial", *keys, *RESULT_COLUMNS])
    for r in rows:
        cells = [r["trial"], *(r.get(k) for k in keys), *(r.get(c) for c in RESULT_COLUMNS)]
        writer.writerow(["" if c is None else (show_value(c) if isinstance(c, bool) else c) for c in cells])
    return buf.getvalue()


def save_results(out_dir: Path, rows: dict[int, dict], keys: Sequence[str]) -> None:
    """Write results.json, results.csv and best.yaml (the best ok trial), each atomically."""
    ordered = sorted(rows.values(), key=sort_key)
    write_json_atomic(out_dir / RESULTS_JSON, ordered, indent=1)
    write_text_atomic(out_dir / RESULTS_CSV, _csv_text(ordered, keys))
    best = next((r for r in ordered if r["status"] == "ok" and r["val_accuracy"] is not None), None)
    if best is not None:
        head = (f"# best trial ({best['trial']}) of the sweep in {out_dir}: val accuracy "
                f"{best['val_accuracy']:.4f}; {describe({k: best[k] for k in keys})}\n")
        write_text_atomic(out_dir / BEST_YAML, head + to_yaml(from_dict(best["config"])))


def load_results(out_dir: str | os.PathLike) -> list[dict]:
    """The trial rows saved in ``out_dir/results.json`` (empty if none); UsageError when malformed."""
    path = Path(out_dir) / RESULTS_JSON
    if not path.exists():
        return []
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
        ok = isinstance(rows, list) and all(
            isinstance(r, dict) and isinstance(r.get("trial"), int) and isinstance(r.get("config"), dict)
            and r.get("status") in STATUSES for r in rows)
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot continue the sweep: {path} is unreadable ({e}); delete it or choose another "
                         "--out") from None
    if not ok:
        raise UsageError(f"cannot continue the sweep: {path} is not a list of trial results; delete it or "
                         "choose another --out")
    return rows


def flat(d: dict, prefix: str = "") -> dict[str, Any]:
    """A nested config dict as ``{"section.key": value}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def _check_same_trial(row: dict, planned: dict, keys: Sequence[str], where: Path) -> None:
    """UsageError unless a saved row was run with the planned trial's values and config."""
    saved, now = flat(row["config"]), flat(planned)
    for k in [*keys, *(k for k in now if k not in keys)]:
        if k not in LOCATION_KEYS and saved.get(k) != now[k]:
            raise UsageError(f"{where} holds another sweep: its trial {row['trial']} ran with {k}="
                             f"{show_value(saved.get(k))}, this command's trial {row['trial']} has {k}={show_value(now[k])}; "
                             "continue it with the same config, --set and --param values, or choose another --out")


def check_manifest(out_dir: Path, params: Sequence[ParamSpec], search: dict | None = None,
                   storage: str | None = None) -> dict:
    """Write sweep.json and return it; a folder with finished trials must hold a sweep of the same params
    and search (``search``: None for random / grid, which keep today's sweep.json), and a TPE sweep's study
    the same ``--storage`` (None: the folder's own journal)."""
    path = out_dir / MANIFEST
    now = {"params": [p.to_json() for p in params], "spec": [str(p) for p in params]}
    if search is not None:
        now["search"] = search
        now["storage"] = storage
    now = json.loads(json.dumps(now))
    if not path.exists():
        if any(not p.name.startswith(".") for p in out_dir.iterdir()):
            raise UsageError(f"--out {out_dir} is not empty and holds no sweep (no {MANIFEST}); choose another "
                             "folder")
    elif (out_dir / RESULTS_JSON).exists():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            same = saved["params"] == now["params"]
            saved_text = " ".join(f"--param {s}" for s in saved["spec"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UsageError(f"cannot continue the sweep: {path} is unreadable ({e}); choose another "
                             "--out") from None
        if not same:
            raise UsageError(f"--out {out_dir} holds a sweep of {saved_text}, not of "
                             f"{' '.join('--param ' + s for s in now['spec'])}; rerun with its params to continue "
                             "it, or choose another --out")
        if saved.get("search") != now.get("search"):
            def text(m: dict | None) -> str:
                return "--search random" if m is None else f"--search {m['kind']} --prune {m['prune']}"
            raise UsageError(f"--out {out_dir} holds a sweep run with {text(saved.get('search'))}, not "
                             f"{text(now.get('search'))}; rerun it with those options, or choose another --out")
        if "storage" in saved and saved["storage"] != now.get("storage"):     # its study lives there
            where = "its own journal (no --storage)" if saved["storage"] is None else f"--storage {saved['storage']}"
            raise UsageError(f"--out {out_dir} holds a sweep whose study is in {where}; rerun it with that, or "
                             "choose another --out")
    write_json_atomic(path, now, indent=1)
    return now


def resumed_rows(out_dir: Path, params: Sequence[ParamSpec], planned: Sequence[dict]) -> dict[int, dict]:
    """The saved rows that match the plan by index and values (ok / diverged ones; failed ones run again)."""
    keys = [p.key for p in params]
    kept: dict[int, dict] = {}
    for row in load_results(out_dir):
        t = row["trial"]
        if not 0 <= t < len(planned):
            raise UsageError(f"{out_dir} holds a sweep with a trial {t}; this command has trials 0 to "
                             f"{len(planned) - 1}; choose another --out")
        _check_same_trial(row, planned[t], keys, out_dir)
        if row["status"] in FINISHED:
            kept[t] = row
    return kept


def format_table(rows: Sequence[dict], keys: Sequence[str]) -> str:
    """The trials as an aligned text table, in the order given (run_sweep's: best first)."""
    header = ["trial", *keys, *RESULT_COLUMNS]

    def cell(col: str, v: Any) -> str:
        if v is None:
            return "-"
        if col in ("val_accuracy", "train_accuracy") and isinstance(v, float):
            return f"{v:.4f}"
        if col == "seconds":
            return f"{v:.1f}"
        if isinstance(v, float):
            return f"{v:.4g}"
        return show_value(v)

    def numeric(col: str) -> bool:
        return all(r.get(col) is None or (isinstance(r.get(col), (int, float)) and not isinstance(r.get(col), bool))
                   for r in rows)

    table = [header] + [[cell(c, r.get(c)) for c in header] for r in rows]
    widths = [max(len(line[j]) for line in table) for j in range(len(header))]
    right = [numeric(c) for c in header]
    return "\n".join("  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(line, widths, right)).rstrip()
                     for line in table)
