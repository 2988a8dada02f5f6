"""The bad-file corpus (tests/data/corpus, made by make_corpus.py): one exact outcome per case.

Whole-file problems raise DataError naming file, row and column; row problems become rejects
holding the record's bytes verbatim with a reason, and every good row is kept. The outcome does
not depend on the block size the file is streamed in.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.data.csvio import CsvReader, RowRules
from recsys.errors import DataError
from recsys.schema import DatasetGroup

CORPUS = Path(__file__).resolve().parent / "corpus"
GROUP = DatasetGroup.load("synthetic")
RULES = RowRules.for_group(GROUP)


def read(name: str, dtype: str = "interactions", block_bytes: int = 1 << 20):
    reader = CsvReader(
        io.BytesIO((CORPUS / name).read_bytes()), GROUP.schemas[dtype], name, RULES, block_bytes
    )
    frames, rejects = [], []
    for chunk in reader:
        frames.append(chunk.frame)
        rejects += chunk.rejects
    frame = pd.concat(frames, ignore_index=True) if frames else None
    return frame, rejects, reader


def file_lines(name: str) -> list[bytes]:
    return (CORPUS / name).read_bytes().split(b"\n")


@pytest.mark.parametrize(
    ("name", "row", "column", "message"),
    [
        ("empty.csv", None, None, "file is empty (expected a header row and records)"),
        ("blank_first_line.csv", 1, None, "line 1 is empty (expected the header row)"),
        (
            "duplicate_header.csv",
            1,
            "item_id",
            "header names column 'item_id' twice (positions 2 and 5)",
        ),
        (
            "missing_column.csv",
            1,
            "TIMESTAMP",
            "missing required column TIMESTAMP (header has: USER_ID, ITEM_ID, EVENT_TYPE)",
        ),
        (
            "milliseconds.csv",
            2,
            "TIMESTAMP",
            "TIMESTAMP 1700000000000 is not epoch seconds: the file's timestamps look like "
            "milliseconds; divide them by 1000",
        ),
        (
            "non_utf8_header.csv",
            1,
            None,
            "header is not valid UTF-8 (byte 0xc9 at offset 52); save the file as UTF-8",
        ),
    ],
)
@pytest.mark.parametrize("block_bytes", [5, 1 << 20])
def test_whole_file_problems_raise_naming_file_row_column(name, row, column, message, block_bytes):
    with pytest.raises(DataError) as err:
        read(name, block_bytes=block_bytes)
    assert (err.value.file, err.value.row, err.value.column) == (name, row, column)
    where = ", ".join(
        [f"file {name}"]
        + ([f"row {row}"] if row else [])
        + ([f"column {column}"] if column else [])
    )
    assert str(err.value) == f"{where}: {message}"


BAD_ROWS = [
    (4, "TIMESTAMP", "'yesterday' is not a number"),
    (5, "TIMESTAMP", "'1700000000.5' is not an integer"),
    (6, "USER_ID", "empty value in required column"),
    (7, None, "malformed CSV: 6 fields where the header has 5"),
    (8, None, "malformed CSV: 3 fields where the header has 5"),
    (9, "EVENT_TYPE", "'hover' is not a declared EVENT_TYPE (declared: click, purchase)"),
    (10, "USER_ID", "id is 300 characters long (max 256)"),
    (
        11,
        "TIMESTAMP",
        "TIMESTAMP 1700000000123 is not epoch seconds (it looks like milliseconds); divide by 1000",
    ),
    (
        12,
        "TIMESTAMP",
        "TIMESTAMP 0 is outside the accepted range of epoch seconds "
        "[631152000 (1990-01-01), 4102444800 (2100-01-01)]",
    ),
    (13, "EVENT_VALUE", "'abc' is not a number"),
]


@pytest.mark.parametrize("block_bytes", [5, 64, 1 << 20])
def test_bad_rows_are_rejected_verbatim_with_reasons_and_good_rows_kept(block_bytes):
    frame, rejects, reader = read("bad_rows.csv", block_bytes=block_bytes)
    assert [(r.line, r.column, r.reason) for r in rejects] == BAD_ROWS
    lines = file_lines("bad_rows.csv")
    assert [r.raw for r in rejects] == [lines[r.line - 1] for r in rejects]
    assert frame["USER_ID"].tolist() == ["g0", "g1", "g2", "g3", "g4"]
    assert frame["TIMESTAMP"].tolist() == [1700000000 + i for i in range(5)]
    assert frame["TIMESTAMP"].dtype == "int64"
    assert (reader.rows, reader.rejected, reader.records) == (5, 10, 15)


def test_one_non_utf8_row_is_rejected_and_names_its_column():
    frame, rejects, _ = read("non_utf8_row.csv")
    assert [(r.line, r.column, r.reason) for r in rejects] == [
        (5, "ITEM_ID", "not valid UTF-8 (byte 0xe9 at offset 130); save the file as UTF-8")
    ]
    assert rejects[0].raw == b"u9,caf\xe9,1700000100,click,1"  # the bytes as they were
    assert frame["USER_ID"].tolist() == ["g0", "g1", "g2", "g3", "g4"]


def test_a_latin1_file_rejects_every_row():
    frame, rejects, reader = read("latin1_file.csv")
    assert [r.line for r in rejects] == [2, 3, 4, 5, 6]
    assert all(r.reason.startswith("not valid UTF-8 (byte 0xe9") for r in rejects)
    assert len(frame) == 0 and reader.rows == 0


def test_bom_and_crlf_leave_no_trace_in_values():
    frame, rejects, _ = read("bom_crlf.csv")
    assert rejects == []
    assert frame["USER_ID"].tolist() == ["g0", "g1", "g2"]
    assert frame["EVENT_VALUE"].tolist() == [1.0, 1.0, 1.0]
    assert frame["EVENT_TYPE"].tolist() == ["click"] * 3


@pytest.mark.parametrize("block_bytes", [5, 1 << 20])
def test_quoted_commas_doubled_quotes_and_newlines_survive(block_bytes):
    frame, rejects, _ = read("quoted_commas.csv", "items", block_bytes)
    assert rejects == []
    assert frame["TITLE"].tolist()[:3] == [
        "Hello, World",
        'The "Best" One',
        "Line one\nline two, with a comma",
    ]
    assert frame["GENRES"].tolist()[0] == "Action|Crime"
    assert frame.iloc[3].isna()[["GENRES", "PRICE", "CREATION_TIMESTAMP", "TITLE"]].all()


def test_a_stray_quote_inside_a_value_is_kept_as_text():
    frame, rejects, _ = read("stray_quote.csv", "items")
    assert rejects == []
    assert frame["TITLE"].tolist() == ["5'11\" tall", "plain"]


def test_an_unclosed_quote_rejects_the_rest_of_the_file_as_one_record():
    frame, rejects, _ = read("unclosed_quote.csv")
    assert frame["USER_ID"].tolist() == ["g0", "g1"]
    assert [(r.line, r.column) for r in rejects] == [(4, None)]
    assert rejects[0].reason.startswith("malformed CSV: a quoted field is never closed")
    assert rejects[0].raw == b'u2,"i2,1700000000,click,1\nu3,i3,1700000000,click,1'


def test_blank_lines_are_skipped_and_counted():
    frame, rejects, reader = read("blank_lines.csv")
    assert rejects == [] and reader.blank_lines == 4
    assert frame["USER_ID"].tolist() == ["g0", "g1", "g2", "g3"]


def test_header_only_file_has_no_rows():
    frame, rejects, reader = read("header_only.csv")
    assert frame is None and rejects == [] and reader.records == 0


def test_impressions_must_be_pipe_joined_ids():
    frame, rejects, _ = read("impressions.csv")
    assert [(r.line, r.column) for r in rejects] == [(3, "IMPRESSION"), (4, "IMPRESSION")]
    assert rejects[0].reason == (
        "'i1||i2' is not item ids joined by '|' (an id is empty or longer than 256 characters)"
    )
    assert frame["USER_ID"].tolist() == ["u1", "u4"]
    assert frame["IMPRESSION"].iloc[0] == "i1|i2|i3" and pd.isna(frame["IMPRESSION"].iloc[1])


def test_categorical_values_longer_than_1000_characters_are_rejected():
    frame, rejects, _ = read("long_categorical.csv", "items")
    assert [(r.line, r.column, r.reason) for r in rejects] == [
        (
            3,
            "GENRES",
            "a categorical value is longer than 1000 characters (values are joined by '|')",
        )
    ]
    assert frame["ITEM_ID"].tolist() == ["i1"]


def test_ids_longer_than_256_characters_are_rejected():
    frame, rejects, _ = read("long_user_id.csv", "users")
    assert [(r.line, r.column, r.reason) for r in rejects] == [
        (3, "USER_ID", "id is 257 characters long (max 256)")
    ]
    assert frame["USER_ID"].tolist() == ["a" * 256]


class _CountingStream(io.BytesIO):
    """Records the largest read, to prove the reader streams."""

    largest = 0

    def read(self, size=-1):
        self.largest = max(self.largest, size if size >= 0 else 1 << 62)
        return super().read(size)


def test_a_large_file_is_streamed_in_bounded_blocks():
    n = 60_000
    rng = np.random.default_rng(3)
    body = "".join(
        f"u{u},i{i},{1700000000 + k},click,{v:.2f}\n"
        for k, (u, i, v) in enumerate(
            zip(rng.integers(0, 500, n), rng.integers(0, 300, n), rng.random(n), strict=True)
        )
    )
    data = (
        "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,EVENT_VALUE\n" + body + "u1,i1,later,click,1\n"
    ).encode()
    stream = _CountingStream(data)
    reader = CsvReader(
        stream, GROUP.schemas["interactions"], "big.csv", RULES, block_bytes=64 << 10
    )
    chunks = list(reader)
    assert stream.largest == 64 << 10 and len(chunks) >= len(data) // (64 << 10)
    assert sum(len(c.frame) for c in chunks) == n
    assert [(r.line, r.reason) for c in chunks for r in c.rejects] == [
        (n + 2, "'later' is not a number")
    ]
    whole = pd.concat([c.frame for c in chunks], ignore_index=True)
    assert whole["TIMESTAMP"].tolist() == list(range(1700000000, 1700000000 + n))
