"""The config schema (the one home of every default), YAML loading and overrides.

A config file holds only what differs from the defaults below. Loading rejects
duplicate keys, unknown keys (with a did-you-mean), wrong types, non-finite and
out-of-range numbers, naming the key path; ``lr: 1e-3`` (a string to YAML 1.1)
is read as the number 0.001. ``--set section.key=value`` overrides are parsed
as YAML values and validated the same way.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from .errors import ConfigError

__all__ = [
    "Config", "DataConfig", "FeaturesConfig", "PreprocessConfig", "ModelConfig", "OptimizerConfig",
    "TrainConfig", "load_config", "from_dict", "to_dict", "to_yaml", "with_values",
    "parse_override", "load_yaml_file", "schema_keys", "SHIPPED", "shipped_configs", "config_file",
]


@dataclass(frozen=True)
class Spec:
    """How one config value is checked: its kind, allowed values and range."""

    kind: str                      # "int" | "float" | "bool" | "str" | "list[str]"
    help: str
    choices: tuple[str, ...] = ()
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False          # lo excluded
    hi_open: bool = False          # hi excluded
    nullable: bool = False
    pattern: str | None = None     # regex a str must match in full
    pattern_help: str = ""         # what ``pattern`` means, for messages ("32 hex digits")


def _f(default: Any, kind: str, help: str, **kw: Any) -> Any:
    """A dataclass field carrying its Spec in the metadata."""
    spec = Spec(kind, help, **kw)
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"spec": spec})
    return field(default=default, metadata={"spec": spec})


@dataclass(frozen=True)
class DataConfig:
    dir: str | None = _f(None, "str", "download / cache folder (null = the user cache folder, e.g. ~/.cache/linclf; "
                                      "env LINCLF_DATA_DIR and flag --data-dir win)", nullable=True)
    format: str = _f("binary", "str", "archive format; binary never loads a pickle unless the data folder holds "
                     "only python batches", choices=("binary", "python"))
    archive: str | None = _f(None, "str", "a local archive or extracted folder instead of downloading",
                             nullable=True)
    md5: str | None = _f(None, "str", "expected md5 of that archive / of a mirror's file",
                         nullable=True, pattern=r"[0-9a-fA-F]{32}", pattern_help="32 hex digits")
    urls: list = _f([], "list[str]", "mirrors, tried in order before the official URL")
    num_train: int | None = _f(None, "int", "training images (null = all not used for validation)",
                               lo=1, nullable=True)
    num_val: int = _f(1000, "int", "validation images carved from the end of the training set", lo=0)
    num_test: int | None = _f(None, "int", "test images (null = all)", lo=1, nullable=True)
    num_dev: int = _f(0, "int", "a seeded random subset of train for quick runs (0 = off)", lo=0)
    flip: bool = _f(False, "bool", "add the horizontal mirror of every training image (twice the training rows; "
                                   "validation and test untouched)")
    timeout: float = _f(30.0, "float", "connect and read timeout of a download, seconds",
                        lo=0, lo_open=True)
    retries: int = _f(5, "int", "retries of a URL on connection errors, 5xx and 429", lo=0, hi=100)


@dataclass(frozen=True)
class FeaturesConfig:
    kind: str = _f("pixels", "str", "what the classifier sees: raw pixels, Coates k-means features, HOG + hue "
                   "histogram, or precomputed features from an .npz", choices=("pixels", "kmeans", "hog_color", "npz"))
    path: str | None = _f(None, "str", "npz: the .npz holding X_train, y_train, X_test, y_test (optional classes)",
                          nullable=True)
    standardize: bool = _f(True, "bool", "standardise the features (mean 0, std 1 on the training split); "
                                         "false leaves them to the preprocess section (preprocess.std: true "
                                         "standardises them all the same)")
    cache: bool = _f(True, "bool", "keep extracted features (float16) and the fitted extractor in the data folder")
    patch: int = _f(6, "int", "kmeans: side of the square patches, pixels", lo=1, hi=32)
    stride: int = _f(1, "int", "kmeans: step between patches when extracting", lo=1, hi=32)
    patches: int = _f(400_000, "int", "kmeans: random training patches the centroids are fitted on", lo=1)
    norm_eps: float = _f(10.0, "float", "kmeans: per-patch normalisation (x - mean) / sqrt(var + norm_eps)", lo=0)
    zca_eps: float = _f(0.1, "float", "kmeans: ZCA whitening regulariser", lo=0, lo_open=True)
    k: int = _f(1600, "int", "kmeans: number of centroids", lo=1)
    iterations: int = _f(50, "int", "kmeans: Lloyd iterations (seeded by features.seed)", lo=1)
    seed: int | None = _f(None, "int", "kmeans: seed of the patch sample and k-means (null = the config's seed; "
                          "a sweep's trials share the sweep's)", lo=0, hi=2**32 - 1, nullable=True)
    encoder: str = _f("triangle", "str", "kmeans: triangle (max(0, mean_dist - dist)) or soft "
                      "(max(0, z.u - alpha), c scaled to unit length u)",
                      choices=("triangle", "soft"))
    alpha: float = _f(0.25, "float", "kmeans: soft encoder threshold", lo=0)
    split: bool = _f(False, "bool", "kmeans: soft encoder also keeps max(0, -z.u - alpha) (twice the features)")
    pool: int = _f(2, "int", "kmeans: sum pooling over a pool x pool grid of the feature map", lo=1)
    power: float = _f(1.0, "float", "kmeans: the pooled sums raised to this power (0.5: their square root; "
                      "1: as published)", lo=0, lo_open=True)
    orientations: int = _f(9, "int", "hog_color: orientation bins of the gradient histogram", lo=1, hi=180)
    cell: int = _f(8, "int", "hog_color: side of the square HOG cells, pixels", lo=1, hi=32)
    hue_bins: int = _f(10, "int", "hog_color: bins of the hue histogram", lo=1, hi=255)


@dataclass(frozen=True)
class PreprocessConfig:
    mean: bool = _f(True, "bool", "subtract the mean image of the training split")
    std: bool = _f(False, "bool", "divide by the per-pixel standard deviation of the training split")
    bias: bool = _f(True, "bool", "bias trick: append a constant 1 (D = 3073)")


@dataclass(frozen=True)
class ModelConfig:
    loss: str = _f("svm", "str", "svm (multiclass hinge), softmax (cross-entropy) or squared_hinge "
                   "(one-vs-all L2-SVM, Coates's classifier)", choices=("svm", "softmax", "squared_hinge"))
    delta: float = _f(1.0, "float", "margin of the hinge losses (svm, squared_hinge)", lo=0, lo_open=True)
    reg: float = _f(2.5e4, "float", "L2 strength: reg * sum(W*W)", lo=0)
    reg_bias: bool = _f(True, "bool", "regularise the bias column too (the assignment's form; the notes leave "
                                      "biases out); without preprocess.bias every column is a weight")
    init_scale: float = _f(1e-4, "float", "std of the Gaussian initial W (and of random search)", lo=0)
    dtype: str = _f("float32", "str", "compute dtype of training", choices=("float32", "float64"))
    flip_average: bool = _f(False, "bool", "predict from the mean of each image's class scores and its mirror's "
                            "(the run's val and test accuracy, its per-epoch validation accuracy, a sweep's trials, "
                            "eval, predict)")


@dataclass(frozen=True)
class OptimizerConfig:
    method: str = _f("sgd", "str", "sgd (minibatch), gd (full batch), random_search, random_local_search",
                     choices=("sgd", "gd", "random_search", "random_local_search"))
    update: str = _f("sgd", "str", "update rule of sgd/gd",
                     choices=("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"))
    lr: float = _f(1e-7, "float", "learning rate", lo=0, lo_open=True)
    batch_size: int = _f(200, "int", "examples per minibatch step", lo=1)
    iterations: int | None = _f(1500, "int", "number of steps (or set epochs)", lo=0, nullable=True)
    epochs: float | None = _f(None, "float", "length in passes over the training split (replaces iterations)",
                              lo=0, lo_open=True, nullable=True)
    sampling: str = _f("replacement", "str", "minibatch sampling: with replacement or an epoch-wise shuffle",
                       choices=("replacement", "shuffle"))
    schedule: str = _f("constant", "str", "learning-rate schedule",
                       choices=("constant", "step", "exponential", "cosine", "inverse_time"))
    step_every: float = _f(5.0, "float", "step schedule: epochs between decays", lo=0, lo_open=True)
    gamma: float = _f(0.5, "float", "step / exponential schedule: factor per step_every / per epoch",
                      lo=0, hi=1, lo_open=True)
    k: float = _f(0.1, "float", "inverse_time schedule: lr / (1 + k * epoch)", lo=0)
    lr_min: float = _f(0.0, "float", "cosine schedule: final learning rate", lo=0)
    momentum: float = _f(0.9, "float", "momentum / nesterov coefficient", lo=0, hi=1, hi_open=True)
    decay: float = _f(0.99, "float", "rmsprop decay rate of the squared-gradient cache",
                      lo=0, hi=1, hi_open=True)
    beta1: float = _f(0.9, "float", "adam first-moment decay", lo=0, hi=1, hi_open=True)
    beta2: float = _f(0.999, "float", "adam second-moment decay", lo=0, hi=1, hi_open=True)
    eps: float = _f(1e-8, "float", "adagrad / rmsprop / adam denominator guard", lo=0, lo_open=True)
    trials: int = _f(1000, "int", "random search / random local search: number of candidates", lo=1)
    step_size: float = _f(1e-4, "float", "random local search: std of the perturbation", lo=0, lo_open=True)


@dataclass(frozen=True)
class TrainConfig:
    log_every: int = _f(10, "int", "steps between loss records in history.csv", lo=1)
    keep_best: bool = _f(True, "bool", "keep the weights with the best validation accuracy")
    patience: int | None = _f(None, "int", "stop after this many epochs without a better val accuracy",
                              lo=1, nullable=True)
    train_eval_size: int = _f(1000, "int", "fixed training subset scored each epoch", lo=1)
    checkpoint_every: float | None = _f(None, "float", "epochs between checkpoints (null: at the end only)",
                                        lo=0, lo_open=True, nullable=True)


@dataclass(frozen=True)
class Config:
    seed: int = _f(0, "int", "seed of every random choice (init, sampling, splits)", lo=0, hi=2**32 - 1)
    data: DataConfig = field(default_factory=DataConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


_SECTIONS: dict[str, type] = {
    "data": DataConfig, "features": FeaturesConfig, "preprocess": PreprocessConfig, "model": ModelConfig,
    "optimizer": OptimizerConfig, "train": TrainConfig,
}


def schema_keys() -> dict[str, Spec]:
    """Every key path (``section.key`` or ``seed``) mapped to its Spec, in schema order."""
    out: dict[str, Spec] = {}
    for f in dataclasses.fields(Config):
        if f.name in _SECTIONS:
            for g in dataclasses.fields(_SECTIONS[f.name]):
                out[f"{f.name}.{g.name}"] = g.metadata["spec"]
        else:
            out[f.name] = f.metadata["spec"]
    return out


# ---------------------------------------------------------------- YAML reading


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise ConfigError(f"duplicate key {key!r} at line {line} (first at line {seen[key]})")
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


SHIPPED = Path(__file__).parent / "configs"      # the configs that ship with linclf (./configs in a clone)


def shipped_configs() -> list[str]:
    """The names of the shipped configs (softmax, svm, kmeans, ...), sorted."""
    return sorted(p.stem for p in SHIPPED.glob("*.yaml"))


def config_file(path: str | os.PathLike) -> str:
    """``path``, or the shipped config it names (``softmax`` or ``softmax.yaml``) when no such file exists."""
    p = os.fspath(path)
    if os.path.exists(p) or os.path.dirname(p):
        return p
    shipped = SHIPPED / (p if p.endswith((".yaml", ".yml")) else f"{p}.yaml")
    return str(shipped) if shipped.is_file() else p


def _nearby_config(path: str) -> str:
    """"; did you mean X?" for a YAML file of a close name in the folder ``path`` names (configs/sofmax.yml),
    or, for a bare name, in the working directory; then among the shipped configs (named bare: the README's
    configs/softmax.yaml outside a clone is the shipped softmax)."""
    folder, name = os.path.split(path)
    stem = os.path.splitext(name)[0]
    for where, shipped in [(folder, False), (os.fspath(SHIPPED), True)]:
        try:
            files = sorted(f for f in os.listdir(where or ".") if f.endswith((".yaml", ".yml")))
        except OSError:
            continue
        close = difflib.get_close_matches(stem, [os.path.splitext(f)[0] for f in files], n=1, cutoff=0.6)
        if close and shipped and folder:
            return f"; did you mean the config that ships with linclf, --config {close[0]}?"
        if close:
            match = next(f for f in files if os.path.splitext(f)[0] == close[0])
            return f"; did you mean {close[0] if shipped else os.path.join(where, match)}?"
    return "" if folder else f"; the shipped configs are {', '.join(shipped_configs())}"


def load_yaml_file(path: str | os.PathLike) -> dict:
    """Read a YAML mapping safely; errors say which file and what is wrong."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise ConfigError(f"config file {p} does not exist{_nearby_config(p)}")
    if os.path.isdir(p):
        raise ConfigError(f"config file {p} is a folder, not a YAML file")
    try:
        with open(p, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {p} cannot be read: {e}") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{p} is not valid YAML{at}: {what}") from None
    if raw is None:
        raise ConfigError(f"{p} is empty; a config is a mapping such as 'optimizer: {{lr: 1.0e-3}}'")
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of sections, got a {_kind(raw)}")
    return raw


