"""Strict CSV parsing into typed frames, with errors that name file, row and column.

Row numbers are 1-based lines of the file with the header as line 1, so the first record is
row 2 — what a person sees in an editor.
"""

from __future__ import annotations

import csv
import io
import warnings

import numpy as np
import pandas as pd

from recsys.errors import DataError
from recsys.schema import Schema

# Above this an epoch value cannot be seconds (it would be after the year 5000).
MAX_EPOCH_SECONDS = 100_000_000_000


def _decode(data: bytes, file: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(
            f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save the file as UTF-8",
            file=file,
            row=line,
        ) from exc


def _first_bad(mask: np.ndarray | pd.Series) -> int:
    return int(np.flatnonzero(np.asarray(mask))[0])


def parse_csv(data: bytes, schema: Schema, file: str) -> pd.DataFrame:
    """Parse one CSV file into a frame with the schema's columns and dtypes.

    Raises DataError for: an empty file, invalid UTF-8, a missing required column, a column
    named twice, a wrong number of fields, an empty required value, a non-numeric value in a
    numeric column, a non-integer in an integer column, millisecond timestamps.
    """
    if not data.strip():
        raise DataError("file is empty (expected a header row and records)", file=file)
    text = _decode(data, file)
    header_line = next(csv.reader(io.StringIO(text)), [])
    header = [h.strip() for h in header_line]
    by_upper = {f.name.upper(): f.name for f in schema.fields}
    seen: dict[str, int] = {}
    for i, h in enumerate(header):
        key = h.upper()
        if key in seen:
            raise DataError(
                f"header names column {h!r} twice (positions {seen[key] + 1} and {i + 1})",
                file=file,
                row=1,
                column=h,
            )
        seen[key] = i
    for req in schema.required:
        if req.upper() not in seen:
            raise DataError(
                f"missing required column {req} (header has: {', '.join(header) or 'nothing'})",
                file=file,
                row=1,
                column=req,
            )
    try:
        with warnings.catch_warnings():
            # pandas only warns (and drops data) when the first record has extra fields.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            raw = pd.read_csv(
                io.StringIO(text),
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                index_col=False,
            )
    except (pd.errors.ParserError, pd.errors.ParserWarning) as exc:
        raise _field_count_error(text, len(header), file) or DataError(
            f"malformed CSV: {exc}", file=file
        ) from exc
    raw.columns = [by_upper.get(c.strip().upper(), c.strip()) for c in raw.columns]
    out: dict[str, pd.Series] = {}
    for field in schema.fields:
        if field.name not in raw.columns:
            out[field.name] = pd.Series(index=raw.index, dtype=_dtype(field))
            continue
        col = raw[field.name]
        missing = col.isna() | (col.str.strip() == "")
        if not field.nullable and missing.any():
            i = _first_bad(missing)
            raise DataError(
                f"empty value in required column ({int(missing.sum())} such rows)",
                file=file,
                row=i + 2,
                column=field.name,
            )
        out[field.name] = _convert(col, missing, field, file)
    frame = pd.DataFrame(out, index=raw.index).reset_index(drop=True)
    if "TIMESTAMP" in frame.columns and len(frame):
        ts = frame["TIMESTAMP"]
        too_big = (ts.abs() >= MAX_EPOCH_SECONDS).fillna(False).to_numpy()
        if too_big.any():
            i = _first_bad(too_big)
            raise DataError(
                f"TIMESTAMP {ts.iloc[i]} is not epoch seconds (it looks like milliseconds); "
                "divide by 1000",
                file=file,
                row=i + 2,
                column="TIMESTAMP",
            )
    return frame


def _field_count_error(text: str, n_fields: int, file: str) -> DataError | None:
    """Locate the first record whose field count differs from the header's (error path only)."""
    reader = csv.reader(io.StringIO(text))
    next(reader, None)
    for record in reader:
        if record and len(record) != n_fields:
            return DataError(
                f"malformed CSV: {len(record)} fields where the header has {n_fields}",
                file=file,
                row=reader.line_num,
            )
    return None


def _dtype(field) -> str:
    if field.integral:
        return "Int64" if field.nullable else "int64"
    if field.numeric:
        return "float64"
    if field.type == "boolean":
        return "boolean"
    return "string"


def _convert(col: pd.Series, missing: pd.Series, field, file: str) -> pd.Series:
    if field.type == "string":
        return col.where(~missing, None).astype("string")
    if field.type == "boolean":
        lowered = col.str.strip().str.lower()
        mapping = {"true": True, "false": False, "1": True, "0": False}
        bad = ~missing & ~lowered.isin(list(mapping))
        if bad.any():
            i = _first_bad(bad)
            raise DataError(
                f"{col.iloc[i]!r} is not a boolean (true/false)",
                file=file,
                row=i + 2,
                column=field.name,
            )
        return lowered.map(mapping).astype("boolean")
    nums = pd.to_numeric(col.str.strip().where(~missing, None), errors="coerce")
    bad = ~missing & nums.isna()
    if bad.any():
        i = _first_bad(bad)
        raise DataError(
            f"{col.iloc[i]!r} is not a number ({int(bad.sum())} such rows)",
            file=file,
            row=i + 2,
            column=field.name,
        )
    if field.integral:
        frac = ~missing & (nums != np.floor(nums))
        if frac.any():
            i = _first_bad(frac)
            raise DataError(
                f"{col.iloc[i]!r} is not an integer", file=file, row=i + 2, column=field.name
            )
        return nums.astype(_dtype(field))
    return nums.astype("float64")
