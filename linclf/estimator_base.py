"""What linclf's scikit-learn style estimators share, without importing scikit-learn.

scikit-learn's protocol: ``__init__`` stores each keyword argument under its
own name and does nothing else (``clone`` rebuilds an estimator from
``get_params()`` and checks that every value comes back as the same object),
parameters are validated in ``fit``, fitted attributes end in ``_``.
``Params`` gives ``get_params`` / ``set_params`` / ``__repr__`` from the
constructor's signature. ``NotFittedError`` is a ValueError and an
AttributeError, as scikit-learn's is; ``not_fitted`` raises it as a subclass
of ``sklearn.exceptions.NotFittedError`` when that module is loaded, so code
catching scikit-learn's class catches ours; ``compatible`` does the same for
any class of ``sklearn.exceptions`` (a warning, too). ``store_params`` is the
one line a constructor with many arguments needs. scikit-learn is imported
only by ``transformer_tags`` and ``classifier_tags``, which only scikit-learn calls.
"""
from __future__ import annotations

import functools
import inspect
import sys
from typing import Any

__all__ = ["Params", "NotFittedError", "compatible", "not_fitted", "store_params", "transformer_tags",
           "classifier_tags", "refuse_sparse"]


class NotFittedError(ValueError, AttributeError):
    """transform & co. called before fit (catchable as ValueError or AttributeError, like scikit-learn's)."""


@functools.lru_cache(maxsize=None)
def _with_sklearn(cls: type, sklearn_name: str, sklearn_class: type | None) -> type:
    """``cls``, or a subclass that is also scikit-learn's class of that role, named as scikit-learn names it."""
    if sklearn_class is None:
        return cls
    return type(sklearn_name, (cls, sklearn_class), {"__module__": cls.__module__, "__doc__": cls.__doc__})


def compatible(cls: type, sklearn_name: str) -> type:
    """``cls``, extended to scikit-learn's ``sklearn.exceptions.<sklearn_name>`` when that is loaded.

    Nobody can catch scikit-learn's class without having imported it, so
    looking only at ``sys.modules`` keeps scikit-learn optional and unimported.
    """
    module = sys.modules.get("sklearn.exceptions")
    return _with_sklearn(cls, sklearn_name, getattr(module, sklearn_name, None))


def not_fitted(who: str, hint: str = "") -> NotFittedError:
    """The error to raise when ``who`` (a class name) is used before fit; ``hint`` is appended to the message."""
    error = compatible(NotFittedError, "NotFittedError")
    return error(f"This {who} instance is not fitted yet. Call 'fit' with appropriate arguments before using "
                 f"this estimator{hint}.")


class Params:
    """scikit-learn's parameter protocol from the constructor's signature (keyword arguments stored as given)."""

    @classmethod
    def _get_param_names(cls) -> list[str]:
        """The constructor's keyword arguments, sorted (scikit-learn's BaseEstimator has the same method)."""
        sig = inspect.signature(cls.__init__)
        return sorted(p.name for p in sig.parameters.values() if p.name != "self" and p.kind != p.VAR_KEYWORD)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters; with ``deep``, nested estimators' ones as ``name__param`` too."""
        out: dict[str, Any] = {}
        for name in self._get_param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{k}", v) for k, v in value.get_params().items())
            out[name] = value
        return out

    def set_params(self, **params: Any) -> Any:
        """Set constructor parameters (``name`` or nested ``name__param``); an unknown name is a ValueError; self."""
        valid = self._get_param_names()
        nested: dict[str, dict[str, Any]] = {}
        for key, value in params.items():
            name, sep, sub = key.partition("__")
            if name not in valid:
                raise ValueError(f"Invalid parameter {name!r} for estimator {self!r}. "
                                 f"Valid parameters are: {valid!r}.")
            if sep:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
        for name, sub_params in nested.items():
            getattr(self, name).set_params(**sub_params)
        return self

    def __repr__(self) -> str:
        """``Name(param=value, ...)`` with the parameters that differ from the constructor's defaults."""
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        changed = []
        for name in self._get_param_names():
            value = getattr(self, name, None)
            try:
                default = defaults[name]
                same = value is default or (type(value) is type(default) and bool(value == default))
            except (TypeError, ValueError):
                same = False
            if not same:
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"


def store_params(estimator: Params, values: dict[str, Any]) -> None:
    """Keep each constructor argument of ``estimator`` as an attribute of the same name (no validation).

    ``values`` is the constructor's ``locals()``; checking is left to ``fit``, as scikit-learn's
    ``clone`` needs every argument back unchanged.
    """
    for name in estimator._get_param_names():
        setattr(estimator, name, values[name])


def transformer_tags(requires_fit: bool = True) -> Any:
    """scikit-learn >= 1.6 tags of a transformer of 2-D dense rows whose output dtype is its own (not the input's)."""
    from sklearn.utils import InputTags, Tags, TargetTags, TransformerTags

    return Tags(estimator_type=None, target_tags=TargetTags(required=False), requires_fit=requires_fit,
                transformer_tags=TransformerTags(preserves_dtype=[]), input_tags=InputTags(two_d_array=True))


def classifier_tags() -> Any:
    """scikit-learn >= 1.6 tags of a classifier that needs y and takes 2-D dense numeric X."""
    from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags

    return Tags(estimator_type="classifier", target_tags=TargetTags(required=True),
                classifier_tags=ClassifierTags(), input_tags=InputTags(two_d_array=True))


def refuse_sparse(X: Any, who: str) -> None:
    """TypeError, as scikit-learn's estimators word it, when X is a sparse matrix (linclf computes on dense rows)."""
    if hasattr(X, "toarray") or hasattr(X, "tocsr"):
        raise TypeError(f"{who}: sparse input is not supported; pass a dense array (X.toarray())")
