"""Interactions are validated batch by batch: the same report as one whole-frame pass.

The snapshots here have their interactions file replaced by one written directly, so that it
can hold what the import would quarantine (an undeclared EVENT_TYPE, a TIMESTAMP out of range,
an empty USER_ID, an over-long ITEM_ID, a malformed IMPRESSION).
"""

from __future__ import annotations

import contextlib

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys.data.imports import run_import, snapshot_prefix
from recsys.data.stream import snapshot_frame_schema
from recsys.errors import ValidationError
from recsys.schema import DatasetGroup
from recsys.validation import checks as checks_module
from recsys.validation import validate_snapshot
from recsys.validation.checks import check_frames
from recsys.validation.suites import run_suites
from tests.conftest import write_drop

T0 = 1704067200
HEADER = "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,EVENT_VALUE\n"


@pytest.fixture
def group():
    return DatasetGroup.load("synthetic")


def interactions(n: int, n_users: int = 60) -> pd.DataFrame:
    """``n`` valid interactions of ``n_users`` users over items i0..i49, in time order."""
    dtypes, _ = snapshot_frame_schema(DatasetGroup.load("synthetic").schemas["interactions"])
    rows = {
        "USER_ID": [f"u{r % n_users}" for r in range(n)],
        "ITEM_ID": [f"i{r % 50}" for r in range(n)],
        "TIMESTAMP": [T0 + r for r in range(n)],
        "EVENT_TYPE": ["purchase" if r % 3 == 0 else "click" for r in range(n)],
        "EVENT_VALUE": [float(r % 5) for r in range(n)],
        "IMPRESSION": ["i1|i2" if r % 2 else None for r in range(n)],
    }
    return pd.DataFrame({c: pd.Series(rows[c], dtype=dtypes[c]) for c in dtypes})


def snapshot_with(storage, group, frame: pd.DataFrame, items: int | None = 10) -> str:
    """A snapshot (imported, with items i0..i<items-1>) whose interactions file is ``frame``."""
    lines = [f"u{u},i{u % 50},{T0 + k},click,1\n" for u in range(50) for k in range(20)]
    write_drop(storage, "synthetic", "interactions", "2024-01-01", HEADER + "".join(lines))
    if items:
        body = "ITEM_ID,PRICE\n" + "".join(f"i{i},1\n" for i in range(items))
        write_drop(storage, "synthetic", "items", "2024-01-01", body)
    sid = run_import(storage, group, "2024-01-02")["snapshot_id"]
    _, schema = snapshot_frame_schema(group.schemas["interactions"])
    table = pa.Table.from_pandas(frame, schema, preserve_index=False)
    path = storage.path(f"{snapshot_prefix('synthetic', sid)}/interactions.parquet")
    pq.write_table(table, path, row_group_size=256 * 1024)
    return sid


def validate(storage, group, sid: str, **kwargs) -> tuple[dict, dict]:
    """validation.json and gx_result.json of a validation that may fail (each call a first
    validation: the records are write-once, so an earlier call's are removed first)."""
    prefix = snapshot_prefix("synthetic", sid)
    storage.delete(f"{prefix}/validation.json")
    storage.delete(f"{prefix}/gx_result.json")
    with contextlib.suppress(ValidationError):
        validate_snapshot(storage, group, sid, **kwargs)
    return storage.read_json(f"{prefix}/validation.json"), storage.read_json(
        f"{prefix}/gx_result.json"
    )


def comparable(gx: dict) -> dict:
    """GX results without what differs from run to run (ids, times, batch fingerprints)."""
    out = {}
    for dtype, result in gx.items():
        results = [
            {
                "success": r["success"],
                "type": r["expectation_config"]["type"],
                "kwargs": r["expectation_config"]["kwargs"],
                "result": r["result"],
                "exception_info": r["exception_info"],
            }
            for r in result["results"]
        ]
        out[dtype] = {
            "success": result["success"],
            "statistics": result["statistics"],
            "results": results,
        }
    return out


def messy(n: int) -> pd.DataFrame:
    """Valid interactions with bad values scattered over every 1,000-row batch (more than GX's
    20 examples of some)."""
    frame = interactions(n)
    for r in range(7, n, 97):
        frame.loc[r, "EVENT_TYPE"] = "hover" if r % 2 else "view"
    for r in range(11, n, 301):
        frame.loc[r, "TIMESTAMP"] = 5
    for r in (150, 1999, 3001):
        frame.loc[r, "USER_ID"] = None
    for r in (400, 2400):
        frame.loc[r, "ITEM_ID"] = "x" * 300
    for r in range(13, n, 501):
        frame.loc[r, "IMPRESSION"] = "a||b"
    frame.loc[2222, "EVENT_TYPE"] = None
    return frame


