"""Hyperparameter sweeps: random, grid or TPE search scored on the validation split, run in parallel.

``--param KEY=SPEC`` names a config key and how to vary it: ``log:LOW:HIGH``
(log-uniform), ``uniform:LOW:HIGH``, ``grid:A,B,C`` or ``choice:a,b,c``. When
every SPEC is a grid the sweep runs the full product of the grids; otherwise it
is a random search of ``trials`` draws (the course notes: "random search is
better than grid search"), where a grid is drawn from like a choice.

Randomness. Values come from ``SeedSequence(seed, spawn_key=(SWEEP_STREAM,))``
of the config seed, drawn trial by trial and key by key in ``--param`` order, so
the same command gives the same trials and a longer sweep starts with the trials
of a shorter one. Floats are rounded to 4 significant digits (readable tables
and configs), integer keys to whole numbers. Trial ``i`` trains with seed
``seed + 1 + i`` (unless ``seed`` itself is swept), recorded in its config, so
``best.yaml`` reproduces the trial exactly.

Honest scoring. Every trial trains on the training split and is scored on the
validation split; workers receive splits whose test arrays are empty, so the
test split is never read.

Where trials run (``executors``): this process (``jobs=1``), ``jobs`` spawned
local worker processes, or a Dask cluster (``scheduler``). Only config dicts,
the data's location and result dicts cross between processes; each worker
maps the data cache itself and computes on one thread. A trial whose process
the OS kills is recorded ``failed`` with the signal and the others go on.

Which trials run: the random or grid plan above, or Optuna's TPE sampler with
an optional pruner (``search_tpe``), whose study lives in an Optuna storage.

Files in the sweep folder, each written atomically: ``sweep.json`` (what is
swept), and after every finished trial ``results.csv``, ``results.json`` and
``best.yaml``. Running the same sweep again with the same folder skips the
trials recorded there as ok or diverged (failed ones run again); a folder
holding another sweep (other params, config or seed) is refused. A TPE sweep
writes the same three files from its study (``study.log`` in the folder unless
``--storage`` names another one); its rerun resumes the study.
"""
from __future__ import annotations

import csv
import difflib
import io
import itertools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import yaml

from ..config import Config, from_dict, schema_keys, to_dict, to_yaml, with_values
from ..data.cifar10 import CIFAR10, split
from ..errors import ConfigError, Interrupted, LinclfError, UsageError
from ..fsutil import write_json_atomic, write_text_atomic
from ..progress import Bar
from ..threads import usable_cpus
from .executors import DEFAULT_CONNECT_TIMEOUT, check_scheduler, make_executor
from ..features.registry import LEARNED
from .featurize import featurize
from .runs import default_out_dir, load_data, make_splits, prepare_out_dir
from .search_tpe import PRUNERS, check_storage, import_optuna, storage_url
from .trial import data_location, set_data

__all__ = ["ParamSpec", "SweepError", "parse_spec", "sample_trials", "trial_configs", "run_sweep",
           "load_results", "format_table", "default_jobs", "default_sweep_dir", "RESULT_COLUMNS",
           "DEFAULT_TRIALS", "SWEEP_STREAM", "SEARCHES"]

SEARCHES = ("random", "tpe")

DEFAULT_TRIALS = 20
SWEEP_STREAM = 1000          # spawn key of the sweep's generator (train.rng_stream uses 0..5)
RESULT_COLUMNS = ("val_accuracy", "train_accuracy", "final_loss", "status", "seconds")
KINDS = ("log", "uniform", "grid", "choice")
FINISHED = ("ok", "diverged")   # statuses a resumed sweep keeps; "failed" trials run again
STATUSES = ("ok", "diverged", "pruned", "failed", "interrupted")
MANIFEST, RESULTS_JSON, RESULTS_CSV, BEST_YAML = "sweep.json", "results.json", "results.csv", "best.yaml"
_SIG_DIGITS = 4
# Keys fixing which data is loaded and which images score a trial: one value for the whole sweep.
_FIXED_KEYS = ("data.dir", "data.format", "data.archive", "data.md5", "data.urls", "data.timeout",
               "data.retries", "data.num_val", "data.num_test")
# Where the data lives, not what a trial is: a resumed sweep may use another path.
_LOCATION_KEYS = ("data.dir", "data.archive", "data.md5", "data.urls", "data.timeout", "data.retries")


class SweepError(LinclfError):
    """A sweep ran but no trial finished ok (exit 1)."""


