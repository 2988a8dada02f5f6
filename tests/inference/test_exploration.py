"""Exploration statistics: cold = young within the cut-off and little interaction data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.data.dataset import Dataset
from recsys.inference.exploration import COLD_EVIDENCE, exploration_for, item_exploration_scores

DAY = 86_400
NOW = 100 * DAY


def test_cold_means_young_and_little_data_not_age_alone():
    items = pd.DataFrame(
        {
            "ITEM_ID": ["old", "young", "shown", "fresh", "nots", "hit"],
            "CREATION_TIMESTAMP": [NOW - 40 * DAY, NOW - 10 * DAY, NOW - 10 * DAY, None, None]
            + [NOW - 1 * DAY],
        }
    )
    inter = pd.DataFrame(
        {
            "USER_ID": ["u1", "u2", "u1"],
            "ITEM_ID": ["old", "young", "nots"],
            "TIMESTAMP": [NOW - 50 * DAY, NOW - 5 * DAY, NOW - 20 * DAY],
            "EVENT_TYPE": ["click"] * 3,
            "IMPRESSION": ["shown|young", "shown", "shown"],
        }
    )
    # "hit": one day old but already interacted with 12 times: young, not cold
    hits = pd.DataFrame(
        {
            "USER_ID": [f"h{i}" for i in range(12)],
            "ITEM_ID": ["hit"] * 12,
            "TIMESTAMP": [NOW - DAY] * 12,
            "EVENT_TYPE": ["click"] * 12,
            "IMPRESSION": [None] * 12,
        }
    )
    data = Dataset(pd.concat([inter, hits]).reset_index(drop=True), items)
    ids = np.array(["old", "young", "shown", "fresh", "nots", "hit"], dtype=object)
    idx, scores = item_exploration_scores(ids, data, NOW, cut_off_days=30)
    got = dict(zip(ids[idx], scores, strict=True))
    assert "old" not in got  # 40 days old: beyond the cut-off
    assert "hit" not in got  # young, but 12 interactions >= COLD_EVIDENCE: not cold
    assert got["fresh"] == 1.0  # no creation time, no interaction, never shown: brand new
    # first interaction stands in for the creation time; 1 interaction of evidence
    np.testing.assert_allclose(got["nots"], (1 - 20 / 30) * (1 - 1 / COLD_EVIDENCE))
    # young: 1 interaction + 1 impression; shown: 3 impressions
    np.testing.assert_allclose(got["young"], (1 - 10 / 30) * (1 - 2 / COLD_EVIDENCE))
    np.testing.assert_allclose(got["shown"], (1 - 10 / 30) * (1 - 3 / COLD_EVIDENCE))
    assert got["shown"] < got["young"] < got["fresh"]
    assert exploration_for(ids, data, NOW, 0.0, 30).active is False
    assert exploration_for(ids, data, NOW, 0.5, 30).active is True
    assert len(exploration_for(ids, data, NOW, 0.5, 0).items) == 0  # cut-off 0: nothing young


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
