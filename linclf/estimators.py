"""scikit-learn style estimators: ``LinearSVM`` and ``SoftmaxClassifier`` for notebooks and pipelines.

    clf = SoftmaxClassifier(lr=1e-3).fit(X_train, y_train)     # X (N, P) uint8 pixels or floats
    clf.score(X_test, y_test); clf.predict_proba(X_test)        # (N, C), rows sum to 1

They follow scikit-learn's conventions without importing it: ``__init__`` only
stores its keyword arguments (so ``clone``, ``get_params`` and ``set_params``
work; the protocol, repr, tags and ``NotFittedError`` are ``estimator_base``'s,
shared with the feature extractors); ``fit`` validates them through the config schema (the CLI's checks; a
ValueError names the constructor parameter), fits the preprocessing
(``preprocess.fit``) and runs ``training.loop.train``; fitted attributes end in ``_``.
Each constructor argument sets the config key of the same name (``random_state``
sets ``seed``); the defaults are those of configs/softmax.yaml and
configs/svm.yaml (adam, cosine schedule, per-pixel standardisation).

Labels can be any values ``np.unique`` sorts (ints, strings); ``classes_`` maps
them to the rows of W and ``predict`` returns them. ``coef_`` (C, P) and
``intercept_`` (C,) act on the raw input (the preprocessing folded in:
``decision = X @ coef_.T + intercept_``); ``W_`` (C, D) holds the trained
weights on preprocessed rows. ``n_iter_`` counts optimizer steps (the config's
``iterations``) and ``loss_curve_`` holds the minibatch loss (data + L2) of
each step. ``partial_fit`` continues training (one pass over the rows it is
given, at the constant learning rate ``lr``) with the optimizer state kept.

Deviations from scikit-learn, on purpose: ``coef_`` keeps one row per class
even for two classes (the model is multinomial), while ``decision_function``
of a binary problem returns ``scores[:, 1] - scores[:, 0]`` (N,) as scikit-learn
scorers expect; sparse ``X`` is refused with a TypeError (densify it first);
``sample_weight`` is not supported in ``fit``. X, y and ``random_state`` are
checked by ``inputs`` (scikit-learn's errors, in its words). scikit-learn itself is never
imported here: its tags are built only when scikit-learn asks for them, and
the NotFittedError / column-vector warning raised become subclasses of
scikit-learn's classes of that role when ``sklearn.exceptions`` is loaded.
"""
from __future__ import annotations

import re
import warnings
from typing import Any, Iterable, Sequence

import numpy as np

from .core import preprocess
from .config import Config, with_values
from .data.splits import Splits
from .errors import ConfigError, DivergenceError, LinclfWarning
from .estimator_base import NotFittedError, Params, classifier_tags, not_fitted, store_params
from .inputs import check_X, check_y, encode_labels, feature_names, label_indices, plain, seed_of
from .core.losses import softmax
from .core.model import LinearClassifier
from .core.optim import l2_diverges
from .core.search import SEARCH_METHODS
from .training.advice import chance_advice, l2_growth, setting_warnings
from .training.evaluate import at_chance_level
from .core.preprocess import Preprocessor, fold
from .training.loop import TrainState, rng_stream, train

__all__ = ["LinearSVM", "SoftmaxClassifier", "NotFittedError"]   # NotFittedError: estimator_base's, for callers

_D = Config()                    # the schema's defaults: the one home of every default not tuned below

