"""Splits. ``personalize_split``: Personalize's own protocol for solution version metrics.

10% of users (at least one) are held out at random; for each, the oldest 90% of their
interactions (stable time order) stay in training as input and the newest 10% (at least one)
are the truth. Users with fewer than 2 interactions are never held out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.data.dataset import Dataset


@dataclass
class Holdout:
    """Held-out users (indices into the dataset's user_ids) with their truth item indices."""

    users: np.ndarray
    truth: list[np.ndarray]


def personalize_split(
    data: Dataset, holdout_fraction: float = 0.1, truth_fraction: float = 0.1, seed: int = 42
) -> tuple[Dataset, Holdout]:
    user_codes = data.user_codes
    counts = np.bincount(user_codes, minlength=data.n_users)
    eligible = np.flatnonzero(counts >= 2)
    rng = np.random.default_rng(seed)
    n_hold = max(1, int(round(holdout_fraction * len(eligible)))) if len(eligible) else 0
    held = np.sort(rng.choice(eligible, size=n_hold, replace=False)) if n_hold else eligible[:0]
    # Rank of each interaction within its user's (already time-sorted) history.
    order = np.argsort(user_codes, kind="stable")
    sorted_users = user_codes[order]
    starts = np.searchsorted(sorted_users, np.arange(data.n_users))
    rank = np.empty(len(user_codes), dtype=np.int64)
    rank[order] = np.arange(len(user_codes)) - starts[sorted_users]
    n_truth = np.maximum(1, np.floor(truth_fraction * counts).astype(np.int64))
    is_held = np.zeros(data.n_users, dtype=bool)
    is_held[held] = True
    test_mask = is_held[user_codes] & (rank >= counts[user_codes] - n_truth[user_codes])
    item_codes = data.item_codes
    truth = []
    for u in held:
        rows = np.flatnonzero(test_mask & (user_codes == u))
        truth.append(item_codes[rows])
    return data.subset(~test_mask), Holdout(users=held, truth=truth)
