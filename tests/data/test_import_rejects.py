"""Import jobs with bad files: quarantine and go on, or fail over the threshold; nothing else
changes, and reruns land in the same place."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from recsys.config import load_config_file
from recsys.data.imports import current_pointer, list_snapshots, run_import
from recsys.errors import DataError, ValidationError
from recsys.schema import DatasetGroup
from tests.conftest import write_drop

CORPUS = Path(__file__).resolve().parent / "corpus"
HEADER = "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,EVENT_VALUE\n"
BAD_LINES = list(range(4, 14))  # the ten rejected lines of bad_rows.csv


def group_with(**validation) -> DatasetGroup:
    raw = load_config_file("dataset_groups", "synthetic")
    raw["validation"] = {**raw.get("validation", {}), **validation}
    return DatasetGroup.from_dict("synthetic", raw)


def land_corpus(storage, name: str, day: str = "2024-01-01", dtype: str = "interactions") -> str:
    key = f"landing/synthetic/{dtype}/dt={day}/{name}"
    storage.write_bytes(key, (CORPUS / name).read_bytes())
    return key


def test_bad_rows_are_quarantined_and_the_import_goes_on(local_storage):
    group = group_with(max_reject_fraction=0.9)
    land_corpus(local_storage, "bad_rows.csv")
    manifest = run_import(local_storage, group, "2024-01-02")
    sid = manifest["snapshot_id"]
    inter = local_storage.read_parquet(f"datasets/synthetic/snapshots/{sid}/interactions.parquet")
    assert sorted(inter["USER_ID"]) == ["g0", "g1", "g2", "g3", "g4"]

    source = manifest["datasets"]["interactions"]["sources"][0]
    rejects_key = f"datasets/synthetic/rejects/{sid}/interactions/dt=2024-01-01/bad_rows.csv"
    assert (source["rows"], source["rejected"], source["rejects"]) == (5, 10, rejects_key)
    assert manifest["datasets"]["interactions"]["rejected"] == 10
    assert manifest["rejects"] == f"datasets/synthetic/rejects/{sid}"
    # The rejects file is the header plus the bad records, byte for byte: fix it and drop again.
    lines = (CORPUS / "bad_rows.csv").read_bytes().split(b"\n")
    expected = b"\n".join([lines[0]] + [lines[i - 1] for i in BAD_LINES]) + b"\n"
    assert local_storage.read_bytes(rejects_key) == expected
    reasons = list(
        csv.DictReader(io.StringIO(local_storage.read_text(rejects_key + ".reasons.csv")))
    )
    assert [int(r["line"]) for r in reasons] == BAD_LINES
    assert reasons[0] == {
        "line": "4",
        "column": "TIMESTAMP",
        "reason": "'yesterday' is not a number",
        "record": "u2,i2,yesterday,click,1",
    }

    # A rerun reuses the snapshot: same id, same files, nothing new.
    files = local_storage.find("datasets")
    assert run_import(local_storage, group, "2024-01-02") == manifest
    assert local_storage.find("datasets") == files


def test_rejects_over_the_threshold_fail_the_import_and_write_no_snapshot(local_storage):
    group = DatasetGroup.load("synthetic")  # max_reject_fraction 0.01
    key = land_corpus(local_storage, "bad_rows.csv")
    with pytest.raises(ValidationError) as err:
        run_import(local_storage, group, "2024-01-02")
    prefix = local_storage.find("datasets/synthetic/rejects")[0].rsplit("/", 3)[0]
    assert str(err.value) == (
        f"file {local_storage.uri(key)}, row 4, column TIMESTAMP: 'yesterday' is not a number"
        " — 10 of 15 interactions records rejected (66.67%), above the dataset group's "
        "max_reject_fraction 0.01 (validation: in configs/dataset_groups/synthetic.yaml); every "
        f"rejected row with its reason is under {local_storage.uri(prefix)}"
    )
    report = local_storage.read_json(f"{prefix}/report.json")
    assert report["passed"] is False
    assert report["datasets"]["interactions"]["rejected"] == 10
    assert list_snapshots(local_storage, "synthetic") == []
    assert local_storage.find("datasets/synthetic/snapshots") == []
    assert not local_storage.exists(current_pointer("synthetic"))


def test_max_rejected_rows_is_an_absolute_limit(local_storage):
    group = group_with(max_reject_fraction=1.0, max_rejected_rows=9)
    land_corpus(local_storage, "bad_rows.csv")
    with pytest.raises(ValidationError, match="above the dataset group's max_rejected_rows 9"):
        run_import(local_storage, group, "2024-01-02")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing_column.csv", "row 1, column TIMESTAMP: missing required column TIMESTAMP"),
        ("empty.csv", "file is empty"),
        ("milliseconds.csv", "row 2, column TIMESTAMP: TIMESTAMP 1700000000000 is not epoch"),
        ("duplicate_header.csv", "row 1, column item_id: header names column 'item_id' twice"),
    ],
)
def test_whole_file_problems_fail_the_import_and_write_nothing(local_storage, name, message):
    write_drop(
        local_storage,
        "synthetic",
        "interactions",
        "2024-01-01",
        HEADER + "u1,i1,1700000000,click,1\n",
    )
    key = land_corpus(local_storage, name, day="2024-01-01")
    with pytest.raises(DataError) as err:
        run_import(local_storage, group_with(max_reject_fraction=1.0), "2024-01-02")
    assert str(err.value).startswith(f"file {local_storage.uri(key)}")
    assert message in str(err.value)
    assert local_storage.find("datasets") == []


def test_a_latin1_file_fails_with_the_first_bad_byte(local_storage):
    key = land_corpus(local_storage, "latin1_file.csv")
    with pytest.raises(ValidationError) as err:
        run_import(local_storage, DatasetGroup.load("synthetic"), "2024-01-02")
    assert str(err.value).startswith(
        f"file {local_storage.uri(key)}, row 2, column ITEM_ID: not valid UTF-8 (byte 0xe9"
    )
    assert "5 of 5 interactions records rejected (100.00%)" in str(err.value)


def test_header_only_file_counts_as_an_empty_drop(local_storage):
    write_drop(
        local_storage,
        "synthetic",
        "interactions",
        "2024-01-01",
        HEADER + "u1,i1,1700000000,click,1\n",
    )
    land_corpus(local_storage, "header_only.csv", day="2024-01-01")
    manifest = run_import(local_storage, DatasetGroup.load("synthetic"), "2024-01-02")
    rows = {
        s["key"].rsplit("/", 1)[1]: s["rows"]
        for s in manifest["datasets"]["interactions"]["sources"]
    }
    assert rows == {"header_only.csv": 0, "part-00000.csv": 1}
    assert manifest["rejects"] is None


@pytest.mark.s3
def test_rejects_are_written_to_s3(s3_storage):
    group = group_with(max_reject_fraction=0.9)
    land_corpus(s3_storage, "non_utf8_row.csv")
    manifest = run_import(s3_storage, group, "2024-01-02")
    key = manifest["datasets"]["interactions"]["sources"][0]["rejects"]
    header = (CORPUS / "non_utf8_row.csv").read_bytes().split(b"\n")[0]
    assert s3_storage.read_bytes(key) == header + b"\nu9,caf\xe9,1700000100,click,1\n"
    assert manifest["datasets"]["interactions"]["rows"] == 5
