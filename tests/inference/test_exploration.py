"""Exploration statistics: recency within the cut-off, impressions without clicks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.data.dataset import Dataset
from recsys.inference.exploration import IMPRESSION_SCALE, exploration_for, item_exploration_scores

DAY = 86_400
NOW = 100 * DAY


def test_recency_impressions_and_new_items():
    items = pd.DataFrame(
        {
            "ITEM_ID": ["old", "young", "shown", "fresh", "nots"],
            "CREATION_TIMESTAMP": [NOW - 40 * DAY, NOW - 10 * DAY, NOW - 10 * DAY, None, None],
        }
    )
    inter = pd.DataFrame(
        {
            "USER_ID": ["u1", "u2", "u1"],
            "ITEM_ID": ["old", "young", "nots"],
            "TIMESTAMP": [NOW - 50 * DAY, NOW - 5 * DAY, NOW - 20 * DAY],
            "EVENT_TYPE": ["click"] * 3,
            # "shown" appears in 20 slates and is never clicked; "young" is shown once, clicked once
            "IMPRESSION": ["shown|young", "shown", "shown"],
        }
    )
    inter = pd.concat([inter] + [inter.iloc[[1]].assign(USER_ID=f"x{i}") for i in range(17)])
    data = Dataset(inter.reset_index(drop=True), items)
    ids = np.array(["old", "young", "shown", "fresh", "nots"], dtype=object)
    idx, scores = item_exploration_scores(ids, data, NOW, cut_off_days=30)
    got = dict(zip(ids[idx], scores, strict=True))
    assert "old" not in got  # 40 days old: beyond the cut-off
    assert got["fresh"] == 1.0  # no creation time, no interaction: brand new
    np.testing.assert_allclose(got["nots"], 1 - 20 / 30)  # first interaction stands in
    # young was clicked as often as shown (18 clicks ≥ 1 impression): full recency
    np.testing.assert_allclose(got["young"], 1 - 10 / 30)
    shown = (inter["IMPRESSION"].str.count("shown")).sum()
    np.testing.assert_allclose(got["shown"], (1 - 10 / 30) / (1 + shown / IMPRESSION_SCALE))
    assert got["shown"] < got["young"]
    assert exploration_for(ids, data, NOW, 0.0, 30).active is False
    assert exploration_for(ids, data, NOW, 0.5, 30).active is True


def test_at_most_max_explored_items_the_best_ones(monkeypatch):
    from recsys.inference import exploration

    monkeypatch.setattr(exploration, "MAX_EXPLORED", 2)
    items = pd.DataFrame(
        {
            "ITEM_ID": ["a", "b", "c", "d"],
            "CREATION_TIMESTAMP": [NOW - d * DAY for d in (9, 1, 5, 1)],
        }
    )
    inter = pd.DataFrame(
        {"USER_ID": ["u"], "ITEM_ID": ["a"], "TIMESTAMP": [NOW], "EVENT_TYPE": ["click"]}
    )
    ids = np.array(["a", "b", "c", "d"], dtype=object)
    idx, _ = item_exploration_scores(ids, Dataset(inter, items), NOW, 30)
    assert ids[idx].tolist() == ["b", "d"]  # the two youngest (tie: catalogue order)


@pytest.mark.parametrize("dtype", [object, "string[pyarrow]"])
def test_impression_counts_match_an_explode_and_work_in_slices(dtype, monkeypatch):
    import recsys.inference.exploration as ex

    slates = ["a|b|c", None, "", "b|zz", "c|c|a", "b", "a|b|c"]
    column = pd.Series(slates, dtype=dtype)
    index = pd.Index(["a", "b", "c", "d"])
    exploded = pd.Series(slates, dtype=object).dropna().str.split("|").explode()
    exploded = exploded[exploded != ""]
    pos = index.get_indexer(exploded)
    expected = np.bincount(pos[pos >= 0], minlength=len(index)).astype(float)
    assert expected.tolist() == [3.0, 4.0, 4.0, 0.0]  # unknown "zz" and empty slates ignored
    np.testing.assert_array_equal(ex.impression_counts(column, index), expected)
    monkeypatch.setattr(ex, "IMPRESSION_ROWS", 2)  # several slices add up the same
    np.testing.assert_array_equal(ex.impression_counts(column, index), expected)
