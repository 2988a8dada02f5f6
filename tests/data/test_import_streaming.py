"""Streaming imports: the snapshot is written block by block and equals the whole-frame result.

The reference for every comparison is what the import used to compute on whole frames:
concatenate in arrival order, ``drop_duplicates(keep="first")`` then a stable sort by
TIMESTAMP for interactions, ``drop_duplicates(subset=[id], keep="last")`` for items and users.
Small block, run and row-group sizes make a few hundred rows cross every boundary.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from recsys.data import csvio, stream
from recsys.data.imports import run_import
from recsys.data.stream import HashSet, InteractionsSink, UpsertSink, iter_parquet
from recsys.schema import DatasetGroup
from tests.conftest import write_drop

HEADER = "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,EVENT_VALUE,IMPRESSION\n"
DAY1 = 1704067200  # 2024-01-01T00:00:00Z


@pytest.fixture
def group():
    return DatasetGroup.load("synthetic")


@pytest.fixture
def small_blocks(monkeypatch):
    """4 KiB CSV blocks, sorted runs of 300 rows, row groups of 128 rows."""
    monkeypatch.setattr(csvio, "BLOCK_BYTES", 4096)
    monkeypatch.setattr(stream, "RUN_ROWS", 300)
    monkeypatch.setattr(stream, "ROW_GROUP_ROWS", 128)
    monkeypatch.setattr(stream, "_SPILL_GROUP_ROWS", 50)


def interactions_csv(rng: np.random.Generator, n: int, n_users: int = 40) -> pd.DataFrame:
    """Random interactions with many timestamp ties, missing values and repeated rows."""
    df = pd.DataFrame(
        {
            "USER_ID": [f"u{u}" for u in rng.integers(0, n_users, n)],
            "ITEM_ID": [f"i{i}" for i in rng.integers(0, 30, n)],
            "TIMESTAMP": DAY1 + rng.integers(0, 50, n) * 60,  # ~50 distinct values: ties
            "EVENT_TYPE": rng.choice(["click", "purchase"], n),
            "EVENT_VALUE": np.where(rng.random(n) < 0.1, np.nan, rng.integers(1, 4, n) * 0.5),
            "IMPRESSION": np.where(rng.random(n) < 0.2, None, "i1|i2"),
        }
    )
    repeats = df.sample(n // 5, random_state=int(rng.integers(1 << 30)), replace=True)
    return pd.concat([df, repeats]).sample(frac=1, random_state=1).reset_index(drop=True)


def expected_interactions(frames: list[pd.DataFrame]) -> pd.DataFrame:
    df = pd.concat(frames, ignore_index=True).drop_duplicates(keep="first")
    return df.sort_values("TIMESTAMP", kind="stable").reset_index(drop=True)


def read_snapshot(storage, manifest, dtype: str) -> pd.DataFrame:
    key = f"datasets/synthetic/snapshots/{manifest['snapshot_id']}/{dtype}.parquet"
    return storage.read_parquet(key)


def assert_same_rows(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    expected = expected.reset_index(drop=True)
    assert list(got.columns) == list(expected.columns)
    for column in got.columns:
        a, b = got[column], expected[column]
        if a.dtype.kind in "if" or b.dtype.kind in "if":
            np.testing.assert_array_equal(
                a.to_numpy(dtype=np.float64, na_value=np.nan),
                b.to_numpy(dtype=np.float64, na_value=np.nan),
                err_msg=column,
            )
        else:
            assert (
                a.astype(object).where(a.notna(), None).tolist()
                == b.astype(object).where(b.notna(), None).tolist()
            ), column


def parse(text: str, group) -> pd.DataFrame:
    return csvio.parse_csv(text.encode(), group.schemas["interactions"], "test.csv")


# -- the sinks on their own ---------------------------------------------------------------


def test_hash_set_finds_members_across_merged_runs() -> None:
    rng = np.random.default_rng(0)
    values = np.unique(rng.integers(0, 2**63, 5000, dtype=np.uint64))
    s = HashSet()
    for part in np.array_split(rng.permutation(values[:4000]), 37):
        s.add_new(part)
    assert len(s) == 4000 and len(s._runs) < 10  # merged into a few runs
    assert s.contains(values[:4000]).all()
    assert not s.contains(values[4000:]).any()


def test_interactions_sink_equals_whole_frame_dedupe_and_sort(tmp_path, group) -> None:
    rng = np.random.default_rng(1)
    frames = [parse(interactions_csv(rng, 150).to_csv(index=False), group) for _ in range(7)]
    # -0.0 and 0.0 are the same value for drop_duplicates, and so for the sink.
    frames[3].loc[0, "EVENT_VALUE"] = -0.0
    frames[5] = pd.concat([frames[5], frames[3].iloc[[0]].assign(EVENT_VALUE=0.0)])
    sink = InteractionsSink(group.schemas["interactions"], str(tmp_path), run_rows=200)
    for f in frames:
        sink.add(f)
    sink.finish(str(tmp_path / "out.parquet"))
    got = pd.read_parquet(tmp_path / "out.parquet")
    expected = expected_interactions(frames)
    assert sink.rows == len(expected) and sink.dropped == sum(map(len, frames)) - len(expected)
    assert sink.dropped > 100  # the case is not trivial: duplicates within and across blocks
    assert_same_rows(got, expected)
    assert pq.ParquetFile(tmp_path / "out.parquet").metadata.num_row_groups >= 1
    assert not (tmp_path / "interactions.spill.parquet").exists()


def test_interactions_sink_with_no_rows_writes_an_empty_typed_file(tmp_path, group) -> None:
    sink = InteractionsSink(group.schemas["interactions"], str(tmp_path))
    sink.add(csvio.empty_frame(group.schemas["interactions"]))
    sink.finish(str(tmp_path / "out.parquet"))
    got = pd.read_parquet(tmp_path / "out.parquet")
    assert len(got) == 0 and list(got.columns) == list(HEADER.strip().split(","))
    assert got["TIMESTAMP"].dtype == np.int64


def test_upsert_sink_keeps_the_last_record_of_each_id(tmp_path, group) -> None:
    schema = group.schemas["items"]
    text = "ITEM_ID,GENRES,PRICE,CREATION_TIMESTAMP,TITLE\n"
    blocks = [
        text + f"a,g1,1.0,{DAY1},A\nb,g2,2.0,{DAY1},B\nc,,3.0,,C\n",
        text + f"b,g3,20.0,{DAY1},B2\nd,g1,4.0,{DAY1},D\n",
        text + f"a,g9,10.0,{DAY1},A3\n",
    ]
    frames = [csvio.parse_csv(b.encode(), schema, "items.csv") for b in blocks]
    sink = UpsertSink(schema, "ITEM_ID")
    for f in frames:
        sink.add(f)
    sink.finish(str(tmp_path / "items.parquet"))
    got = pd.read_parquet(tmp_path / "items.parquet")
    expected = pd.concat(frames).drop_duplicates(subset=["ITEM_ID"], keep="last")
    assert got["ITEM_ID"].tolist() == ["c", "b", "d", "a"] == expected["ITEM_ID"].tolist()
    assert got["PRICE"].tolist() == [3.0, 20.0, 4.0, 10.0]
    assert got["CREATION_TIMESTAMP"].isna().tolist() == [True, False, False, False]
    assert sink.rows == 4 and sink.dropped == 2


def test_iter_parquet_yields_batches_not_the_whole_file(tmp_path) -> None:
    df = pd.DataFrame({"A": np.arange(1000), "B": [f"x{i}" for i in range(1000)]})
    buf = io.BytesIO()
    df.to_parquet(buf, row_group_size=100)
    buf.seek(0)
    batches = list(iter_parquet(buf, batch_rows=128))
    assert [len(b) for b in batches][:2] == [128, 128] and len(batches) == 8
    pd.testing.assert_frame_equal(pd.concat(batches, ignore_index=True), df)


# -- whole imports, streamed -------------------------------------------------------------------


def test_full_import_streams_blocks_and_equals_the_whole_file_result(
    local_storage, group, small_blocks
) -> None:
    rng = np.random.default_rng(2)
    day1, day2 = interactions_csv(rng, 900), interactions_csv(rng, 700)
    day2 = pd.concat([day2, day1.iloc[:200]])  # yesterday's rows sent again
    texts = [day1.to_csv(index=False), day2.to_csv(index=False)]
    assert all(len(t) > 8 * 4096 for t in texts)  # many CSV blocks per file
    write_drop(local_storage, "synthetic", "interactions", "2024-01-01", texts[0])
    write_drop(local_storage, "synthetic", "interactions", "2024-01-02", texts[1])
    manifest = run_import(local_storage, group, "2024-01-03")
    got = read_snapshot(local_storage, manifest, "interactions")
    expected = expected_interactions([parse(t, group) for t in texts])
    assert_same_rows(got, expected)
    info = manifest["datasets"]["interactions"]
    assert info["rows"] == len(expected) == len(got)
    assert info["duplicates_or_replaced"] == len(day1) + len(day2) - len(expected) > 200
    key = f"datasets/synthetic/snapshots/{manifest['snapshot_id']}/interactions.parquet"
    with local_storage.open(key) as f:
        meta = pq.ParquetFile(f).metadata
        assert meta.num_row_groups == -(-len(expected) // 128)  # written group by group
    assert local_storage.checksum(key)[0] == info["sha256"]
    assert info["columns"]["TIMESTAMP"] == "int64" and info["columns"]["USER_ID"] == "string"
    # A rerun reuses the snapshot: same id, nothing rewritten.
    assert run_import(local_storage, group, "2024-01-03") == manifest


def test_incremental_streams_its_base_and_dedupes_against_it(
    local_storage, group, small_blocks
) -> None:
    rng = np.random.default_rng(3)
    first, later = interactions_csv(rng, 800), interactions_csv(rng, 500)
    later = pd.concat([later, first.iloc[100:300]])  # rows the base already holds
    write_drop(local_storage, "synthetic", "interactions", "2024-01-01", first.to_csv(index=False))
    base = run_import(local_storage, group, "2024-01-02")
    prefix = f"datasets/synthetic/snapshots/{base['snapshot_id']}"
    local_storage.write_json(f"{prefix}/validation.json", {"passed": True})
    with local_storage.open(f"{prefix}/interactions.parquet") as f:
        assert pq.ParquetFile(f).metadata.num_row_groups > 3  # the base streams in groups
    write_drop(local_storage, "synthetic", "interactions", "2024-01-02", later.to_csv(index=False))
    manifest = run_import(local_storage, group, "2024-01-03", mode="INCREMENTAL")
    assert manifest["mode"] == "INCREMENTAL" and manifest["base_snapshot"] == base["snapshot_id"]
    got = read_snapshot(local_storage, manifest, "interactions")
    base_rows = read_snapshot(local_storage, base, "interactions")
    expected = expected_interactions([base_rows, parse(later.to_csv(index=False), group)])
    assert_same_rows(got, expected)
    added = manifest["datasets"]["interactions"]["rows"] - base["datasets"]["interactions"]["rows"]
    assert 0 < added < len(later) - 150  # the 200 repeated rows were not added again


def test_rejects_in_later_blocks_are_quarantined_with_their_line_and_column(
    local_storage, group, small_blocks
) -> None:
    rng = np.random.default_rng(4)
    lines = interactions_csv(rng, 900).to_csv(index=False).splitlines(keepends=True)
    bad = {150: "u1,i1,yesterday,click,1,i1\n", 700: "u2,i2,1704067300,hover,1,i2\n"}
    for line_no, record in bad.items():  # line 1 is the header
        lines[line_no - 1] = record
    text = "".join(lines)
    assert text.index(bad[700]) > 4 * 4096  # in a later block than the first
    write_drop(local_storage, "synthetic", "interactions", "2024-01-01", text)
    manifest = run_import(local_storage, group, "2024-01-02")
    sid = manifest["snapshot_id"]
    rej = f"datasets/synthetic/rejects/{sid}/interactions/dt=2024-01-01/part-00000.csv"
    reasons = pd.read_csv(io.BytesIO(local_storage.read_bytes(f"{rej}.reasons.csv")))
    assert reasons["line"].tolist() == [150, 700]
    assert reasons["column"].tolist() == ["TIMESTAMP", "EVENT_TYPE"]
    assert "hover" in reasons["reason"].iloc[1]
    assert local_storage.read_text(rej) == HEADER + bad[150] + bad[700]
    assert manifest["datasets"]["interactions"]["rejected"] == 2
    got = read_snapshot(local_storage, manifest, "interactions")
    good = "".join(line for i, line in enumerate(lines, 1) if i not in bad)
    assert_same_rows(got, expected_interactions([parse(good, group)]))
