"""Hyperparameter sweeps: random or grid search scored on the validation split, in parallel processes.

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

Parallelism. The parent loads the data once (the memory-mapped cache of
``runs.load_data``) and forks ``jobs`` workers (Linux) that share its pages;
where fork is unavailable or unsafe, each spawned worker maps the same cache.
Only config dicts and result dicts cross between processes. Workers run the
losses on one thread (``train(..., workers=1)``, and BLAS too,
``threads.set_blas_threads(1)``) and leave Ctrl-C to the parent. ``jobs=1`` runs
the trials in this process.

Files in the sweep folder, each written atomically: ``sweep.json`` (what is
swept), and after every finished trial ``results.csv``, ``results.json`` and
``best.yaml``. Running the same sweep again with the same folder skips the
trials recorded there as ok or diverged (failed ones run again); a folder
holding another sweep (other params, config or seed) is refused.
"""
from __future__ import annotations

import csv
import dataclasses
import difflib
import io
import itertools
import json
import math
import multiprocessing
import os
import signal
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import yaml

from ..config import Config, from_dict, schema_keys, to_dict, to_yaml, with_values
from ..data.cifar10 import CIFAR10, Splits, split
from ..errors import ConfigError, DivergenceError, Interrupted, LinclfError, UsageError
from ..fsutil import write_json_atomic, write_text_atomic
from ..core.preprocess import Preprocessor, fit
from ..progress import Bar
from ..features.registry import LEARNED
from .featurize import feature_prep, featurize
from ..threads import set_blas_threads, usable_cpus
from .runs import default_out_dir, load_data, make_splits, prepare_out_dir
from .loop import accuracy, init_state, train

__all__ = ["ParamSpec", "SweepError", "parse_spec", "sample_trials", "trial_configs", "run_sweep",
           "load_results", "format_table", "default_jobs", "default_sweep_dir", "RESULT_COLUMNS",
           "DEFAULT_TRIALS", "SWEEP_STREAM"]

DEFAULT_TRIALS = 20
SWEEP_STREAM = 1000          # spawn key of the sweep's generator (train.rng_stream uses 0..5)
RESULT_COLUMNS = ("val_accuracy", "train_accuracy", "final_loss", "status", "seconds")
KINDS = ("log", "uniform", "grid", "choice")
FINISHED = ("ok", "diverged")   # statuses a resumed sweep keeps; "failed" trials run again
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


# ----------------------------------------------------------------- worker

_DATA: CIFAR10 | None = None                  # the dataset, set in the parent and inherited by forked workers
_PREP: dict[tuple, Preprocessor] = {}         # preprocessing fitted per (settings, training split), per process
_FEATS: dict[tuple, Splits] = {}              # feature splits per (features settings, data settings), per process
_DATA_DIR: str | None = None                  # where the feature cache lives (features.kind kmeans, hog_color)


def _init_worker(payload: tuple[dict, str | None] | None) -> None:
    """Start of a worker process: one thread for the losses and BLAS, Ctrl-C left to the parent, the data."""
    global _DATA, _DATA_DIR
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    set_blas_threads(1)
    if payload is not None:
        cfg_dict, data_dir = payload
        _DATA, _DATA_DIR = load_data(from_dict(cfg_dict), data_dir), data_dir


def _splits(cfg: Config) -> Splits:
    """The trial's train / val splits of the shared data; the test split is replaced by empty arrays."""
    s = make_splits(cfg, _DATA)
    if cfg.features.kind in LEARNED:       # from the feature cache the parent filled before the trials
        d = cfg.data
        key = (tuple(sorted(dataclasses.asdict(cfg.features).items())), cfg.seed, d.num_train, d.num_val,
               d.num_dev)
        if key not in _FEATS:              # the trials of one worker share the memory-mapped rows
            _FEATS[key] = featurize(cfg, s, _DATA_DIR, only=("train", "val"))[0]
        return _FEATS[key]
    no_rows = np.empty((0, s.X_train.shape[1]), dtype=s.X_train.dtype)
    return dataclasses.replace(s, X_test=no_rows, y_test=np.empty(0, dtype=s.y_train.dtype))


