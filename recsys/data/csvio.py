"""Streaming, strict CSV parsing into typed frames; bad rows are set aside with a reason.

Row numbers are 1-based lines of the file with the header as line 1, so the first record is
row 2 — what a person sees in an editor.

A file is read in blocks of whole records (a record ends at a newline outside quotes), so the
memory needed is bounded by the block size, not by the file size. Problems come in two kinds:

* **Whole-file problems** raise :class:`DataError` at once: an empty file, a header that is not
  UTF-8 or is empty, a missing required column, a column named twice, a file whose timestamps
  are milliseconds.
* **Row problems** make a :class:`Reject` that holds the line, the column, the reason and the
  record's bytes verbatim: a wrong number of fields, bytes that are not UTF-8, an unclosed quote,
  an empty required value, a value of the wrong type, an id longer than 256 characters, a
  timestamp outside the accepted range, an undeclared EVENT_TYPE, an IMPRESSION that is not
  ``|``-joined ids, an over-long categorical or textual value. The caller's thresholds decide
  whether rejects are quarantined or fail the import; :func:`parse_csv` is the zero-tolerance
  form that raises the first one.

Blocks whose records all have the header's field count, valid UTF-8 and well-placed quotes are
parsed by pandas' C parser in one call; a block with a stray quote (``5'11"``) goes through
Python's csv module, which is slower but exact about where each record starts.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from recsys.errors import DataError
from recsys.schema import (
    ID_FIELDS,
    MAX_CATEGORICAL_VALUE_LENGTH,
    MAX_ID_LENGTH,
    MAX_TEXTUAL_LENGTH,
    TIMESTAMP_FIELDS,
    DatasetGroup,
    Schema,
    ValidationPolicy,
)

# Above this an epoch value cannot be seconds (it would be after the year 5000).
MAX_EPOCH_SECONDS = 100_000_000_000
BLOCK_BYTES = 16 << 20
_BOM = b"\xef\xbb\xbf"
_NL, _CR, _QUOTE, _COMMA = 10, 13, 34, 44
# Empty ids or ids over 256 characters in a ``|``-joined list.
_BAD_ID_LIST = re.compile(rf"(?:^|\|)(?:\||$)|[^|]{{{MAX_ID_LENGTH + 1}}}")

csv.field_size_limit(1 << 30)


@dataclass(frozen=True)
class Reject:
    """One record set aside: where it is, why, and its bytes as they were in the file."""

    line: int
    column: str | None
    reason: str
    raw: bytes

    def error(self, file: str) -> DataError:
        return DataError(self.reason, file=file, row=self.line, column=self.column)


@dataclass(frozen=True)
class RowRules:
    """Row-level rules beyond the schema's types: declared event types, timestamp range."""

    event_types: tuple[str, ...] = ()
    min_timestamp: int = ValidationPolicy.min_timestamp
    max_timestamp: int = ValidationPolicy.max_timestamp

    @classmethod
    def for_group(cls, group: DatasetGroup) -> RowRules:
        return cls(
            event_types=tuple(group.event_types),
            min_timestamp=int(group.validation.min_timestamp),
            max_timestamp=int(group.validation.max_timestamp),
        )


@dataclass
class Chunk:
    """Typed good rows of one block, and the block's rejects (in line order)."""

    frame: pd.DataFrame
    rejects: list[Reject] = field(default_factory=list)


def _chomp(raw: bytes) -> bytes:
    """``raw`` without one final line ending."""
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    return raw[:-1] if raw.endswith(b"\r") else raw


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def _show(value: object, limit: int = 60) -> str:
    text = str(value)
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _record_ends(a: np.ndarray, quotes: np.ndarray | None) -> np.ndarray:
    """Positions of the newlines that end a record (not those inside a quoted field)."""
    nl = np.flatnonzero(a == _NL)
    if quotes is None or not len(quotes):
        return nl
    return nl[(np.searchsorted(quotes, nl) & 1) == 0]


