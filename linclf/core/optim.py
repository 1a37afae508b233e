"""Update rules as (init, update) pairs with explicit state, and learning-rate schedules.

The rules of the cs231n notes (optimization, neural networks 3), optax-style:

    rule = make_update("adam")
    state = rule.init(W)                       # zeros shaped like W (C, D), in W's dtype
    step, state = rule.update(grad, state, lr)  # grad (C, D); nothing is changed in place
    W += step                                  # the training loop is the only place W changes

``update`` is pure: it never writes into the state it is given and returns new
arrays. State arrays are returned read-only so an accidental in-place write
fails loudly instead of corrupting the optimizer. For sgd and momentum the step
*is* the new velocity ``v`` (as in the notes, ``x += v``), so that step is
read-only too; ``W += step`` is all a caller needs.

SGD is momentum with mu = 0. A state is saved as a flat dict of arrays
(``state_to_arrays``) that fits an .npz without pickle, and rebuilt, checked,
by ``state_from_arrays``. Schedules give the learning rate at a (fractional)
epoch: ``lr_at("cosine", lr, epoch, total_epochs)``.

Only numpy and the standard library; nothing here prints.
"""
from __future__ import annotations

import math
from typing import Callable, Mapping, NamedTuple, Union

import numpy as np

__all__ = [
    "UPDATES", "SCHEDULES", "UpdateRule", "State", "MomentumState", "CacheState", "AdamState",
    "make_update", "state_to_arrays", "state_from_arrays", "lr_at", "l2_diverges",
]

UPDATES: tuple[str, ...] = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")
SCHEDULES: tuple[str, ...] = ("constant", "step", "exponential", "cosine", "inverse_time")


# ---------------------------------------------------------------------- states


class MomentumState(NamedTuple):
    """State of sgd / momentum / nesterov: steps taken and the velocity v (C, D)."""

    t: int
    v: np.ndarray


class CacheState(NamedTuple):
    """State of adagrad / rmsprop: steps taken and the squared-gradient cache (C, D)."""

    t: int
    cache: np.ndarray


class AdamState(NamedTuple):
    """State of adam: steps taken, first moment m (C, D) and second moment v (C, D)."""

    t: int
    m: np.ndarray
    v: np.ndarray


State = Union[MomentumState, CacheState, AdamState]

_STATE_TYPES: dict[str, type] = {
    "sgd": MomentumState, "momentum": MomentumState, "nesterov": MomentumState,
    "adagrad": CacheState, "rmsprop": CacheState, "adam": AdamState,
}


class UpdateRule(NamedTuple):
    """A named pair: ``state = init(W)``; ``step, state = update(grad, state, lr)``."""

    name: str
    init: Callable[[np.ndarray], State]
    update: Callable[[np.ndarray, State, float], tuple[np.ndarray, State]]


# --------------------------------------------------------------------- helpers


def _check_name(name: str, valid: tuple[str, ...], what: str) -> None:
    """Raise ValueError naming the valid choices if ``name`` is not one of them."""
    if name not in valid:
        raise ValueError(f"unknown {what} {name!r}; expected one of: {', '.join(valid)}")


def _frozen(a: np.ndarray) -> np.ndarray:
    """Mark a freshly computed state array read-only and return it."""
    a.flags.writeable = False
    return a


def _zeros(W: np.ndarray) -> np.ndarray:
    """A read-only array of zeros shaped (C, D) like W, in W's floating dtype."""
    W = np.asarray(W)
    if not np.issubdtype(W.dtype, np.floating):
        raise ValueError(f"W must be a floating-point array, got dtype {W.dtype}")
    return _frozen(np.zeros(W.shape, dtype=W.dtype))


def _grad(grad: np.ndarray, like: np.ndarray) -> np.ndarray:
    """The gradient (C, D) as an array in the state's dtype (no copy when it already is)."""
    g = np.asarray(grad, dtype=like.dtype)
    if g.shape != like.shape:
        raise ValueError(f"gradient has shape {g.shape}, the optimizer state has {like.shape}")
    return g


def _unit_interval(name: str, value: float) -> float:
    """``value`` as a float, checked to lie in [0, 1)."""
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return value


# ----------------------------------------------------------------- the rules