def _prep(cfg: Config, splits: Splits) -> Preprocessor:
    """The preprocessing fitted on the training split, reused by later trials with the same settings."""
    p, d = cfg.preprocess, cfg.data
    key = (p.mean, p.std, p.bias, d.num_train, d.num_val, d.num_dev, cfg.seed if d.num_dev else None,
           tuple(sorted(dataclasses.asdict(cfg.features).items())),
           cfg.seed if cfg.features.kind == "kmeans" else None)
    if key not in _PREP:
        _PREP[key] = (fit(splits.X_train, mean=p.mean, std=p.std, bias=p.bias) if cfg.features.kind == "pixels"
                      else feature_prep(cfg, splits.X_train))
    return _PREP[key]


def _finite(x: Any) -> float | None:
    """A float, or None for a missing or non-finite value (JSON has no NaN)."""
    return float(x) if x is not None and math.isfinite(x) else None


def _train_and_score(cfg: Config, states: list, workers: int | None) -> dict:
    """Train on the training split and score on the validation split; ``states`` receives the TrainState."""
    splits = _splits(cfg)
    prep = _prep(cfg, splits)
    state = init_state(cfg, (len(splits.classes), prep.out_dim(splits.X_train.shape[1])))
    states.append(state)
    result = train(cfg, splits, prep, state=state, workers=workers)
    return {"val_accuracy": _finite(accuracy(result.W, prep, splits.X_val, splits.y_val)),
            "train_accuracy": _finite(accuracy(result.W, prep, splits.X_train, splits.y_train)),
            "final_loss": _finite(result.final_loss)}


def _clean(obj: Any) -> Any:
    """``obj`` with non-finite floats as None, so it is valid JSON."""
    if isinstance(obj, float):
        return _finite(obj)
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def _run_trial(task: dict) -> dict:
    """Run one trial (``{"trial", "config", "workers"}``); never raises: ``status`` says ok, diverged, failed, interrupted."""
    t0 = time.perf_counter()
    out: dict[str, Any] = {"val_accuracy": None, "train_accuracy": None, "final_loss": None}
    states: list = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)     # overflow on the way to a divergence
            out.update(_train_and_score(from_dict(task["config"]), states, task.get("workers")))
        status, message = "ok", ""
    except DivergenceError as e:
        status, message = "diverged", str(e)
    except Interrupted as e:
        status, message = "interrupted", str(e)
    except Exception as e:  # noqa: BLE001 - a trial's failure is recorded, not fatal
        status, message = "failed", str(e) if isinstance(e, LinclfError) else f"{type(e).__name__}: {e}"
    return {"trial": task["trial"], **out, "status": status, "seconds": round(time.perf_counter() - t0, 3),
            "message": message, "worker_pid": os.getpid(),
            "history": _clean(states[0].history) if states else []}


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
            and r.get("status") in ("ok", "diverged", "failed") for r in rows)
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


def _check_manifest(out_dir: Path, params: Sequence[ParamSpec]) -> None:
    """Write sweep.json; a folder with finished trials must hold a sweep of the same params."""
    path = out_dir / MANIFEST
    now = json.loads(json.dumps({"params": [p.to_json() for p in params], "spec": [str(p) for p in params]}))
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
    write_json_atomic(path, now, indent=1)


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


def _mp_context() -> multiprocessing.context.BaseContext:
    """fork on Linux (workers share the parent's data); spawn elsewhere."""
    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")


