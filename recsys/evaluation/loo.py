"""The research protocol: leave-one-out with full ranking (BENCHMARKS.md protocol 1).

Single-pass 5-core filtering (items, then users, with < ``min_count`` interactions removed),
each user's events in stable time order (ties keep file order); the last event is the test
item, the second-to-last the validation item, the rest train. Every item is ranked, the
user's other items excluded. Ties are scored by their expected value: the true item's rank is
uniform among the items with an equal score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.data.dataset import Dataset


def five_core(data: Dataset, min_count: int = 5) -> Dataset:
    df = data.interactions
    items = df["ITEM_ID"].value_counts()
    df = df[df["ITEM_ID"].isin(items[items >= min_count].index)]
    users = df["USER_ID"].value_counts()
    df = df[df["USER_ID"].isin(users[users >= min_count].index)]
    items_df = None
    if data.items is not None:
        items_df = data.items[data.items["ITEM_ID"].isin(df["ITEM_ID"].unique())]
    return Dataset(df, items_df, None, data.snapshot_id, data.item_schema)


@dataclass
class LeaveOneOut:
    train: Dataset  # everything but the validation and test items
    train_val: Dataset  # everything but the test items (train + validation)
    users: np.ndarray  # user indices evaluated (>= 3 interactions)
    valid: np.ndarray  # validation item per user
    test: np.ndarray  # test item per user


def leave_one_out(data: Dataset) -> LeaveOneOut:
    codes = data.user_codes
    order = np.argsort(codes, kind="stable")  # interactions are time-sorted, ties file order
    counts = np.bincount(codes, minlength=data.n_users)
    ends = np.cumsum(counts)
    rank_from_end = np.empty(len(codes), dtype=np.int64)
    rank_from_end[order] = ends[codes[order]] - 1 - np.arange(len(codes))
    eligible = counts >= 3
    is_test = eligible[codes] & (rank_from_end == 0)
    is_val = eligible[codes] & (rank_from_end == 1)
    items = data.item_codes
    users = np.flatnonzero(eligible)
    test = np.full(data.n_users, -1)
    valid = np.full(data.n_users, -1)
    test[codes[is_test]] = items[is_test]
    valid[codes[is_val]] = items[is_val]
    return LeaveOneOut(
        train=data.subset(~(is_test | is_val)),
        train_val=data.subset(~is_test),
        users=users,
        valid=valid[users],
        test=test[users],
    )


def rank_metrics(
    scores: np.ndarray, targets: np.ndarray, exclude: list[np.ndarray], ks=(10, 20)
) -> dict[str, np.ndarray]:
    """Per-user HR@k and NDCG@k (expected over ties) for one block of users."""
    scores = scores.astype(np.float64, copy=True)
    rows = np.arange(len(targets))
    for r, ex in enumerate(exclude):
        ex = ex[ex != targets[r]]
        scores[r, ex] = -np.inf
    t = scores[rows, targets][:, None]
    greater = (scores > t).sum(axis=1)
    ties = (scores == t).sum(axis=1) - 1
    out = {}
    for k in ks:
        hr = np.zeros(len(targets))
        ndcg = np.zeros(len(targets))
        for r in range(len(targets)):
            positions = np.arange(greater[r], greater[r] + ties[r] + 1)
            inside = positions[positions < k]
            hr[r] = len(inside) / len(positions)
            ndcg[r] = (1.0 / np.log2(inside + 2)).sum() / len(positions)
        out[f"HR@{k}"] = hr
        out[f"NDCG@{k}"] = ndcg
    return out
