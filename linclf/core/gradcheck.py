"""Numerical gradients and the checks that compare them with analytic ones.

``numerical_gradient`` perturbs one entry of W at a time (and puts it back);
``sparse_check`` compares a few random coordinates, as the lecture's
``grad_check_sparse`` does; ``check_loss`` checks the data loss, the L2 term
and their sum separately, and marks SVM coordinates that sit at a kink of the
hinge (there a finite difference is not trustworthy) instead of failing them.
Nothing here prints: results are numbers for the caller (the CLI) to show.

Relative error ``|a - n| / max(|a| + |n|, tiny)`` is the lecture's measure
(with the sum instead of the max of the two magnitudes, so it is at most 1).
``DEFAULT_THRESHOLDS`` gives the pass mark per difference method; a coordinate
also passes when the difference is within the method's own error bound
(rounding, and for forward differences their truncation error h f''/2), as
long as that bound is below ``RESOLUTION`` of the gradient. A coordinate whose
bound is larger cannot be judged at this h and dtype (a zero or sign-flipped
gradient would pass within it): it is counted apart, as a kink is, and a part
with no coordinate judged does not pass (``inconclusive``). The reasoning
behind the numbers is written above their definitions.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .checks import check_labels
from .losses import hinge_kink, hinge_margins, l2_reg, linear_loss, score_loss

__all__ = ["rel_error", "numerical_gradient", "Check", "sparse_check", "DEFAULT_THRESHOLDS", "RESOLUTION",
           "check_loss", "METHODS"]

METHODS = ("centered", "forward")

# Largest acceptable relative error of a non-kink coordinate, per difference
# method, for float64 and h = 1e-5. Measured (CIFAR-10 dev images, 500-1,000
# rows, bias column, W = scale * randn, 400-600 random coordinates a case):
#
# centered, (f(W+h) - f(W-h)) / 2h, error ~ h^2 f'''/6:
#   SVM data loss, L2 term: worst 3e-9 (rounding only; SVM is piecewise linear).
#   softmax, standardised data ((x - mean) / std), W 1e-4..1e-2: worst 1.6e-7,
#     99th percentile 2e-8: 1e-7 (the lecture's "you should be happy") holds,
#     not generously.
#   softmax, mean subtracted only (pixel scale, |x| up to 128), W 1e-4:
#     99th percentile 1.8e-6, worst 5.5e-4 where the gradient is ~1e-4: there
#     f''' ~ |x|^3 makes h = 1e-5 too coarse; use h = 1e-6 (worst 6e-6) or
#     standardised data for a strict check.
#
# forward, the lecture's (f(W+h) - f(W)) / h, error ~ h f''/2, first order: a fixed
#   relative threshold cannot judge it (the L2 term alone errs by exactly reg*h, a
#   relative h / (4|W| + h), near 1 where |W| << h). So each coordinate is judged
#   against the method's own error bound: h|f''|/2 estimated from the backward
#   difference (exact for the L2 term), times 1.5, plus rounding. Within that bound
#   or within the relative threshold passes, so the threshold can stay strict enough
#   to catch a 1% error with either method.
DEFAULT_THRESHOLDS: dict[str, float] = {"centered": 1e-7, "forward": 1e-7}
# The error bound may pass a coordinate only while it is below this fraction of the gradient: what the check
# then lets through is within 10% of the truth, and a zero, doubled or sign-flipped gradient never passes.
# (The forward difference of the shipped configs' L2 term, reg * h against 2 reg |W| ~ 2e-4 reg, is at 7.5%.)
RESOLUTION = 0.1


def rel_error(a: Any, n: Any, tiny: float = 1e-300) -> float | np.ndarray:
    """|a - n| / max(|a| + |n|, tiny), elementwise; a float for scalar input."""
    a, n = np.asarray(a, dtype=np.float64), np.asarray(n, dtype=np.float64)
    out = np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), tiny)
    return float(out) if out.ndim == 0 else out


def _value(f: Callable[[np.ndarray], Any], W: np.ndarray) -> float:
    """f(W) as a float; a (loss, grad) tuple gives its loss."""
    v = f(W)
    return float(v[0] if isinstance(v, tuple) else v)


def _check_method(method: str) -> None:
    """Raise ValueError unless ``method`` is one of METHODS."""
    if method not in METHODS:
        raise ValueError(f"unknown difference method {method!r}; expected one of {list(METHODS)}")


def _difference(f: Callable[[np.ndarray], Any], W: np.ndarray, index: tuple[int, ...], h: float,
                method: str, f0: float | None) -> float:
    """The finite difference of f along W[index]; W[index] is restored even if f raises.

    Divides by the step actually taken (W[index] + h rounded to W's dtype).
    """
    return _difference_and_bound(f, W, index, h, method, f0, bound=False)[0]


# Rounding: each loss value is taken to be within ROUNDING_ULPS * eps * |f| of the exact one
# (it is a sum of many terms); the truncation estimate of a forward difference gets the safety
# factor TRUNCATION_SAFETY (the estimate's own error is of second order).
ROUNDING_ULPS = 64
TRUNCATION_SAFETY = 1.5


def _difference_and_bound(f: Callable[[np.ndarray], Any], W: np.ndarray, index: tuple[int, ...], h: float,
                          method: str, f0: float | None, bound: bool = True) -> tuple[float, float]:
    """(the finite difference of f along W[index], the method's own error bound of it).

    The bound is the rounding error of the difference plus, for "forward", its truncation error
    h f''/2, estimated from the backward difference as |forward - backward| / 2 (exact for a
    quadratic such as the L2 term, where it is reg * h). The centered difference's truncation
    error (h^2 times the third derivative / 6) is left to the relative threshold. Divides by the
    steps actually taken; W[index] is restored even if f raises.
    """
    old = W[index].copy()
    eps = float(np.finfo(W.dtype).eps)
    try:
        W[index] = old + h
        up = float(W[index] - old)
        if up == 0 or float(old - (old - W.dtype.type(h))) == 0:
            raise ValueError(f"h={h:g} is below the spacing of W's {W.dtype} values at W{list(index)} = {float(old):g} "
                             "(W + h rounds to W); use a larger h (1e-5 in float64)")
        f_up = _value(f, W)
        if method == "forward" and not bound:
            return (f_up - f0) / up, 0.0
        W[index] = old - h
        down = float(old - W[index])
        f_down = _value(f, W)
        if method == "forward":
            forward, backward = (f_up - f0) / up, (f0 - f_down) / down
            rounding = ROUNDING_ULPS * eps * (abs(f_up) + abs(f0)) / up
            return forward, TRUNCATION_SAFETY * abs(forward - backward) / 2 + rounding
        rounding = ROUNDING_ULPS * eps * (abs(f_up) + abs(f_down)) / (up + down)
        return (f_up - f_down) / (up + down), rounding
    finally:
        W[index] = old


def numerical_gradient(f: Callable[[np.ndarray], Any], W: np.ndarray, h: float = 1e-5,
                       method: str = "centered") -> np.ndarray:
    """Finite-difference gradient (W's shape, float64) of f: W -> float; W is modified in place and restored.

    "centered": (f(W + h e) - f(W - h e)) / 2h; "forward", the lecture's
    first form: (f(W + h e) - f(W)) / h. One call of f per entry (forward)
    or two (centered).
    """
    _check_method(method)
    if not (isinstance(W, np.ndarray) and W.dtype.kind == "f" and W.flags.writeable):
        raise ValueError("W must be a writable floating-point numpy array (it is perturbed in place)")
    f0 = _value(f, W) if method == "forward" else None
    grad = np.zeros(W.shape, dtype=np.float64)
    for index in np.ndindex(*W.shape):
        grad[index] = _difference(f, W, index, h, method, f0)
    return grad


@dataclass
class Check:
    """One coordinate of a gradient check."""

    index: tuple[int, ...]
    analytic: float
    numerical: float
    rel_error: float
    kink: bool
    bound: float = 0.0       # the method's own error bound of ``numerical`` (rounding; forward: + h f''/2)

    def resolved(self, threshold: float) -> bool:
        """Whether this coordinate can be judged: within the threshold, or an error bound below RESOLUTION of the
        gradient (a larger bound could hide a wrong gradient)."""
        return (self.rel_error <= threshold
                or self.bound < RESOLUTION * max(abs(self.analytic), abs(self.numerical)))

    def passes(self, threshold: float) -> bool:
        """Resolved, and its relative error at most ``threshold`` or |analytic - numerical| within the bound."""
        return self.resolved(threshold) and (self.rel_error <= threshold
                                             or abs(self.analytic - self.numerical) <= self.bound)


def sparse_check(f: Callable[[np.ndarray], Any], W: np.ndarray, analytic: np.ndarray, *, checks: int = 20,
                 h: float = 1e-5, method: str = "centered", rng: np.random.Generator,
                 kink: Callable[[tuple[int, ...], float], bool] | None = None) -> list[Check]:
    """Compare ``analytic`` (W's shape) with finite differences of f at ``checks`` coordinates drawn from rng.

    ``kink(index, h) -> bool`` marks coordinates where f is not smooth within
    +-h (their Check has kink=True). W is perturbed in place and restored.
    """
    _check_method(method)
    analytic = np.asarray(analytic)
    if analytic.shape != W.shape:
        raise ValueError(f"the analytic gradient has shape {analytic.shape}, W has {W.shape}")
    f0 = _value(f, W) if method == "forward" else None
    out = []
    for _ in range(checks):
        index = tuple(int(rng.integers(n)) for n in W.shape)
        at_kink = bool(kink(index, h)) if kink is not None else False
        num, bound = _difference_and_bound(f, W, index, h, method, f0)
        a = float(analytic[index])
        out.append(Check(index, a, num, rel_error(a, num), at_kink, bound))
    return out


def _summary(checks: list[Check], threshold: float) -> dict:
    """Worst judged relative error (of a failing coordinate, if any), its index, pass/fail and counts.

    Judged: not at a kink, and either failing or resolved (a coordinate outside even its error bound fails
    whatever the bound). ``inconclusive``: none judged, so the part does not pass.
    """
    smooth = [c for c in checks if not c.kink]
    failing = [c for c in smooth if abs(c.analytic - c.numerical) > c.bound and c.rel_error > threshold]
    judged = [c for c in smooth if c in failing or c.resolved(threshold)]
    worst = max(failing or judged, key=lambda c: c.rel_error, default=None)
    return {
        "checks": checks,
        "worst_rel_error": None if worst is None else worst.rel_error,
        "worst_index": None if worst is None else worst.index,
        "passed": not failing and bool(judged),
        "inconclusive": not judged,
        "checked": len(judged),
        "kinks": len(checks) - len(smooth),
        "unresolved": len(smooth) - len(judged),
    }


def check_loss(W: np.ndarray, X: np.ndarray, y: np.ndarray, *, loss: str, delta: float = 1.0, reg: float = 0.0,
               reg_bias: bool = True, checks: int = 20, h: float = 1e-5, method: str = "centered",
               rng: np.random.Generator, grad_fn: Callable[[np.ndarray], np.ndarray] | None = None,
               threshold: float | None = None) -> dict:
    """Check the analytic gradient of ``loss`` (a key of SCORE_LOSSES) at W (C, D) on X (N, D), y (N,).

    Three parts, each checked at the same ``checks`` random coordinates: the
    data loss alone ("data"), the L2 term reg*sum(W*W) alone ("reg", its
    last column left out if not ``reg_bias``) and their sum ("total").
    ``grad_fn(W) -> dW`` replaces the analytic gradient of the data loss
    (tests inject wrong ones). SVM coordinates where a hinge margin lies
    within h of 0 are reported as kinks, not failures. Computation is in
    W's floating dtype (use float64; the thresholds assume it). The default h
    suits standardised rows: on raw pixels (values near 100) a smooth loss's
    curvature makes the centered difference's h^2 error exceed the threshold
    (softmax: 4e-7 against 1e-7), so standardise X or pass h=1e-6.

    Returns {"loss", "method", "h", "threshold", "passed", "values": {"data",
    "reg", "total"} (losses at W), "parts": {part: {"checks": [Check],
    "worst_rel_error", "worst_index", "passed", "inconclusive", "checked", "kinks", "unresolved"}}}.
    """
    _check_method(method)
    kernel = score_loss(loss, delta)                 # an unknown loss is refused here
    W = np.asarray(W)
    W = np.array(W, dtype=W.dtype if W.dtype.kind == "f" else np.float64)   # a copy: perturbed in place
    X = np.asarray(X, dtype=W.dtype)
    y = check_labels(y, X.shape[0], W.shape[0])     # once: data_value uses the loss without checks
    if len(y) == 0:
        raise ValueError("check_loss needs at least one example; X has 0 rows")
    threshold = DEFAULT_THRESHOLDS[method] if threshold is None else float(threshold)

    def data_value(V: np.ndarray) -> float:
        """The data loss at V (the score-level loss; no gradient product)."""
        return kernel(X @ V.T, y, len(y))[0]

    def reg_value(V: np.ndarray) -> float:
        """The L2 term at V."""
        return l2_reg(V, reg, reg_bias)[0]

    if grad_fn is not None:
        data_grad = np.asarray(grad_fn(W.copy()))
    else:
        data_grad = linear_loss(loss, W, X, y, 0.0, delta)[1]
    reg_grad = l2_reg(W, reg, reg_bias)[1]
    kink = None
    if loss == "svm":
        margins = hinge_margins(W, X, y, delta)
        kink = lambda index, step: hinge_kink(margins, X, y, index, step)  # noqa: E731
    seed = int(rng.integers(2**63))
    parts = {}
    for name, f, grad, part_kink in (
        ("data", data_value, data_grad, kink),
        ("reg", reg_value, reg_grad, None),
        ("total", lambda V: data_value(V) + reg_value(V), data_grad + reg_grad, kink),
    ):
        found = sparse_check(f, W, grad, checks=checks, h=h, method=method,
                             rng=np.random.default_rng(seed), kink=part_kink)
        parts[name] = _summary(found, threshold)
    values = {"data": data_value(W), "reg": reg_value(W)}
    values["total"] = values["data"] + values["reg"]
    return {"loss": loss, "method": method, "h": h, "threshold": threshold,
            "passed": all(p["passed"] for p in parts.values()), "values": values, "parts": parts}


def as_plain(result: dict) -> dict:
    """``check_loss`` output with every Check turned into a dict (for JSON)."""
    parts = {k: {**v, "checks": [asdict(c) for c in v["checks"]]} for k, v in result["parts"].items()}
    return {**result, "parts": parts}
