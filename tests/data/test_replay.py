"""Replay: history lands as daily drops; nothing after --until; reruns write the same files."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from recsys.data.sources.replay import replay
from recsys.errors import DataError


def _day(ts):
    return pd.to_datetime(ts, unit="s", utc=True).date()


def test_replay_layout_and_cutoff(local_storage, synthetic_data):
    inter = synthetic_data.interactions
    days = sorted({_day(t) for t in inter["TIMESTAMP"]})
    until = days[len(days) // 2]
    summary = replay(local_storage, synthetic_data, "synthetic", until, days=5)
    keys = local_storage.find("landing/synthetic/interactions")
    drop_days = sorted(date.fromisoformat(k.split("dt=")[1][:10]) for k in keys)
    assert drop_days[-1] <= until
    assert len(drop_days) <= 6  # initial history drop + at most 5 daily drops
    landed = pd.concat([pd.read_csv(local_storage.path(k)) for k in keys], ignore_index=True)
    expected = inter[[_day(t) <= until for t in inter["TIMESTAMP"]]]
    assert len(landed) == len(expected) == summary["interactions"]
    assert max(_day(t) for t in landed["TIMESTAMP"]) <= until


def test_items_arrive_on_their_creation_day(local_storage, synthetic_data):
    items = synthetic_data.items
    days = sorted({_day(t) for t in synthetic_data.interactions["TIMESTAMP"]})
    until = days[-5]
    replay(local_storage, synthetic_data, "synthetic", until, days=10)
    keys = local_storage.find("landing/synthetic/items")
    landed = pd.concat([pd.read_csv(local_storage.path(k)) for k in keys], ignore_index=True)
    created = items.set_index("ITEM_ID")["CREATION_TIMESTAMP"].map(_day)
    assert set(landed["ITEM_ID"]) == set(created[created <= until].index)
    for key in keys:
        drop = date.fromisoformat(key.split("dt=")[1][:10])
        ids = pd.read_csv(local_storage.path(key))["ITEM_ID"]
        # items created inside the window land on their own day; older ones in the first drop
        assert all(created[i] == drop or created[i] < drop for i in ids)


def test_rerun_writes_identical_files(local_storage, synthetic_data):
    until = sorted({_day(t) for t in synthetic_data.interactions["TIMESTAMP"]})[-1]
    replay(local_storage, synthetic_data, "synthetic", until)
    first = {k: local_storage.read_bytes(k) for k in local_storage.find("landing")}
    replay(local_storage, synthetic_data, "synthetic", until)
    assert {k: local_storage.read_bytes(k) for k in local_storage.find("landing")} == first


def test_until_before_any_data_is_an_error(local_storage, synthetic_data):
    with pytest.raises(DataError, match="no interactions on or before 2000-01-01"):
        replay(local_storage, synthetic_data, "synthetic", "2000-01-01")
