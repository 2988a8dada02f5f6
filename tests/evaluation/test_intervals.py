"""Bootstrap intervals: they cover the truth about 95% of the time, pairing narrows them, and
the same numbers give the same interval."""

from __future__ import annotations

import numpy as np

from recsys.evaluation.intervals import bootstrap_counts, interval, paired


def test_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    n, p, trials = 300, 0.2, 200
    counts = bootstrap_counts(n, resamples=500, seed=1)
    covered = 0
    for _ in range(trials):
        x = (rng.random(n) < p).astype(float)
        iv = interval(x, counts)
        covered += iv.low <= p <= iv.high
        assert iv.low <= iv.mean <= iv.high and iv.n == n
    assert 0.89 <= covered / trials <= 0.99


def test_pairing_cancels_what_both_models_share():
    rng = np.random.default_rng(2)
    n = 400
    shared = rng.random(n)  # how hard each user is, for both models
    a = shared + 0.02 + rng.normal(0, 0.01, n)
    b = shared + rng.normal(0, 0.01, n)
    counts = bootstrap_counts(n, seed=0)
    d = paired({"m": a}, {"m": b}, counts)["m"]
    ia, ib = interval(a, counts), interval(b, counts)
    assert d.low > 0  # the paired difference is decided...
    assert ia.low < ib.high  # ...though the two intervals overlap
    assert d.high - d.low < (ia.high - ia.low) / 5


def test_constant_and_identical_values_and_determinism():
    counts = bootstrap_counts(50, seed=3)
    c = interval(np.full(50, 0.25), counts)
    assert c.mean == c.low == c.high == 0.25
    x = np.random.default_rng(1).random(50)
    d = paired({"m": x}, {"m": x.copy()}, counts)["m"]
    assert d.mean == d.low == d.high == 0.0
    assert interval(x, bootstrap_counts(50, seed=3)) == interval(x, counts)
    empty = interval(np.zeros(0), bootstrap_counts(0))
    assert empty.n == 0 and np.isnan(empty.mean)
    assert empty.to_dict() == {"mean": None, "low": None, "high": None, "n": 0}  # JSON-safe
