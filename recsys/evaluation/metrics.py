"""Personalize's offline metrics, computed from top-25 lists against held-out truth.

* ``precision_at_K``: hits in the top K / K.
* ``normalized_discounted_cumulative_gain_at_K``: binary relevance, DCG = Σ 1/log2(rank+1),
  normalised by the ideal DCG of min(K, |truth|) hits.
* ``mean_reciprocal_rank_at_25``: 1 / rank of the first hit in the top 25 (0 if none).
* ``coverage``: distinct items recommended (top 25) to held-out users / catalogue size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

KS = (5, 10, 25)
METRIC_NAMES = (
    "coverage",
    "mean_reciprocal_rank_at_25",
    *(f"normalized_discounted_cumulative_gain_at_{k}" for k in KS),
    *(f"precision_at_{k}" for k in KS),
)


def evaluate_recommendations(
    recommended: np.ndarray, truth: Sequence[np.ndarray], n_items: int
) -> dict[str, float]:
    """``recommended``: (users × ≥25) item indices, -1 padded; ``truth``: per-user indices."""
    n = len(truth)
    if n == 0:
        return {m: float("nan") for m in METRIC_NAMES}
    depth = max(KS)
    rec = recommended[:, :depth]
    hits = np.zeros(rec.shape, dtype=bool)
    n_truth = np.zeros(n, dtype=np.int64)
    for i, t in enumerate(truth):
        hits[i] = np.isin(rec[i], t) & (rec[i] >= 0)
        n_truth[i] = len(np.unique(t))
    discounts = 1.0 / np.log2(np.arange(2, depth + 2))
    out: dict[str, float] = {}
    valid = rec[rec >= 0]
    out["coverage"] = float(len(np.unique(valid)) / n_items) if n_items else 0.0
    first = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0)
    out["mean_reciprocal_rank_at_25"] = float(
        np.where(first > 0, 1.0 / np.maximum(first, 1), 0).mean()
    )
    for k in KS:
        dcg = (hits[:, :k] * discounts[:k]).sum(axis=1)
        ideal = np.array([discounts[: min(k, m)].sum() for m in n_truth])
        out[f"normalized_discounted_cumulative_gain_at_{k}"] = float(
            np.where(ideal > 0, dcg / np.where(ideal > 0, ideal, 1), 0).mean()
        )
        out[f"precision_at_{k}"] = float(hits[:, :k].sum(axis=1).mean() / k)
    return {m: out[m] for m in METRIC_NAMES}
