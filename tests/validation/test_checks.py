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


def test_report_holds_gx_result_and_one_entry_per_check(local_storage, group, caplog):
    land(local_storage, n_users=50, per_user=20)
    sid = run_import(local_storage, group, "2024-01-02")["snapshot_id"]
    with caplog.at_level("INFO"):
        validate_snapshot(local_storage, group, sid)
    prefix = f"datasets/synthetic/snapshots/{sid}"
    report = local_storage.read_json(f"{prefix}/validation.json")
    gx = local_storage.read_json(f"{prefix}/gx_result.json")
    assert gx["interactions"]["success"] is True
    kinds = {r["expectation_config"]["type"] for r in gx["interactions"]["results"]}
    assert {
        "expect_column_values_to_not_be_null",
        "expect_column_value_lengths_to_be_between",
        "expect_column_values_to_be_between",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_not_match_regex",
    } <= kinds
    assert report["great_expectations"]["success"] == {"interactions": True}
    assert report["summary"]["failed"] == 0
    assert all(c["severity"] in ("error", "warning") for c in report["checks"])
    logged = [r.getMessage() for r in caplog.records if "validation" in r.getMessage()]
    assert len(logged) == len(report["checks"]) + 1  # one line per check, then the verdict
    assert any("interactions.minimum_data: found 1000 interactions" in m for m in logged)


def test_gx_suite_catches_what_the_import_did_not_see(group):
    import pandas as pd

    from recsys.validation.suites import run_suites

    frame = pd.DataFrame(
        {
            "USER_ID": pd.Series(["u1", "u2"], dtype="string"),
            "ITEM_ID": pd.Series(["i1", "i" * 300], dtype="string"),
            "TIMESTAMP": pd.Series([5, 1700000000], dtype="int64"),
            "EVENT_TYPE": pd.Series(["click", "hover"], dtype="string"),
            "EVENT_VALUE": pd.Series([1.0, None], dtype="float64"),
            "IMPRESSION": pd.Series(["a||b", None], dtype="string"),
        }
    )
    checks, results = run_suites(group, {"interactions": frame})
    failed = {c["check"]: c["message"] for c in checks if not c["passed"]}
    assert set(failed) == {
        "interactions.gx.expect_column_value_lengths_to_be_between(ITEM_ID)",
        "interactions.gx.expect_column_values_to_be_between(TIMESTAMP)",
        "interactions.gx.expect_column_values_to_be_in_set(EVENT_TYPE)",
        "interactions.gx.expect_column_values_to_not_match_regex(IMPRESSION)",
    }
    assert failed["interactions.gx.expect_column_values_to_be_in_set(EVENT_TYPE)"].startswith(
        "1 of 2 values unexpected (e.g. 'hover')"
    )
    assert results["interactions"]["success"] is False


def test_unknown_items_and_quarantined_rows_are_warnings_with_counts(local_storage, group):
    from recsys import pipeline

    land(local_storage, n_users=50, per_user=20)  # items i0..i49
    write_drop(
        local_storage,
        "synthetic",
        "items",
        "2024-01-01",
        "ITEM_ID,PRICE\n" + "".join(f"i{i},1\n" for i in range(10)) + "i99,notaprice\n",
    )
    lenient = DatasetGroup.from_dict(
        "synthetic", {**group.raw, "validation": {"max_reject_fraction": 0.5}}
    )
    sid = run_import(local_storage, lenient, "2024-01-02")["snapshot_id"]
    result = pipeline.validate("synthetic", sid, storage=local_storage)
    assert result["passed"] is True
    assert result["summary"]["rejected"] == {"interactions": 0, "items": 1}
    assert result["warnings"] == [
        f"items.rejected_rows: 1 rows quarantined by the import (within the thresholds), in "
        f"{local_storage.uri(f'datasets/synthetic/rejects/{sid}')}",
        "interactions.items_known: 800 interactions refer to 40 items missing from the items "
        "dataset (e.g. i10, i11, i12, i13, i14)",
    ]
    # a warning does not stop the pointer
    assert local_storage.read_json(current_pointer("synthetic"))["snapshot_id"] == sid
