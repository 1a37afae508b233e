"""The scikit-learn protocol the estimators share: parameters from the signature, repr, NotFittedError."""
from __future__ import annotations

import sys

import pytest

from conftest import optional
from linclf.estimator_base import NotFittedError, Params, compatible, not_fitted, store_params


class Inner(Params):
    def __init__(self, a: int = 1, b: str = "x"):
        self.a, self.b = a, b


class Outer(Params):
    def __init__(self, inner: Inner | None = None, *, c: float = 0.5, kind: type = int):
        self.inner, self.c, self.kind = inner, c, kind


class Many(Params):
    def __init__(self, *, x: int = 0, y: str = "y", **ignored):
        store_params(self, locals())


def test_store_params_keeps_the_constructor_arguments_and_nothing_else():
    m = Many(x="not checked", z=3)
    assert m.__dict__ == {"x": "not checked", "y": "y"}
    assert m.get_params() == {"x": "not checked", "y": "y"} and repr(m) == "Many(x='not checked')"


def test_get_params_shallow_and_deep():
    inner = Inner(a=2)
    o = Outer(inner, c=1.5)
    assert o.get_params(deep=False) == {"c": 1.5, "inner": inner, "kind": int}
    assert o.get_params() == {"c": 1.5, "inner": inner, "inner__a": 2, "inner__b": "x", "kind": int}
    assert Outer._get_param_names() == ["c", "inner", "kind"]


def test_set_params_plain_and_nested_and_unknown():
    o = Outer(Inner())
    assert o.set_params(c=2.0, inner__b="y") is o
    assert o.c == 2.0 and o.inner.b == "y"
    with pytest.raises(ValueError, match=r"^Invalid parameter 'd' for estimator Outer\(.*\)\. Valid parameters "
                                         r"are: \['c', 'inner', 'kind'\]\.$"):
        o.set_params(d=1)
    with pytest.raises(ValueError, match="Invalid parameter 'z' for estimator Inner"):
        o.set_params(inner__z=1)


def test_repr_shows_what_differs_from_the_defaults():
    assert repr(Inner()) == "Inner()"
    assert repr(Inner(a=3, b="x")) == "Inner(a=3)"
    assert repr(Inner(a=1.0)) == "Inner(a=1.0)"          # another type is another value
    assert repr(Outer(Inner(b="q"), kind=float)) == "Outer(inner=Inner(b='q'), kind=<class 'float'>)"


def test_not_fitted_is_a_value_and_attribute_error(monkeypatch):
    monkeypatch.delitem(sys.modules, "sklearn.exceptions", raising=False)
    e = not_fitted("Thing", " (or load one)")
    assert type(e) is NotFittedError and isinstance(e, ValueError) and isinstance(e, AttributeError)
    assert str(e) == ("This Thing instance is not fitted yet. Call 'fit' with appropriate arguments before "
                      "using this estimator (or load one).")
    assert compatible(NotFittedError, "NotFittedError") is NotFittedError


def test_not_fitted_is_scikit_learns_when_it_is_loaded():
    exceptions = optional("sklearn.exceptions")
    e = not_fitted("Thing")
    assert isinstance(e, exceptions.NotFittedError) and isinstance(e, NotFittedError)
    assert type(e).__name__ == "NotFittedError"
    assert type(not_fitted("Other")) is type(e)           # one class, made once