def test_batches_give_the_whole_frame_report(local_storage, group, monkeypatch):
    frame = messy(3500)
    sid = snapshot_with(local_storage, group, frame)
    filters = {"event_types": ("click",), "event_value_threshold": 1.0}

    monkeypatch.setattr(checks_module, "BATCH_ROWS", 10**9)
    whole_report, whole_gx = validate(local_storage, group, sid, **filters)
    monkeypatch.setattr(checks_module, "BATCH_ROWS", 1000)
    report, gx = validate(local_storage, group, sid, **filters)

    assert whole_gx["interactions"]["meta"]["recsys_batches"]["batches"] == 1
    assert gx["interactions"]["meta"]["recsys_batches"] == {"batches": 4, "batch_rows": 1000}
    assert report["checks"] == whole_report["checks"]
    assert report["passed"] is whole_report["passed"] is False
    assert report["summary"] == whole_report["summary"]
    assert report["great_expectations"] == whole_report["great_expectations"]
    assert comparable(gx) == comparable(whole_gx)

    # ... and the same as the whole-frame functions on the frames read whole.
    items = local_storage.read_parquet(f"{snapshot_prefix('synthetic', sid)}/items.parquet")
    frames = {"interactions": frame, "items": items}
    old_checks, old_gx = run_suites(group, frames)
    old_checks += check_frames(group, frames, ("click",), 1.0)
    assert comparable(gx) == comparable(old_gx)
    stored = [c for c in report["checks"] if "rejected_rows" not in c["check"]]
    stored = [c for c in stored if not c["check"].endswith(".duplicates")]
    assert stored == old_checks

    failed = {c["check"]: c for c in report["checks"] if not c["passed"]}
    assert set(failed) == {
        "interactions.gx.expect_column_values_to_not_be_null(USER_ID)",
        "interactions.gx.expect_column_values_to_not_be_null(EVENT_TYPE)",
        "interactions.gx.expect_column_value_lengths_to_be_between(ITEM_ID)",
        "interactions.gx.expect_column_values_to_be_between(TIMESTAMP)",
        "interactions.gx.expect_column_values_to_be_in_set(EVENT_TYPE)",
        "interactions.gx.expect_column_values_to_not_match_regex(IMPRESSION)",
        "interactions.USER_ID_not_null",
        "interactions.event_types_declared",
        "interactions.items_known",
    }
    undeclared = (3500 - 7 + 96) // 97
    assert failed["interactions.event_types_declared"]["rows"] == undeclared + 1  # + the null
    in_set = next(
        r["result"]
        for r in gx["interactions"]["results"]
        if r["expectation_config"]["type"] == "expect_column_values_to_be_in_set"
    )
    assert in_set["unexpected_count"] == undeclared and in_set["missing_count"] == 1
    assert in_set["element_count"] == 3500
    assert len(in_set["partial_unexpected_list"]) == 20  # 37 found, GX's 20 examples kept
    assert in_set["partial_unexpected_index_list"] == list(range(7, 3500, 97))[:20]


def test_a_bad_value_in_a_later_batch_is_caught_with_summed_counts(
    local_storage, group, monkeypatch
):
    frame = interactions(3000)
    frame.loc[1500, "EVENT_TYPE"] = "hover"  # second batch
    frame.loc[[2600, 2999], "EVENT_TYPE"] = "hover"  # third batch
    frame.loc[2999, "TIMESTAMP"] = 4_200_000_000  # after 2100
    sid = snapshot_with(local_storage, group, frame)
    monkeypatch.setattr(checks_module, "BATCH_ROWS", 1000)
    with pytest.raises(ValidationError) as err:
        validate_snapshot(local_storage, group, sid)
    msg = str(err.value)
    assert (
        "interactions.gx.expect_column_values_to_be_in_set(EVENT_TYPE): 3 of 3000 values "
        "unexpected (e.g. 'hover', 'hover', 'hover')" in msg
    )
    assert (
        "interactions.gx.expect_column_values_to_be_between(TIMESTAMP): 1 of 3000 values "
        "unexpected (e.g. 4200000000)" in msg
    )
    assert (
        "interactions.event_types_declared: 3 interactions with undeclared EVENT_TYPE "
        "(declared: click, purchase; found: hover)" in msg
    )
    report, gx = validate(local_storage, group, sid)
    assert gx["interactions"]["meta"]["recsys_batches"]["batches"] == 3
    in_set = next(
        r["result"]
        for r in gx["interactions"]["results"]
        if r["expectation_config"]["type"] == "expect_column_values_to_be_in_set"
    )
    assert in_set["partial_unexpected_index_list"] == [1500, 2600, 2999]
    assert in_set["partial_unexpected_counts"] == [{"value": "hover", "count": 3}]
    assert in_set["unexpected_percent"] == pytest.approx(0.1)
    assert gx["interactions"]["success"] is False
    assert gx["interactions"]["statistics"]["unsuccessful_expectations"] == 2
    assert report["great_expectations"]["success"] == {"interactions": False, "items": True}
    # the per-user counts add up across batches: 60 users with 50 rows each
    minimum = next(c for c in report["checks"] if c["check"] == "interactions.minimum_data")
    assert minimum["interactions"] == 3000 and minimum["users_with_2"] == 60


def test_minimum_data_sums_a_users_rows_across_batches(local_storage, group, monkeypatch):
    # 1,200 rows of 30 users in time order (users cycle): with batches of 25 rows, no user has
    # two rows in one batch; the check must still count 40 per user.
    sid = snapshot_with(local_storage, group, interactions(1200, n_users=30))
    monkeypatch.setattr(checks_module, "BATCH_ROWS", 25)
    report = validate_snapshot(local_storage, group, sid)
    minimum = next(c for c in report["checks"] if c["check"] == "interactions.minimum_data")
    assert minimum["passed"] and minimum["users_with_2"] == 30
    assert minimum["interactions"] == 1200


def test_an_empty_interactions_file_fails_the_minimum(local_storage, group):
    sid = snapshot_with(local_storage, group, interactions(0))
    with pytest.raises(ValidationError, match="found 0 interactions and 0 users"):
        validate_snapshot(local_storage, group, sid)
