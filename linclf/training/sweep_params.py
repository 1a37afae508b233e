"""What a sweep varies: ``--param KEY=SPEC`` specs, the trials they plan, and each trial's config.

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
"""
from __future__ import annotations

import difflib
import itertools
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import yaml

from ..config import Config, schema_keys, with_values
from ..errors import ConfigError, UsageError

__all__ = ["ParamSpec", "parse_spec", "is_grid", "sweep_rng", "sample_trials", "trial_configs", "trial_seed",
           "config_value", "show_value", "describe", "KINDS", "DEFAULT_TRIALS", "SWEEP_STREAM", "FIXED_KEYS",
           "LOCATION_KEYS"]

DEFAULT_TRIALS = 20
SWEEP_STREAM = 1000          # spawn key of the sweep's generator (loop.rng_stream's streams use small keys)
KINDS = ("log", "uniform", "grid", "choice")
_SIG_DIGITS = 4
# Keys fixing which data is loaded and which images score a trial: one value for the whole sweep.
FIXED_KEYS = ("data.dir", "data.format", "data.archive", "data.md5", "data.urls", "data.timeout",
              "data.retries", "data.num_val", "data.num_test")
# Where the data lives, not what a trial is: a resumed sweep may use another path.
LOCATION_KEYS = ("data.dir", "data.archive", "data.md5", "data.urls", "data.timeout", "data.retries",
                 "features.path")


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
            return f"{self.key}={self.kind}:{show_value(self.low)}:{show_value(self.high)}"
        return f"{self.key}={self.kind}:{','.join(show_value(v) for v in self.values)}"

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


def show_value(v: Any) -> str:
    """A value as it would be typed in a spec."""
    if isinstance(v, bool) or v is None:
        return yaml.safe_dump(v).split("\n")[0]
    return repr(v) if isinstance(v, float) else str(v)


def _check_key(key: str) -> None:
    """ConfigError with a did-you-mean unless ``key`` is a sweepable config key."""
    known = list(schema_keys())
    if key in FIXED_KEYS:
        raise ConfigError(f"--param {key}: the sweep loads the data once and scores every trial on the same "
                          f"validation split, so {key} cannot be swept; set it with --set or in the config")
    if key in known:
        return
    in_section = [k for k in known if k.startswith(key + ".") and k not in FIXED_KEYS]
    if in_section:                                        # as `--set optimizer=...` says
        raise ConfigError(f"--param {key}: {key} is a section; sweep {key}.KEY=SPEC, e.g. --param "
                          f"{in_section[0]}=...")
    name = key.rsplit(".", 1)[-1]                         # init_scale, optimizer.init_scale: model.init_scale
    close = [k for k in known if k.endswith("." + name)] or difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else "keys look like section.key, e.g. optimizer.lr"
    raise ConfigError(f"--param {key}: unknown config key; {hint}")


def config_value(cfg: Config, key: str) -> Any:
    """The value of ``section.key`` (or ``seed``) in a Config."""
    obj: Any = cfg
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def _canonical(text: str, key: str, value: Any) -> Any:
    """``value`` validated for ``key`` (on the defaults) and in the config's canonical form."""
    try:
        return config_value(with_values(Config(), {key: value}), key)
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
        raise UsageError(f"--param {text}: the value {show_value(dupes[0])} is given twice")
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
    """Each trial's validated config: seed ``cfg.seed + 1 + i``, then its values (a bad one: ConfigError).

    The k-means features stay the sweep's: ``features.seed`` is fixed at ``cfg.seed`` (unless set or swept),
    so the trials share one fit and the best trial's config rebuilds the features it was scored on.
    """
    shared = {"features.seed": cfg.seed} if cfg.features.kind == "kmeans" and cfg.features.seed is None else {}
    out = []
    for i, v in enumerate(values):
        out.append(with_values(cfg, {"seed": trial_seed(cfg.seed, i), **shared, **v},
                               source=f"--param trial {i} ({describe(v)})"))
    return out


def trial_seed(seed: int, i: int) -> int:
    """The seed of trial ``i`` of a sweep seeded ``seed``: the next ones, wrapping within the schema's 32 bits."""
    return (seed + 1 + i) % 2**32


def describe(values: dict) -> str:
    """``key=value, ...`` of a trial's values."""
    return ", ".join(f"{k}={show_value(v)}" for k, v in values.items())