# ------------------------------------------------------------------ validation


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string",
            list: "list", dict: "mapping"}.get(type(v), type(v).__name__)


def _bound(v: float) -> str:
    """A range bound as written in a config: 4294967295, not 4.29497e+09."""
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _expected(spec: Spec) -> str:
    if spec.choices:
        text = "one of " + ", ".join(spec.choices)
    elif spec.kind == "int":
        text = "an integer"
    elif spec.kind == "float":
        text = "a number"
    elif spec.kind == "bool":
        text = "true or false"
    elif spec.kind == "list[str]":
        text = "a list of strings"
    else:
        text = spec.pattern_help or "a string"
    if spec.lo is not None or spec.hi is not None:
        lo = "" if spec.lo is None else f"{'>' if spec.lo_open else '>='} {_bound(spec.lo)}"
        hi = "" if spec.hi is None else f"{'<' if spec.hi_open else '<='} {_bound(spec.hi)}"
        text += " " + " and ".join(s for s in (lo, hi) if s)
    if spec.nullable:
        text += " (or null)"
    return text


def _coerce(path: str, value: Any, spec: Spec) -> Any:
    """Check one value against its Spec; return it in canonical form or raise ConfigError."""

    def bad(why: str = "") -> ConfigError:
        shown = repr(value) if not isinstance(value, (dict, list)) else _kind(value)
        return ConfigError(f"{path}: expected {_expected(spec)}, got {shown}{why}")

    if value is None:
        if spec.nullable:
            return None
        raise bad()
    if spec.kind == "bool":
        if isinstance(value, bool):
            return value
        raise bad()
    if spec.kind in ("int", "float"):
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, str):
            try:
                value_num = float(value.strip().replace("_", ""))
            except ValueError:
                raise bad() from None
        elif isinstance(value, (int, float)):
            value_num = value
        else:
            raise bad()
        if isinstance(value_num, float) and not math.isfinite(value_num):
            raise bad(" (not finite)")
        if spec.kind == "int":
            if isinstance(value_num, float):
                if not value_num.is_integer():
                    raise bad(" (not a whole number)")
                value_num = int(value_num)
        else:
            value_num = float(value_num)
        if spec.lo is not None and (value_num < spec.lo or (spec.lo_open and value_num == spec.lo)):
            raise bad(" (out of range)")
        if spec.hi is not None and (value_num > spec.hi or (spec.hi_open and value_num == spec.hi)):
            raise bad(" (out of range)")
        return value_num
    if spec.kind == "str":
        if not isinstance(value, str):
            raise bad()
        if spec.choices and value not in spec.choices:
            close = difflib.get_close_matches(value, spec.choices, n=1)
            raise bad(f" (did you mean {close[0]!r}?)" if close else "")
        if spec.pattern and not re.fullmatch(spec.pattern, value):
            raise bad()
        return value
    if spec.kind == "list[str]":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise bad()
        return list(value)
    raise AssertionError(f"unknown spec kind {spec.kind}")  # pragma: no cover


