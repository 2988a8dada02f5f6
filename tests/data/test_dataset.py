"""Dataset: vocabularies, stable time order, histories, event filters, the user-item matrix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.data.dataset import Dataset


def frame(rows, value=None) -> pd.DataFrame:
    """rows: (user, item, timestamp, event_type)."""
    df = pd.DataFrame(
        {
            "USER_ID": pd.Series([r[0] for r in rows], dtype=str),
            "ITEM_ID": pd.Series([r[1] for r in rows], dtype=str),
            "TIMESTAMP": pd.Series([r[2] for r in rows], dtype="int64"),
            "EVENT_TYPE": pd.Series([r[3] for r in rows], dtype=str),
        }
    )
    if value is not None:
        df["EVENT_VALUE"] = pd.Series(value, dtype="float64")
    return df


# -- vocabularies ---------------------------------------------------------------------------
def test_item_ids_items_frame_first_then_unseen_interaction_items():
    inter = frame(
        [
            ("u1", "x", 1, "click"),
            ("u2", "b", 2, "click"),
            ("u1", "y", 3, "click"),
            ("u3", "x", 4, "click"),
            ("u2", "w", 5, "click"),
        ]
    )
    items = pd.DataFrame({"ITEM_ID": pd.Series(["c", "b", "a"], dtype=str)})
    data = Dataset(inter, items=items)
    assert data.item_ids.tolist() == ["c", "b", "a", "x", "y", "w"]
    assert data.n_items == 6
    assert data.item_ids.dtype == object


def test_item_ids_without_items_frame_in_order_of_appearance():
    inter = frame([("u1", "q", 1, "e"), ("u1", "p", 2, "e"), ("u2", "q", 3, "e")])
    assert Dataset(inter).item_ids.tolist() == ["q", "p"]


def test_numeric_item_ids_in_items_frame_match_string_interaction_ids():
    inter = frame([("u1", "20", 1, "e"), ("u1", "30", 2, "e")])
    items = pd.DataFrame({"ITEM_ID": pd.Series([10, 20], dtype="int64")})
    data = Dataset(inter, items=items)
    assert data.item_ids.tolist() == ["10", "20", "30"]
    assert data.item_codes.tolist() == [1, 2]


def test_user_ids_interactions_first_then_users_frame_only():
    inter = frame([("u2", "a", 1, "e"), ("u1", "a", 2, "e"), ("u2", "b", 3, "e")])
    users = pd.DataFrame({"USER_ID": pd.Series(["u9", "u1", "u8"], dtype=str)})
    data = Dataset(inter, users=users)
    assert data.user_ids.tolist() == ["u2", "u1", "u9", "u8"]
    assert data.n_users == 4


def test_codes_index_the_vocabularies():
    inter = frame([("u1", "b", 1, "e"), ("u2", "a", 2, "e"), ("u1", "c", 3, "e")])
    items = pd.DataFrame({"ITEM_ID": pd.Series(["a"], dtype=str)})
    data = Dataset(inter, items=items)
    assert data.item_ids.tolist() == ["a", "b", "c"]
    assert data.item_codes.tolist() == [1, 0, 2]
    assert data.user_codes.tolist() == [0, 1, 0]
    assert data.item_ids[data.item_codes].tolist() == data.interactions["ITEM_ID"].tolist()
    assert data.user_ids[data.user_codes].tolist() == data.interactions["USER_ID"].tolist()


# -- time order -----------------------------------------------------------------------------
def test_interactions_sorted_stably_by_timestamp():
    inter = frame(
        [
            ("u1", "i0", 5, "e"),
            ("u1", "i1", 1, "e"),
            ("u2", "i2", 5, "e"),
            ("u2", "i3", 1, "e"),
            ("u1", "i4", 3, "e"),
        ]
    )
    data = Dataset(inter)
    assert data.interactions["ITEM_ID"].tolist() == ["i1", "i3", "i4", "i0", "i2"]
    assert data.interactions["TIMESTAMP"].tolist() == [1, 1, 3, 5, 5]
    assert data.interactions.index.tolist() == [0, 1, 2, 3, 4]


def test_item_order_of_appearance_follows_time_order():
    # "late" comes first in the file but is the newest interaction.
    inter = frame([("u1", "late", 9, "e"), ("u1", "early", 1, "e")])
    assert Dataset(inter).item_ids.tolist() == ["early", "late"]


def test_user_histories_in_time_order_ties_in_file_order():
    inter = frame(
        [
            ("u1", "c", 7, "e"),
            ("u2", "a", 2, "e"),
            ("u1", "a", 3, "e"),
            ("u1", "b", 7, "e"),
            ("u2", "c", 1, "e"),
            ("u1", "a", 9, "e"),
        ]
    )
    users = pd.DataFrame({"USER_ID": pd.Series(["u3"], dtype=str)})
    items = pd.DataFrame({"ITEM_ID": pd.Series(["a", "b", "c"], dtype=str)})
    data = Dataset(inter, items=items, users=users)
    # Sorted: (u2,c,1) (u2,a,2) (u1,a,3) (u1,c,7) (u1,b,7) (u1,a,9)
    assert data.user_ids.tolist() == ["u2", "u1", "u3"]
    histories = data.user_histories()
    assert len(histories) == 3
    assert histories[0].tolist() == [2, 0]  # c, a
    assert histories[1].tolist() == [0, 2, 1, 0]  # a, c, b, a (c before b: file order)
    assert histories[2].tolist() == []  # only in the users dataset


# -- filters --------------------------------------------------------------------------------
def events_data() -> Dataset:
    inter = frame(
        [
            ("u1", "a", 1, "click"),
            ("u1", "b", 2, "purchase"),
            ("u2", "c", 3, "click"),
            ("u2", "a", 4, "rating"),
            ("u3", "d", 5, "rating"),
        ],
        value=[None, 10.0, 0.5, 4.0, 3.0],
    )
    return Dataset(inter)


def test_filter_by_event_type_keeps_vocabularies():
    data = events_data()
    out = data.filter_events(["click"])
    assert out.interactions["ITEM_ID"].tolist() == ["a", "c"]
    assert out.interactions["EVENT_TYPE"].tolist() == ["click", "click"]
    # "b", "d" and user "u3" only occur in filtered-out events: still in the vocabularies.
    assert out.item_ids.tolist() == ["a", "b", "c", "d"]
    assert out.user_ids.tolist() == ["u1", "u2", "u3"]
    assert out.item_codes.tolist() == [0, 2]
    assert out.user_codes.tolist() == [0, 1]
    # The original is untouched.
    assert len(data.interactions) == 5


def test_filter_by_several_event_types():
    out = events_data().filter_events(("purchase", "rating"))
    assert out.interactions["ITEM_ID"].tolist() == ["b", "a", "d"]


def test_filter_by_min_value_is_inclusive_and_drops_missing_values():
    data = events_data()
    out = data.filter_events(min_value=3.0)
    assert out.interactions["ITEM_ID"].tolist() == ["b", "a", "d"]  # 10, 4, 3 (3 >= 3)
    assert out.item_ids.tolist() == data.item_ids.tolist()
    assert out.user_ids.tolist() == data.user_ids.tolist()


def test_filter_by_type_and_value_together():
    out = events_data().filter_events(["rating"], min_value=3.5)
    assert out.interactions["ITEM_ID"].tolist() == ["a"]
    assert out.user_codes.tolist() == [1]


def test_min_value_without_event_value_column_filters_nothing():
    data = Dataset(frame([("u1", "a", 1, "click"), ("u2", "b", 2, "click")]))
    assert len(data.filter_events(min_value=100.0).interactions) == 2


def test_no_filter_keeps_everything():
    data = events_data()
    pd.testing.assert_frame_equal(data.filter_events().interactions, data.interactions)


def test_filtered_user_item_matrix_has_full_shape():
    out = events_data().filter_events(["purchase"])
    m = out.user_item_matrix()
    assert m.shape == (3, 4)
    assert m.nnz == 1
    assert m[0, 1] == 1.0


# -- subset ---------------------------------------------------------------------------------
def test_subset_keeps_vocabularies_and_order():
    data = events_data()
    out = data.subset(np.array([False, True, False, True, False]))
    assert out.interactions["ITEM_ID"].tolist() == ["b", "a"]
    assert out.interactions.index.tolist() == [0, 1]
    assert out.item_ids is data.item_ids
    assert out.user_ids is data.user_ids
    assert out.n_items == 4 and out.n_users == 3


# -- user-item matrix -----------------------------------------------------------------------
def test_user_item_matrix_counts_duplicates():
    inter = frame(
        [
            ("u1", "a", 1, "e"),
            ("u1", "a", 2, "e"),
            ("u2", "b", 3, "e"),
            ("u1", "a", 4, "e"),
            ("u1", "b", 5, "e"),
        ]
    )
    items = pd.DataFrame({"ITEM_ID": pd.Series(["z"], dtype=str)})
    users = pd.DataFrame({"USER_ID": pd.Series(["u0"], dtype=str)})
    data = Dataset(inter, items=items, users=users)
    m = data.user_item_matrix()
    assert isinstance(m, sp.csr_matrix | sp.csr_array)
    assert m.shape == (3, 3)  # users u1, u2, u0 × items z, a, b
    assert m.dtype == np.float32
    np.testing.assert_array_equal(
        m.toarray(),
        [
            [0, 3, 1],
            [0, 0, 1],
            [0, 0, 0],
        ],
    )
    assert m.nnz == 3  # duplicates summed, not stored twice
    assert m.sum() == pytest.approx(5.0)


# -- loading a snapshot ---------------------------------------------------------------------
def test_load_reads_ids_as_categoricals_and_equals_the_plain_frames(local_storage, landed):
    from recsys.data.dataset import read_interactions
    from recsys.data.imports import run_import, snapshot_prefix

    manifest = run_import(local_storage, "synthetic", f"{landed}T23:59:59+00:00")
    sid = manifest["snapshot_id"]
    loaded = Dataset.load(local_storage, "synthetic", sid)
    prefix = snapshot_prefix("synthetic", sid)
    plain = Dataset(
        local_storage.read_parquet(f"{prefix}/interactions.parquet"),
        local_storage.read_parquet(f"{prefix}/items.parquet"),
        local_storage.read_parquet(f"{prefix}/users.parquet"),
    )
    inter = loaded.interactions
    for column in ("USER_ID", "ITEM_ID", "EVENT_TYPE"):
        assert isinstance(inter[column].dtype, pd.CategoricalDtype), column
        assert inter[column].astype(str).tolist() == plain.interactions[column].tolist()
    assert inter["IMPRESSION"].tolist() == plain.interactions["IMPRESSION"].tolist()
    assert loaded.item_ids.tolist() == plain.item_ids.tolist()
    assert loaded.user_ids.tolist() == plain.user_ids.tolist()
    assert loaded.item_ids.dtype == object
    np.testing.assert_array_equal(loaded.item_codes, plain.item_codes)
    np.testing.assert_array_equal(loaded.user_codes, plain.user_codes)
    for a, b in zip(loaded.user_histories(), plain.user_histories(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert (loaded.user_item_matrix() != plain.user_item_matrix()).nnz == 0
    bought = loaded.filter_events(["purchase"], min_value=10.0)
    expected = plain.filter_events(["purchase"], min_value=10.0)
    assert 0 < len(bought.interactions) == len(expected.interactions)
    np.testing.assert_array_equal(bought.item_codes, expected.item_codes)
    assert bought.n_items == loaded.n_items  # the catalogue stays
    # Training leaves IMPRESSION on disk.
    lean = read_interactions(
        local_storage, f"{prefix}/interactions.parquet", exclude_columns=("IMPRESSION",)
    )
    assert "IMPRESSION" not in lean.columns and len(lean) == len(inter)


def test_categorical_subsets_keep_only_ids_that_occur():
    inter = frame([("u1", "x", 1, "e"), ("u2", "y", 2, "e"), ("u1", "z", 3, "f")])
    for column in ("USER_ID", "ITEM_ID", "EVENT_TYPE"):
        inter[column] = inter[column].astype("category")
    sub = inter[inter["EVENT_TYPE"] == "e"]  # "z" and "f" stay unused categories
    data = Dataset(sub)
    assert data.item_ids.tolist() == ["x", "y"] and data.user_ids.tolist() == ["u1", "u2"]
    assert data.item_codes.tolist() == [0, 1]
    assert len(data.filter_events(["f"]).interactions) == 0
