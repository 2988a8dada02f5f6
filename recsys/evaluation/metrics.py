"""Personalize's offline metrics, computed from top-25 lists against held-out truth.

* ``precision_at_K``: hits in the top K / K.
* ``normalized_discounted_cumulative_gain_at_K``: binary relevance, DCG = Σ 1/log2(rank+1),
  normalised by the ideal DCG of min(K, |truth|) hits.
* ``mean_reciprocal_rank_at_25``: 1 / rank of the first hit in the top 25 (0 if none).
* ``coverage``: distinct items recommended (top 25) to held-out users / catalogue size.
* ``hit_rate_at_10`` (not Personalize's; the research protocol's HR@10): 1 if any truth item is
  in the top 10, else 0.
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


def per_user_metrics(recommended: np.ndarray, truth: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Each held-out user's value of every per-user metric (all but ``coverage``), plus
    ``hit_rate_at_10`` (1 if any truth item is in the top 10): the arrays that means,
    bootstrap intervals and paired differences are computed from."""
    n = len(truth)
    depth = max(KS)
    rec = recommended[:, :depth]
    if rec.shape[1] < depth:
        rec = np.pad(rec, ((0, 0), (0, depth - rec.shape[1])), constant_values=-1)
    hits = np.zeros((n, depth), dtype=bool)
    n_truth = np.zeros(n, dtype=np.int64)
    for i, t in enumerate(truth):
        hits[i] = np.isin(rec[i], t) & (rec[i] >= 0)
        n_truth[i] = len(np.unique(t))
    discounts = 1.0 / np.log2(np.arange(2, depth + 2))
    first = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0)
    out: dict[str, np.ndarray] = {
        "mean_reciprocal_rank_at_25": np.where(first > 0, 1.0 / np.maximum(first, 1), 0.0)
    }
    for k in KS:
        dcg = (hits[:, :k] * discounts[:k]).sum(axis=1)
        ideal = np.array([discounts[: min(k, m)].sum() for m in n_truth])
        out[f"normalized_discounted_cumulative_gain_at_{k}"] = np.where(
            ideal > 0, dcg / np.where(ideal > 0, ideal, 1), 0.0
        )
        out[f"precision_at_{k}"] = hits[:, :k].sum(axis=1) / k
    out["hit_rate_at_10"] = hits[:, :10].any(axis=1).astype(np.float64)
    return out


def coverage(recommended: np.ndarray, n_items: int) -> float:
    """Distinct items in the top 25 lists / catalogue size."""
    valid = recommended[:, : max(KS)]
    valid = valid[valid >= 0]
    return float(len(np.unique(valid)) / n_items) if n_items else 0.0


def evaluate_recommendations(
    recommended: np.ndarray, truth: Sequence[np.ndarray], n_items: int
) -> dict[str, float]:
    """``recommended``: (users × ≥25) item indices, -1 padded; ``truth``: per-user indices."""
    if len(truth) == 0:
        return {m: float("nan") for m in METRIC_NAMES}
    per_user = per_user_metrics(recommended, truth)
    out = {"coverage": coverage(recommended, n_items)}
    out.update({m: float(v.mean()) for m, v in per_user.items()})
    return {m: out[m] for m in METRIC_NAMES}