@contextmanager
def _executor(tasks: list[dict], jobs: int, cfg: Config,
              data_dir: str | os.PathLike | None) -> Iterator[Iterator[dict]]:
    """Each task's result as it finishes: in this process when ``jobs`` is 1, else from a worker pool."""
    if jobs == 1:
        yield map(_run_trial, tasks)
        return
    ctx = _mp_context()
    payload = None if ctx.get_start_method() == "fork" else (to_dict(cfg), None if data_dir is None else
                                                               os.fspath(data_dir))
    pool = ctx.Pool(jobs, initializer=_init_worker, initargs=(payload,))
    try:
        yield pool.imap_unordered(_run_trial, tasks, chunksize=1)
    finally:
        pool.terminate()
        pool.join()


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
              progress: bool = False) -> list[dict]:
    """Run (or continue) a sweep into ``out_dir``; return every trial's row, best validation accuracy first.

    ``trials``: random draws (None: DEFAULT_TRIALS; must be None for a full
    grid). ``jobs``: worker processes (None: the usable CPUs). Raises
    ConfigError / UsageError before any training for a bad spec, value or
    folder, Interrupted on Ctrl-C (finished trials saved), SweepError when no
    trial finished ok.
    """
    if not params:
        raise UsageError("give at least one --param KEY=SPEC, e.g. --param optimizer.lr=log:1e-4:1e-2")
    if cfg.data.num_val < 1:
        raise ConfigError("data.num_val: a sweep scores every trial on the validation split; set it above 0, "
                          "e.g. --set data.num_val=1000")
    if jobs is not None and jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {jobs}")
    out_dir = Path(out_dir)
    keys = [p.key for p in params]
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is a file, not a folder")
    configs, n_run = _plan(cfg, params, trials, load_results(out_dir) if out_dir.is_dir() else [])
    values = [{k: _get(c, k) for k in keys} for c in configs]
    prepare_out_dir(out_dir, resuming=True)
    _check_manifest(out_dir, params)
    rows = _resumed_rows(out_dir, params, [to_dict(c) for c in configs])
    pending = [i for i in range(n_run) if i not in rows]
    if pending:
        _run_pending(cfg, configs, values, pending, rows, keys, jobs, out_dir, data_dir, progress, n_run)
    _save_results(out_dir, rows, keys)
    ordered = sorted(rows.values(), key=_sort_key)
    if not any(r["status"] == "ok" for r in ordered):
        counts = ", ".join(f"{sum(r['status'] == s for r in ordered)} {s}" for s in ("diverged", "failed"))
        first = next((f"; e.g. {r['message']}" for r in ordered if r.get("message")), "")
        raise SweepError(f"no trial finished ok ({counts}{first}); see {out_dir / RESULTS_CSV}")
    return ordered


def _run_pending(cfg: Config, configs: list[Config], values: list[dict], pending: list[int], rows: dict[int, dict],
                 keys: list[str], jobs: int | None, out_dir: Path, data_dir: str | os.PathLike | None,
                 progress: bool, n_run: int) -> None:
    """Load the data once, run the pending trials in parallel, save the results after each one."""
    global _DATA, _DATA_DIR
    _PREP.clear()
    workers = min(jobs or default_jobs(), len(pending))
    per_trial = 1 if workers > 1 else None      # parallel trials compute on one CPU each
    tasks = [{"trial": i, "config": to_dict(configs[i]), "workers": per_trial} for i in pending]
    bar = None
    try:
        _DATA = load_data(cfg, data_dir, quiet=not progress)
        _DATA_DIR = None if data_dir is None else os.fspath(data_dir)
        _check_sizes([configs[i] for i in pending], _DATA)
        if cfg.features.kind in LEARNED:     # build the features once, before the workers read them
            featurize(cfg, make_splits(cfg, _DATA), _DATA_DIR, only=("train", "val"), progress=progress)
        with _executor(tasks, workers, cfg, data_dir) as results:
            bar = Bar(progress, n_run, n_run - len(pending), "sweep", "trial")   # after the fork: no tqdm thread in workers
            for res in results:
                if res["status"] == "interrupted":
                    raise KeyboardInterrupt
                i = res["trial"]
                rows[i] = _row(res, configs[i], values[i])
                _save_results(out_dir, rows, keys)
                bar.update(1, best_val=_best_val(rows))
    except KeyboardInterrupt:
        _save_results(out_dir, rows, keys)
        raise Interrupted(f"sweep interrupted: {len(rows)} of {n_run} trials finished and saved in {out_dir}; "
                          "run the same command again to continue") from None
    finally:
        if bar is not None:
            bar.close()
        _DATA = _DATA_DIR = None
        _PREP.clear()
        _FEATS.clear()


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
