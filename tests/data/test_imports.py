"""Import jobs: landing drops → immutable snapshots, FULL and INCREMENTAL, as of a date."""

from __future__ import annotations

import pandas as pd
import pytest

from recsys.data.imports import (
    list_snapshots,
    read_manifest,
    run_import,
    visible_landing_files,
)
from recsys.errors import DataError
from recsys.schema import DatasetGroup
from tests.conftest import write_drop

HEADER = "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,EVENT_VALUE\n"
DAY1 = 1704067200  # 2024-01-01T00:00:00Z


def rows(*records: tuple[str, str, int, str]) -> str:
    return HEADER + "".join(f"{u},{i},{t},{e},1\n" for u, i, t, e in records)


@pytest.fixture
def group():
    return DatasetGroup.load("synthetic")


def mark_valid(storage, manifest):
    prefix = f"datasets/synthetic/snapshots/{manifest['snapshot_id']}"
    storage.write_json(f"{prefix}/validation.json", {"passed": True})


def test_drops_are_visible_once_their_day_has_ended(local_storage):
    write_drop(local_storage, "synthetic", "interactions", "2024-01-01", rows())
    write_drop(local_storage, "synthetic", "interactions", "2024-01-02", rows())
    local_storage.write_text("landing/synthetic/interactions/static.csv", rows())
    local_storage.write_text("landing/synthetic/interactions/notes.txt", "ignored")
    seen = visible_landing_files(
        local_storage, "synthetic", "interactions", pd.Timestamp("2024-01-02T00:00Z")
    )
    assert [f.key.split("/")[-2:] for f in seen] == [
        ["interactions", "static.csv"],
        ["dt=2024-01-01", "part-00000.csv"],
    ]


def test_full_import_writes_snapshot_with_manifest(local_storage, group):
    k1 = write_drop(
        local_storage,
        "synthetic",
        "interactions",
        "2024-01-01",
        rows(("u1", "i1", DAY1 + 10, "click"), ("u1", "i2", DAY1 + 5, "click")),
    )
    write_drop(local_storage, "synthetic", "items", "2024-01-01", "ITEM_ID,PRICE\ni1,2.5\ni2,3\n")
    manifest = run_import(local_storage, group, "2024-01-02", "FULL")
    sid = manifest["snapshot_id"]
    assert sid.startswith("20240102T000000-")
    assert manifest["datasets"]["interactions"]["rows"] == 2
    assert manifest["datasets"]["interactions"]["sources"][0]["key"] == k1
    assert len(manifest["datasets"]["interactions"]["sources"][0]["sha256"]) == 64
    assert set(manifest["datasets"]) == {"interactions", "items"}
    inter = local_storage.read_parquet(f"datasets/synthetic/snapshots/{sid}/interactions.parquet")
    assert inter["TIMESTAMP"].tolist() == [DAY1 + 5, DAY1 + 10]  # sorted by time
    assert read_manifest(local_storage, "synthetic", sid) == manifest


def test_identical_interactions_kept_once_and_items_upserted(local_storage, group):
    write_drop(
        local_storage,
        "synthetic",
        "interactions",
        "2024-01-01",
        rows(("u1", "i1", DAY1, "click"), ("u1", "i1", DAY1, "click"), ("u2", "i1", DAY1, "click")),
    )
    write_drop(local_storage, "synthetic", "items", "2024-01-01", "ITEM_ID,PRICE\ni1,1\ni2,2\n")
    write_drop(local_storage, "synthetic", "items", "2024-01-02", "ITEM_ID,PRICE\ni1,9\n")
    manifest = run_import(local_storage, group, "2024-01-03", "FULL")
    prefix = f"datasets/synthetic/snapshots/{manifest['snapshot_id']}"
    assert manifest["datasets"]["interactions"]["rows"] == 2
    items = local_storage.read_parquet(f"{prefix}/items.parquet").set_index("ITEM_ID")
    assert items.loc["i1", "PRICE"] == 9.0 and items.loc["i2", "PRICE"] == 2.0


