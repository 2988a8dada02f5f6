"""similar-items: co-interaction neighbours, metadata neighbours for cold items (at training
and added by the 2-hourly update), the artifact round trip."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.data.dataset import Dataset
from recsys.recipes import SimilarItems, TrainingOptions, load_model
from recsys.recipes.cold import NewItemOptions
from recsys.schema import Field, Schema
from recsys.storage import Storage

SCHEMA = Schema(
    "items",
    (Field("ITEM_ID", "string"), Field("GENRES", "string", nullable=True, categorical=True)),
)


def make_data() -> Dataset:
    # a/b: bought together by 5 users; c/d: together by 4; "cold" (Horror, like c and d) and
    # "bare" (no metadata) have no interactions.
    pairs = [(f"u{i}", x) for i in range(5) for x in ("a", "b")]
    pairs += [(f"v{i}", x) for i in range(4) for x in ("c", "d")]
    df = pd.DataFrame(pairs, columns=["USER_ID", "ITEM_ID"])
    df["TIMESTAMP"] = np.arange(len(df))
    df["EVENT_TYPE"] = "click"
    items = pd.DataFrame(
        {
            "ITEM_ID": ["a", "b", "c", "d", "cold", "bare"],
            "GENRES": ["Comedy", "Comedy|Drama", "Horror", "Horror|Thriller", "Horror", None],
        }
    )
    return Dataset(df, items=items, item_schema=SCHEMA)


def fit(data: Dataset, **hp) -> SimilarItems:
    hp = {"min_cointeraction_count": 2, "max_user_history_length_percentile": 1.0, **hp}
    return SimilarItems(**hp).fit(data, TrainingOptions())


def related_ids(rec: SimilarItems, item: str, k: int = 5) -> list[str]:
    pos = list(rec.item_ids).index(item)
    idx, val = rec.related(pos, k)
    assert list(val) == sorted(val, reverse=True) and (val > 0).all()
    return [str(rec.item_ids[i]) for i in idx]


def test_co_interactions_rank_first_and_an_item_is_never_its_own_neighbour():
    rec = fit(make_data())
    assert related_ids(rec, "a")[0] == "b"
    assert related_ids(rec, "c")[0] == "d"
    for item in ("a", "b", "c", "d", "cold"):
        assert item not in related_ids(rec, item)


def test_cold_item_gets_metadata_neighbours_and_bare_item_gets_none():
    rec = fit(make_data())
    cold = related_ids(rec, "cold")
    assert set(cold) == {"c", "d"}  # the Horror items, by metadata alone
    assert cold[0] == "c"  # exactly Horror beats Horror|Thriller
    assert related_ids(rec, "bare") == []
    # and the cold item appears among the Horror items' neighbours (after their co-item)
    assert related_ids(rec, "c")[:2] == ["d", "cold"]


def test_metadata_weight_zero_keeps_warm_items_on_co_interactions_only():
    rec = fit(make_data(), metadata_weight=0.0)
    assert related_ids(rec, "c") == ["d"]
    assert set(related_ids(rec, "cold")) == {"c", "d"}  # cold items still use metadata


def test_user_scores_follow_neighbours():
    data = make_data()
    rec = fit(data)
    idx = {i: k for k, i in enumerate(rec.item_ids)}
    s = rec.score(np.array([0]), [np.array([idx["a"]])])[0]
    s[idx["a"]] = -np.inf
    assert rec.item_ids[int(s.argmax())] == "b"


def test_update_adds_new_item_with_metadata_neighbours_and_round_trips(tmp_path):
    data = make_data()
    rec = fit(data)
    storage = Storage(str(tmp_path))
    rec.save(storage, "v")
    loaded, _ = load_model(storage, "v")
    np.testing.assert_array_equal(loaded.neighbours.toarray(), rec.neighbours.toarray())
    items = pd.concat(
        [
            data.items,
            pd.DataFrame({"ITEM_ID": ["new-comedy", "new-bare"], "GENRES": ["Comedy", None]}),
        ],
        ignore_index=True,
    )
    before = loaded.neighbours.toarray()
    report = loaded.add_items(
        np.array(["new-comedy", "new-bare"], dtype=object), items, NewItemOptions()
    )
    assert report["added"] == 2 and report["from_neighbours"] == 1 and report["fallback"] == 1
    assert report["fallback_items"] == [{"item_id": "new-bare", "reason": "no metadata neighbour"}]
    assert related_ids(loaded, "new-comedy")[0] == "a"  # exactly Comedy first
    assert related_ids(loaded, "new-bare") == []
    assert "new-comedy" in related_ids(loaded, "a")
    # existing co-interaction similarities are untouched
    after = loaded.neighbours.toarray()[: len(before), : len(before)]
    np.testing.assert_array_equal(after, before)
    loaded.save(storage, "r")
    again, _ = load_model(storage, "r")
    assert related_ids(again, "new-comedy") == related_ids(loaded, "new-comedy")


def test_popularity_exponent_puts_popular_neighbours_first_among_equally_similar():
    # "rare" and "popular" have exactly the cold item's genre; rare comes first in the
    # catalogue, so without the exponent the tie goes to it
    pairs = [(f"r{i}", "rare") for i in range(2)] + [(f"p{i}", "popular") for i in range(9)]
    df = pd.DataFrame(pairs, columns=["USER_ID", "ITEM_ID"])
    df["TIMESTAMP"] = np.arange(len(df))
    df["EVENT_TYPE"] = "click"
    items = pd.DataFrame({"ITEM_ID": ["rare", "popular", "cold"], "GENRES": ["Jazz"] * 3})
    data = Dataset(df, items=items, item_schema=SCHEMA)
    assert related_ids(fit(data), "cold") == ["rare", "popular"]
    assert related_ids(fit(data, metadata_popularity_exponent=1.0), "cold") == ["popular", "rare"]
    # a new item added by the update is ranked the same way
    rec = fit(data, metadata_popularity_exponent=1.0)
    more = pd.concat([items, pd.DataFrame({"ITEM_ID": ["new"], "GENRES": ["Jazz"]})])
    rec.add_items(np.array(["new"], dtype=object), more, NewItemOptions())
    assert related_ids(rec, "new")[:2] == ["popular", "rare"]
