"""Snapshot validation: the minimum-data gate, declared event types, the current pointer."""

from __future__ import annotations

import pytest

from recsys.data.imports import current_pointer, run_import
from recsys.errors import ValidationError
from recsys.schema import DatasetGroup
from recsys.validation import validate_snapshot
from tests.conftest import write_drop

HEADER = "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,EVENT_VALUE\n"
T0 = 1704067200


def land(storage, n_users: int, per_user: int, event: str = "click", day="2024-01-01"):
    lines = [
        f"u{u},i{(u + k) % 50},{T0 + k},{event},1\n"
        for u in range(n_users)
        for k in range(per_user)
    ]
    write_drop(storage, "synthetic", "interactions", day, HEADER + "".join(lines))


@pytest.fixture
def group():
    return DatasetGroup.load("synthetic")


def test_enough_data_passes_and_moves_current_pointer(local_storage, group):
    land(local_storage, n_users=50, per_user=20)
    sid = run_import(local_storage, group, "2024-01-02")["snapshot_id"]
    report = validate_snapshot(local_storage, group, sid)
    assert report["passed"]
    assert local_storage.read_json(current_pointer("synthetic"))["snapshot_id"] == sid
    stored = local_storage.read_json(f"datasets/synthetic/snapshots/{sid}/validation.json")
    assert {c["check"] for c in stored["checks"]} >= {
        "interactions.minimum_data",
        "interactions.required_columns",
        "interactions.column_types",
    }


def test_too_little_data_fails_with_counts_and_keeps_pointer(local_storage, group):
    land(local_storage, n_users=50, per_user=20)
    good = run_import(local_storage, group, "2024-01-02")["snapshot_id"]
    validate_snapshot(local_storage, group, good)
    # A later FULL import that only sees a tiny drop (the big one deleted upstream).
    local_storage.delete_prefix("landing/synthetic/interactions")
    land(local_storage, n_users=10, per_user=3, day="2024-01-02")
    small = run_import(local_storage, group, "2024-01-03")["snapshot_id"]
    with pytest.raises(ValidationError) as err:
        validate_snapshot(local_storage, group, small)
    msg = str(err.value)
    assert "found 30 interactions and 10 users with >= 2" in msg
    assert "need 1000 and 25" in msg
    assert local_storage.read_json(current_pointer("synthetic"))["snapshot_id"] == good
    report = local_storage.read_json(f"datasets/synthetic/snapshots/{small}/validation.json")
    assert report["passed"] is False


def test_minimum_data_counts_after_event_filter(local_storage, group):
    land(local_storage, n_users=50, per_user=20, event="click")
    sid = run_import(local_storage, group, "2024-01-02")["snapshot_id"]
    with pytest.raises(ValidationError, match="found 0 interactions"):
        validate_snapshot(local_storage, group, sid, event_types=("purchase",))


def test_undeclared_event_type_fails_the_import(local_storage, group):
    land(local_storage, n_users=50, per_user=20, event="hover")
    with pytest.raises(ValidationError) as err:
        run_import(local_storage, group, "2024-01-02")
    msg = str(err.value)
    assert "row 2, column EVENT_TYPE: 'hover' is not a declared EVENT_TYPE" in msg
    assert "(declared: click, purchase)" in msg
    assert "1000 of 1000 interactions records rejected (100.00%)" in msg
    assert local_storage.find("datasets/synthetic/snapshots") == []


def test_backfill_does_not_move_pointer_backwards(local_storage, group):
    land(local_storage, n_users=50, per_user=20)
    late = run_import(local_storage, group, "2024-01-05")["snapshot_id"]
    validate_snapshot(local_storage, group, late)
    early = run_import(local_storage, group, "2024-01-03")["snapshot_id"]
    validate_snapshot(local_storage, group, early)
    assert local_storage.read_json(current_pointer("synthetic"))["snapshot_id"] == late