def _unknown(path: str, key: Any, known: Sequence[str]) -> ConfigError:
    elsewhere = [k for k in schema_keys() if "." in path and k.rsplit(".", 1)[-1] == str(key)]   # optimizer.reg
    if elsewhere:
        return ConfigError(f"unknown key {path}; did you mean {elsewhere[0]!r}?")
    close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
    return ConfigError(f"unknown key {path}{hint}")


def _build_section(name: str, cls: type, raw: Any) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: expected a mapping of keys, got {_kind(raw)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        if key not in fields:
            raise _unknown(f"{name}.{key}", key, list(fields))
        values[key] = _coerce(f"{name}.{key}", value, fields[key].metadata["spec"])
    return cls(**values)


def from_dict(raw: Mapping[str, Any]) -> Config:
    """Validate a plain mapping (as read from YAML) into a Config; raise ConfigError naming the key path."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"the top level must be a mapping of sections, got {_kind(raw)}")
    top = {f.name: f for f in dataclasses.fields(Config)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in top:
            raise _unknown(str(key), key, list(top))
        if key in _SECTIONS:
            values[key] = _build_section(key, _SECTIONS[key], value)
        else:
            values[key] = _coerce(key, value, top[key].metadata["spec"])
    opt = raw.get("optimizer") or {}
    if isinstance(opt, dict) and opt.get("iterations") is not None and opt.get("epochs") is not None:
        raise ConfigError("optimizer: set either iterations or epochs, not both")
    cfg = Config(**values)
    _check_features(cfg.features, cfg.data.flip, cfg.model.flip_average)
    if cfg.optimizer.epochs is not None and cfg.optimizer.iterations is not None:
        # epochs given, iterations left at its default: epochs decides the length.
        cfg = dataclasses.replace(cfg, optimizer=dataclasses.replace(cfg.optimizer, iterations=None))
    if cfg.optimizer.epochs is None and cfg.optimizer.iterations is None:
        raise ConfigError("optimizer: set iterations or epochs (both are null)")
    for url in cfg.data.urls:                # caught here, before any download starts
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"data.urls: {url!r} is not an http:// or https:// URL with a host")
    if cfg.train.patience is not None and cfg.data.num_val == 0:
        raise ConfigError("train.patience: early stopping watches the validation accuracy, and data.num_val is 0; "
                          "set data.num_val above 0 or drop train.patience")
    o = cfg.optimizer
    if o.schedule == "cosine" and o.lr_min > o.lr:
        raise ConfigError(f"optimizer.lr_min: {o.lr_min:g} is above optimizer.lr {o.lr:g}, so the cosine schedule "
                          "would raise the learning rate; set lr_min below lr (0 anneals to 0)")
    return cfg


IMAGE_SIDE = 32


def _check_features(f: FeaturesConfig, flip: bool = False, flip_average: bool = False) -> None:
    """The features keys that depend on each other (and on the 32x32 image); ConfigError naming the key."""
    for key, on in (("data.flip", flip), ("model.flip_average", flip_average)):
        if f.kind == "npz" and on:
            raise ConfigError(f"{key}: kind npz holds precomputed features, not images, so they cannot be "
                              f"mirrored; set {key}=false (or mirror the images before computing the features)")
    if f.kind == "npz" and not f.path:
        raise ConfigError("features.path: kind npz needs the .npz file of precomputed features, "
                          "e.g. --set features.path=embeddings.npz")
    if f.kind != "npz" and f.path:
        raise ConfigError(f"features.path: only kind npz reads a feature file, and features.kind is {f.kind}; set "
                          "features.kind=npz to train on the file, or drop features.path")
    if f.kind == "kmeans":
        if f.patch > IMAGE_SIDE:
            raise ConfigError(f"features.patch: {f.patch} does not fit a {IMAGE_SIDE}x{IMAGE_SIDE} image; "
                              f"expected at most {IMAGE_SIDE}")
        side = (IMAGE_SIDE - f.patch) // f.stride + 1
        if f.pool > side:
            raise ConfigError(f"features.pool: a {f.pool}x{f.pool} grid does not fit the {side}x{side} map of "
                              f"{f.patch}-pixel patches at stride {f.stride}; expected at most {side}")
        if f.split and f.encoder != "soft":
            raise ConfigError("features.split: the sign split is for encoder soft; set features.encoder=soft "
                              "or features.split=false")
        if f.k > f.patches:
            raise ConfigError(f"features.k: {f.k} centroids need at least as many patches, features.patches is "
                              f"{f.patches}; raise features.patches or lower features.k")
    if f.kind == "hog_color" and f.cell > IMAGE_SIDE:
        raise ConfigError(f"features.cell: {f.cell} does not fit a {IMAGE_SIDE}x{IMAGE_SIDE} image")


def to_dict(cfg: Config) -> dict[str, Any]:
    """The config as plain nested dicts (the resolved form saved with each run)."""
    return dataclasses.asdict(cfg)


def to_yaml(cfg: Config) -> str:
    """The resolved config as YAML text, sections in schema order."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=False)


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``section.key=value``; the value is read as YAML (so ``null``, ``[a, b]``, ``1e-3`` work)."""
    if "=" not in text:
        raise ConfigError(f"--set {text}: expected section.key=value, e.g. optimizer.lr=1e-3")
    path, _, value_text = text.partition("=")
    path = path.strip()
    if not path:
        raise ConfigError(f"--set {text}: the key is empty; expected section.key=value")
    try:
        value = yaml.safe_load(value_text) if value_text.strip() else None
    except yaml.YAMLError:
        value = value_text
    return path, value


def _set_path(raw: dict, path: str, value: Any) -> None:
    known = schema_keys()
    parts = path.split(".")
    if path not in known:
        if path in _SECTIONS:
            example = next(k for k in known if k.startswith(path + "."))
            raise ConfigError(f"{path} is a section; set {path}.KEY=VALUE, e.g. --set {example}=...")
        if parts[0] in _SECTIONS and len(parts) == 2:
            names = [k.split(".", 1)[1] for k in known if k.startswith(parts[0] + ".")]
            raise _unknown(path, parts[1], names)
        section = difflib.get_close_matches(path, list(_SECTIONS), n=1, cutoff=0.75) if len(parts) == 1 else []
        if section:                                  # optimzer=3: the section it misspells, not optimizer.k
            raise ConfigError(f"unknown key {path}; did you mean the section {section[0]!r} "
                              f"(--set {section[0]}.KEY=VALUE)?")
        close = difflib.get_close_matches(path, list(known), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else "; keys look like section.key, e.g. optimizer.lr"
        raise ConfigError(f"unknown key {path}{hint}")
    if len(parts) == 1:
        raw[path] = value
        return
    section = raw.get(parts[0])
    if not isinstance(section, dict):
        section = {}
    section = dict(section)
    section[parts[1]] = value
    if path == "optimizer.iterations" and value is not None:
        section.pop("epochs", None)
    if path == "optimizer.epochs" and value is not None:
        section.pop("iterations", None)
    raw[parts[0]] = section


def with_values(cfg: Config | Mapping[str, Any], values: Mapping[str, Any], source: str = "") -> Config:
    """A new validated Config with ``{"section.key": value}`` applied on top of ``cfg``.

    Setting ``optimizer.iterations`` clears ``optimizer.epochs`` and vice versa,
    so an override of the run length always wins over the file's.
    """
    raw = to_dict(cfg) if isinstance(cfg, Config) else {k: (dict(v) if isinstance(v, dict) else v)
                                                         for k, v in cfg.items()}
    if isinstance(cfg, Config) and cfg.optimizer.epochs is not None:
        raw["optimizer"].pop("iterations", None)
    elif isinstance(cfg, Config):
        raw["optimizer"].pop("epochs", None)
    for path, value in values.items():
        _set_path(raw, path, value)
    try:
        return from_dict(raw)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}" if source else str(e)) from None


def load_config(path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> Config:
    """Defaults, then the YAML file (if any), then each ``section.key=value`` override, validated."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = config_file(path)
        raw = load_yaml_file(path)
        try:
            from_dict(raw)
        except ConfigError as e:
            raise ConfigError(f"{os.fspath(path)}: {e}") from None
    parsed = dict(parse_override(o) for o in overrides)
    src = "--set " + " ".join(overrides) if overrides else ""
    return with_values(raw, parsed, source=src)