# constructor parameter -> config key it sets (random_state -> seed is handled apart)
_CONFIG_KEYS: dict[str, str] = {
    "reg": "model.reg", "delta": "model.delta", "reg_bias": "model.reg_bias",
    "init_scale": "model.init_scale", "dtype": "model.dtype",
    "mean": "preprocess.mean", "std": "preprocess.std", "bias": "preprocess.bias",
    "method": "optimizer.method", "update": "optimizer.update", "lr": "optimizer.lr",
    "batch_size": "optimizer.batch_size", "iterations": "optimizer.iterations", "epochs": "optimizer.epochs",
    "sampling": "optimizer.sampling", "schedule": "optimizer.schedule", "step_every": "optimizer.step_every",
    "gamma": "optimizer.gamma", "k": "optimizer.k", "lr_min": "optimizer.lr_min",
    "momentum": "optimizer.momentum", "decay": "optimizer.decay", "beta1": "optimizer.beta1",
    "beta2": "optimizer.beta2", "eps": "optimizer.eps", "trials": "optimizer.trials",
    "step_size": "optimizer.step_size", "patience": "train.patience", "keep_best": "train.keep_best",
}
_PARAM_OF_KEY = {key: name for name, key in _CONFIG_KEYS.items()} | {"seed": "random_state"}


def _step_losses(history: Iterable[dict]) -> list[float]:
    """The minibatch loss of each step recorded in a training history (log_every = 1)."""
    return [float(r["loss"]) for r in history if "loss" in r]


# --------------------------------------------------------------- the estimators


def _dtype_name(value: Any) -> Any:
    """A dtype given as NumPy spells it (np.float64, np.dtype("float32")) by its name, as the config takes it."""
    if value is None or isinstance(value, str):
        return value
    try:
        return np.dtype(value).name
    except TypeError:
        return value                                         # the config check names what is wrong


