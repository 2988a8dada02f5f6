"""The Dataset object: a snapshot's frames plus the id vocabularies and matrices steps ask for."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.data.imports import load_snapshot_frames
from recsys.errors import ConfigError
from recsys.schema import DatasetGroup, Schema
from recsys.storage import Storage


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
    def load(cls, storage: Storage, dataset_group: str, snapshot_id: str) -> Dataset:
        frames = load_snapshot_frames(storage, dataset_group, snapshot_id)
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
        self.interactions = self.interactions.sort_values("TIMESTAMP", kind="stable").reset_index(
            drop=True
        )

    @cached_property
    def item_ids(self) -> np.ndarray:
        parts = []
        if self.items is not None:
            parts.append(self.items["ITEM_ID"].astype(str))
        parts.append(self.interactions["ITEM_ID"].astype(str))
        return pd.unique(pd.concat(parts, ignore_index=True)).astype(object)

    @cached_property
    def user_ids(self) -> np.ndarray:
        parts = [self.interactions["USER_ID"].astype(str)]
        if self.users is not None:
            parts.append(self.users["USER_ID"].astype(str))
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
        return self.item_index.get_indexer(self.interactions["ITEM_ID"].astype(str))

    @cached_property
    def user_codes(self) -> np.ndarray:
        """User index of each interaction row."""
        return self.user_index.get_indexer(self.interactions["USER_ID"].astype(str))

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
            keep &= df["EVENT_TYPE"].astype(str).isin(list(event_types)).to_numpy()
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
