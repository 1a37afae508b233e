"""A search that learns: Optuna's TPE sampler picks the next trials, a pruner stops the bad ones early.

The study lives in an Optuna storage: ``--storage journal:PATH`` (a journal
file several processes on one machine share), an RDB URL
(``postgresql://...``, ``mysql://...``, ``sqlite:///...``) for machines that
share no disk, or by default ``study.log`` in the sweep folder. Its name is
derived from what is swept (params, config, seed, search and pruner), so the
same ``linclf sweep`` on several machines joins one study and a rerun resumes
it; another sweep in the same storage gets another study.

Ask and tell: the sweep asks the study for a trial, runs it on whichever
executor, and tells the outcome; a trial that reports per-epoch validation
accuracy asks the pruner itself (the worker opens the same storage) and stops
with status ``pruned``. Every trial's result (accuracies, status, seconds,
config, history) is stored as user attributes, so results.csv, results.json
and best.yaml are written from the study and ``optuna-dashboard URL`` shows it.

The budget (``--trials``) is of the whole study: trials that finished (ok,
diverged, pruned, failed) count, interrupted ones (Ctrl-C, a process that
stopped) do not and are drawn again. Several processes asking at once never
exceed it: after asking, a trial whose number comes after ``budget`` trials
that finished or are running is told failed with status ``surplus`` and is
left out of every count and file.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

from ..errors import UsageError

__all__ = ["import_optuna", "check_storage", "storage_url", "study_name", "TPESearch", "open_trial",
           "OPTUNA_HINT", "PRUNERS"]

OPTUNA_HINT = "install it with: pip install 'linclf[optuna]'"
PRUNERS = ("none", "median", "hyperband")
RDB_SCHEMES = ("postgresql", "mysql", "sqlite", "oracle", "mssql")
STUDY_FILE = "study.log"
COUNTED = ("ok", "diverged", "pruned", "failed")
N_STARTUP = 8                 # random trials before TPE models the results


def import_optuna():
    """The ``optuna`` module, or UsageError (exit 2) saying what to install."""
    try:
        import optuna
    except ImportError:
        raise UsageError(f"--search tpe needs Optuna; {OPTUNA_HINT}") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def check_storage(url: str) -> None:
    """UsageError (exit 2) unless ``url`` is ``journal:PATH`` or an RDB URL Optuna can open."""
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower() if ":" in url else ""
    if scheme == "journal":
        if not url[len("journal:"):]:
            raise UsageError("--storage journal: needs a file path, e.g. journal:sweeps/study.log")
        return
    if scheme in RDB_SCHEMES and "://" in url:
        return
    raise UsageError(f"--storage {url}: unknown storage; use journal:PATH (a journal file, e.g. "
                     "journal:sweeps/study.log) or an RDB URL (postgresql://user@host/db, mysql://..., "
                     "sqlite:///study.db)")


def storage_url(url: str | None, out_dir: Path) -> str:
    """The storage URL workers open: the journal path made absolute; default ``journal:<out>/study.log``."""
    if url is None:
        return f"journal:{(out_dir / STUDY_FILE).resolve()}"
    if url.startswith("journal:"):
        return f"journal:{Path(url[len('journal:'):]).expanduser().resolve()}"
    return url


def _storage(optuna, url: str):
    """An Optuna storage object for a checked URL."""
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url[len("journal:"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    try:
        return optuna.storages.RDBStorage(url)
    except ImportError as e:
        raise UsageError(f"--storage {url}: the database driver is not installed ({e})") from None
    except Exception as e:  # noqa: BLE001 - SQLAlchemy's connection errors have many types
        from ..errors import LinclfError

        raise LinclfError(f"--storage {url}: cannot open the study storage ({type(e).__name__}: "
                          f"{str(e).splitlines()[0]})") from None


def study_name(manifest: dict) -> str:
    """``linclf-<hash>`` of what is swept: the same sweep on any machine joins the same study."""
    digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]
    return f"linclf-{digest}"


def _pruner(optuna, spec: dict):
    """The Optuna pruner of ``{"kind", "max_epochs"}``: median, hyperband (1 to max_epochs) or none."""
    kind = spec["kind"]
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=spec["max_epochs"],
                                              reduction_factor=3)
    return optuna.pruners.NopPruner()


def open_trial(study_spec: dict, trial_id: int):
    """In a worker: the running Optuna trial ``trial_id`` of the study, to report to and ask the pruner."""
    optuna = import_optuna()
    study = optuna.load_study(study_name=study_spec["name"], storage=_storage(optuna, study_spec["storage"]),
                              pruner=_pruner(optuna, study_spec["pruner"]))
    return optuna.trial.Trial(study, trial_id)


def _distribution(optuna, p):
    """The Optuna distribution of one ParamSpec."""
    d = optuna.distributions
    if p.kind in ("grid", "choice"):
        return d.CategoricalDistribution(list(p.values))
    if p.integer:
        return d.IntDistribution(math.ceil(p.low), math.floor(p.high), log=p.kind == "log")
    return d.FloatDistribution(p.low, p.high, log=p.kind == "log")


class TPESearch:
    """The trials of an Optuna study: ``ask()`` the next one's values, ``tell()`` its result, ``rows()``."""

    def __init__(self, params: Sequence, budget: int, seed: int, storage: str, manifest: dict,
                 prune: str, max_epochs: int):
        self.optuna = optuna = import_optuna()
        self.params, self.budget = list(params), budget
        self.name = study_name(manifest)
        self.spec = {"storage": storage, "name": self.name,
                     "pruner": {"kind": prune, "max_epochs": max(1, int(max_epochs))}}
        storage_obj = _storage(optuna, storage)
        self.study = optuna.create_study(study_name=self.name, storage=storage_obj, direction="maximize",
                                         load_if_exists=True, pruner=_pruner(optuna, self.spec["pruner"]),
                                         sampler=optuna.samplers.RandomSampler(seed=0))
        # A fresh study is sampled from the sweep seed (the same command draws the same first trials); a
        # process joining or resuming one gets its own stream, so cooperating processes do not ask alike.
        joined = bool(self.study.get_trials(deepcopy=False))
        self.study.sampler = optuna.samplers.TPESampler(
            seed=process_seed(seed) if joined else seed, n_startup_trials=N_STARTUP, multivariate=True,
            constant_liar=True)
        self.dists = {p.key: _distribution(optuna, p) for p in self.params}
        self._asked: dict[int, Any] = {}
        if "linclf_manifest" not in self.study.user_attrs:
            self.study.set_user_attr("linclf_manifest", manifest)

    # -- counting
    def _status(self, t) -> str:
        """ok | diverged | pruned | failed | interrupted | surplus | running of a FrozenTrial."""
        S = self.optuna.trial.TrialState
        if t.state in (S.RUNNING, S.WAITING):
            return "running"
        return t.user_attrs.get("status") or {S.COMPLETE: "ok", S.PRUNED: "pruned"}.get(t.state, "interrupted")

    def counted(self) -> int:
        """Trials of the study that count towards the budget (finished ones)."""
        return sum(self._status(t) in COUNTED for t in self.study.get_trials(deepcopy=False))

    def remaining(self) -> int:
        """Trials still to start: the budget minus finished and running ones."""
        trials = self.study.get_trials(deepcopy=False)
        return self.budget - sum(self._status(t) in (*COUNTED, "running") for t in trials)

    # -- ask / tell
    def ask(self) -> tuple[int, int, dict] | None:
        """(number, trial_id, values) of a new trial, or None when the budget is spent."""
        if self.remaining() <= 0:
            return None
        trial = self.study.ask(self.dists)
        before = [t for t in self.study.get_trials(deepcopy=False) if t.number < trial.number]
        if sum(self._status(t) in (*COUNTED, "running") for t in before) >= self.budget:
            trial.set_user_attr("status", "surplus")           # another process took the last place
            self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
            return None
        self._asked[trial.number] = trial
        values = {p.key: trial.params[p.key] for p in self.params}
        return trial.number, trial._trial_id, values

    def tell(self, number: int, row: dict) -> None:
        """Store a finished trial's row and tell the study its outcome."""
        S = self.optuna.trial.TrialState
        trial = self._asked.pop(number)
        for k in ("val_accuracy", "train_accuracy", "final_loss", "status", "seconds", "message", "worker_pid",
                  "config", "history", "pruned_epoch"):
            if row.get(k) is not None:
                trial.set_user_attr(k, row[k])
        status = row["status"]
        if status == "ok" and row.get("val_accuracy") is not None:
            self.study.tell(trial, row["val_accuracy"])
        elif status == "pruned":
            self.study.tell(trial, state=S.PRUNED)
        else:
            self.study.tell(trial, state=S.FAIL)

    def abandon(self) -> None:
        """Tell every trial this process asked and did not finish as interrupted (Ctrl-C)."""
        for number in list(self._asked):
            self.tell(number, {"status": "interrupted", "message": "interrupted (Ctrl-C) before it finished"})

    # -- rows
    def rows(self) -> list[dict]:
        """Every finished trial of the study as a results row (surplus and running ones left out)."""
        out = []
        for t in self.study.get_trials(deepcopy=False):
            status = self._status(t)
            if status in ("surplus", "running"):
                continue
            a = t.user_attrs
            row = {"trial": t.number, **{k: t.params.get(k) for k in self.dists},
                   "val_accuracy": a.get("val_accuracy"), "train_accuracy": a.get("train_accuracy"),
                   "final_loss": a.get("final_loss"), "status": status, "seconds": a.get("seconds"),
                   "message": a.get("message", ""), "worker_pid": a.get("worker_pid")}
            if "pruned_epoch" in a:
                row["pruned_epoch"] = a["pruned_epoch"]
            row["config"] = a.get("config", {})
            row["history"] = a.get("history", [])
            out.append(row)
        return out


def process_seed(seed: int) -> int:
    """A sampler seed of this process, from the sweep seed and the pid (cooperating processes differ)."""
    return (seed * 1_000_003 + os.getpid()) % 2**32
