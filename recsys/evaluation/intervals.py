"""Bootstrap intervals over held-out users: of a metric's mean, and of paired differences.

Every held-out user contributes one value per metric (:func:`recsys.evaluation.metrics.
per_user_metrics`). A 95% interval is the percentile bootstrap over users: ``resamples``
draws of n users with replacement, the 2.5th and 97.5th percentiles of the draws' means. A
*paired* difference (challenger − champion) resamples the users, not the two models apart,
so what both models get right or wrong on the same user cancels out: that is what makes a
difference on a few hundred users decidable at all.

The draws are seeded, so the same numbers give the same interval (a rerun of the nightly
decides the same way). Multinomial counts stand in for index draws: ``counts @ values / n``
is every draw's mean at once, without an n × resamples index matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Resamples for every interval; the interval's ends move by ~0.1 se between seeds at 1,000.
RESAMPLES = 1000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A mean over ``n`` users with its bootstrap interval [low, high]."""

    mean: float
    low: float
    high: float
    n: int

    def to_dict(self) -> dict[str, float | int | None]:
        """Rounded; no users gives None (JSON has no NaN)."""

        def r(x: float) -> float | None:
            return None if math.isnan(x) else round(x, 6)

        return {"mean": r(self.mean), "low": r(self.low), "high": r(self.high), "n": self.n}


def bootstrap_counts(n: int, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """``resamples`` × n draw counts (each row sums to n): one bootstrap draw per row."""
    rng = np.random.default_rng(seed)
    if n == 0:
        return np.zeros((resamples, 0))
    # float32 counts (exact up to 2**24): 1,000 draws of the capped holdout's 20,000 users
    # are 80 MB (recsys.evaluation.holdout caps the users)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float32)


def interval(values: np.ndarray, counts: np.ndarray, level: float = LEVEL) -> Interval:
    """Mean of per-user ``values`` and its percentile interval under the draws ``counts``."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n == 0:
        nan = float("nan")
        return Interval(nan, nan, nan, 0)
    return _interval(values, counts @ values / n, level)


def _interval(values: np.ndarray, means: np.ndarray, level: float) -> Interval:
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    mean = float(values.mean())
    # float error can put a constant's draws a hair off its mean: keep low <= mean <= high
    return Interval(mean, min(float(low), mean), max(float(high), mean), len(values))


def intervals(
    per_user: dict[str, np.ndarray], counts: np.ndarray, level: float = LEVEL
) -> dict[str, Interval]:
    """:func:`interval` of every metric in ``per_user`` under the same draws (one matmul)."""
    names = list(per_user)
    if not names or counts.shape[1] == 0:
        return {name: interval(per_user[name], counts, level) for name in names}
    values = np.stack([np.asarray(per_user[n], dtype=np.float64) for n in names], axis=1)
    means = counts @ values / len(values)
    return {n: _interval(values[:, j], means[:, j], level) for j, n in enumerate(names)}


def paired(
    a: dict[str, np.ndarray], b: dict[str, np.ndarray], counts: np.ndarray, level: float = LEVEL
) -> dict[str, Interval]:
    """Per-user differences a − b of every metric both have (same users, same order)."""
    return intervals(
        {name: np.asarray(a[name]) - np.asarray(b[name]) for name in a if name in b},
        counts,
        level,
    )
