"""personalize_split: which users are held out, what their truth is, what stays in training."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.data.dataset import Dataset
from recsys.evaluation.splits import Holdout, personalize_split


def frame(rows: list[tuple[str, str, int]], event_type: str = "click") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "USER_ID": pd.Series([r[0] for r in rows], dtype=str),
            "ITEM_ID": pd.Series([r[1] for r in rows], dtype=str),
            "TIMESTAMP": pd.Series([r[2] for r in rows], dtype="int64"),
            "EVENT_TYPE": pd.Series([event_type] * len(rows), dtype=str),
        }
    )


def many_users(n_eligible: int, n_single: int = 0, per_user: int = 12) -> Dataset:
    """``n_eligible`` users with ``per_user`` interactions each, ``n_single`` with one."""
    rows = []
    for u in range(n_eligible):
        for j in range(per_user):
            rows.append((f"u{u}", f"i{(u + j) % 30}", 1000 + u * 100 + j))
    for s in range(n_single):
        rows.append((f"s{s}", f"i{s % 30}", 500 + s))
    return Dataset(frame(rows))


def user_rows(data: Dataset, user_id: str) -> pd.DataFrame:
    df = data.interactions
    return df[df["USER_ID"] == user_id]


def test_holds_out_ten_percent_of_eligible_users():
    data = many_users(40, n_single=15)
    _, holdout = personalize_split(data, seed=1)
    assert isinstance(holdout, Holdout)
    assert len(holdout.users) == 4  # 10% of 40 eligible; the 15 singletons don't count
    assert len(holdout.truth) == 4
    assert len(np.unique(holdout.users)) == 4
    assert list(holdout.users) == sorted(holdout.users)


def test_at_least_one_user_held_out():
    data = many_users(3)
    _, holdout = personalize_split(data, seed=0)
    assert len(holdout.users) == 1


def test_holdout_fraction_is_a_parameter():
    data = many_users(40)
    _, holdout = personalize_split(data, holdout_fraction=0.25, seed=0)
    assert len(holdout.users) == 10


def test_same_seed_same_split_other_seed_other_split():
    data = many_users(100)
    train1, h1 = personalize_split(data, seed=7)
    train2, h2 = personalize_split(data, seed=7)
    _, h3 = personalize_split(data, seed=8)
    assert np.array_equal(h1.users, h2.users)
    assert all(np.array_equal(a, b) for a, b in zip(h1.truth, h2.truth, strict=True))
    pd.testing.assert_frame_equal(train1.interactions, train2.interactions)
    assert len(h3.users) == len(h1.users) == 10
    assert not np.array_equal(h1.users, h3.users)


def test_users_with_fewer_than_two_interactions_are_never_held_out():
    # Two eligible users and many singletons: whatever the seed, only eligible users are chosen.
    rows = [("a", "x", 1), ("a", "y", 2), ("b", "x", 3), ("b", "z", 4)]
    rows += [(f"s{i}", "x", 10 + i) for i in range(30)]
    data = Dataset(frame(rows))
    eligible = {data.user_index.get_loc("a"), data.user_index.get_loc("b")}
    for seed in range(25):
        _, holdout = personalize_split(data, seed=seed)
        assert len(holdout.users) == 1
        assert set(holdout.users.tolist()) <= eligible


def test_no_eligible_user_means_no_holdout():
    data = Dataset(frame([("a", "x", 1), ("b", "y", 2)]))
    train, holdout = personalize_split(data)
    assert len(holdout.users) == 0
    assert holdout.truth == []
    assert len(train.interactions) == 2


def test_truth_is_newest_interactions_in_stable_time_order():
    # Only user "a" is eligible, so it is the one held out. 20 interactions -> 2 truth.
    # File order is shuffled relative to time; "p" and "q" share timestamp 90 (p first in the
    # file), "r" is the newest. Stable time order: ..., p, q, r -> truth = [q, r].
    rows = [("a", "r", 100)]
    rows += [("a", f"old{j}", 10 + j) for j in range(8)]
    rows += [("a", "p", 90)]
    rows += [("a", f"old{j}", 10 + j) for j in range(8, 16)]
    rows += [("a", "q", 90)]
    rows += [("a", "mid", 50)]
    rows += [("s1", "p", 5), ("s2", "old0", 6)]
    assert sum(r[0] == "a" for r in rows) == 20
    data = Dataset(frame(rows))
    train, holdout = personalize_split(data, seed=123)

    a = data.user_index.get_loc("a")
    assert holdout.users.tolist() == [a]
    assert data.item_ids[holdout.truth[0]].tolist() == ["q", "r"]
    # p (same timestamp as q but earlier in the file) stays in training as input.
    train_a = user_rows(train, "a")
    assert len(train_a) == 18
    assert "p" in train_a["ITEM_ID"].tolist()
    assert "q" not in train_a["ITEM_ID"].tolist()
    assert "r" not in train_a["ITEM_ID"].tolist()
    # Inputs keep their time order in the training set.
    assert train_a["TIMESTAMP"].is_monotonic_increasing


def test_equal_timestamps_at_the_boundary_follow_file_order():
    # All ten interactions share one timestamp: the last in file order is the truth.
    rows = [("a", f"i{j}", 7) for j in range(10)]
    data = Dataset(frame(rows))
    train, holdout = personalize_split(data, seed=0)
    assert data.item_ids[holdout.truth[0]].tolist() == ["i9"]
    assert user_rows(train, "a")["ITEM_ID"].tolist() == [f"i{j}" for j in range(9)]


@pytest.mark.parametrize(
    ("count", "n_truth"),
    [(2, 1), (9, 1), (10, 1), (19, 1), (20, 2), (25, 2), (31, 3)],
)
def test_truth_size_is_ten_percent_at_least_one(count, n_truth):
    rows = [("a", f"i{j}", j) for j in range(count)]
    data = Dataset(frame(rows))
    train, holdout = personalize_split(data, seed=0)
    assert len(holdout.truth[0]) == n_truth
    expected = [f"i{j}" for j in range(count - n_truth, count)]
    assert data.item_ids[holdout.truth[0]].tolist() == expected
    assert len(train.interactions) == count - n_truth


def test_split_partitions_interactions_per_user():
    data = many_users(30, n_single=5, per_user=23)  # 23 interactions -> 2 truth each
    train, holdout = personalize_split(data, seed=3)
    held_ids = set(data.user_ids[holdout.users])
    assert len(held_ids) == 3

    for uid in data.user_ids:
        before = user_rows(data, uid)
        after = user_rows(train, uid)
        if uid in held_ids:
            # Inputs: the oldest interactions, unchanged and still in order.
            assert len(after) == len(before) - 2
            pd.testing.assert_frame_equal(
                after.reset_index(drop=True), before.iloc[:-2].reset_index(drop=True)
            )
        else:
            pd.testing.assert_frame_equal(
                after.reset_index(drop=True), before.reset_index(drop=True)
            )

    for u, t in zip(holdout.users, holdout.truth, strict=True):
        newest = user_rows(data, data.user_ids[u])["ITEM_ID"].tolist()[-2:]
        assert data.item_ids[t].tolist() == newest

    assert len(train.interactions) == len(data.interactions) - 2 * 3


def test_catalogue_and_users_unchanged():
    # Item "only_truth" appears only in a held-out user's newest interaction.
    rows = [("a", "x", 1), ("a", "only_truth", 2), ("s", "y", 0)]
    items = pd.DataFrame({"ITEM_ID": pd.Series(["catalogue_only", "x"], dtype=str)})
    data = Dataset(frame(rows), items=items)
    train, holdout = personalize_split(data, seed=0)
    assert data.item_ids[holdout.truth[0]].tolist() == ["only_truth"]
    assert "only_truth" not in train.interactions["ITEM_ID"].tolist()
    assert train.item_ids.tolist() == data.item_ids.tolist()
    assert train.item_ids.tolist() == ["catalogue_only", "x", "y", "only_truth"]
    assert train.user_ids.tolist() == data.user_ids.tolist()
    # Codes in the training set index the same catalogue.
    assert train.item_ids[train.item_codes].tolist() == train.interactions["ITEM_ID"].tolist()


def test_truth_codes_index_the_original_catalogue():
    data = many_users(20)
    train, holdout = personalize_split(data, seed=5)
    for t in holdout.truth:
        assert t.dtype.kind == "i"
        assert (t >= 0).all() and (t < data.n_items).all()
        assert (t < train.n_items).all()
