"""The Dataset object: a snapshot's frames plus the id vocabularies and matrices steps ask for.

Memory: :meth:`Dataset.load` reads the interactions' USER_ID, ITEM_ID and EVENT_TYPE as
dictionary-encoded columns (pandas categoricals: int32 codes + one string per distinct value),
never one string object per row, and skips the sort when the snapshot is already in time
order (imports write it so). The codes and vocabularies are computed from the categorical
codes. 10M interactions of 1M users and 1M items without IMPRESSION take about 300 MB
(codes, TIMESTAMP, EVENT_VALUE, then the int64 ``item_codes``/``user_codes``); IMPRESSION,
when read, is an Arrow string column (its bytes, no Python objects).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import scipy.sparse as sp

from recsys.data.imports import read_manifest, snapshot_prefix
from recsys.errors import ConfigError
from recsys.schema import DatasetGroup, Schema
from recsys.storage import Storage

#: Interaction columns read as categoricals by :meth:`Dataset.load`.
CATEGORICAL_COLUMNS = ("USER_ID", "ITEM_ID", "EVENT_TYPE")


@dataclass
class Dataset:
    """Interactions (sorted stably by TIMESTAMP), optional items and users.

    ``item_ids`` is the catalogue: every item of the items dataset plus every item seen in
    interactions (items first, in file order, then unseen-in-items ids in order of appearance).
    ``user_ids``: every user of the interactions, then users only in the users dataset.
    """

    interactions: pd.DataFrame
    items: pd.DataFrame | None = None
    users: pd.DataFrame | None = None
    snapshot_id: str | None = None
    #: The items schema (which fields are categorical/textual/numeric), when known.
    item_schema: Schema | None = None

    @classmethod
    def load(
        cls,
        storage: Storage,
        dataset_group: str,
        snapshot_id: str,
        exclude_columns: Sequence[str] = (),
    ) -> Dataset:
        """Read a snapshot; ``exclude_columns``: interaction columns not to read (training
        leaves out IMPRESSION, which no recipe reads and which is the biggest column)."""
        manifest = read_manifest(storage, dataset_group, snapshot_id)
        prefix = snapshot_prefix(dataset_group, snapshot_id)
        frames = {}
        for dtype in manifest["datasets"]:
            key = f"{prefix}/{dtype}.parquet"
            if dtype == "interactions":
                frames[dtype] = read_interactions(storage, key, exclude_columns)
            else:
                frames[dtype] = storage.read_parquet(key)
        try:
            item_schema = DatasetGroup.load(dataset_group).schemas.get("items")
        except ConfigError:
            item_schema = None
        return cls(
            interactions=frames["interactions"],
            items=frames.get("items"),
            users=frames.get("users"),
            snapshot_id=snapshot_id,
            item_schema=item_schema,
        )

    def __post_init__(self) -> None:
        df = self.interactions
        if df["TIMESTAMP"].is_monotonic_increasing:
            self.interactions = df.reset_index(drop=True)  # no copy of the data
        else:
            self.interactions = df.sort_values("TIMESTAMP", kind="stable").reset_index(drop=True)

    @cached_property
    def _item_vocab(self) -> tuple[np.ndarray, np.ndarray]:
        return _vocabulary(self.interactions["ITEM_ID"])

    @cached_property
    def _user_vocab(self) -> tuple[np.ndarray, np.ndarray]:
        return _vocabulary(self.interactions["USER_ID"])

    @cached_property
    def _item_catalogue(self) -> pa.Array:
        parts = []
        if self.items is not None:
            parts.append(_arrow_strings(self.items["ITEM_ID"]))
        parts.append(_in_order_of_appearance(*self._item_vocab))
        return _unique(parts)

    @cached_property
    def _user_catalogue(self) -> pa.Array:
        parts = [_in_order_of_appearance(*self._user_vocab)]
        if self.users is not None:
            parts.append(_arrow_strings(self.users["USER_ID"]))
        return _unique(parts)

    @cached_property
    def item_ids(self) -> np.ndarray:
        return self._item_catalogue.to_numpy(zero_copy_only=False).astype(object)

    @cached_property
    def user_ids(self) -> np.ndarray:
        return self._user_catalogue.to_numpy(zero_copy_only=False).astype(object)

    @cached_property
    def item_index(self) -> pd.Index:
        return pd.Index(self.item_ids)

    @cached_property
    def user_index(self) -> pd.Index:
        return pd.Index(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @cached_property
    def item_codes(self) -> np.ndarray:
        """Item index of each interaction row."""
        codes, vocab = self._item_vocab
        return _recode(codes, _positions(vocab, self._item_catalogue))

    @cached_property
    def user_codes(self) -> np.ndarray:
        """User index of each interaction row."""
        codes, vocab = self._user_vocab
        return _recode(codes, _positions(vocab, self._user_catalogue))

    def user_item_matrix(self) -> sp.csr_matrix:
        """users × items interaction counts (CSR)."""
        ones = np.ones(len(self.interactions), dtype=np.float32)
        m = sp.csr_matrix(
            (ones, (self.user_codes, self.item_codes)), shape=(self.n_users, self.n_items)
        )
        m.sum_duplicates()
        return m

    def filter_events(
        self, event_types: tuple[str, ...] | list[str] = (), min_value: float | None = None
    ) -> Dataset:
        """Keep interactions of the given EVENT_TYPEs and/or with EVENT_VALUE >= ``min_value``.

        The catalogue and user list stay the same (filters pick training events, not ids).
        """
        df = self.interactions
        keep = np.ones(len(df), dtype=bool)
        if event_types:
            codes, vocab = _vocabulary(df["EVENT_TYPE"])
            wanted = pc.is_in(vocab, pa.array([str(e) for e in event_types])).to_numpy(
                zero_copy_only=False
            )
            keep &= _recode(codes, wanted, missing=False).astype(bool)
        if min_value is not None and "EVENT_VALUE" in df.columns:
            keep &= (df["EVENT_VALUE"].astype("float64") >= min_value).fillna(False).to_numpy()
        return self.subset(keep)

    def subset(self, mask: np.ndarray) -> Dataset:
        """Same catalogue and users, only the interactions where ``mask`` is true."""
        out = Dataset(
            self.interactions[mask], self.items, self.users, self.snapshot_id, self.item_schema
        )
        for name in ("_item_catalogue", "_user_catalogue", "item_ids", "user_ids"):
            out.__dict__[name] = getattr(self, name)
        return out

    def user_histories(self) -> list[np.ndarray]:
        """Per user index: item indices in time order (stable for equal timestamps)."""
        codes = self.user_codes
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(self.n_users + 1))
        items = self.item_codes[order]
        return [items[bounds[u] : bounds[u + 1]] for u in range(self.n_users)]


def read_interactions(
    storage: Storage, key: str, exclude_columns: Sequence[str] = ()
) -> pd.DataFrame:
    """An interactions Parquet file as a frame, USER_ID/ITEM_ID/EVENT_TYPE as categoricals.

    Read through a stream (never the file's bytes whole), one column at a time and row group
    by row group: int64 and float columns are copied into their final numpy arrays; the id
    columns come from Parquet as dictionary arrays (no string per row), unified into one
    categorical; other columns (IMPRESSION) stay Arrow strings. After each column Arrow's
    memory is handed back to the system (its allocator would otherwise keep it), so the peak
    is the frame plus one column's working memory.
    """
    out: dict[str, object] = {}
    with storage.open(key) as f:
        schema = pq.ParquetFile(f).schema_arrow
        names = [n for n in schema.names if n not in set(exclude_columns)]
        for name in names:
            as_dictionary = name in CATEGORICAL_COLUMNS
            file = pq.ParquetFile(f, read_dictionary=[name] if as_dictionary else None)
            n_rows = file.metadata.num_rows
            kind = schema.field(name).type
            dense = None
            if not as_dictionary and (pa.types.is_floating(kind) or _plain_int64(schema, name)):
                dense = np.empty(n_rows, np.float64 if pa.types.is_floating(kind) else np.int64)
            chunks: list[pa.Array] = []
            at = 0
            for i in range(file.num_row_groups):
                column = file.read_row_group(i, columns=[name]).column(0)
                if dense is not None:
                    dense[at : at + len(column)] = column.to_numpy()
                else:
                    chunks.extend(column.chunks)
                at += len(column)
            if dense is not None:
                out[name] = pd.Series(dense, copy=False)
            elif as_dictionary:
                out[name] = pd.Series(
                    _categorical(pa.chunked_array(chunks, file.schema_arrow.field(name).type)),
                    copy=False,
                )
            else:
                table = pa.table(
                    [pa.chunked_array(chunks, kind)],
                    schema=pa.schema([schema.field(name)], metadata=schema.metadata),
                )
                out[name] = table.to_pandas(self_destruct=True)[name]
            del chunks
            pa.default_memory_pool().release_unused()
    n_rows = len(next(iter(out.values()))) if out else 0
    return pd.DataFrame(out, copy=False).set_axis(pd.RangeIndex(n_rows))


def _plain_int64(schema: pa.Schema, name: str) -> bool:
    """True if the column is int64 in the file and plain int64 (not nullable Int64) in pandas."""
    if schema.field(name).type != pa.int64():
        return False
    meta = schema.pandas_metadata or {}
    for column in meta.get("columns", []):
        if column.get("name") == name:
            return column.get("numpy_type") == "int64"
    return False


def _categorical(column: pa.ChunkedArray) -> pd.Categorical:
    """A dictionary-encoded Arrow column as a pandas Categorical (codes + distinct values)."""
    if column.num_chunks == 0:
        return pd.Categorical([], categories=pd.Index([], dtype="str"))
    array = column.unify_dictionaries().combine_chunks()
    codes = array.indices.fill_null(-1).to_numpy(zero_copy_only=False)
    categories = pd.Index(array.dictionary.to_pandas(), dtype="str")
    return pd.Categorical.from_codes(codes, categories=categories)


def _vocabulary(column: pd.Series) -> tuple[np.ndarray, pa.Array]:
    """(code of each row, the distinct values as Arrow strings): a categorical's own codes, or
    factorized."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.cat.codes.to_numpy(), _arrow_strings(column.cat.categories)
    codes, uniques = pd.factorize(column.astype(str))
    return codes, _arrow_strings(pd.Index(uniques))


def _arrow_strings(values: pd.Series | pd.Index) -> pa.Array:
    """Values as an Arrow string array (numbers as their str, as ``astype(str)`` gives)."""
    return pa.array(pd.Series(values).astype(str), pa.large_string(), from_pandas=True)


def _unique(parts: list[pa.Array]) -> pa.Array:
    """Distinct values of the concatenated parts, in order of first occurrence."""
    return pa.chunked_array(parts, pa.large_string()).unique()


def _positions(values: pa.Array, catalogue: pa.Array) -> np.ndarray:
    """Index in ``catalogue`` of each value (-1 when absent)."""
    found = pc.index_in(values, value_set=catalogue)
    return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def _in_order_of_appearance(codes: np.ndarray, vocab: pa.Array) -> pa.Array:
    """The values that occur in the rows, in order of first occurrence."""
    seen = pd.unique(codes)
    return vocab.take(pa.array(seen[seen >= 0]))


def _recode(codes: np.ndarray, table: np.ndarray, missing=-1) -> np.ndarray:
    """``table[codes]``, with ``missing`` where a code is -1 (a null value)."""
    out = np.append(table, missing)[codes]  # code -1 picks the appended value
    return out
