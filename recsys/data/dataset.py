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
    def item_ids(self) -> np.ndarray:
        parts = []
        if self.items is not None:
            parts.append(pd.Series(self.items["ITEM_ID"].astype(str).to_numpy(dtype=object)))
        parts.append(pd.Series(_in_order_of_appearance(*self._item_vocab), dtype=object))
        return pd.unique(pd.concat(parts, ignore_index=True)).astype(object)

    @cached_property
    def user_ids(self) -> np.ndarray:
        parts = [pd.Series(_in_order_of_appearance(*self._user_vocab), dtype=object)]
        if self.users is not None:
            parts.append(pd.Series(self.users["USER_ID"].astype(str).to_numpy(dtype=object)))
        return pd.unique(pd.concat(parts, ignore_index=True)).astype(object)

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
        return _recode(codes, self.item_index.get_indexer(vocab))

    @cached_property
    def user_codes(self) -> np.ndarray:
        """User index of each interaction row."""
        codes, vocab = self._user_vocab
        return _recode(codes, self.user_index.get_indexer(vocab))

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
            wanted = np.isin(vocab.astype(str), [str(e) for e in event_types])
            keep &= _recode(codes, wanted, missing=False).astype(bool)
        if min_value is not None and "EVENT_VALUE" in df.columns:
            keep &= (df["EVENT_VALUE"].astype("float64") >= min_value).fillna(False).to_numpy()
        return self.subset(keep)

    def subset(self, mask: np.ndarray) -> Dataset:
        """Same catalogue and users, only the interactions where ``mask`` is true."""
        out = Dataset(
            self.interactions[mask], self.items, self.users, self.snapshot_id, self.item_schema
        )
        out.__dict__["item_ids"] = self.item_ids
        out.__dict__["user_ids"] = self.user_ids
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

    Read row group by row group through a stream (never the file's bytes whole): int64 and
    float columns are copied into their final numpy arrays group by group; the id columns come
    from Parquet as dictionary arrays (no string per row) and are unified at the end; other
    columns (IMPRESSION) stay Arrow strings. Arrow memory is handed back to the system at the
    end (its allocator would otherwise keep it).
    """
    with storage.open(key) as f:
        schema = pq.ParquetFile(f).schema_arrow
        names = [n for n in schema.names if n not in set(exclude_columns)]
        dictionary = [c for c in CATEGORICAL_COLUMNS if c in names]
        file = pq.ParquetFile(f, read_dictionary=dictionary)
        n_rows = file.metadata.num_rows
        dense = {
            n: np.empty(n_rows, dtype=np.float64 if pa.types.is_floating(t) else np.int64)
            for n in names
            if n not in dictionary
            and (pa.types.is_floating(t := schema.field(n).type) or _plain_int64(schema, n))
        }
        chunks: dict[str, list[pa.Array]] = {n: [] for n in names if n not in dense}
        at = 0
        for i in range(file.num_row_groups):
            group = file.read_row_group(i, columns=names)
            for name, array in dense.items():
                array[at : at + group.num_rows] = group.column(name).to_numpy()
            for name, parts in chunks.items():
                parts.extend(group.column(name).chunks)
            at += group.num_rows
            del group
    out: dict[str, object] = {n: pd.Series(a, copy=False) for n, a in dense.items()}
    rest = [n for n in chunks if n not in dictionary]
    if rest:
        table = pa.table(
            [pa.chunked_array(chunks.pop(n), schema.field(n).type) for n in rest],
            schema=pa.schema([schema.field(n) for n in rest], metadata=schema.metadata),
        )
        frame = table.to_pandas(self_destruct=True)
        del table
        out.update({n: frame[n] for n in rest})
    for name in dictionary:
        column = pa.chunked_array(chunks.pop(name), file.schema_arrow.field(name).type)
        out[name] = pd.Series(_categorical(column), copy=False)
    pa.default_memory_pool().release_unused()
    return pd.DataFrame({n: out[n] for n in names}, copy=False).set_axis(pd.RangeIndex(n_rows))


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


def _vocabulary(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(code of each row, the distinct values as str): a categorical's own codes, or factorized."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        vocab = column.cat.categories.astype(str).to_numpy(dtype=object)
        return column.cat.codes.to_numpy(), vocab
    codes, uniques = pd.factorize(column.astype(str))
    return codes, np.asarray(uniques, dtype=object)


def _in_order_of_appearance(codes: np.ndarray, vocab: np.ndarray) -> np.ndarray:
    """The values that occur in the rows, in order of first occurrence."""
    seen = pd.unique(codes)
    return vocab[seen[seen >= 0]]


def _recode(codes: np.ndarray, table: np.ndarray, missing=-1) -> np.ndarray:
    """``table[codes]``, with ``missing`` where a code is -1 (a null value)."""
    out = np.append(table, missing)[codes]  # code -1 picks the appended value
    return out
