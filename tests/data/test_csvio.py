"""Strict CSV parsing: typed frames, and errors naming file, row and column."""

from __future__ import annotations

import pytest

from recsys.data.csvio import parse_csv
from recsys.errors import DataError
from recsys.schema import DatasetGroup

GROUP = DatasetGroup.load("synthetic")
INTER = GROUP.schemas["interactions"]
ITEMS = GROUP.schemas["items"]
HEADER = "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,EVENT_VALUE\n"


def parse(text: str | bytes, schema=INTER):
    data = text.encode() if isinstance(text, str) else text
    return parse_csv(data, schema, file="drop.csv")


def test_parses_types_and_optional_columns():
    df = parse(HEADER + "u1,i1,1700000000,click,1.5\nu2,i2,1700000001,purchase,\n")
    assert list(df.columns) == INTER.names
    assert df["TIMESTAMP"].dtype == "int64"
    assert df["TIMESTAMP"].tolist() == [1700000000, 1700000001]
    assert df["EVENT_VALUE"].iloc[0] == 1.5
    assert df["EVENT_VALUE"].isna().iloc[1]
    assert df["IMPRESSION"].isna().all()  # declared but absent column: all null


def test_header_is_case_insensitive_and_bom_and_crlf_are_accepted():
    text = "\ufeffuser_id,Item_Id,timestamp,event_type\r\nu1,i1,1700000005,click\r\n"
    df = parse(text)
    assert df["USER_ID"].tolist() == ["u1"]
    assert df["TIMESTAMP"].tolist() == [1700000005]


def test_quoted_commas_survive():
    df = parse('ITEM_ID,TITLE\ni1,"Hello, World"\n', ITEMS)
    assert df["TITLE"].tolist() == ["Hello, World"]


def test_missing_required_column_names_file_and_column():
    with pytest.raises(DataError) as err:
        parse("USER_ID,ITEM_ID,EVENT_TYPE\nu1,i1,click\n")
    msg = str(err.value)
    assert "file drop.csv" in msg and "column TIMESTAMP" in msg and "missing required" in msg
    assert err.value.row == 1


def test_non_numeric_timestamp_names_row_and_column():
    text = HEADER + "u1,i1,1700000000,click,1\nu2,i2,yesterday,click,1\n"
    with pytest.raises(DataError) as err:
        parse(text)
    assert (err.value.file, err.value.row, err.value.column) == ("drop.csv", 3, "TIMESTAMP")
    assert "'yesterday' is not a number" in str(err.value)


def test_fractional_value_in_integer_column():
    with pytest.raises(DataError, match="row 2, column TIMESTAMP: '1.5' is not an integer"):
        parse(HEADER + "u1,i1,1.5,click,1\n")


def test_millisecond_timestamps_are_named_as_such():
    with pytest.raises(DataError, match="milliseconds") as err:
        parse(HEADER + "u1,i1,1700000000000,click,1\n")
    assert err.value.row == 2


def test_empty_file():
    with pytest.raises(DataError, match="file drop.csv: file is empty"):
        parse("")


def test_header_only_gives_zero_rows():
    assert len(parse(HEADER)) == 0


def test_empty_required_value():
    with pytest.raises(DataError) as err:
        parse(HEADER + "u1,i1,1700000005,click,1\n,i2,1700000006,click,1\n")
    assert (err.value.row, err.value.column) == (3, "USER_ID")


def test_duplicate_header_column():
    with pytest.raises(DataError, match="names column 'ITEM_ID' twice"):
        parse("USER_ID,ITEM_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\nu,i,i,1700000001,click\n")


def test_non_utf8_names_the_line():
    data = (
        HEADER + "u1,i1,1700000005,click,1\n"
    ).encode() + "u2,caf\xe9,1700000006,click,1\n".encode("latin-1")
    with pytest.raises(DataError, match="not valid UTF-8") as err:
        parse(data)
    assert err.value.row == 3


def test_too_many_fields_is_malformed():
    with pytest.raises(DataError, match="row 3: malformed CSV: 7 fields where the header has 5"):
        parse(HEADER + "u1,i1,1700000005,click,1\nu1,i1,1700000005,click,1,extra,more\n")
    with pytest.raises(DataError, match="row 2: malformed CSV"):
        parse(HEADER + "u1,i1,1700000005,click,1,extra\n")