# ------------------------------------------------------------------ specs


@dataclass(frozen=True)
class ParamSpec:
    """One swept key: ``kind`` log | uniform over [low, high], or grid | choice over ``values``."""

    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    values: tuple = ()
    integer: bool = False       # the key holds an int: draws are rounded to whole numbers

    def __str__(self) -> str:
        """The spec as ``KEY=KIND:...`` text."""
        if self.kind in ("log", "uniform"):
            return f"{self.key}={self.kind}:{_show(self.low)}:{_show(self.high)}"
        return f"{self.key}={self.kind}:{','.join(_show(v) for v in self.values)}"

    def to_json(self) -> dict:
        """The spec as a plain dict (saved in sweep.json)."""
        return {"key": self.key, "kind": self.kind, "low": self.low, "high": self.high,
                "values": list(self.values), "integer": self.integer}

    def draw(self, rng: np.random.Generator) -> Any:
        """One random value: log-uniform, uniform, or a uniform pick of the grid / choice values."""
        if self.kind in ("grid", "choice"):
            return self.values[int(rng.integers(len(self.values)))]
        if self.kind == "log":
            x = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            x = rng.uniform(self.low, self.high)
        if self.integer:
            return int(min(max(round(x), math.ceil(self.low)), math.floor(self.high)))
        return min(max(float(f"{x:.{_SIG_DIGITS}g}"), self.low), self.high)


def _show(v: Any) -> str:
    """A value as it would be typed in a spec."""
    if isinstance(v, bool) or v is None:
        return yaml.safe_dump(v).split("\n")[0]
    return repr(v) if isinstance(v, float) else str(v)


def _check_key(key: str) -> None:
    """ConfigError with a did-you-mean unless ``key`` is a sweepable config key."""
    known = list(schema_keys())
    if key in _FIXED_KEYS:
        raise ConfigError(f"--param {key}: the sweep loads the data once and scores every trial on the same "
                          f"validation split, so {key} cannot be swept; set it with --set or in the config")
    if key in known:
        return
    close = [k for k in known if k.endswith("." + key)] or difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else "keys look like section.key, e.g. optimizer.lr"
    raise ConfigError(f"--param {key}: unknown config key; {hint}")


def _get(cfg: Config, key: str) -> Any:
    """The value of ``section.key`` (or ``seed``) in a Config."""
    obj: Any = cfg
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def _canonical(text: str, key: str, value: Any) -> Any:
    """``value`` validated for ``key`` (on the defaults) and in the config's canonical form."""
    try:
        return _get(with_values(Config(), {key: value}), key)
    except ConfigError as e:
        raise ConfigError(f"--param {text}: {e}") from None


def _number(text: str, part: str, what: str) -> float:
    """A finite number from the LOW / HIGH part of a spec."""
    try:
        x = float(part)
    except ValueError:
        raise UsageError(f"--param {text}: {what} {part!r} is not a number") from None
    if not math.isfinite(x):
        raise UsageError(f"--param {text}: {what} must be finite, got {part!r}")
    return x


def _parse_range(text: str, key: str, kind: str, body: str, spec_kind: str) -> ParamSpec:
    """A log / uniform spec: LOW < HIGH, LOW > 0 for log, both valid values of a numeric key."""
    if spec_kind not in ("int", "float"):
        raise UsageError(f"--param {text}: {key} is not a number; use choice:a,b or grid:a,b")
    parts = body.split(":")
    if len(parts) != 2:
        raise UsageError(f"--param {text}: expected {kind}:LOW:HIGH, e.g. {key}={kind}:1e-4:1e-2")
    low, high = (_number(text, p, w) for p, w in zip(parts, ("LOW", "HIGH")))
    if not low < high:
        raise UsageError(f"--param {text}: LOW must be less than HIGH, got {low:g} and {high:g}")
    if kind == "log" and low <= 0:
        raise UsageError(f"--param {text}: a log range needs LOW > 0, got {low:g}; use uniform: for ranges "
                         "that reach zero")
    integer = spec_kind == "int"
    if integer and math.ceil(low) > math.floor(high):
        raise UsageError(f"--param {text}: {key} is an integer and no integer lies between {low:g} and {high:g}")
    for x in ((math.ceil(low), math.floor(high)) if integer else (low, high)):
        _canonical(text, key, x)
    return ParamSpec(key, kind, low=low, high=high, integer=integer)