def test_incremental_builds_on_last_validated_snapshot(local_storage, group):
    write_drop(
        local_storage, "synthetic", "interactions", "2024-01-01", rows(("u1", "i1", DAY1, "click"))
    )
    write_drop(local_storage, "synthetic", "items", "2024-01-01", "ITEM_ID,PRICE\ni1,1\n")
    first = run_import(local_storage, group, "2024-01-02", "FULL")
    mark_valid(local_storage, first)
    write_drop(
        local_storage,
        "synthetic",
        "interactions",
        "2024-01-02",
        rows(("u1", "i1", DAY1, "click"), ("u2", "i3", DAY1 + 86400, "click")),
    )
    write_drop(local_storage, "synthetic", "items", "2024-01-02", "ITEM_ID,PRICE\ni1,5\ni3,7\n")
    second = run_import(local_storage, group, "2024-01-03", "INCREMENTAL")
    assert second["mode"] == "INCREMENTAL"
    assert second["base_snapshot"] == first["snapshot_id"]
    # only the new drop was read; the repeated interaction is kept once
    assert [s["drop_date"] for s in second["datasets"]["interactions"]["sources"]] == ["2024-01-02"]
    assert second["datasets"]["interactions"]["rows"] == 2
    prefix = f"datasets/synthetic/snapshots/{second['snapshot_id']}"
    items = local_storage.read_parquet(f"{prefix}/items.parquet").set_index("ITEM_ID")
    assert items["PRICE"].to_dict() == {"i1": 5.0, "i3": 7.0}
    # the base snapshot is untouched
    base = local_storage.read_parquet(
        f"datasets/synthetic/snapshots/{first['snapshot_id']}/items.parquet"
    )
    assert base["PRICE"].tolist() == [1.0]


def test_incremental_without_base_falls_back_to_full(local_storage, group):
    write_drop(
        local_storage, "synthetic", "interactions", "2024-01-01", rows(("u1", "i1", DAY1, "click"))
    )
    manifest = run_import(local_storage, group, "2024-01-02", "INCREMENTAL")
    assert manifest["mode"] == "FULL" and manifest["base_snapshot"] is None


def test_rerun_same_date_reuses_snapshot(local_storage, group):
    write_drop(
        local_storage, "synthetic", "interactions", "2024-01-01", rows(("u1", "i1", DAY1, "click"))
    )
    a = run_import(local_storage, group, "2024-01-02", "FULL")
    b = run_import(local_storage, group, "2024-01-02T00:00:00+00:00", "FULL")
    assert a == b
    assert list_snapshots(local_storage, "synthetic") == [a["snapshot_id"]]


def test_bad_file_fails_and_leaves_previous_snapshot(local_storage, group):
    write_drop(
        local_storage, "synthetic", "interactions", "2024-01-01", rows(("u1", "i1", DAY1, "click"))
    )
    good = run_import(local_storage, group, "2024-01-02", "FULL")
    before = sorted(local_storage.find("datasets"))
    bad_key = write_drop(
        local_storage,
        "synthetic",
        "interactions",
        "2024-01-02",
        HEADER + "u1,i1,notatime,click,1\n",
    )
    with pytest.raises(DataError) as err:
        run_import(local_storage, group, "2024-01-03", "FULL")
    assert bad_key in str(err.value) and "row 2" in str(err.value)
    assert err.value.column == "TIMESTAMP"
    assert "1 of 2 interactions records rejected (50.00%)" in str(err.value)
    # Only the rejects were written; snapshots are as they were.
    after = sorted(local_storage.find("datasets"))
    rejects = [k for k in after if "/rejects/" in k]
    assert sorted(set(after) - set(rejects)) == before
    raw = next(k for k in rejects if k.endswith("part-00000.csv"))
    assert local_storage.read_text(raw) == HEADER + "u1,i1,notatime,click,1\n"
    assert list_snapshots(local_storage, "synthetic") == [good["snapshot_id"]]


def test_no_interactions_is_a_clear_error(local_storage, group):
    with pytest.raises(DataError, match="no interactions files visible"):
        run_import(local_storage, group, "2024-01-02", "FULL")


def test_unknown_mode(local_storage, group):
    with pytest.raises(DataError, match="FULL or INCREMENTAL"):
        run_import(local_storage, group, "2024-01-02", "SOMETIMES")
