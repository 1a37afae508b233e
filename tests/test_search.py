"""Derivative-free search: keeps the best, grouped scoring gives the same run as one at a time."""
import numpy as np

from linclf.core.search import random_local_search, random_search


def quadratic(target):
    return lambda W: float(np.sum((W - target) ** 2))


def test_random_search_returns_the_best_candidate_seen():
    target = np.ones((2, 3))
    seen = []
    f = quadratic(target)

    def recording(W):
        seen.append((f(W), W.copy()))
        return f(W)

    W, loss = random_search(recording, (2, 3), trials=30, scale=1.0, rng=np.random.default_rng(0), dtype=np.float64)
    best = min(seen, key=lambda t: t[0])
    assert loss == best[0]
    np.testing.assert_array_equal(W, best[1])


def test_grouped_scoring_is_the_same_run():
    f = quadratic(np.ones((2, 3)))
    calls = []

    def many(Ws):
        calls.append(len(Ws))
        return np.array([f(W) for W in Ws])

    one = random_search(f, (2, 3), trials=37, scale=1.0, rng=np.random.default_rng(5), dtype=np.float64)
    grouped = random_search(f, (2, 3), trials=37, scale=1.0, rng=np.random.default_rng(5), dtype=np.float64,
                            many_loss_fn=many, group=8)
    assert one[1] == grouped[1]
    np.testing.assert_array_equal(one[0], grouped[0])
    assert calls == [8, 8, 8, 8, 5]


def test_random_local_search_only_moves_downhill():
    f = quadratic(np.zeros((2, 3)))
    W0 = np.full((2, 3), 2.0)
    trace = []
    W, loss = random_local_search(f, W0, trials=200, step_size=0.1, rng=np.random.default_rng(0),
                                  callback=lambda t, best: trace.append(best))
    assert loss == f(W) and loss < f(W0) / 2
    assert all(b <= a for a, b in zip(trace, trace[1:]))
    np.testing.assert_array_equal(W0, np.full((2, 3), 2.0))   # the start is not modified


def test_speculative_local_search_is_the_same_run_as_one_trial_at_a_time():
    """Scoring 8 trials at once from the current W, re-scoring those after a move: the same noise, moves, trace."""
    f = quadratic(np.zeros((2, 3)))
    W0 = np.full((2, 3), 2.0)
    calls = []

    def many(Ws):
        calls.append(len(Ws))
        return np.array([f(W) for W in Ws])

    runs = []
    for kw in ({}, {"many_loss_fn": many, "group": 8}):
        trace = []
        W, loss = random_local_search(f, W0, trials=203, step_size=0.1, rng=np.random.default_rng(3),
                                      callback=lambda t, best: trace.append((t, best)), **kw)
        runs.append((W, loss, trace))
    (W1, l1, t1), (W2, l2, t2) = runs
    np.testing.assert_array_equal(W1, W2)
    assert l1 == l2 and t1 == t2 and [t for t, _ in t2] == list(range(1, 204))
    moves = sum(b < a for (_, a), (_, b) in zip([(0, f(W0))] + t2, t2))
    assert 10 < moves < 150                                   # batches that end in a move, and full ones
    # a pass ends at a move or after 8 trials without one
    assert len(calls) <= moves + -(-(203 - moves) // 8) + 1 < 203 and max(calls) == 8