def _momentum(mu: float) -> tuple[Callable, Callable]:
    """Momentum: v = mu*v - lr*g; step = v. With mu = 0 this is plain SGD: step = -lr*g."""

    def init(W: np.ndarray) -> MomentumState:
        """Zero velocity shaped like W (C, D)."""
        return MomentumState(0, _zeros(W))

    def update(grad: np.ndarray, state: MomentumState, lr: float) -> tuple[np.ndarray, MomentumState]:
        """One step from grad (C, D); the step is the new velocity (read-only)."""
        g = _grad(grad, state.v)
        v = np.multiply(g, -float(lr))        # -lr*g
        if mu:
            v += np.multiply(state.v, mu)     # mu*v - lr*g
        return v, MomentumState(state.t + 1, _frozen(v))

    return init, update


def _nesterov(mu: float) -> tuple[Callable, Callable]:
    """Nesterov momentum in the notes' form: v = mu*v - lr*g; step = -mu*v_prev + (1+mu)*v."""

    def init(W: np.ndarray) -> MomentumState:
        """Zero velocity shaped like W (C, D)."""
        return MomentumState(0, _zeros(W))

    def update(grad: np.ndarray, state: MomentumState, lr: float) -> tuple[np.ndarray, MomentumState]:
        """One step from the gradient (C, D) at the current W."""
        g = _grad(grad, state.v)
        step = np.multiply(state.v, -mu)      # -mu*v_prev
        v = np.multiply(g, -float(lr))        # -lr*g
        v -= step                             # mu*v_prev - lr*g
        step += np.multiply(v, 1.0 + mu)      # -mu*v_prev + (1+mu)*v
        return step, MomentumState(state.t + 1, _frozen(v))

    return init, update


def _adagrad(eps: float) -> tuple[Callable, Callable]:
    """Adagrad: cache += g**2; step = -lr*g / (sqrt(cache) + eps)."""

    def init(W: np.ndarray) -> CacheState:
        """Zero cache shaped like W (C, D)."""
        return CacheState(0, _zeros(W))

    def update(grad: np.ndarray, state: CacheState, lr: float) -> tuple[np.ndarray, CacheState]:
        """One step from grad (C, D)."""
        g = _grad(grad, state.cache)
        cache = np.square(g)
        cache += state.cache
        step = np.sqrt(cache)
        step += eps
        np.divide(g, step, out=step)
        step *= -float(lr)
        return step, CacheState(state.t + 1, _frozen(cache))

    return init, update


def _rmsprop(decay: float, eps: float) -> tuple[Callable, Callable]:
    """RMSProp: cache = decay*cache + (1-decay)*g**2; step = -lr*g / (sqrt(cache) + eps)."""

    def init(W: np.ndarray) -> CacheState:
        """Zero cache shaped like W (C, D)."""
        return CacheState(0, _zeros(W))

    def update(grad: np.ndarray, state: CacheState, lr: float) -> tuple[np.ndarray, CacheState]:
        """One step from grad (C, D)."""
        g = _grad(grad, state.cache)
        cache = np.multiply(state.cache, decay)
        step = np.square(g)                   # scratch, then the step
        step *= 1.0 - decay
        cache += step
        np.sqrt(cache, out=step)
        step += eps
        np.divide(g, step, out=step)
        step *= -float(lr)
        return step, CacheState(state.t + 1, _frozen(cache))

    return init, update


def _adam(beta1: float, beta2: float, eps: float) -> tuple[Callable, Callable]:
    """Adam with bias correction, t counted from 1: step = -lr*mhat / (sqrt(vhat) + eps)."""

    def init(W: np.ndarray) -> AdamState:
        """Zero moments shaped like W (C, D), t = 0."""
        return AdamState(0, _zeros(W), _zeros(W))

    def update(grad: np.ndarray, state: AdamState, lr: float) -> tuple[np.ndarray, AdamState]:
        """One step from grad (C, D)."""
        g = _grad(grad, state.m)
        t = state.t + 1
        step = np.multiply(g, 1.0 - beta1)    # scratch, then the step
        m = np.multiply(state.m, beta1)
        m += step                             # m = b1*m + (1-b1)*g
        np.square(g, out=step)
        step *= 1.0 - beta2
        v = np.multiply(state.v, beta2)
        v += step                             # v = b2*v + (1-b2)*g**2
        np.divide(v, 1.0 - beta2 ** t, out=step)  # vhat
        np.sqrt(step, out=step)
        step += eps
        np.divide(m, step, out=step)
        step *= -float(lr) / (1.0 - beta1 ** t)   # -lr * mhat / (sqrt(vhat) + eps)
        return step, AdamState(t, _frozen(m), _frozen(v))

    return init, update