def _quotes_well_placed(a: np.ndarray, quotes: np.ndarray) -> bool:
    """True if every quote opens or closes a field or doubles another (RFC 4180 quoting)."""
    if not len(quotes):
        return True
    n = len(a)
    prev = np.where(quotes > 0, a[np.maximum(quotes - 1, 0)], _NL)
    nxt = np.where(quotes < n - 1, a[np.minimum(quotes + 1, n - 1)], _NL)
    edge = (_COMMA, _NL, _CR, _QUOTE)
    return bool((np.isin(prev, edge) | np.isin(nxt, edge)).all())


class CsvReader:
    """Iterate over a CSV stream as :class:`Chunk` objects, one per block of records.

    Args:
        stream: a binary file object (``Storage.open``, ``open(path, "rb")``, ``BytesIO``).
        schema: the dataset's schema (columns, types, which are required).
        file: the name used in messages (a storage URI).
        rules: declared event types and the timestamp range (default: none declared,
            1990-2100).
        block_bytes: how much to read at a time; memory use is a small multiple of it.

    After iteration, ``records`` (non-blank records read), ``rows`` (accepted), ``rejected``,
    ``blank_lines`` and ``ignored_columns`` (header columns not in the schema) describe the file.
    """

    def __init__(
        self,
        stream: IO[bytes],
        schema: Schema,
        file: str,
        rules: RowRules | None = None,
        block_bytes: int = BLOCK_BYTES,
    ) -> None:
        self.stream = stream
        self.schema = schema
        self.file = file
        self.rules = rules or RowRules()
        self.block_bytes = int(block_bytes)
        self.header: list[str] = []
        self.header_raw = b""
        self.ignored_columns: list[str] = []
        self.records = self.rows = self.rejected = self.blank_lines = 0
        self._columns: dict[str, int] = {}  # schema name -> position in the header
        self._ms_counts: dict[str, tuple[int, int]] = {}  # column -> (values, milliseconds)

    # -- reading -------------------------------------------------------------------------
    def _blocks(self) -> Iterator[bytes]:
        """Blocks of whole records; the last one may lack a final newline."""
        carry = b""
        while True:
            buf = self.stream.read(self.block_bytes)
            if not buf:
                if carry:
                    yield carry
                return
            data = carry + buf if carry else buf
            a = np.frombuffer(data, np.uint8)
            quotes = np.flatnonzero(a == _QUOTE) if data.find(b'"') >= 0 else None
            ends = _record_ends(a, quotes)
            if not len(ends) and len(data) > max(4 * self.block_bytes, 1 << 26):
                # An unbalanced quote: cut at a plain newline rather than hold the whole file.
                ends = np.flatnonzero(a == _NL)
            if not len(ends):
                carry = data
                continue
            cut = int(ends[-1]) + 1
            yield data[:cut]
            carry = data[cut:]

    def __iter__(self) -> Iterator[Chunk]:
        blocks = self._blocks()
        first = next(blocks, b"")
        if not first.strip():
            rest = next(blocks, b"")
            if not rest.strip():
                raise DataError("file is empty (expected a header row and records)", file=self.file)
            raise DataError("line 1 is empty (expected the header row)", file=self.file, row=1)
        a = np.frombuffer(first, np.uint8)
        quotes = np.flatnonzero(a == _QUOTE) if first.find(b'"') >= 0 else None
        ends = _record_ends(a, quotes)
        cut = int(ends[0]) + 1 if len(ends) else len(first)
        self.header_raw = first[:cut]
        self._read_header(first[:cut])
        line = 1 + first[:cut].count(b"\n")
        offset = cut
        block = first[cut:]
        while True:
            if block:
                chunk = self._process(block, line, offset)
                line += block.count(b"\n")
                offset += len(block)
                yield chunk
            block = next(blocks, None)
            if block is None:
                return

    def _read_header(self, raw: bytes) -> None:
        if raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(
                f"header is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                "save the file as UTF-8",
                file=self.file,
                row=1,
            ) from exc
        header = [h.strip() for h in next(csv.reader(io.StringIO(text)), [])]
        if not any(header):
            raise DataError("line 1 is empty (expected the header row)", file=self.file, row=1)
        by_upper = {f.name.upper(): f.name for f in self.schema.fields}
        seen: dict[str, int] = {}
        for i, h in enumerate(header):
            key = h.upper()
            if key in seen:
                raise DataError(
                    f"header names column {h!r} twice (positions {seen[key] + 1} and {i + 1})",
                    file=self.file,
                    row=1,
                    column=h,
                )
            seen[key] = i
        for req in self.schema.required:
            if req.upper() not in seen:
                raise DataError(
                    f"missing required column {req} (header has: {', '.join(header)})",
                    file=self.file,
                    row=1,
                    column=req,
                )
        self.header = header
        self._columns = {by_upper[k]: i for k, i in seen.items() if k in by_upper}
        self.ignored_columns = [h for h in header if h.upper() not in by_upper]

    # -- one block -------------------------------------------------------------------------
    def _process(self, block: bytes, first_line: int, offset: int) -> Chunk:
        a = np.frombuffer(block, np.uint8)
        n_bytes = len(block)
        nl = np.flatnonzero(a == _NL)
        quotes = np.flatnonzero(a == _QUOTE) if block.find(b'"') >= 0 else None
        if quotes is not None and not _quotes_well_placed(a, quotes):
            return self._process_with_csv_module(block, first_line, offset)
        ends = _record_ends(a, quotes)
        unclosed = False
        if not len(ends) or ends[-1] != n_bytes - 1:
            # the last record has no final newline (or a quote that never closes)
            unclosed = quotes is not None and bool(len(quotes) & 1)
            ends = np.append(ends, n_bytes)
        starts = np.concatenate(([0], ends[:-1] + 1))
        stops = ends.copy()
        has_cr = (stops > starts) & (a[np.clip(stops - 1, 0, n_bytes - 1)] == _CR)
        stops[has_cr] -= 1
        lines = first_line + np.searchsorted(nl, starts)
        blank = stops == starts
        commas = np.flatnonzero(a == _COMMA)
        if quotes is not None:
            commas = commas[(np.searchsorted(quotes, commas) & 1) == 0]
        n_fields = np.bincount(np.searchsorted(ends, commas), minlength=len(starts)) + 1
        n_header = len(self.header)

        rejects: list[Reject] = []
        bad = ~blank & (n_fields != n_header)
        for k in np.flatnonzero(bad):
            rejects.append(
                Reject(
                    int(lines[k]),
                    None,
                    f"malformed CSV: {n_fields[k]} fields where the header has {n_header}",
                    block[starts[k] : stops[k]],
                )
            )
        if unclosed and not blank[-1]:
            # What follows an unclosed quote is swallowed into its field: one reject for all.
            rejects = [r for r in rejects if r.line != int(lines[-1])]
            rejects.append(
                Reject(
                    int(lines[-1]),
                    None,
                    "malformed CSV: a quoted field is never closed (the record runs to the "
                    "end of the file)",
                    _chomp(block[starts[-1] : stops[-1]]),
                )
            )
            bad[-1] = True
        try:
            block.decode("utf-8")
        except UnicodeDecodeError:
            for k in np.flatnonzero(~blank & ~bad):
                raw = block[starts[k] : stops[k]]
                reason, column = self._utf8_problem(raw, offset + int(starts[k]))
                if reason:
                    bad[k] = True
                    rejects.append(Reject(int(lines[k]), column, reason, raw))
        self.blank_lines += int(blank.sum())
        keep = ~blank & ~bad
        kept = np.flatnonzero(keep)
        if len(kept) == len(starts):
            buf = block
        elif not len(kept):
            buf = b""
        else:
            # contiguous runs of kept records, copied once
            run_starts = kept[np.r_[True, np.diff(kept) > 1]]
            run_ends = kept[np.r_[np.diff(kept) > 1, True]]
            buf = b"".join(
                block[starts[s] : ends[e] + 1] for s, e in zip(run_starts, run_ends, strict=True)
            )
        raw_frame = None
        if len(kept):
            try:
                raw_frame = self._read_fields(buf)
            except pa.ArrowInvalid:
                raw_frame = None
            if raw_frame is None or any(len(c) != len(kept) for c in raw_frame.values()):
                return self._process_with_csv_module(block, first_line, offset)
        return self._finish(
            raw_frame,
            lines[kept],
            lambda i: block[starts[kept[i]] : stops[kept[i]]],
            rejects,
        )

    def _utf8_problem(self, raw: bytes, at: int) -> tuple[str | None, str | None]:
        try:
            raw.decode("utf-8")
            return None, None
        except UnicodeDecodeError as exc:
            position = raw[: exc.start].count(b",")
            column = self.header[position] if position < len(self.header) else None
            return (
                f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {at + exc.start}); "
                "save the file as UTF-8",
                column,
            )

    def _read_fields(self, buf: bytes) -> dict[str, pa.ChunkedArray]:
        """Every schema column of the records in ``buf`` as strings (pyarrow's CSV reader)."""
        names = [str(i) for i in range(len(self.header))]
        wanted = {str(i): name for name, i in self._columns.items()}
        table = pacsv.read_csv(
            io.BytesIO(buf),
            read_options=pacsv.ReadOptions(column_names=names, block_size=1 << 22),
            parse_options=pacsv.ParseOptions(newlines_in_values=b'"' in buf),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in wanted},
                include_columns=list(wanted),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        return {wanted[c]: table.column(c) for c in wanted}

    def _process_with_csv_module(self, block: bytes, first_line: int, offset: int) -> Chunk:
        """The exact, slower path: Python's csv module tells where every record starts."""
        raw_lines = block.split(b"\n")
        if raw_lines and raw_lines[-1] == b"":
            raw_lines.pop()
        line_starts = np.cumsum([0] + [len(x) + 1 for x in raw_lines])
        decoded: list[str] = []
        bad_line: dict[int, tuple[str, str | None]] = {}
        for i, raw in enumerate(raw_lines):
            try:
                decoded.append(raw.decode("utf-8") + "\n")
            except UnicodeDecodeError:
                bad_line[i] = self._utf8_problem(raw, offset + int(line_starts[i]))
                decoded.append(raw.decode("utf-8", errors="replace") + "\n")
        reader = csv.reader(iter(decoded))
        rejects: list[Reject] = []
        good_fields: list[list[str]] = []
        good_lines: list[int] = []
        good_raw: list[bytes] = []
        n_header = len(self.header)
        prev = 0
        while True:
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                raise DataError(
                    f"malformed CSV: {exc}", file=self.file, row=first_line + reader.line_num - 1
                ) from exc
            first, last = prev, reader.line_num  # lines [first, last) of this block
            prev = last
            raw = block[line_starts[first] : line_starts[last] - 1].rstrip(b"\r")
            line = first_line + first
            if not record or (len(record) == 1 and not record[0].strip() and n_header > 1):
                self.blank_lines += 1
                continue
            utf8 = next((bad_line[i] for i in range(first, last) if i in bad_line), None)
            if utf8 is not None:
                rejects.append(Reject(line, utf8[1], str(utf8[0]), raw))
            elif len(record) != n_header:
                rejects.append(
                    Reject(
                        line,
                        None,
                        f"malformed CSV: {len(record)} fields where the header has {n_header}",
                        raw,
                    )
                )
            else:
                good_fields.append(record)
                good_lines.append(line)
                good_raw.append(raw)
        raw_frame = None
        if good_fields:
            raw_frame = {
                name: pa.chunked_array([pa.array([r[i] for r in good_fields], pa.string())])
                for name, i in self._columns.items()
            }
        return self._finish(
            raw_frame, np.asarray(good_lines, dtype=np.int64), good_raw.__getitem__, rejects
        )

    # -- values ------------------------------------------------------------------------------
    def _finish(
        self,
        raw: dict[str, pa.ChunkedArray] | None,
        lines: np.ndarray,
        raw_record,
        rejects: list[Reject],
    ) -> Chunk:
        n = 0 if raw is None else len(next(iter(raw.values()), []))
        problems: list[tuple[np.ndarray, str, object]] = []  # (mask, column, reason(i))
        converted: dict[str, pd.Series | np.ndarray] = {}
        for f in self.schema.fields:
            if raw is None or f.name not in raw:
                continue
            arr = raw[f.name]
            text = pd.Series(pd.array(arr, dtype="string"))
            trimmed = pc.utf8_trim_whitespace(arr)
            missing_pa = pc.equal(trimmed, "")
            missing = missing_pa.to_numpy(zero_copy_only=False)
            if not f.nullable and missing.any():
                problems.append((missing, f.name, lambda i: "empty value in required column"))
            if f.type == "string":
                converted[f.name] = text.mask(missing)
                self._string_checks(f, text, missing, problems)
            elif f.type == "boolean":
                lowered = pd.Series(pd.array(pc.utf8_lower(trimmed), dtype="string"))
                mapping = {"true": True, "false": False, "1": True, "0": False}
                bad = ~missing & ~lowered.isin(list(mapping)).to_numpy(dtype=bool)
                if bad.any():
                    problems.append(
                        (
                            bad,
                            f.name,
                            lambda i, c=text: f"{_show(c.iloc[i])} is not a boolean (true/false)",
                        )
                    )
                converted[f.name] = lowered.map(mapping).astype("boolean")
            else:
                values = _to_float(trimmed, missing_pa)
                bad = ~missing & ~np.isfinite(values)
                if bad.any():
                    problems.append(
                        (bad, f.name, lambda i, c=text: f"{_show(c.iloc[i])} is not a number")
                    )
                if f.integral:
                    with np.errstate(invalid="ignore"):
                        frac = ~missing & ~bad & (values != np.floor(values))
                    if frac.any():
                        problems.append(
                            (
                                frac,
                                f.name,
                                lambda i, c=text: f"{_show(c.iloc[i])} is not an integer",
                            )
                        )
                if f.name in TIMESTAMP_FIELDS:
                    self._timestamp_checks(f.name, values, lines, problems)
                converted[f.name] = values

        bad_rows = np.zeros(n, dtype=bool)
        for mask, _, _ in problems:
            bad_rows |= mask
        for i in np.flatnonzero(bad_rows):
            found = [(column, reason(i)) for mask, column, reason in problems if mask[i]]
            reason = found[0][1]
            if len(found) > 1:
                reason += " (also " + "; ".join(f"column {c}: {r}" for c, r in found[1:]) + ")"
            rejects.append(Reject(int(lines[i]), found[0][0], reason, raw_record(int(i))))
        good = ~bad_rows
        n_good = int(good.sum())
        out: dict[str, pd.Series] = {}
        for f in self.schema.fields:
            if f.name not in converted:
                out[f.name] = pd.Series([None] * n_good, dtype=_dtype(f))
                continue
            col = converted[f.name]
            if isinstance(col, np.ndarray):
                col = col[good] if n_good < n else col
                if f.integral and not f.nullable:
                    col = pd.Series(col.astype(np.int64))
                else:
                    col = pd.Series(col).astype(_dtype(f))
            else:
                col = (col[good] if n_good < n else col).reset_index(drop=True)
            out[f.name] = col
        frame = pd.DataFrame(out)
        rejects.sort(key=lambda r: r.line)
        self.rows += len(frame)
        self.rejected += len(rejects)
        self.records = self.rows + self.rejected
        return Chunk(frame, rejects)

    def _string_checks(self, f, col: pd.Series, missing: np.ndarray, problems: list) -> None:
        present = ~missing
        if f.name in ID_FIELDS:
            lengths = col.str.len().to_numpy()
            too_long = present & (lengths > MAX_ID_LENGTH)
            if too_long.any():
                problems.append(
                    (
                        too_long,
                        f.name,
                        lambda i, ln=lengths: (
                            f"id is {ln[i]} characters long (max {MAX_ID_LENGTH})"
                        ),
                    )
                )
        if f.name == "EVENT_TYPE" and self.rules.event_types:
            declared = self.rules.event_types
            undeclared = present & ~col.isin(list(declared)).to_numpy(dtype=bool)
            if undeclared.any():
                problems.append(
                    (
                        undeclared,
                        f.name,
                        lambda i, c=col: (
                            f"{_show(c.iloc[i])} is not a declared EVENT_TYPE "
                            f"(declared: {', '.join(declared)})"
                        ),
                    )
                )
        if f.name == "IMPRESSION":
            bad = present & col.str.contains(_BAD_ID_LIST, regex=True).to_numpy(dtype=bool)
            if bad.any():
                problems.append(
                    (
                        bad,
                        f.name,
                        lambda i, c=col: (
                            f"{_show(c.iloc[i])} is not item ids joined by '|' "
                            f"(an id is empty or longer than {MAX_ID_LENGTH} characters)"
                        ),
                    )
                )
        if f.categorical:
            # Only a value longer than the limit in total can hold an over-long part.
            lengths = col.str.len().to_numpy(na_value=0)
            long = present & (lengths > MAX_CATEGORICAL_VALUE_LENGTH)
            for i in np.flatnonzero(long):
                parts = str(col.iloc[i]).split("|")
                long[i] = max(map(len, parts)) > MAX_CATEGORICAL_VALUE_LENGTH
            if long.any():
                problems.append(
                    (
                        long,
                        f.name,
                        lambda i: (
                            f"a categorical value is longer than "
                            f"{MAX_CATEGORICAL_VALUE_LENGTH} characters (values are joined by '|')"
                        ),
                    )
                )
        if f.textual:
            lengths = col.str.len().to_numpy()
            long = present & (lengths > MAX_TEXTUAL_LENGTH)
            if long.any():
                problems.append(
                    (
                        long,
                        f.name,
                        lambda i, ln=lengths: (
                            f"text is {ln[i]} characters long (max {MAX_TEXTUAL_LENGTH})"
                        ),
                    )
                )

    def _timestamp_checks(
        self, name: str, values: np.ndarray, lines: np.ndarray, problems: list
    ) -> None:
        with np.errstate(invalid="ignore"):
            looks_ms = np.abs(values) >= MAX_EPOCH_SECONDS
        seen, ms = self._ms_counts.get(name, (0, 0))
        seen += int((~np.isnan(values)).sum())
        ms += int(looks_ms.sum())
        self._ms_counts[name] = (seen, ms)
        if looks_ms.any():
            i = int(np.flatnonzero(looks_ms)[0])
            if ms * 2 > seen:
                # Most of the file so far is milliseconds: a unit problem, not a few bad rows.
                raise DataError(
                    f"{name} {int(values[i])} is not epoch seconds: the file's timestamps look "
                    "like milliseconds; divide them by 1000",
                    file=self.file,
                    row=int(lines[i]),
                    column=name,
                )
            problems.append(
                (
                    looks_ms,
                    name,
                    lambda i, v=values: (
                        f"{name} {int(v[i])} is not epoch seconds "
                        "(it looks like milliseconds); divide by 1000"
                    ),
                )
            )
        lo, hi = self.rules.min_timestamp, self.rules.max_timestamp
        with np.errstate(invalid="ignore"):
            out = ~looks_ms & ((values < lo) | (values > hi))
        if out.any():
            problems.append(
                (
                    out,
                    name,
                    lambda i, v=values: (
                        f"{name} {v[i]:.0f} is outside the accepted range of "
                        f"epoch seconds [{lo} ({_iso(lo)}), {hi} ({_iso(hi)})]"
                    ),
                )
            )