def _parse_values(text: str, key: str, kind: str, body: str) -> ParamSpec:
    """A grid / choice spec: comma-separated YAML values, each valid for the key, no duplicates."""
    items = body.split(",")
    if not body or any(not s.strip() for s in items):
        raise UsageError(f"--param {text}: expected {kind}:A,B,... with no empty value")
    values = []
    for item in items:
        try:
            raw = yaml.safe_load(item)
        except yaml.YAMLError:
            raw = item.strip()
        values.append(_canonical(text, key, raw))
    dupes = [v for i, v in enumerate(values) if v in values[:i]]
    if dupes:
        raise UsageError(f"--param {text}: the value {_show(dupes[0])} is given twice")
    return ParamSpec(key, kind, values=tuple(values))


def parse_spec(text: str) -> ParamSpec:
    """Parse ``KEY=SPEC`` (log:LOW:HIGH | uniform:LOW:HIGH | grid:A,B | choice:a,b); errors exit 2."""
    key, eq, spec = text.partition("=")
    key = key.strip()
    if not eq or not key or not spec.strip():
        raise UsageError(f"--param {text}: expected KEY=SPEC, e.g. optimizer.lr=log:1e-4:1e-2")
    _check_key(key)
    kind, colon, body = spec.strip().partition(":")
    if kind not in KINDS or not colon:
        close = difflib.get_close_matches(kind, KINDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UsageError(f"--param {text}: SPEC must start with one of {', '.join(k + ':' for k in KINDS)}{hint}")
    if kind in ("log", "uniform"):
        return _parse_range(text, key, kind, body, schema_keys()[key].kind)
    return _parse_values(text, key, kind, body)


# ----------------------------------------------------------------- trials


def is_grid(params: Sequence[ParamSpec]) -> bool:
    """Whether the sweep is a full grid (every spec a grid)."""
    return bool(params) and all(p.kind == "grid" for p in params)


def sweep_rng(seed: int) -> np.random.Generator:
    """The generator the trials' values are drawn from, derived from the config seed."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(SWEEP_STREAM,)))


def sample_trials(params: Sequence[ParamSpec], trials: int | None, rng: np.random.Generator) -> list[dict]:
    """The trials' values ``{key: value}``: the full product of the grids, or ``trials`` random draws.

    ``trials`` must be None for a full grid; None means DEFAULT_TRIALS draws otherwise.
    """
    keys = [p.key for p in params]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise UsageError(f"--param {dup} is given more than once")
    if is_grid(params):
        if trials is not None:
            n = math.prod(len(p.values) for p in params)
            raise UsageError(f"--trials does not apply when every --param is a grid: the sweep runs all {n} "
                             "combinations; drop --trials, or use choice: to draw random combinations")
        return [dict(zip(keys, combo)) for combo in itertools.product(*(p.values for p in params))]
    n = DEFAULT_TRIALS if trials is None else trials
    if n < 1:
        raise UsageError(f"--trials must be at least 1, got {n}")
    return [{p.key: p.draw(rng) for p in params} for _ in range(n)]


def trial_configs(cfg: Config, values: Sequence[dict]) -> list[Config]:
    """Each trial's validated config: seed ``cfg.seed + 1 + i``, then its values (a bad one: ConfigError)."""
    out = []
    for i, v in enumerate(values):
        seed = (cfg.seed + 1 + i) % 2**63
        out.append(with_values(cfg, {"seed": seed, **v}, source=f"--param trial {i} ({_describe(v)})"))
    return out


def _describe(values: dict) -> str:
    """``key=value, ...`` of a trial's values."""
    return ", ".join(f"{k}={_show(v)}" for k, v in values.items())


def _check_sizes(configs: Sequence[Config], data: CIFAR10) -> None:
    """Every trial's split sizes fit the data (ConfigError naming the trial and key otherwise)."""
    for i, c in enumerate(configs):
        d = c.data
        try:
            s = split(data, d.num_train, d.num_val, d.num_test, 0)
            if d.num_dev > len(s.y_train):
                raise ConfigError(f"data.num_dev: {d.num_dev} is more than the {len(s.y_train)} training images")
        except ConfigError as e:
            raise ConfigError(f"--param trial {i}: {e}") from None


# ---------------------------------------------------------------- results


def _sort_key(row: dict) -> tuple:
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
        writer.writerow(["" if c is None else (_show(c) if isinstance(c, bool) else c) for c in cells])
    return buf.getvalue()


def _save_results(out_dir: Path, rows: dict[int, dict], keys: Sequence[str]) -> None:
    """Write results.json, results.csv and best.yaml (the best ok trial), each atomically."""
    ordered = sorted(rows.values(), key=_sort_key)
    write_json_atomic(out_dir / RESULTS_JSON, ordered, indent=1)
    write_text_atomic(out_dir / RESULTS_CSV, _csv_text(ordered, keys))
    best = next((r for r in ordered if r["status"] == "ok" and r["val_accuracy"] is not None), None)
    if best is not None:
        head = (f"# best trial ({best['trial']}) of the sweep in {out_dir}: val accuracy "
                f"{best['val_accuracy']:.4f}; {_describe({k: best[k] for k in keys})}\n")
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


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    """A nested config dict as ``{"section.key": value}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def _check_same_trial(row: dict, planned: dict, keys: Sequence[str], where: Path) -> None:
    """UsageError unless a saved row was run with the planned trial's values and config."""
    saved, now = _flat(row["config"]), _flat(planned)
    for k in [*keys, *(k for k in now if k not in keys)]:
        if k not in _LOCATION_KEYS and saved.get(k) != now[k]:
            raise UsageError(f"{where} holds another sweep: its trial {row['trial']} ran with {k}="
                             f"{_show(saved.get(k))}, this command's trial {row['trial']} has {k}={_show(now[k])}; "
                             "continue it with the same config, --set and --param values, or choose another --out")


def _check_manifest(out_dir: Path, params: Sequence[ParamSpec], search: dict | None = None) -> dict:
    """Write sweep.json and return it; a folder with finished trials must hold a sweep of the same params
    and search (``search``: None for random / grid, which keep today's sweep.json)."""
    path = out_dir / MANIFEST
    now = {"params": [p.to_json() for p in params], "spec": [str(p) for p in params]}
    if search is not None:
        now["search"] = search
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
    write_json_atomic(path, now, indent=1)
    return now


def _resumed_rows(out_dir: Path, params: Sequence[ParamSpec], planned: Sequence[dict]) -> dict[int, dict]:
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


def _plan(cfg: Config, params: Sequence[ParamSpec], trials: int | None, saved: list[dict]) -> tuple[list[Config], int]:
    """Every trial's config and how many of them this command runs.

    A random sweep draws past ``trials`` when the folder holds later trials
    (of a longer run of the same sweep), so they can be checked and kept.
    """
    values = sample_trials(params, trials, sweep_rng(cfg.seed))
    n_run = len(values)
    n_saved = 1 + max((r["trial"] for r in saved), default=-1)
    if not is_grid(params) and n_saved > n_run:
        values = sample_trials(params, n_saved, sweep_rng(cfg.seed))
    return trial_configs(cfg, values), n_run


# -------------------------------------------------------------------- run


def default_jobs() -> int:
    """The number of CPUs this process may run on."""
    return usable_cpus()


def default_sweep_dir(config_path: str | os.PathLike | None, root: str | os.PathLike = "runs") -> Path:
    """``runs/sweep-<config name>-<YYYYmmdd-HHMMSS>`` (a numeric suffix if that exists already)."""
    return default_out_dir(config_path, root, prefix="sweep-")


def _best_val(rows: dict[int, dict]) -> float | None:
    """The best validation accuracy among ok trials, or None."""
    vals = [r["val_accuracy"] for r in rows.values() if r["status"] == "ok" and r["val_accuracy"] is not None]
    return max(vals) if vals else None


def _row(result: dict, cfg: Config, values: dict) -> dict:
    """A results row: trial, the swept values, the result columns, message, worker pid, config, history."""
    head = {"trial": result["trial"], **values}
    rest = {k: v for k, v in result.items() if k not in ("trial", "history")}
    return {**head, **rest, "config": to_dict(cfg), "history": result["history"]}


def run_sweep(cfg: Config, params: Sequence[ParamSpec], *, trials: int | None = None, jobs: int | None = None,
              out_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None,
              progress: bool = False, search: str = "random", prune: str = "none", storage: str | None = None,
              scheduler: str | None = None, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> list[dict]:
    """Run (or continue) a sweep into ``out_dir``; return every trial's row, best validation accuracy first.

    ``trials``: random draws, or the TPE study's budget (None: DEFAULT_TRIALS;
    must be None for a full grid). ``jobs``: trials at once (None: the usable
    CPUs). ``search``: random (grid when every spec is a grid) or tpe, with
    ``prune`` none | median | hyperband and the study in ``storage`` (an
    Optuna URL; None: a journal in ``out_dir``). ``scheduler``: None (local
    processes), ``local`` (a Dask LocalCluster) or a Dask scheduler address.
    Raises ConfigError / UsageError before any training for a bad spec, value
    or folder, SchedulerError when the cluster cannot be reached, Interrupted
    on Ctrl-C (finished trials saved), SweepError when no trial finished ok.
    """
    if not params:
        raise UsageError("give at least one --param KEY=SPEC, e.g. --param optimizer.lr=log:1e-4:1e-2")
    if cfg.data.num_val < 1:
        raise ConfigError("data.num_val: a sweep scores every trial on the validation split; set it above 0, "
                          "e.g. --set data.num_val=1000")
    if jobs is not None and jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {jobs}")
    _check_search(search, prune, storage, params, trials)
    check_scheduler(scheduler)
    out_dir = Path(out_dir)
    keys = [p.key for p in params]
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is a file, not a folder")
    jobs = jobs or default_jobs()
    if search == "tpe":
        return _run_tpe(cfg, params, trials, jobs, out_dir, data_dir, progress, prune, storage, scheduler,
                        connect_timeout)
    configs, n_run = _plan(cfg, params, trials, load_results(out_dir) if out_dir.is_dir() else [])
    values = [{k: _get(c, k) for k in keys} for c in configs]
    prepare_out_dir(out_dir, resuming=True)
    _check_manifest(out_dir, params)
    rows = _resumed_rows(out_dir, params, [to_dict(c) for c in configs])
    pending = [i for i in range(n_run) if i not in rows]
    if pending:
        location = data_location(cfg, data_dir)
        queue = [{"trial": i, "config": to_dict(configs[i]), "data": location} for i in pending]

        def next_task() -> dict | None:
            return queue.pop(0) if queue else None

        def record(res: dict) -> None:
            i = res["trial"]
            rows[i] = _row(res, configs[i], values[i])
            _save_results(out_dir, rows, keys)

        def save() -> None:
            _save_results(out_dir, rows, keys)

        _drive(cfg, [configs[i] for i in pending], data_dir, min(jobs, len(pending)), scheduler, connect_timeout,
               next_task, record, save, lambda: None, progress, n_run, n_run - len(pending), rows, out_dir)
    _save_results(out_dir, rows, keys)
    return _finish(rows, out_dir)


def _finish(rows: dict[int, dict], out_dir: Path) -> list[dict]:
    """The rows, best first; SweepError when no trial finished ok."""
    ordered = sorted(rows.values(), key=_sort_key)
    if not any(r["status"] == "ok" for r in ordered):
        counts = ", ".join(f"{sum(r['status'] == s for r in ordered)} {s}" for s in ("diverged", "pruned", "failed")
                           if s != "pruned" or any(r["status"] == "pruned" for r in ordered))
        first = next((f"; e.g. {r['message']}" for r in ordered if r.get("message")), "")
        raise SweepError(f"no trial finished ok ({counts}{first}); see {out_dir / RESULTS_CSV}")
    return ordered


def _check_search(search: str, prune: str, storage: str | None, params: Sequence[ParamSpec],
                  trials: int | None) -> None:
    """UsageError for --search / --prune / --storage combinations that do not apply, or a missing Optuna."""
    if search not in SEARCHES:
        raise UsageError(f"--search {search}: expected one of {', '.join(SEARCHES)}")
    if prune not in PRUNERS:
        raise UsageError(f"--prune {prune}: expected one of {', '.join(PRUNERS)}")
    if search != "tpe":
        for name, value in (("--prune", prune != "none"), ("--storage", storage is not None)):
            if value:
                raise UsageError(f"{name} needs --search tpe (the random and grid searches keep their trials "
                                 "in the sweep folder)")
        return
    if storage is not None:
        check_storage(storage)
    if trials is not None and trials < 1:
        raise UsageError(f"--trials must be at least 1, got {trials}")
    import_optuna()


def _run_tpe(cfg: Config, params: Sequence[ParamSpec], trials: int | None, jobs: int, out_dir: Path,
             data_dir: str | os.PathLike | None, progress: bool, prune: str, storage: str | None,
             scheduler: str | None, connect_timeout: float) -> list[dict]:
    """An Optuna TPE study: ask a trial when a slot is free, run it, tell its result, write the files."""
    from .search_tpe import TPESearch

    keys = [p.key for p in params]
    budget = DEFAULT_TRIALS if trials is None else trials
    prepare_out_dir(out_dir, resuming=True)
    manifest = _check_manifest(out_dir, params, {"kind": "tpe", "prune": prune})
    study_manifest = {**manifest, "config": {k: v for k, v in _flat(to_dict(cfg)).items()
                                             if k not in _LOCATION_KEYS}}
    url = storage_url(storage, out_dir)
    max_epochs = math.ceil(_epochs(cfg))
    tpe = TPESearch(params, budget, cfg.seed, url, study_manifest, prune, max_epochs)
    configs: dict[int, Config] = {}
    location = data_location(cfg, data_dir)

    def to_rows() -> dict[int, dict]:
        return {r["trial"]: r for r in tpe.rows()}

    def next_task() -> dict | None:
        asked = tpe.ask()
        if asked is None:
            return None
        number, trial_id, values = asked
        c = with_values(cfg, {"seed": (cfg.seed + 1 + number) % 2**63, **values},
                        source=f"--search tpe trial {number} ({_describe(values)})")
        configs[number] = c
        task = {"trial": number, "config": to_dict(c), "data": location, "trial_id": trial_id}
        if prune != "none":
            task["study"] = tpe.spec
        return task

    def record(res: dict) -> None:
        i = res["trial"]
        c = configs.pop(i)
        tpe.tell(i, _row(res, c, {k: _get(c, k) for k in keys}))
        _save_results(out_dir, to_rows(), keys)

    def save() -> None:
        _save_results(out_dir, to_rows(), keys)

    done = tpe.counted()
    _drive(cfg, [cfg], data_dir, jobs, scheduler, connect_timeout, next_task, record, save, tpe.abandon, progress,
           budget, min(done, budget), None, out_dir, best=lambda: _best_val(to_rows()))
    rows = to_rows()
    _save_results(out_dir, rows, keys)
    return _finish(rows, out_dir)
def _epochs(cfg: Config) -> float:
    """Epochs a trial trains (the pruner's maximum resource)."""
    o = cfg.optimizer
    if o.epochs is not None:
        return float(o.epochs)
    n = cfg.data.num_train or 1
    return max(1.0, o.iterations * o.batch_size / n)


def _drive(cfg: Config, configs: Sequence[Config], data_dir: str | os.PathLike | None, jobs: int,
           scheduler: str | None, connect_timeout: float, next_task: Callable[[], dict | None],
           record: Callable[[dict], None], save: Callable[[], None], abandon: Callable[[], None], progress: bool,
           total: int, initial: int, rows: dict[int, dict] | None, out_dir: Path,
           best: Callable[[], float | None] | None = None) -> None:
    """Load the data once (size checks, in-process trials), keep every slot busy, record each result."""
    bar = None
    location = data_location(cfg, data_dir)
    try:
        data = load_data(cfg, data_dir, quiet=not progress)
        _check_sizes(configs, data)
        if cfg.features.kind in LEARNED:     # build the features once, before the workers read them
            featurize(cfg, make_splits(cfg, data), location["data_dir"], only=("train", "val"), progress=progress)
        set_data(location, data)
        executor = make_executor(jobs, scheduler, connect_timeout)
        try:
            bar = Bar(progress, total, initial, "sweep", "trial")
            running = 0
            while True:
                while running < executor.slots:
                    task = next_task()
                    if task is None:
                        break
                    executor.submit(task)
                    running += 1
                if running == 0:
                    break
                res = executor.next_result()
                running -= 1
                if res["status"] == "interrupted":
                    raise KeyboardInterrupt
                record(res)
                bar.update(1, best_val=best() if best is not None else _best_val(rows))
        finally:
            executor.close()
    except KeyboardInterrupt:
        abandon()
        save()
        raise Interrupted(f"sweep interrupted: the finished trials are saved in {out_dir}; run the same "
                          "command again to continue") from None
    finally:
        if bar is not None:
            bar.close()
        set_data(location, None)


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
        return _show(v)

    def numeric(col: str) -> bool:
        return all(r.get(col) is None or (isinstance(r.get(col), (int, float)) and not isinstance(r.get(col), bool))
                   for r in rows)

    table = [header] + [[cell(c, r.get(c)) for c in header] for r in rows]
    widths = [max(len(line[j]) for line in table) for j in range(len(header))]
    right = [numeric(c) for c in header]
    return "\n".join("  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(line, widths, right)).rstrip()
                     for line in table)