def make_update(name: str, *, momentum: float = 0.9, decay: float = 0.99, beta1: float = 0.9,
                beta2: float = 0.999, eps: float = 1e-8) -> UpdateRule:
    """The update rule ``name`` (one of UPDATES); hyperparameters a rule does not use are ignored."""
    _check_name(name, UPDATES, "update rule")
    eps = float(eps)
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
    if name == "sgd":
        init, update = _momentum(0.0)
    elif name == "momentum":
        init, update = _momentum(_unit_interval("momentum", momentum))
    elif name == "nesterov":
        init, update = _nesterov(_unit_interval("momentum", momentum))
    elif name == "adagrad":
        init, update = _adagrad(eps)
    elif name == "rmsprop":
        init, update = _rmsprop(_unit_interval("decay", decay), eps)
    else:
        init, update = _adam(_unit_interval("beta1", beta1), _unit_interval("beta2", beta2), eps)
    return UpdateRule(name, init, update)


# --------------------------------------------------------------- serialising


def state_to_arrays(state: State) -> dict[str, np.ndarray]:
    """The state as a flat dict of arrays for an .npz: ``t`` (0-d int64) and each (C, D) array."""
    out = {"t": np.asarray(state.t, dtype=np.int64)}
    for key, value in state._asdict().items():
        if key != "t":
            out[key] = value
    return out


def state_from_arrays(name: str, arrays: Mapping[str, np.ndarray], W: np.ndarray) -> State:
    """Rebuild the state of rule ``name`` for weights W (C, D); ValueError on any mismatch."""
    _check_name(name, UPDATES, "update rule")
    cls = _STATE_TYPES[name]
    expected = set(cls._fields)
    got = set(arrays)
    if got != expected:
        missing = ", ".join(sorted(expected - got)) or "none"
        extra = ", ".join(sorted(got - expected)) or "none"
        raise ValueError(f"{name} optimizer state needs arrays {', '.join(cls._fields)}; "
                         f"missing: {missing}; unexpected: {extra}")
    W = np.asarray(W)
    if not np.issubdtype(W.dtype, np.floating):
        raise ValueError(f"W must be a floating-point array, got dtype {W.dtype}")
    t = np.asarray(arrays["t"])
    if t.shape != () or not np.issubdtype(t.dtype, np.integer) or int(t) < 0:
        raise ValueError(f"{name} optimizer state: t must be a scalar integer >= 0, "
                         f"got shape {t.shape} dtype {t.dtype}")
    values: dict[str, object] = {"t": int(t)}
    for key in cls._fields[1:]:
        a = np.asarray(arrays[key])
        if a.shape != W.shape:
            raise ValueError(f"{name} optimizer state: {key} has shape {a.shape}, W has {W.shape}")
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise ValueError(f"{name} optimizer state: {key} must be numeric, got dtype {a.dtype}")
        values[key] = _frozen(np.array(a, dtype=W.dtype, copy=True))
    return cls(**values)


def l2_diverges(update: str, lr: float, reg: float) -> bool:
    """Whether plain SGD's L2 term alone grows W: each step W -= lr * 2 reg W, a factor |1 - 2 lr reg| > 1
    when lr * reg > 1, whatever the data. (The other rules' steps are bounded or damped differently.)"""
    return update == "sgd" and lr * reg > 1


# ----------------------------------------------------------------- schedules


def lr_at(schedule: str, lr: float, epoch: float, total_epochs: float, *, step_every: float = 5.0,
          gamma: float = 0.5, k: float = 0.1, lr_min: float = 0.0) -> float:
    """The learning rate of ``schedule`` at ``epoch`` (samples seen / training-set size)."""
    _check_name(schedule, SCHEDULES, "schedule")
    lr, epoch = float(lr), float(epoch)
    if schedule == "constant":
        return lr
    if schedule == "step":
        if not step_every > 0:
            raise ValueError(f"step_every must be > 0, got {step_every!r}")
        return lr * float(gamma) ** math.floor(epoch / float(step_every))
    if schedule == "exponential":
        return lr * float(gamma) ** epoch
    if schedule == "cosine":
        if not total_epochs > 0:
            raise ValueError(f"cosine schedule needs total_epochs > 0, got {total_epochs!r}")
        frac = min(epoch / float(total_epochs), 1.0)
        return float(lr_min) + 0.5 * (lr - float(lr_min)) * (1.0 + math.cos(math.pi * frac))
    return lr / (1.0 + float(k) * epoch)