def _to_float(trimmed: pa.ChunkedArray, missing: pa.ChunkedArray) -> np.ndarray:
    """Numbers as float64 (NaN where empty or not a number); Arrow's cast, pandas' on failure."""
    nullable = pc.if_else(missing, pa.scalar(None, pa.string()), trimmed)
    try:
        return pc.cast(nullable, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        series = pd.Series(pd.array(nullable, dtype="string"))
        return pd.to_numeric(series, errors="coerce").astype("float64").to_numpy(na_value=np.nan)


def _dtype(field) -> str:
    if field.integral:
        return "Int64" if field.nullable else "int64"
    if field.numeric:
        return "float64"
    if field.type == "boolean":
        return "boolean"
    return "string"


def empty_frame(schema: Schema) -> pd.DataFrame:
    """A frame with the schema's columns and dtypes and no rows."""
    return pd.DataFrame({f.name: pd.Series([], dtype=_dtype(f)) for f in schema.fields})


def parse_csv(
    data: bytes, schema: Schema, file: str, rules: RowRules | None = None
) -> pd.DataFrame:
    """Parse one whole CSV file (bytes) into a typed frame, raising on the first bad row.

    The zero-tolerance form of :class:`CsvReader`: a whole-file problem or the first rejected
    record (in line order) raises DataError naming file, row and column.
    """
    reader = CsvReader(io.BytesIO(data), schema, file, rules)
    frames = []
    for chunk in reader:
        if chunk.rejects:
            raise chunk.rejects[0].error(file)
        frames.append(chunk.frame)
    if not frames:
        return empty_frame(schema)
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
