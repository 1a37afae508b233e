"""Derivative-free optimizers of the lecture: random search and random local search.

Both only evaluate the loss; neither needs a gradient. ``loss_fn(W) -> float``
is the full training loss (the caller decides what that is), ``rng`` makes the
candidates, and ``callback(trial, best_loss)`` reports progress (the caller
draws the progress bar).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

__all__ = ["SEARCH_METHODS", "random_search", "random_local_search"]

SEARCH_METHODS = ("random_search", "random_local_search")    # optimizer.method values: no lr, no epochs

LossFn = Callable[[np.ndarray], float]
Callback = Callable[[int, float], None]
ManyLossFn = Callable[[np.ndarray], np.ndarray]


def random_search(loss_fn: LossFn, shape: tuple[int, int], *, trials: int, scale: float,
                  rng: np.random.Generator, dtype: type = np.float32, callback: Callback | None = None,
                  many_loss_fn: ManyLossFn | None = None, group: int = 64) -> tuple[np.ndarray, float]:
    """Try ``trials`` Gaussian W (C, D) of std ``scale``; return the one of lowest loss and its loss.

    With ``many_loss_fn(Ws (K, C, D)) -> (K,)`` the candidates are scored
    ``group`` at a time (one pass over the data for all of them); the candidates
    and the winner are the same as one at a time.
    """
    best_W, best_loss = None, math.inf
    trial = 0
    while trial < trials:
        k = min(group, trials - trial) if many_loss_fn is not None else 1
        Ws = (rng.standard_normal((k, *shape)) * scale).astype(dtype)
        losses = many_loss_fn(Ws) if many_loss_fn is not None else [loss_fn(Ws[0])]
        for W, loss in zip(Ws, losses):
            trial += 1
            loss = float(loss)
            if loss < best_loss:      # NaN never wins
                best_W, best_loss = W, loss
            if callback is not None:
                callback(trial, best_loss)
    if best_W is None:
        raise FloatingPointError("every candidate of random search had a non-finite loss")
    return best_W, best_loss


def random_local_search(loss_fn: LossFn, W0: np.ndarray, *, trials: int, step_size: float,
                        rng: np.random.Generator, callback: Callback | None = None,
                        many_loss_fn: ManyLossFn | None = None, group: int = 8) -> tuple[np.ndarray, float]:
    """From W0 (C, D), try ``W + step_size * noise`` ``trials`` times, moving whenever the loss improves.

    With ``many_loss_fn(Ws (K, C, D)) -> (K,)`` the next ``group`` trials are
    scored at once from the current W, speculatively: the first one that
    improves is taken, and the trials after it are scored again from the new
    W. The noise, the trials and the moves are those of one at a time; a pass
    over the data serves up to ``group`` trials while they do not improve,
    which is most of them.
    """
    W = W0.copy()
    best_loss = float(loss_fn(W))
    if not math.isfinite(best_loss):
        raise FloatingPointError("the loss at the starting point of random local search is not finite")
    k = group if many_loss_fn is not None else 1
    trial = 0
    noise = np.empty((0, *W.shape), dtype=W.dtype)       # drawn for the next trials, in trial order
    while trial < trials:
        more = min(k, trials - trial) - len(noise)
        if more > 0:
            noise = np.concatenate([noise, (rng.standard_normal((more, *W.shape)) * step_size).astype(W.dtype)])
        Ws = W + noise                                   # (k, C, D): the next trials from the current W
        losses = many_loss_fn(Ws) if many_loss_fn is not None else [loss_fn(Ws[0])]
        for j, loss in enumerate(losses):
            trial += 1
            moved = float(loss) < best_loss
            if moved:
                W, best_loss = Ws[j], float(loss)
            if callback is not None:
                callback(trial, best_loss)
            if moved:
                break
        noise = noise[j + 1:]
    return W, best_loss
