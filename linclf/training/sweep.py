"""Hyperparameter sweeps: random, grid or TPE search scored on the validation split, run in parallel.

What is swept and which trials a random or grid sweep runs (``--param``
specs, the seeded draws, each trial's config): ``sweep_params``. The files in
the sweep folder and how a rerun continues from them: ``sweep_results``.

Honest scoring. Every trial trains on the training split and is scored on the
validation split; workers receive splits whose test arrays are empty, so the
test split is never read.

Where trials run (``executors``): this process (``jobs=1``), ``jobs`` spawned
local worker processes, or a Dask cluster (``scheduler``). Only config dicts,
the data's location and result dicts cross between processes; each worker
maps the data cache itself and computes on one thread. A trial whose process
the OS kills is recorded ``failed`` with the signal and the others go on.

Which trials run: the random or grid plan, or Optuna's TPE sampler with an
optional pruner (``search_tpe``), whose study lives in an Optuna storage. A
TPE sweep writes the same files from its study (``study.log`` in the folder
unless ``--storage`` names another one); its rerun resumes the study.
"""
from __future__ import annotations

import math
import os
import shutil
import signal
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

from ..config import Config, to_dict, with_values
from ..data.cifar10 import CIFAR10
from ..data.splits import Splits, split
from ..errors import ConfigError, Interrupted, LinclfError, LinclfWarning, UsageError
from ..features.registry import LEARNED
from ..progress import Bar
from ..threads import usable_cpus
from .executors import DEFAULT_CONNECT_TIMEOUT, check_scheduler, make_executor, sigint_handler
from .featurize import extraction, featurize, mirror_rows
from .loop import plan
from .run_data import load_data, located, make_splits
from .run_folder import default_out_dir, prepare_out_dir
from .search_tpe import PRUNERS, import_optuna
from .study_storage import check_storage, storage_url
from .sweep_params import (DEFAULT_TRIALS, LOCATION_KEYS, SWEEP_STREAM, ParamSpec, config_value, describe,
                           is_grid, parse_spec, sample_trials, sweep_rng, trial_configs, trial_seed)
from .sweep_results import (RESULT_COLUMNS, RESULTS_CSV, check_manifest, flat, format_table, load_results,
                            resumed_rows, save_results, sort_key)
from .trial import data_location, set_data

# The sweep's API in one place (the CLI and scripts import from here); specs and files live in their modules.
__all__ = ["ParamSpec", "SweepError", "parse_spec", "sample_trials", "trial_configs", "run_sweep",
           "load_results", "format_table", "default_jobs", "default_sweep_dir", "RESULT_COLUMNS",
           "DEFAULT_TRIALS", "SWEEP_STREAM", "SEARCHES"]

SEARCHES = ("random", "tpe")


class SweepError(LinclfError):
    """A sweep ran but no trial finished ok (exit 1)."""


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
    if {"optimizer.epochs", "optimizer.iterations"} <= {p.key for p in params}:
        raise UsageError("--param optimizer.epochs and optimizer.iterations: a trial's length is one or the other "
                         "(setting one clears the other); sweep one of them")
    if cfg.data.num_val < 1:
        raise ConfigError("data.num_val: a sweep scores every trial on the validation split; set it above 0, "
                          "e.g. --set data.num_val=1000")
    if jobs is not None and jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {jobs}")
    _check_search(search, prune, storage, params, trials)
    check_scheduler(scheduler)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is a file, not a folder")
    jobs = jobs or default_jobs()
    cfg = located(cfg, data_dir)        # absolute paths: workers elsewhere and best.yaml find the data
    created = not out_dir.exists()
    try:
        if search == "tpe":
            return _run_tpe(cfg, params, trials, jobs, out_dir, data_dir, progress, prune, storage, scheduler,
                            connect_timeout)
        return _run_random(cfg, params, trials, jobs, out_dir, data_dir, progress, scheduler, connect_timeout)
    except LinclfError as e:
        # a sweep that failed before saving any trial (no cluster, no data) leaves no folder it made
        if created and not isinstance(e, Interrupted) and out_dir.is_dir() and not load_results(out_dir):
            shutil.rmtree(out_dir, ignore_errors=True)
        raise


def _run_random(cfg: Config, params: Sequence[ParamSpec], trials: int | None, jobs: int, out_dir: Path,
                data_dir: str | os.PathLike | None, progress: bool, scheduler: str | None,
                connect_timeout: float) -> list[dict]:
    """A random or grid sweep: the planned trials not saved yet, run and saved one by one."""
    keys = [p.key for p in params]
    configs, n_run = _plan(cfg, params, trials, load_results(out_dir) if out_dir.is_dir() else [])
    values = [{k: config_value(c, k) for k in keys} for c in configs]
    prepare_out_dir(out_dir, resuming=True)
    check_manifest(out_dir, params)
    rows = resumed_rows(out_dir, params, [to_dict(c) for c in configs])
    pending = [i for i in range(n_run) if i not in rows]
    if pending:
        location = data_location(cfg, data_dir)
        queue = [{"trial": i, "config": to_dict(configs[i]), "data": location} for i in pending]

        def next_task() -> dict | None:
            return queue.pop(0) if queue else None

        def record(res: dict) -> None:
            i = res["trial"]
            rows[i] = _row(res, configs[i], values[i])
            save_results(out_dir, rows, keys)

        def save() -> None:
            save_results(out_dir, rows, keys)

        _drive(cfg, [configs[i] for i in pending], data_dir, min(jobs, len(pending)), scheduler, connect_timeout,
               next_task, record, save, lambda: None, progress, n_run, n_run - len(pending), rows, out_dir)
    save_results(out_dir, rows, keys)
    return _finish(rows, out_dir)


