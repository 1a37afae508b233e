"""A search that learns: Optuna's TPE sampler picks the next trials, a pruner stops the bad ones early.

The study lives in an Optuna storage (``study_storage``): a journal file, an
RDB URL, or by default ``study.log`` in the sweep folder. Its name is derived
from what is swept (params, config, seed, search and pruner), so the same
``linclf sweep`` on several machines joins one study and a rerun resumes it;
another sweep in the same storage gets another study.

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

A process that has nothing left to ask waits (``wait``) while trials of
other processes it can watch still run, so the budget is finished even when
their process dies: a trial whose sweep process stopped (killed, its machine
lost) is failed (status ``interrupted``) and its values are queued as a new
trial, which a process then asks and runs (see ``study_storage``).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from types import ModuleType
from typing import Any, Sequence

from ..errors import LinclfWarning, UsageError
from .study_storage import (OWNER, Heartbeat, has_heartbeats, open_storage,
                            owner_host, owner_stopped, owner_tag, quiet, retried_from, retry_again)

__all__ = ["import_optuna", "study_name", "TPESearch", "open_trial", "OPTUNA_HINT", "PRUNERS", "POLL_SECONDS"]

OPTUNA_HINT = "install it with: pip install 'linclf[optuna]'"
PRUNERS = ("none", "median", "hyperband")
COUNTED = ("ok", "diverged", "pruned", "failed")
N_STARTUP = 8                 # random trials before TPE models the results
POLL_SECONDS = 2              # how often a process waiting for other processes' trials looks at the study


def import_optuna() -> ModuleType:
    """The ``optuna`` module, or UsageError (exit 2) saying what to install."""
    try:
        import optuna
    except ImportError:
        raise UsageError(f"--search tpe needs Optuna; {OPTUNA_HINT}") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


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


def open_trial(study_spec: dict, trial_id: int) -> Any:
    """In a worker: the running Optuna trial ``trial_id`` of the study, to report to and ask the pruner."""
    optuna = import_optuna()
    study = optuna.load_study(study_name=study_spec["name"], storage=open_storage(optuna, study_spec["storage"]),
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
    """The trials of an Optuna study: ``ask()`` the next one's values, ``tell()`` its result, ``rows()``.

    ``close()`` when done (it stops the heartbeat of an RDB storage).
    """

    def __init__(self, params: Sequence, budget: int, seed: int, storage: str, manifest: dict,
                 prune: str, max_epochs: int):
        self.optuna = optuna = import_optuna()
        self.params, self.budget = list(params), budget
        self.name = study_name(manifest)
        self.spec = {"storage": storage, "name": self.name,
                     "pruner": {"kind": prune, "max_epochs": max(1, int(max_epochs))}}
        self.heartbeats = has_heartbeats(storage)
        self.storage = open_storage(optuna, storage, heartbeat=self.heartbeats)
        with quiet(optuna):
            self.study = optuna.create_study(study_name=self.name, storage=self.storage, direction="maximize",
                                             load_if_exists=True, pruner=_pruner(optuna, self.spec["pruner"]),
                                             sampler=optuna.samplers.RandomSampler(seed=0))
        self._study_id = self.storage.get_study_id_from_name(self.name)
        # A fresh study is sampled from the sweep seed (the same command draws the same first trials); a
        # process joining or resuming one gets its own stream, so cooperating processes do not ask alike.
        joined = bool(self.study.get_trials(deepcopy=False))
        with quiet(optuna):
            self.study.sampler = optuna.samplers.TPESampler(
                seed=process_seed(seed) if joined else seed, n_startup_trials=N_STARTUP, multivariate=True,
                constant_liar=True)
        self.dists = {p.key: _distribution(optuna, p) for p in self.params}
        self._asked: dict[int, tuple[Any, int]] = {}          # number: (Trial, trial_id) this process holds
        self._beat = Heartbeat(self.storage) if self.heartbeats else None
        if "linclf_manifest" not in self.study.user_attrs:
            self.study.set_user_attr("linclf_manifest", manifest)

    def close(self) -> None:
        """Stop the heartbeat of this process's trials (they are told or abandoned by then)."""
        if self._beat is not None:
            self._beat.close()

    # -- counting
    def _status(self, t) -> str:
        """ok | diverged | pruned | failed | interrupted | surplus | running | waiting of a FrozenTrial."""
        S = self.optuna.trial.TrialState
        if t.state == S.RUNNING:
            return "running"
        if t.state == S.WAITING:
            return "waiting"          # queued again after its process stopped: the next ask runs it
        return t.user_attrs.get("status") or {S.COMPLETE: "ok", S.PRUNED: "pruned"}.get(t.state, "interrupted")

    def counted(self) -> int:
        """Trials of the study that count towards the budget (finished ones)."""
        return sum(self._status(t) in COUNTED for t in self.study.get_trials(deepcopy=False))

    def remaining(self) -> int:
        """Trials still to start: the budget minus finished and running ones."""
        trials = self.study.get_trials(deepcopy=False)
        return self.budget - sum(self._status(t) in (*COUNTED, "running") for t in trials)

    def _others(self) -> list:
        """The study's running trials that other processes hold."""
        S = self.optuna.trial.TrialState
        return [t for t in self.study.get_trials(deepcopy=False, states=(S.RUNNING,)) if t.number not in self._asked]

    # -- trials whose process stopped
    def retire_stopped(self) -> None:
        """Fail the running trials whose sweep process stopped and queue their values again (once).

        RDB: Optuna's heartbeat check (this process's own trials beat first, so they are never stale here).
        Journal: trials whose owner ran on this machine and is gone.
        """
        optuna = self.optuna
        if self._beat is not None:
            self._beat.beat()
            with quiet(optuna):
                optuna.storages.fail_stale_trials(self.study)
            return
        for t in self._others():
            if not owner_stopped(t.user_attrs.get(OWNER)):
                continue
            try:
                self.study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
                continue                  # another process failed it first (and queued it again)
            retry_again(optuna, self.study, t)

    def wait(self) -> bool:
        """Block while other processes' trials that this one can watch still run (``POLL_SECONDS`` apart);
        True as soon as there is a trial to ask (one of them stopped and was queued again, or ended without
        counting), False when none is left to wait for.

        Watched: on an RDB storage every trial asked by a linclf that beats (it has an ``OWNER``); on a
        journal those held by live processes of this machine. Others get a one-line warning.
        """
        told, unowned = False, set()
        while True:
            others = self._others()
            # A trial just asked by another process has no OWNER for a moment: it gets one more look.
            no_owner = {t.number for t in others if owner_host(t.user_attrs.get(OWNER)) is None}
            new, unowned = no_owner - unowned, unowned | no_owner
            watched = [t for t in others if self._watchable(t) or t.number in new]
            if not watched:
                self._warn_unwatched(others)
                return False
            if not told:
                told = True
                nums = ", ".join(str(t.number) for t in watched)
                how = "a trial whose process stopped is retried here"
                if self.heartbeats:
                    how += f" after {self.storage.grace_period} s without a heartbeat"
                warnings.warn(f"the study's budget is taken; waiting for trial{'s' * (len(watched) > 1)} {nums} "
                              f"of other sweep processes to finish ({how})", LinclfWarning, stacklevel=2)
            time.sleep(POLL_SECONDS)
            self.retire_stopped()
            if self.remaining() > 0:
                return True

    def _watchable(self, t) -> bool:
        """Whether this process can tell when the process of a running trial stops (see ``wait``)."""
        tag = t.user_attrs.get(OWNER)
        if self.heartbeats:
            return owner_host(tag) is not None
        return owner_stopped(tag) is False

    def _warn_unwatched(self, trials: list) -> None:
        """One line about running trials whose process this one cannot watch (they may never finish)."""
        if not trials:
            return
        many = len(trials) > 1
        nums = ", ".join(str(t.number) for t in trials)
        hosts = ", ".join(sorted({owner_host(t.user_attrs.get(OWNER)) or "an unknown host" for t in trials}))
        if self.heartbeats:
            why = ("they have no heartbeat (asked by an older linclf), so if their process was killed they stay "
                   "running and uncounted")
        else:
            why = (f"a journal storage has no heartbeats, so if {'such a' if many else 'that'} process was killed "
                   f"{'its' if many else 'the'} trial stays running and uncounted; use an RDB storage "
                   "(--storage postgresql://...) for sweeps on several machines")
        where = f"sweep processes on {hosts}" if many else f"a sweep process on {hosts}"
        warnings.warn(f"trial{'s' * many} {nums} of the study {'are' if many else 'is'} still running in {where}; "
                      f"{why}", LinclfWarning, stacklevel=3)

    # -- ask / tell
    def ask(self) -> tuple[int, int, dict] | None:
        """(number, trial_id, values) of a new trial (a queued retry first), or None when the budget is taken."""
        self.retire_stopped()
        if self.remaining() <= 0:
            return None
        with quiet(self.optuna):
            trial = self.study.ask(self.dists)
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(self._study_id, trial.number)
        if self._beat is not None:
            self._beat.add(trial_id)      # before OWNER: a trial with an owner always has a heartbeat
        trial.set_user_attr(OWNER, owner_tag())
        self._asked[trial.number] = (trial, trial_id)
        before = [t for t in self.study.get_trials(deepcopy=False) if t.number < trial.number]
        if sum(self._status(t) in (*COUNTED, "running") for t in before) >= self.budget:
            self.tell(trial.number, {"status": "surplus"})        # another process took the last place
            return None
        values = {p.key: trial.params[p.key] for p in self.params}
        return trial.number, trial_id, values

    def tell(self, number: int, row: dict) -> None:
        """Store a finished trial's row and tell the study its outcome."""
        S = self.optuna.trial.TrialState
        trial, trial_id = self._asked.pop(number)
        if self._beat is not None:
            self._beat.discard(trial_id)
        status = row["status"]
        try:
            for k in ("val_accuracy", "train_accuracy", "final_loss", "status", "seconds", "message", "worker_pid",
                      "config", "history", "pruned_epoch"):
                if row.get(k) is not None:
                    trial.set_user_attr(k, row[k])
            if status == "ok" and row.get("val_accuracy") is not None:
                self.study.tell(trial, row["val_accuracy"], skip_if_finished=True)
            else:
                self.study.tell(trial, state=S.PRUNED if status == "pruned" else S.FAIL, skip_if_finished=True)
        except self.optuna.exceptions.UpdateFinishedTrialError:
            # Its heartbeat was late: another process took this one's process as stopped and queued it again.
            warnings.warn(f"trial {number} was taken as stopped by another sweep process (its heartbeat was late) "
                          "and queued again; its result here is dropped", LinclfWarning, stacklevel=2)

    def abandon(self) -> None:
        """Tell every trial this process asked and did not finish as interrupted (Ctrl-C)."""
        for number in list(self._asked):
            self.tell(number, {"status": "interrupted", "message": "interrupted (Ctrl-C) before it finished"})

    # -- rows
    def rows(self) -> list[dict]:
        """Every finished trial of the study as a results row (surplus, running and queued ones left out)."""
        trials = self.study.get_trials(deepcopy=False)
        retried = {}                      # number of a stopped trial: number of the trial that runs it again
        for t in trials:
            first = retried_from(self.optuna, t)
            if first is not None:
                retried[first] = t.number
        out = []
        for t in trials:
            status = self._status(t)
            if status in ("surplus", "running", "waiting"):
                continue
            a = t.user_attrs
            message = a.get("message", "")
            if "status" not in a and status == "interrupted":
                again = (f"retried as trial {retried[t.number]}" if t.number in retried else
                         "not retried (its values ran once more already)")
                message = f"its sweep process stopped before it finished; {again}"
            row = {"trial": t.number, **{k: t.params.get(k) for k in self.dists},
                   "val_accuracy": a.get("val_accuracy"), "train_accuracy": a.get("train_accuracy"),
                   "final_loss": a.get("final_loss"), "status": status, "seconds": a.get("seconds"),
                   "message": message, "worker_pid": a.get("worker_pid")}
            if "pruned_epoch" in a:
                row["pruned_epoch"] = a["pruned_epoch"]
            row["config"] = a.get("config", {})
            row["history"] = a.get("history", [])
            out.append(row)
        return out


def process_seed(seed: int) -> int:
    """A sampler seed of this process, from the sweep seed and the pid (cooperating processes differ)."""
    return (seed * 1_000_003 + os.getpid()) % 2**32
