"""Writing a snapshot's Parquet files block by block, and reading them back the same way.

The import hands every block of typed rows (a base snapshot's row groups, then each CSV block
in file order) to a sink, which writes a local Parquet file that is uploaded once complete:

* :class:`InteractionsSink` keeps identical interactions once (the first) and writes them
  sorted stably by TIMESTAMP (ties keep arrival order), as the whole-frame
  ``drop_duplicates(keep="first")`` + stable sort did. Held in memory: one 64-bit hash per
  distinct row (8 bytes/row, freed before the merge) to recognise duplicates, and each row's
  int64 TIMESTAMP (8 bytes/row) to plan the merge. Rows go to a local spill file in sorted
  runs of ``RUN_ROWS`` rows; the merge reads every run forward once, a batch at a time.
  Two distinct rows whose 64-bit hashes collide would be taken for duplicates: with n rows the
  chance is about n²/2⁶⁵ (3·10⁻⁶ at 10M rows).
* :class:`UpsertSink` (items, users) keeps the last record of each id, in the order of those
  last records, as ``drop_duplicates(subset=[id], keep="last")`` did. It holds every record
  as Arrow columns until the end (items and users are at most a few million rows: about the
  size of their CSV).

:func:`iter_parquet` reads a Parquet object from storage batch by batch (INCREMENTAL imports
read their base snapshot this way).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.data.csvio import empty_frame
from recsys.schema import Schema

#: Rows per row group of a snapshot's Parquet files (and per batch of the merge).
ROW_GROUP_ROWS = 256 * 1024
#: Rows sorted in memory at a time before they go to the spill file as one run.
RUN_ROWS = 1 << 19
_SPILL_GROUP_ROWS = 32 * 1024


def snapshot_frame_schema(schema: Schema) -> tuple[dict[str, Any], pa.Schema]:
    """The pandas dtypes of a dataset's typed frames and the Arrow schema of its Parquet file
    (with pandas metadata, so ``pd.read_parquet`` gives those dtypes back)."""
    empty = empty_frame(schema)
    return dict(empty.dtypes), pa.Schema.from_pandas(empty, preserve_index=False)


def conform(frame: pd.DataFrame, dtypes: dict[str, Any]) -> pd.DataFrame:
    """``frame`` with exactly the columns of ``dtypes`` (missing ones null), in that order."""
    out = {}
    for name, dtype in dtypes.items():
        if name in frame.columns:
            col = frame[name]
            out[name] = col if col.dtype == dtype else col.astype(dtype)
        else:
            out[name] = pd.Series([None] * len(frame), dtype=dtype, index=frame.index)
    return pd.DataFrame(out, index=frame.index)


def row_hashes(frame: pd.DataFrame) -> np.ndarray:
    """A 64-bit hash of each row's values (siphash per value, pandas' combination).

    Floats are canonicalised first (``-0.0`` → ``0.0``, one NaN), so rows that
    ``drop_duplicates`` calls equal hash equal.
    """
    canonical = {}
    for name in frame.columns:
        col = frame[name]
        if col.dtype == np.float64:
            values = col.to_numpy()
            col = pd.Series(np.where(np.isnan(values), np.nan, values + 0.0), index=col.index)
        canonical[name] = col
    return pd.util.hash_pandas_object(pd.DataFrame(canonical), index=False).to_numpy()


class HashSet:
    """A set of uint64 kept as a few sorted arrays (8 bytes per member).

    New members come as a sorted array; arrays are merged while the newer is at least half the
    older one, up to ``MERGE_LIMIT`` members (so a merge never copies more than 32 MB).
    """

    MERGE_LIMIT = 1 << 22

    def __init__(self) -> None:
        self._runs: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(r) for r in self._runs)

    def contains(self, values: np.ndarray) -> np.ndarray:
        found = np.zeros(len(values), dtype=bool)
        for run in self._runs:
            pos = np.minimum(np.searchsorted(run, values), len(run) - 1)
            found |= run[pos] == values
        return found

    def add_new(self, values: np.ndarray) -> None:
        """Add distinct values that are not members yet."""
        if not len(values):
            return
        self._runs.append(np.sort(values))
        while (
            len(self._runs) > 1
            and len(self._runs[-2]) <= 2 * len(self._runs[-1])
            and len(self._runs[-2]) + len(self._runs[-1]) <= self.MERGE_LIMIT
        ):
            last = self._runs.pop()
            merged = np.concatenate((self._runs.pop(), last))
            merged.sort(kind="stable")  # two sorted runs: a linear merge
            self._runs.append(merged)


class _Spill:
    """A local Parquet file of sorted runs, each written as row groups of a fixed size."""

    def __init__(self, path: str, schema: pa.Schema) -> None:
        self.path = path
        self.schema = schema
        self._writer: pq.ParquetWriter | None = None
        self.run_groups: list[tuple[int, int]] = []  # per run: first row group, group count
        self._groups = 0

    def write_run(self, table: pa.Table) -> None:
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, self.schema, compression="lz4")
        first = self._groups
        for start in range(0, table.num_rows, _SPILL_GROUP_ROWS):
            self._writer.write_table(
                table.slice(start, _SPILL_GROUP_ROWS), row_group_size=_SPILL_GROUP_ROWS
            )
            self._groups += 1
        self.run_groups.append((first, self._groups - first))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class _RunReader:
    """Reads one run of the spill file forward, ``take(n)`` rows at a time."""

    def __init__(self, file: pq.ParquetFile, first_group: int, n_groups: int) -> None:
        self._file = file
        self._next = first_group
        self._end = first_group + n_groups
        self._buf: pa.Table | None = None
        self._pos = 0

    def take(self, n: int) -> pa.Table:
        pieces = []
        while n > 0:
            if self._buf is None or self._pos >= self._buf.num_rows:
                if self._next >= self._end:
                    raise AssertionError("merge asked a run for more rows than it holds")
                self._buf = self._file.read_row_group(self._next)
                self._next += 1
                self._pos = 0
            piece = self._buf.slice(self._pos, n)
            pieces.append(piece)
            self._pos += piece.num_rows
            n -= piece.num_rows
        return pa.concat_tables(pieces) if len(pieces) > 1 else pieces[0]


class InteractionsSink:
    """Dedupe identical rows (first kept) and write them sorted stably by TIMESTAMP."""

    def __init__(self, schema: Schema, workdir: str, run_rows: int | None = None) -> None:
        self.dtypes, self.arrow_schema = snapshot_frame_schema(schema)
        self.run_rows = int(run_rows or RUN_ROWS)
        self.rows_in = 0
        self.rows = 0
        self._seen = HashSet()
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._timestamps: list[np.ndarray] = []  # per run, sorted
        self._spill = _Spill(os.path.join(workdir, "interactions.spill.parquet"), self.arrow_schema)

    @property
    def dropped(self) -> int:
        return self.rows_in - self.rows

    def add(self, frame: pd.DataFrame) -> None:
        if not len(frame):
            return
        frame = conform(frame, self.dtypes)
        self.rows_in += len(frame)
        h = row_hashes(frame)
        _, first = np.unique(h, return_index=True)
        keep = np.zeros(len(h), dtype=bool)
        keep[first] = True  # the first of identical rows within this block
        keep &= ~self._seen.contains(h)  # ... and not seen in an earlier block
        self._seen.add_new(h[keep])
        if not keep.all():
            frame = frame[keep]
        if not len(frame):
            return
        self._buffer.append(pa.Table.from_pandas(frame, self.arrow_schema, preserve_index=False))
        self._buffered += len(frame)
        self.rows += len(frame)
        if self._buffered >= self.run_rows:
            self._spill_run()

    def _spill_run(self) -> None:
        if not self._buffered:
            return
        table = pa.concat_tables(self._buffer)
        self._buffer, self._buffered = [], 0
        ts = table.column("TIMESTAMP").to_numpy()
        order = np.argsort(ts, kind="stable")
        self._timestamps.append(ts[order])
        self._spill.write_run(table.take(order))

    def finish(self, path: str) -> None:
        """Write the snapshot file at local ``path`` (row groups of ROW_GROUP_ROWS rows)."""
        self._spill_run()
        self._spill.close()
        self._seen = HashSet()  # not needed any more: free it before the merge
        with pq.ParquetWriter(path, self.arrow_schema, compression="zstd") as out:
            if not self._timestamps:
                out.write_table(self.arrow_schema.empty_table())
                return
            spill = pq.ParquetFile(self._spill.path)
            readers = [_RunReader(spill, g, n) for g, n in self._spill.run_groups]
            for counts in _merge_batches(self._timestamps, ROW_GROUP_ROWS):
                # The batch: the next counts[r] rows of each run r; concatenated in run order,
                # a stable sort by TIMESTAMP orders them by (TIMESTAMP, run, position).
                batch = pa.concat_tables(
                    [readers[r].take(int(c)) for r, c in enumerate(counts) if c]
                )
                order = np.argsort(batch.column("TIMESTAMP").to_numpy(), kind="stable")
                out.write_table(batch.take(order), row_group_size=ROW_GROUP_ROWS)
        self._timestamps = []
        os.unlink(self._spill.path)


def _merge_batches(runs: list[np.ndarray], batch_rows: int) -> Iterator[np.ndarray]:
    """Split a k-way merge of sorted runs into batches: per batch, how many rows each run gives.

    The merge order is (value, run, position): a batch holds every remaining value below a
    threshold and, of the values equal to it, the first runs' first. Only the runs' sorted
    values are needed (no permutation of all rows).
    """
    cursor = np.zeros(len(runs), dtype=np.int64)
    sizes = np.array([len(r) for r in runs], dtype=np.int64)
    lo_all = min(int(r[0]) for r in runs if len(r))
    hi_all = max(int(r[-1]) for r in runs if len(r))
    while True:
        remaining = sizes - cursor
        if remaining.sum() <= batch_rows:
            if remaining.sum():
                yield remaining
            return

        # The smallest value t such that at least batch_rows remaining values are <= t.
        lo, hi = lo_all, hi_all
        while lo < hi:
            mid = lo + (hi - lo) // 2
            if _at_most(runs, mid, cursor).sum() >= batch_rows:
                hi = mid
            else:
                lo = mid + 1
        below = np.maximum(_at_most(runs, lo - 1, cursor), 0)  # ties half taken
        counts = below.copy()
        left = batch_rows - int(below.sum())
        ties = _at_most(runs, lo, cursor) - below
        for r in range(len(runs)):  # values equal to the threshold: earlier runs first
            take = min(int(ties[r]), left)
            counts[r] += take
            left -= take
        cursor += counts
        yield counts


def _at_most(runs: list[np.ndarray], value: int, cursor: np.ndarray) -> np.ndarray:
    """Per run: how many of its values from ``cursor`` on are <= ``value``."""
    ends = np.array([np.searchsorted(r, value, side="right") for r in runs], dtype=np.int64)
    return ends - cursor


class UpsertSink:
    """Items and users: the last record of each id wins (in the order of those records)."""

    def __init__(self, schema: Schema, id_field: str) -> None:
        self.dtypes, self.arrow_schema = snapshot_frame_schema(schema)
        self.id_field = id_field
        self.rows_in = 0
        self.rows = 0
        self._tables: list[pa.Table] = []

    @property
    def dropped(self) -> int:
        return self.rows_in - self.rows

    def add(self, frame: pd.DataFrame) -> None:
        if not len(frame):
            return
        frame = conform(frame, self.dtypes)
        self.rows_in += len(frame)
        self._tables.append(pa.Table.from_pandas(frame, self.arrow_schema, preserve_index=False))

    def finish(self, path: str) -> None:
        table = pa.concat_tables(self._tables) if self._tables else self.arrow_schema.empty_table()
        self._tables = []
        ids = table.column(self.id_field).to_pandas()
        keep = ~ids.duplicated(keep="last").to_numpy()
        if not keep.all():
            table = table.filter(pa.array(keep))
        self.rows = table.num_rows
        with pq.ParquetWriter(path, self.arrow_schema, compression="zstd") as out:
            if not table.num_rows:
                out.write_table(table)
            for start in range(0, table.num_rows, ROW_GROUP_ROWS):
                out.write_table(table.slice(start, ROW_GROUP_ROWS), row_group_size=ROW_GROUP_ROWS)


def iter_parquet(stream: IO[bytes], batch_rows: int = ROW_GROUP_ROWS) -> Iterator[pd.DataFrame]:
    """The rows of a Parquet file (a seekable binary stream) as frames of ``batch_rows`` rows,
    never the whole file at once."""
    file = pq.ParquetFile(stream)
    for batch in file.iter_batches(batch_size=batch_rows):
        yield pa.Table.from_batches([batch], schema=file.schema_arrow).to_pandas()