class _LinearEstimator(Params):
    """Shared machinery of LinearSVM and SoftmaxClassifier (fit, predict; parameters from Params); not public."""

    _losses: tuple[str, ...] = ()          # the model.loss values this estimator trains; the first is the default
    _estimator_type = "classifier"          # scikit-learn < 1.6 reads this; newer versions __sklearn_tags__

    def __sklearn_tags__(self) -> Any:
        """scikit-learn >= 1.6 tags: a classifier that needs y and takes 2-D dense numeric X."""
        return classifier_tags()

    def _more_tags(self) -> dict[str, Any]:
        """scikit-learn < 1.6 tags."""
        return {"requires_y": True, "binary_only": False}

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "W_")

    # ---- configuration

    def _who(self) -> str:
        return type(self).__name__

    def _default(self, name: str) -> Any:
        """The constructor's default of parameter ``name``."""
        return type(self).__init__.__kwdefaults__[name]

    def _loss_name(self) -> str:
        """The loss trained: the ``loss`` parameter where the estimator has one, else its only loss."""
        loss = getattr(self, "loss", self._losses[0])
        if loss not in self._losses:
            raise ValueError(f"{self._who()}: loss must be one of {', '.join(self._losses)}, got {loss!r}")
        return loss

    def _config(self, seed: int) -> Config:
        """The validated Config of the current parameters; a ValueError names the offending parameter."""
        who = self._who()
        params = self.get_params(deep=False)
        if params["iterations"] is None and params["epochs"] is None:
            raise ValueError(f"{who}: set iterations or epochs (both are None)")
        frac = params["validation_fraction"]
        if frac is not None and not (isinstance(plain(frac), float) and 0 < frac < 1):
            raise ValueError(f"{who}: validation_fraction must be a float in (0, 1) or None, got {frac!r}")
        for name in ("patience", "keep_best"):
            if params[name] not in (None, False) and frac is None:
                raise ValueError(f"{who}: {name}={params[name]!r} needs validation data: "
                                 "set validation_fraction too (e.g. 0.1)")
        values: dict[str, Any] = {"model.loss": self._loss_name(), "train.log_every": 1, "seed": seed}
        for name, key in _CONFIG_KEYS.items():
            if name in params:
                values[key] = plain(params[name])
        values["model.dtype"] = _dtype_name(values["model.dtype"])
        if values["optimizer.iterations"] is not None:      # iterations, when given, decide the length
            values["optimizer.epochs"] = None
        elif values["optimizer.method"] in SEARCH_METHODS and params["epochs"] == self._default("epochs"):
            # a search's length is trials: the default epochs are no length asked for (nothing to warn of)
            values["optimizer.epochs"], values["optimizer.iterations"] = None, _D.optimizer.iterations
        try:
            return with_values(_D, values)
        except ConfigError as e:
            raise ValueError(f"{who}: {_param_message(str(e))}") from None

    # ---- fitting

    def fit(self, X: Any, y: Any) -> "_LinearEstimator":
        """Train from scratch on rows X (N, P) and labels y (N,); return self."""
        who = self._who()
        cfg = self._config(seed_of(self.random_state, who))
        X_in, X = X, check_X(X, f"{who}.fit")
        y = check_y(y, len(X), f"{who}.fit")
        names = feature_names(X_in)
        classes, y_idx = encode_labels(y, f"{who}.fit")
        if len(classes) < 2:
            raise ValueError(f"{who}.fit needs samples of at least 2 classes; "
                             f"y holds 1 class ({classes.tolist()[0]!r})")
        splits = self._splits(cfg, X, y_idx, classes)
        p = cfg.preprocess
        prep = preprocess.fit(splits.X_train, mean=p.mean, std=p.std, bias=p.bias)
        for key, message in setting_warnings(cfg, len(splits.y_train)).items():
            # fewer rows than the default batch is common here (scikit-learn's small datasets): say nothing
            if key != "optimizer.batch_size" or self.batch_size != self._default("batch_size"):
                warnings.warn(f"{who}: {_param_words(message)}", LinclfWarning, stacklevel=2)
        result = self._train(cfg, splits, prep, state=None)
        st = result.state
        self._warn_at_chance(st.history, len(splits.y_val), min(cfg.train.train_eval_size, len(splits.y_train)),
                             len(classes), cfg.optimizer.method)
        self.classes_ = classes
        self.n_features_in_ = X.shape[1]
        self.n_iter_ = st.step
        self.loss_curve_ = _step_losses(st.history)
        for name in ("validation_scores_", "best_validation_score_", "feature_names_in_"):
            self.__dict__.pop(name, None)
        if names is not None:
            self.feature_names_in_ = names
        if len(splits.y_val):
            self.validation_scores_ = [r["val_accuracy"] for r in st.history if r.get("val_accuracy") is not None]
            self.best_validation_score_ = st.best_val
        # partial_fit continues from the weights kept (best-on-validation or last) with the optimizer state
        self._state = TrainState(W=result.W, opt_state=st.opt_state, step=st.step, rng=st.rng)
        self._update = cfg.optimizer.update
        self._publish(self._state.W, prep)
        return self

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> "_LinearEstimator":
        """One more pass over rows X (N, P), labels y (N,) at the constant rate lr, optimizer state kept; self.

        The first call (on an unfitted estimator) fixes ``classes_`` (``classes``,
        or the labels of this y) and fits the preprocessing on this X; later
        calls must bring labels among ``classes_`` and the same number of features.
        validation_fraction, patience and keep_best apply to ``fit`` only.
        """
        who = self._who()
        fitted = self.__sklearn_is_fitted__()
        cfg = self._config(seed_of(self.random_state, who))
        if cfg.optimizer.method not in ("sgd", "gd"):
            raise ValueError(f"{who}.partial_fit needs method 'sgd' or 'gd', got method={cfg.optimizer.method!r}")
        X_in, X = X, check_X(X, f"{who}.partial_fit")
        y = check_y(y, len(X), f"{who}.partial_fit")
        if fitted:
            self._check_feature_names(X_in)
            self._check_partial(X, classes, cfg)
            all_classes = self.classes_
        else:
            all_classes = np.unique(y if classes is None else classes)
            if len(all_classes) < 2:
                raise ValueError(f"{who}.partial_fit needs at least 2 classes; pass classes=[...] on the "
                                 f"first call (got 1 class: {all_classes.tolist()[0]!r})")
        y_idx = label_indices(y, all_classes, f"{who}.partial_fit")
        cfg = with_values(cfg, {"optimizer.epochs": 1, "optimizer.schedule": "constant",
                                "train.keep_best": False, "train.patience": None})
        splits = _splits_of(X, y_idx, X[:0], y_idx[:0], all_classes)
        if fitted:
            prep = self.preprocessor_
            old = self._state
            state = TrainState(W=old.W.copy(), opt_state=old.opt_state, step=0, rng=old.rng)
        else:
            p = cfg.preprocess
            prep, state = preprocess.fit(X, mean=p.mean, std=p.std, bias=p.bias), None
        st = self._train(cfg, splits, prep, state=state).state
        if not fitted:
            self.classes_, self.n_features_in_, self.n_iter_, self.loss_curve_ = all_classes, X.shape[1], 0, []
            self._update = cfg.optimizer.update
            if feature_names(X_in) is not None:
                self.feature_names_in_ = feature_names(X_in)
        self.n_iter_ += st.step
        self.loss_curve_ = list(self.loss_curve_) + _step_losses(st.history)
        self._state = TrainState(W=st.W, opt_state=st.opt_state, step=self.n_iter_, rng=st.rng)
        self._publish(st.W, prep)
        return self

    def _check_partial(self, X: np.ndarray, classes: Any, cfg: Config) -> None:
        """A later partial_fit call must match the first in features, classes, update rule and dtype."""
        who = self._who()
        self._check_n_features(X)
        if classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"{who}.partial_fit: classes={np.unique(classes).tolist()} differ from classes_ "
                             f"{self.classes_.tolist()} of the earlier fit")
        if cfg.optimizer.update != self._update or np.dtype(cfg.model.dtype) != self._state.W.dtype:
            raise ValueError(f"{who}.partial_fit: update or dtype changed since the first fit "
                             f"({self._update}, {self._state.W.dtype}); call fit to start over")

    def _splits(self, cfg: Config, X: np.ndarray, y_idx: np.ndarray, classes: np.ndarray) -> Splits:
        """Training rows (all, or all but a seeded validation_fraction of them) and the validation rows."""
        frac = self.validation_fraction
        if frac is None:
            return _splits_of(X, y_idx, X[:0], y_idx[:0], classes)
        n = len(X)
        n_val = min(max(1, round(frac * n)), n - 1)
        if n_val < 1:
            raise ValueError(f"{self._who()}: validation_fraction={frac} leaves no training rows of {n}")
        order = rng_stream(cfg.seed, "dev").permutation(n)
        tr, va = np.sort(order[:n - n_val]), np.sort(order[n - n_val:])
        return _splits_of(X[tr], y_idx[tr], X[va], y_idx[va], classes)

    def _train(self, cfg: Config, splits: Splits, prep: Preprocessor, state: TrainState | None) -> Any:
        """training.loop.train, with a divergence explained in this API's words."""
        try:
            return train(cfg, splits, prep, state=state, progress=bool(self.verbose))
        except DivergenceError as e:
            lr, reg = cfg.optimizer.lr, cfg.model.reg
            why = (_param_words(l2_growth(lr, reg)) if l2_diverges(cfg.optimizer.update, lr, reg)
                   else f"lower lr (e.g. lr={lr / 10:g}, then lower until it trains)")
            raise DivergenceError(f"{self._who()} diverged: {_param_words(str(e).split(';')[0])}; {why}") from None

    def _warn_at_chance(self, history: list[dict], n_val: int, n_train: int, num_classes: int, method: str) -> None:
        """A LinclfWarning when the last recorded validation (else training-subset) accuracy is at chance level."""
        last = next((r for r in reversed(history) if r.get("train_accuracy") is not None), None)
        if last is None:
            return
        name, acc, n = ("validation", last["val_accuracy"], n_val) if n_val else ("training", last["train_accuracy"],
                                                                                  n_train)
        if acc is not None and at_chance_level(acc, n, num_classes):
            warnings.warn(f"{self._who()}: the final {name} accuracy {acc:.4f} is at chance level (1/{num_classes}): "
                          f"it learned nothing; check {_param_words(chance_advice(method))}", LinclfWarning,
                          stacklevel=3)

    def _publish(self, W: np.ndarray, prep: Preprocessor) -> None:
        """Set the fitted attributes that follow from W (C, D) and the preprocessing."""
        self.W_ = W.copy()
        self.preprocessor_ = prep
        A, b = fold(self.W_, prep.mean, prep.scale, prep.bias)
        self.coef_, self.intercept_ = A, b
        self._model = LinearClassifier(self.W_, prep, tuple(str(c) for c in self.classes_), self._loss_name())

    # ---- prediction

    def _check_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            raise not_fitted(self._who())

    def _check_n_features(self, X: np.ndarray) -> None:
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {self._who()} is expecting "
                             f"{self.n_features_in_} features as input.")

    def _check_feature_names(self, X: Any) -> None:
        """Column names of X must be those seen in fit (a warning when only one of them had names)."""
        fitted, names = getattr(self, "feature_names_in_", None), feature_names(X)
        if fitted is None and names is not None:
            warnings.warn(f"X has feature names, but {self._who()} was fitted without feature names",
                          LinclfWarning, stacklevel=4)
        elif fitted is not None and names is None:
            warnings.warn(f"X does not have valid feature names, but {self._who()} was fitted with feature names",
                          LinclfWarning, stacklevel=4)
        elif fitted is not None and not np.array_equal(fitted, names):
            raise ValueError(f"The feature names should match those that were passed during fit: got "
                             f"{list(names)[:5]}..., expected {list(fitted)[:5]}...")

    def _scores(self, X: Any, method: str) -> np.ndarray:
        """Class scores (N, C) float32 of raw rows X (N, P), the preprocessing folded in."""
        self._check_fitted()
        self._check_feature_names(X)
        X = check_X(X, f"{self._who()}.{method}")
        self._check_n_features(X)
        return self._model.scores(X)

    def decision_function(self, X: Any) -> np.ndarray:
        """Class scores (N, C) of rows X (N, P); for two classes scores[:, 1] - scores[:, 0] (N,)."""
        s = self._scores(X, "decision_function")
        return s[:, 1] - s[:, 0] if s.shape[1] == 2 else s

    def predict(self, X: Any) -> np.ndarray:
        """The label (from classes_) of the highest score of each row of X (N, P): (N,)."""
        best = self._scores(X, "predict").argmax(axis=1)
        return self.classes_[best]

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Accuracy of predict(X) against y (N,), optionally weighted by sample_weight (N,)."""
        who = f"{self._who()}.score"
        pred = self.predict(X)
        y = check_y(y, len(pred), who)
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, dtype=np.float64)
            if sample_weight.shape != y.shape:
                raise ValueError(f"{who}: sample_weight must have shape {y.shape} to match y, got "
                                 f"{sample_weight.shape}")
            if not (np.all(np.isfinite(sample_weight)) and np.all(sample_weight >= 0) and sample_weight.sum() > 0):
                raise ValueError(f"{who}: sample_weight must be finite, >= 0 and not all 0")
        if len(y) and not np.isin(y, self.classes_).any():
            warnings.warn(f"{who}: y holds none of the classes fitted ({_some(self.classes_)}), so the accuracy is "
                          "0; labels of another type than the fit's?", LinclfWarning, stacklevel=2)
        return float(np.average(pred == y, weights=sample_weight))

    def to_model(self, class_names: Sequence[str] | None = None) -> LinearClassifier:
        """The fitted model as a LinearClassifier (``.save(path)`` writes a file ``linclf eval`` / ``predict`` read).

        ``class_names`` names the classes, e.g. ``data.classes`` of ``load_cifar10()``: indexed by
        the label when the labels are integers 0..len-1 (CIFAR-10's), else one name per entry of
        ``classes_`` in order. Without it the labels themselves are the names.
        """
        self._check_fitted()
        mean = self.preprocessor_.mean
        if self.n_features_in_ == 3072 and mean is not None and float(np.max(mean)) <= 1.0:
            warnings.warn(f"{self._who()}.to_model: it was fitted on rows whose means all lie in [0, 1] (pixels / "
                          "255?); linclf eval and predict feed a saved model pixels 0-255, so fit it on those to "
                          "use it there", LinclfWarning, stacklevel=2)
        # the loss it was trained with, whatever set_params said since
        return LinearClassifier(self.W_.copy(), self.preprocessor_, self._class_names(class_names), self._model.loss)

    def _class_names(self, class_names: Sequence[str] | None) -> tuple[str, ...]:
        """The names of classes_ (C,) for a saved model; see ``to_model``."""
        if class_names is None:
            return tuple(str(c) for c in self.classes_)
        names = [str(n) for n in class_names]
        labels = self.classes_
        if labels.dtype.kind in "iu" and len(labels) and labels.min() >= 0 and labels.max() < len(names):
            return tuple(names[int(c)] for c in labels)
        if len(names) == len(labels):
            return tuple(names)
        by_label = (f", or, as the labels are integers, a list indexed by label ({int(labels.max()) + 1} names)"
                    if labels.dtype.kind in "iu" and len(labels) and labels.min() >= 0 else "")
        raise ValueError(f"{self._who()}.to_model: class_names has {len(names)} names for {len(labels)} classes "
                         f"{labels.tolist()[:10]}; give one name per class, in the order of classes_{by_label}")


def _splits_of(X_train: np.ndarray, y_train: np.ndarray, X_val: np.ndarray, y_val: np.ndarray,
               classes: np.ndarray) -> Splits:
    """A Splits of rows (N, P) and label indices (N,), with an empty test split."""
    return Splits(X_train, y_train, X_val, y_val, X_train[:0], y_train[:0], tuple(str(c) for c in classes))


def _some(values: np.ndarray, n: int = 4) -> str:
    """The first n of ``values`` as text, '...' after them when there are more."""
    shown = ", ".join(repr(v.item() if isinstance(v, np.generic) else v) for v in values[:n])
    return shown + (", ..." if len(values) > n else "")


def _param_words(message: str) -> str:
    """A message naming config keys (``optimizer.lr``) reworded to name the constructor parameters (``lr``)."""
    return re.sub(r"\b[a-z]+\.[a-z_0-9]+\b", lambda m: _PARAM_OF_KEY.get(m.group(0), m.group(0)), message)


def _param_message(message: str) -> str:
    """A config error ``section.key: ...`` reworded to name the constructor parameter instead."""
    key, sep, rest = message.partition(": ")
    if sep and key in _PARAM_OF_KEY:
        return f"invalid parameter {_PARAM_OF_KEY[key]}: {rest}"
    return message


_PARAMS_DOC = """
    Parameters (keyword only; each sets the config key of the same name, see ``linclf config``):
    reg, delta (SVM only), reg_bias, init_scale, dtype: the model; mean, std, bias: the preprocessing
    fitted on X; method (sgd | gd | random_search | random_local_search), update (sgd | momentum |
    nesterov | adagrad | rmsprop | adam), lr, batch_size, epochs (passes over X) or iterations (steps;
    when not None they decide the length and epochs is ignored), sampling, schedule
    (constant | step | exponential | cosine | inverse_time), step_every, gamma, k, lr_min, momentum,
    decay, beta1, beta2, eps, trials, step_size: the optimizer; validation_fraction (None or a float in
    (0, 1): a seeded share of the rows held out, scored each epoch), patience and keep_best (early
    stopping and best-on-validation weights; both need validation_fraction); random_state (an int
    seed, None or a numpy Generator); verbose (a progress bar on stderr).

    Fitted attributes: classes_ (C,), coef_ (C, P), intercept_ (C,), W_ (C, D), preprocessor_,
    n_features_in_, feature_names_in_ (when X had string column names), n_iter_ (optimizer steps),
    loss_curve_ (the loss of each step), and with validation_fraction: validation_scores_ (accuracy
    per epoch), best_validation_score_.
"""


class SoftmaxClassifier(_LinearEstimator):
    __doc__ = ("Softmax (multinomial cross-entropy) linear classifier trained with NumPy; defaults as "
               "configs/softmax.yaml.\n" + _PARAMS_DOC)

    _losses = ("softmax",)

    def __init__(self, *, reg: float = 0.01, lr: float = 6e-4, update: str = "adam", batch_size: int = 256,
                 epochs: float | None = 5, iterations: int | None = None, schedule: str = "cosine",
                 sampling: str = _D.optimizer.sampling, method: str = _D.optimizer.method,
                 momentum: float = _D.optimizer.momentum, decay: float = _D.optimizer.decay,
                 beta1: float = _D.optimizer.beta1, beta2: float = _D.optimizer.beta2, eps: float = _D.optimizer.eps,
                 step_every: float = _D.optimizer.step_every, gamma: float = _D.optimizer.gamma,
                 k: float = _D.optimizer.k, lr_min: float = _D.optimizer.lr_min, trials: int = _D.optimizer.trials,
                 step_size: float = _D.optimizer.step_size, init_scale: float = _D.model.init_scale,
                 reg_bias: bool = _D.model.reg_bias, dtype: str = _D.model.dtype, mean: bool = True,
                 std: bool = True, bias: bool = True, validation_fraction: float | None = None,
                 patience: int | None = None, keep_best: bool = False, random_state: Any = 0,
                 verbose: bool = False) -> None:
        store_params(self, locals())

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (N, C) float64 of rows X (N, P): the softmax of the scores; columns as classes_."""
        return softmax(self._scores(X, "predict_proba"))

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Log of predict_proba (N, C), computed stably (log-softmax of the scores)."""
        s = self._scores(X, "predict_log_proba").astype(np.float64)
        s -= s.max(axis=1, keepdims=True)
        return s - np.log(np.exp(s).sum(axis=1, keepdims=True))


class LinearSVM(_LinearEstimator):
    __doc__ = ("Multiclass SVM linear classifier trained with NumPy; defaults as configs/svm.yaml.\n"
               "    loss: svm (Weston-Watkins multiclass hinge) or squared_hinge (one-vs-all squared hinge, "
               "Coates's L2-SVM,\n    scikit-learn LinearSVC's default). It has no predict_proba (hinge scores "
               "are not probabilities).\n" + _PARAMS_DOC)

    _losses = ("svm", "squared_hinge")

    def __init__(self, *, loss: str = "svm", reg: float = 0.3, lr: float = 5e-4, delta: float = _D.model.delta,
                 update: str = "adam",
                 batch_size: int = 256, epochs: float | None = 15, iterations: int | None = None,
                 schedule: str = "cosine", sampling: str = "shuffle", method: str = _D.optimizer.method,
                 momentum: float = _D.optimizer.momentum, decay: float = _D.optimizer.decay,
                 beta1: float = _D.optimizer.beta1, beta2: float = _D.optimizer.beta2, eps: float = _D.optimizer.eps,
                 step_every: float = _D.optimizer.step_every, gamma: float = _D.optimizer.gamma,
                 k: float = _D.optimizer.k, lr_min: float = _D.optimizer.lr_min, trials: int = _D.optimizer.trials,
                 step_size: float = _D.optimizer.step_size, init_scale: float = _D.model.init_scale,
                 reg_bias: bool = _D.model.reg_bias, dtype: str = _D.model.dtype, mean: bool = True,
                 std: bool = True, bias: bool = True, validation_fraction: float | None = None,
                 patience: int | None = None, keep_best: bool = False, random_state: Any = 0,
                 verbose: bool = False) -> None:
        store_params(self, locals())
