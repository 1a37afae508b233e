"""Lloyd's k-means: the blocked, threaded iterations against a plain loop, re-seeding of empty clusters."""
from __future__ import annotations

import numpy as np

from linclf.features.lloyd import lloyd, spans
from linclf.threads import TaskPool


def test_spans_cover_the_range_in_order():
    assert spans(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert spans(8, 4) == [(0, 4), (4, 8)] and spans(0, 4) == []


def test_lloyd_matches_plain_loop_and_reseeds_empty_clusters():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 0.1, (50, 2)), rng.normal(5, 0.1, (50, 2))]).astype(np.float32)
    X[7] = X[8] = X[9] = [100, 100]                       # far points: a centroid there, the others empty out
    Xa = np.concatenate([X, np.ones((100, 1), np.float32)], axis=1)
    seen = []
    C, inertia = lloyd(Xa, 4, 3, np.random.default_rng(5), TaskPool(1), block=16,
                       step=lambda it, v: seen.append(v))
    # the same iterations written plainly
    r = np.random.default_rng(5)
    ref = X[np.sort(r.choice(100, 4, replace=False))].astype(np.float64)
    for _ in range(3):
        dist = ((X[:, None, :] - ref[None]) ** 2).sum(-1)
        lab = dist.argmin(1)
        for j in range(4):
            if (lab == j).any():
                ref[j] = X[lab == j].mean(0)
        empty = [j for j in range(4) if not (lab == j).any()]
        if empty:
            ref[empty] = X[r.choice(100, len(empty), replace=False)]
    np.testing.assert_allclose(C, ref, rtol=1e-5, atol=1e-5)
    assert len(seen) == 3 and seen[-1] == inertia


def test_empty_clusters_are_reseeded_from_data():
    """All rows identical but one: every centroid but two starts empty after iteration 1 and is re-seeded at a row."""
    X = np.zeros((40, 3), np.float32)
    X[0] = [1, 2, 3]
    Xa = np.concatenate([X, np.ones((40, 1), np.float32)], axis=1)
    C, _ = lloyd(Xa, 5, 2, np.random.default_rng(0), TaskPool(1))
    rows = {tuple(r) for r in X.tolist()}
    assert all(tuple(c) in rows for c in C.tolist())     # no zero-filled or NaN centroid, all at data rows
    assert np.isfinite(C).all()
