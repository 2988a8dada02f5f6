"""Personalize's offline metrics, checked against values computed by hand on tiny inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recsys.evaluation.metrics import METRIC_NAMES, evaluate_recommendations

DEPTH = 25


def recs(*rows: list[int], depth: int = DEPTH) -> np.ndarray:
    """Recommendation lists, -1 padded to ``depth`` columns."""
    out = np.full((len(rows), depth), -1, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def d(rank: int) -> float:
    """Binary-relevance discount of a hit at 1-based ``rank``."""
    return 1.0 / math.log2(rank + 1)


def test_metric_names_and_order():
    result = evaluate_recommendations(recs([0]), [np.array([0])], n_items=1)
    assert list(result) == list(METRIC_NAMES)
    assert set(METRIC_NAMES) == {
        "coverage",
        "mean_reciprocal_rank_at_25",
        "normalized_discounted_cumulative_gain_at_5",
        "normalized_discounted_cumulative_gain_at_10",
        "normalized_discounted_cumulative_gain_at_25",
        "precision_at_5",
        "precision_at_10",
        "precision_at_25",
    }


def test_two_users_hand_computed():
    # Catalogue of 8 items. User A: hits at ranks 2 and 5 of 6 recommendations.
    # User B: three recommendations, none relevant.
    rec = recs([0, 1, 2, 3, 4, 5], [5, 4, 3])
    truth = [np.array([1, 4]), np.array([0])]
    m = evaluate_recommendations(rec, truth, n_items=8)

    assert m["precision_at_5"] == pytest.approx((2 / 5 + 0) / 2)
    assert m["precision_at_10"] == pytest.approx((2 / 10 + 0) / 2)
    assert m["precision_at_25"] == pytest.approx((2 / 25 + 0) / 2)
    assert m["mean_reciprocal_rank_at_25"] == pytest.approx((1 / 2 + 0) / 2)

    ndcg_a = (d(2) + d(5)) / (d(1) + d(2))
    for k in (5, 10, 25):
        assert m[f"normalized_discounted_cumulative_gain_at_{k}"] == pytest.approx(ndcg_a / 2)
    # Items 0..5 recommended, out of 8; -1 padding is not an item.
    assert m["coverage"] == pytest.approx(6 / 8)


def test_three_users_hits_beyond_five_change_only_deeper_metrics():
    # User A: first hit at rank 7 (beyond K=5), second at rank 12 (beyond K=10).
    rec_a = list(range(20))
    truth_a = np.array([6, 11])
    # User B: a single hit at rank 1.
    rec_b = [36, 37]
    truth_b = np.array([36, 100])
    # User C: hits at ranks 3 and 4; truth has 4 items.
    rec_c = [30, 31, 32, 33]
    truth_c = np.array([32, 33, 34, 35])
    m = evaluate_recommendations(recs(rec_a, rec_b, rec_c), [truth_a, truth_b, truth_c], n_items=40)

    assert m["precision_at_5"] == pytest.approx((0 + 1 / 5 + 2 / 5) / 3)
    assert m["precision_at_10"] == pytest.approx((1 / 10 + 1 / 10 + 2 / 10) / 3)
    assert m["precision_at_25"] == pytest.approx((2 / 25 + 1 / 25 + 2 / 25) / 3)
    assert m["mean_reciprocal_rank_at_25"] == pytest.approx((1 / 7 + 1 / 1 + 1 / 3) / 3)

    ideal2 = d(1) + d(2)
    ideal4 = d(1) + d(2) + d(3) + d(4)
    ndcg5 = (0 + d(1) / ideal2 + (d(3) + d(4)) / ideal4) / 3
    ndcg10 = (d(7) / ideal2 + d(1) / ideal2 + (d(3) + d(4)) / ideal4) / 3
    ndcg25 = ((d(7) + d(12)) / ideal2 + d(1) / ideal2 + (d(3) + d(4)) / ideal4) / 3
    assert m["normalized_discounted_cumulative_gain_at_5"] == pytest.approx(ndcg5)
    assert m["normalized_discounted_cumulative_gain_at_10"] == pytest.approx(ndcg10)
    assert m["normalized_discounted_cumulative_gain_at_25"] == pytest.approx(ndcg25)
    # 20 + 2 + 4 distinct items (no overlap) out of 40.
    assert m["coverage"] == pytest.approx(26 / 40)


def test_ideal_dcg_uses_min_of_k_and_truth_size():
    # Seven relevant items, all recommended first: a perfect list at every K.
    truth = np.arange(7)
    perfect = evaluate_recommendations(recs(list(range(7))), [truth], n_items=10)
    for k in (5, 10, 25):
        assert perfect[f"normalized_discounted_cumulative_gain_at_{k}"] == pytest.approx(1.0)
    assert perfect["precision_at_5"] == pytest.approx(1.0)
    assert perfect["precision_at_10"] == pytest.approx(7 / 10)

    # Three relevant items, only the first recommended is relevant.
    m = evaluate_recommendations(recs([0, 5, 6]), [np.array([0, 1, 2])], n_items=10)
    assert m["normalized_discounted_cumulative_gain_at_5"] == pytest.approx(
        1.0 / (d(1) + d(2) + d(3))
    )


def test_duplicate_truth_items_count_once_in_the_ideal():
    m = evaluate_recommendations(recs([2, 3]), [np.array([2, 2, 2])], n_items=4)
    assert m["normalized_discounted_cumulative_gain_at_5"] == pytest.approx(1.0)
    assert m["mean_reciprocal_rank_at_25"] == pytest.approx(1.0)
    assert m["precision_at_5"] == pytest.approx(1 / 5)


def test_no_hits_gives_zero_but_coverage_counts():
    m = evaluate_recommendations(recs([0, 1], [1, 2]), [np.array([3]), np.array([4])], n_items=5)
    for name in METRIC_NAMES:
        if name == "coverage":
            assert m[name] == pytest.approx(3 / 5)
        else:
            assert m[name] == 0.0, name


def test_padding_is_never_a_hit_nor_covered():
    # Truth contains -1 (nonsense, but it must not match the padding).
    m = evaluate_recommendations(recs([]), [np.array([-1])], n_items=3)
    assert m["coverage"] == 0.0
    assert m["precision_at_25"] == 0.0
    assert m["mean_reciprocal_rank_at_25"] == 0.0
    assert m["normalized_discounted_cumulative_gain_at_25"] == 0.0


def test_padding_between_short_lists_keeps_ranks():
    # Hit at rank 3 after two real items; the rest is padding.
    m = evaluate_recommendations(recs([0, 1, 2]), [np.array([2])], n_items=3)
    assert m["mean_reciprocal_rank_at_25"] == pytest.approx(1 / 3)
    assert m["normalized_discounted_cumulative_gain_at_5"] == pytest.approx(d(3))
    assert m["coverage"] == pytest.approx(1.0)


def test_only_the_first_25_columns_count():
    rec = recs(list(range(30)), depth=30)
    m = evaluate_recommendations(rec, [np.array([27])], n_items=30)
    assert m["mean_reciprocal_rank_at_25"] == 0.0
    assert m["precision_at_25"] == 0.0
    assert m["normalized_discounted_cumulative_gain_at_25"] == 0.0
    assert m["coverage"] == pytest.approx(25 / 30)


def test_coverage_counts_distinct_items_across_users():
    m = evaluate_recommendations(
        recs([0, 1, 2], [2, 1, 0], [0, 3]), [np.array([9])] * 3, n_items=10
    )
    assert m["coverage"] == pytest.approx(4 / 10)


def test_mrr_uses_first_hit_only():
    m = evaluate_recommendations(recs([5, 1, 0, 2]), [np.array([0, 1, 2])], n_items=6)
    assert m["mean_reciprocal_rank_at_25"] == pytest.approx(1 / 2)


def test_empty_truth_list_gives_nans():
    m = evaluate_recommendations(np.zeros((0, DEPTH), dtype=np.int64), [], n_items=10)
    assert list(m) == list(METRIC_NAMES)
    assert all(math.isnan(v) for v in m.values())


def test_values_are_python_floats():
    m = evaluate_recommendations(recs([0]), [np.array([0])], n_items=2)
    assert all(type(v) is float for v in m.values())
    assert m["coverage"] == pytest.approx(0.5)