def _finish(rows: dict[int, dict], out_dir: Path) -> list[dict]:
    """The rows, best first; SweepError when no trial finished ok."""
    ordered = sorted(rows.values(), key=sort_key)
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
    combos = math.prod(len(p.values) for p in params) if all(p.values for p in params) else None
    if combos is not None and combos < budget:
        warnings.warn(f"every --param is a list of values ({combos} combinations), fewer than the {budget} trials: "
                      "TPE repeats them with other seeds; to run each once, sweep them as grid: values without "
                      "--search tpe", LinclfWarning, stacklevel=2)
    prepare_out_dir(out_dir, resuming=True)
    manifest = check_manifest(out_dir, params, {"kind": "tpe", "prune": prune}, storage)
    # the study is named by what it sweeps, not by where it is stored
    study_manifest = {**{k: v for k, v in manifest.items() if k != "storage"},
                      "config": {k: v for k, v in flat(to_dict(cfg)).items() if k not in LOCATION_KEYS}}
    url = storage_url(storage, out_dir)
    max_epochs = math.ceil(_epochs(cfg, data_dir))
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
        c = with_values(cfg, {"seed": trial_seed(cfg.seed, number), **values},
                        source=f"--search tpe trial {number} ({describe(values)})")
        configs[number] = c
        task = {"trial": number, "config": to_dict(c), "data": location, "trial_id": trial_id}
        if prune != "none":
            task["study"] = tpe.spec
        return task

    def record(res: dict) -> None:
        i = res["trial"]
        c = configs.pop(i)
        tpe.tell(i, _row(res, c, {k: config_value(c, k) for k in keys}))
        save_results(out_dir, to_rows(), keys)

    def save() -> None:
        save_results(out_dir, to_rows(), keys)

    try:
        done = tpe.counted()
        _drive(cfg, [cfg], data_dir, jobs, scheduler, connect_timeout, next_task, record, save, tpe.abandon,
               progress, budget, min(done, budget), None, out_dir, best=lambda: _best_val(to_rows()), wait=tpe.wait)
    finally:
        tpe.close()
    rows = to_rows()
    save_results(out_dir, rows, keys)
    return _finish(rows, out_dir)


def _epochs(cfg: Config, data_dir: str | os.PathLike | None) -> float:
    """Epochs a trial trains (the pruner's maximum resource); a length in steps is counted on the training split."""
    if cfg.optimizer.epochs is not None:
        return float(cfg.optimizer.epochs)
    n = len(make_splits(cfg, load_data(cfg, data_dir), mirrors=False).y_train) * (2 if cfg.data.flip else 1)
    return max(1.0, plan(cfg, n).total_epochs)


def _feature_builds(configs: Sequence[Config]) -> list[Config]:
    """One config for each distinct feature extraction the trials ``configs`` read (none for pixels or npz)."""
    builds: dict = {}
    for c in configs:
        if c.features.kind in LEARNED:
            builds.setdefault(extraction(c), c)
    return list(builds.values())


def _prebuild_features(cfg: Config, images: Splits, data_dir: str, progress: bool) -> None:
    """Cache the features the trials read: the training and validation splits' and, with
    ``model.flip_average``, the validation images' mirrors'."""
    _, extractor = featurize(cfg, images, data_dir, only=("train", "val"), progress=progress)
    if cfg.model.flip_average:
        mirror_rows(cfg, images, ("val",), data_dir, extractor=extractor, progress=progress)


def _drive(cfg: Config, configs: Sequence[Config], data_dir: str | os.PathLike | None, jobs: int,
           scheduler: str | None, connect_timeout: float, next_task: Callable[[], dict | None],
           record: Callable[[dict], None], save: Callable[[], None], abandon: Callable[[], None], progress: bool,
           total: int, initial: int, rows: dict[int, dict] | None, out_dir: Path,
           best: Callable[[], float | None] | None = None, wait: Callable[[], bool] | None = None) -> None:
    """Load the data once (size checks, in-process trials), keep every slot busy, record each result.

    ``wait()``, when nothing is left to submit and nothing runs: block until there may be more (True) or
    not (False); without it the sweep ends there.
    """
    bar = None
    location = data_location(cfg, data_dir)
    with _sigint_raises():
        try:
            # the cluster first: one that cannot be reached fails in seconds, not after the data and features
            executor = make_executor(jobs, scheduler, connect_timeout)
            try:
                data = load_data(cfg, data_dir, quiet=not progress)
                _check_sizes(configs, data)
                builds = _feature_builds(configs)    # each extraction once, before the workers read it
                if builds:
                    images = make_splits(cfg, data)
                    for c in builds:
                        _prebuild_features(c, images, location["data_dir"], progress)
                set_data(location, data)
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
                        if wait is not None and wait():
                            continue
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


@contextmanager
def _sigint_raises() -> Iterator[None]:
    """While a sweep drives its trials, Ctrl-C (SIGINT) raises KeyboardInterrupt even in a process that
    inherited it ignored (a background job of a script, where bash sets SIG_IGN), as training and the random
    searches stop on it; the handler this process had is put back after."""
    if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL):
        with sigint_handler(signal.default_int_handler):
            yield
    else:
        yield
