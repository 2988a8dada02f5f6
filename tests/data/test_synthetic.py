"""Synthetic generator: deterministic, and carrying the structure recommenders should find."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.data.sources import synthetic
from recsys.data.sources.synthetic import generate
from recsys.errors import ConfigError

START = int(pd.Timestamp("2024-01-01", tz="UTC").timestamp())
END = START + 60 * 86_400


@pytest.fixture(scope="module")
def data():
    return generate()


def test_shapes_and_dtypes(data) -> None:
    inter, items, users = data.interactions, data.items, data.users
    assert len(inter) == 5000 and len(items) == 300 and len(users) == 200
    assert list(inter.columns) == [
        "USER_ID",
        "ITEM_ID",
        "TIMESTAMP",
        "EVENT_TYPE",
        "EVENT_VALUE",
        "IMPRESSION",
    ]
    assert list(items.columns) == ["ITEM_ID", "GENRES", "PRICE", "CREATION_TIMESTAMP", "TITLE"]
    assert list(users.columns) == ["USER_ID", "SEGMENT"]
    assert inter["TIMESTAMP"].dtype == "int64" and inter["EVENT_VALUE"].dtype == "float64"
    assert items["CREATION_TIMESTAMP"].dtype == "int64" and items["PRICE"].dtype == "float64"
    for frame, column in [(inter, "USER_ID"), (inter, "ITEM_ID"), (items, "ITEM_ID")]:
        assert frame[column].dtype == "str"
    assert items["ITEM_ID"].tolist()[:2] == ["i0", "i1"] and users["USER_ID"].iloc[0] == "u0"
    assert set(inter["ITEM_ID"]) <= set(items["ITEM_ID"])
    assert set(inter["USER_ID"]) == set(users["USER_ID"])
    assert set(users["SEGMENT"]) <= {"casual", "regular", "power"}
    assert (items["PRICE"] > 0).all()
    assert items["TITLE"].str.len().gt(0).all()


def test_same_seed_same_data_other_seed_differs(data) -> None:
    again = generate()
    for name, frame in data.frames().items():
        pd.testing.assert_frame_equal(frame, again.frames()[name])
    other = generate(seed=1)
    assert not other.interactions.equals(data.interactions)
    assert not other.items.equals(data.items)


def test_time_order_and_window(data) -> None:
    ts = data.interactions["TIMESTAMP"]
    assert ts.is_monotonic_increasing
    assert ts.min() >= START and ts.max() < END


def test_no_interaction_before_item_exists(data) -> None:
    created = data.items.set_index("ITEM_ID")["CREATION_TIMESTAMP"]
    inter = data.interactions
    assert (inter["TIMESTAMP"].to_numpy() >= inter["ITEM_ID"].map(created).to_numpy()).all()


def test_items_arrive_over_the_period(data) -> None:
    created = data.items["CREATION_TIMESTAMP"]
    existing = (created <= START).mean()
    assert 0.35 < existing < 0.65
    later = created[created > START]
    assert later.max() < END
    # Arrivals spread over the period: each half of it gets a fair share.
    assert 0.3 < (later < START + 30 * 86_400).mean() < 0.7


def test_every_user_has_two_interactions(data) -> None:
    counts = data.interactions.groupby("USER_ID").size()
    assert len(counts) == 200 and counts.min() >= 2


def test_popularity_is_skewed(data) -> None:
    counts = data.interactions["ITEM_ID"].value_counts()
    top = counts.head(len(data.items) // 10).sum()
    assert top / len(data.interactions) > 0.30


def test_genre_affinity(data) -> None:
    inter = data.interactions.merge(data.items[["ITEM_ID", "GENRES"]], on="ITEM_ID")
    exploded = inter.assign(GENRE=inter["GENRES"].str.split("|")).explode("GENRE")
    overall_share = exploded["GENRE"].value_counts() / len(inter)  # interactions touching g
    per_user = exploded.groupby(["USER_ID", "GENRE"]).size()
    n_per_user = inter.groupby("USER_ID").size()
    active = n_per_user[n_per_user >= 10].index
    ratios = []
    top_shares = []
    for user in active:
        genre_counts = per_user.loc[user]
        top_genre = genre_counts.idxmax()
        share = genre_counts.max() / n_per_user[user]
        top_shares.append(share)
        ratios.append(share / overall_share[top_genre])
    assert len(active) > 50
    assert np.mean(top_shares) > 0.6
    assert np.median(ratios) > 2.0  # far above what a genre gets over everyone


def test_event_types(data) -> None:
    inter = data.interactions
    shares = inter["EVENT_TYPE"].value_counts(normalize=True)
    assert set(shares.index) == {"click", "purchase"}
    assert shares["click"] > 0.85 and shares["purchase"] > 0.01
    clicks = inter[inter["EVENT_TYPE"] == "click"]
    assert (clicks["EVENT_VALUE"] == 1.0).all()
    purchases = inter[inter["EVENT_TYPE"] == "purchase"]
    price = data.items.set_index("ITEM_ID")["PRICE"]
    assert np.allclose(purchases["EVENT_VALUE"], purchases["ITEM_ID"].map(price))


def test_item_genres(data) -> None:
    genres = data.items["GENRES"].str.split("|")
    assert genres.str.len().between(1, 3).all()
    assert all(len(set(g)) == len(g) for g in genres)
    assert set(genres.explode()) == {f"g{i}" for i in range(8)}


def test_impressions_contain_the_item_and_existing_items(data) -> None:
    inter = data.interactions
    slates = inter["IMPRESSION"].str.split("|")
    assert slates.str.len().between(3, 8).all()
    assert all(item in slate for item, slate in zip(inter["ITEM_ID"], slates, strict=True))
    assert all(len(set(slate)) == len(slate) for slate in slates)
    created = data.items.set_index("ITEM_ID")["CREATION_TIMESTAMP"]
    shown = pd.DataFrame({"ts": inter["TIMESTAMP"], "item": slates}).explode("item")
    assert (shown["ts"].to_numpy() >= shown["item"].map(created).to_numpy()).all()
    # The clicked item is not always in the same slot.
    positions = [slate.index(item) for item, slate in zip(inter["ITEM_ID"], slates, strict=True)]
    assert len(set(positions)) > 3


def test_without_impressions() -> None:
    data = generate(n_users=20, n_items=30, n_interactions=100, impressions=False)
    assert "IMPRESSION" not in data.interactions.columns
    assert len(data.interactions) == 100


def test_tiny_catalogue() -> None:
    data = generate(n_users=5, n_items=3, n_interactions=20, n_genres=2, days=5)
    inter = data.interactions
    assert len(inter) == 20
    slates = inter["IMPRESSION"].str.split("|")
    assert all(item in slate for item, slate in zip(inter["ITEM_ID"], slates, strict=True))
    assert all(len(set(slate)) == len(slate) for slate in slates)


def test_rejects_too_few_interactions() -> None:
    with pytest.raises(ConfigError, match="at least 2 per user"):
        generate(n_users=100, n_interactions=150)
    with pytest.raises(ConfigError):
        generate(n_items=0)


# -- streaming to CSV ---------------------------------------------------------------------


def _read_csvs(paths) -> dict[str, pd.DataFrame]:
    return {name: pd.read_csv(path) for name, path in paths.items()}


def test_written_csvs_hold_what_generate_returns(tmp_path) -> None:
    kwargs = dict(n_users=60, n_items=80, n_interactions=900, seed=5)
    paths = synthetic.write_synthetic(tmp_path, **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "interactions.csv",
        "items.csv",
        "users.csv",
    ]
    written = _read_csvs(paths)
    for name, frame in generate(**kwargs).frames().items():
        pd.testing.assert_frame_equal(written[name], frame, check_dtype=False)


def test_blocks_hold_whole_users_and_streaming_is_deterministic(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(synthetic, "BLOCK_ROWS", 500)
    monkeypatch.setattr(synthetic, "WRITE_ROWS", 70)
    kwargs = dict(n_users=300, n_items=250, n_interactions=6000, seed=9)
    inter = _read_csvs(synthetic.write_synthetic(tmp_path / "a", **kwargs))["interactions"]
    synthetic.write_synthetic(tmp_path / "b", **kwargs)
    for name in ("interactions", "items", "users"):
        assert (tmp_path / "a" / f"{name}.csv").read_bytes() == (
            tmp_path / "b" / f"{name}.csv"
        ).read_bytes()
    # Several blocks, each in time order, each user's rows in one block.
    ts = inter["TIMESTAMP"].to_numpy()
    block_starts = np.flatnonzero(np.diff(ts) < 0) + 1
    assert len(block_starts) >= 10
    block = np.searchsorted(block_starts, np.arange(len(inter)), side="right")
    assert (inter.assign(block=block).groupby("USER_ID")["block"].nunique() == 1).all()
    # generate() draws the same data and sorts the blocks together.
    frames = generate(**kwargs)
    expected = inter.sort_values("TIMESTAMP", kind="stable", ignore_index=True)
    pd.testing.assert_frame_equal(expected, frames.interactions, check_dtype=False)
    assert len(frames.items) == 250 and frames.items["ITEM_ID"].is_unique


def test_write_synthetic_rejects_bad_sizes_and_writes_nothing(tmp_path) -> None:
    with pytest.raises(ConfigError, match="at least 2 per user"):
        synthetic.write_synthetic(tmp_path / "out", n_users=100, n_interactions=150)
    assert not (tmp_path / "out").exists()


def test_command_line_writes_the_files(tmp_path, capsys) -> None:
    code = synthetic.main(
        [str(tmp_path), "--items", "50", "--users", "40", "--interactions", "400", "--seed", "3"]
    )
    assert code == 0
    written = _read_csvs({n: tmp_path / f"{n}.csv" for n in ("interactions", "items", "users")})
    assert [len(written[n]) for n in ("interactions", "items", "users")] == [400, 50, 40]
    assert "interactions:" in capsys.readouterr().out
    assert synthetic.main([str(tmp_path / "bad"), "--users", "10", "--interactions", "5"]) == 2
