"""Which items exploration is for: *cold* items, young and with little interaction data.

Personalize's ``exploration_weight`` gives exposure to items with less interaction data, and
``exploration_item_age_cut_off`` limits it to items younger than the cut-off. Age alone does
not make an item cold: an item is cold when

* it is **young**: ``age < exploration_item_age_cut_off`` days, the age running from
  ``CREATION_TIMESTAMP`` or, when that is missing, the item's first interaction (an item with
  neither is brand new, age 0); and
* it has **little data**: ``interactions + impressions < COLD_EVIDENCE``, where
  ``impressions`` counts how often it was shown (the ``IMPRESSION`` column).

Its coldness, in (0, 1], is ``recency × (1 - evidence / COLD_EVIDENCE)`` with ``recency =
1 - age / cut_off``: a brand-new item never shown is 1, an item shown or clicked often is
explored less.

Where the cold items go is :func:`recsys.inference.topk.recommend`'s job: only cold items
among the user's own best candidates by the model (relevant to them), a share of the list in
proportion to ``exploration_weight``, never the first position.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recsys.data.dataset import Dataset
from recsys.inference.topk import Exploration

DAY = 86_400.0
#: Interactions + impressions at which an item stops being cold (it has enough data).
COLD_EVIDENCE = 10.0


def item_exploration_scores(
    item_ids: np.ndarray, data: Dataset, as_of: float, cut_off_days: float
) -> tuple[np.ndarray, np.ndarray]:
    """(catalogue indices of the cold items, their coldness in (0, 1]) for a catalogue."""
    n = len(item_ids)
    if cut_off_days <= 0 or n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    index = pd.Index(np.asarray(item_ids).astype(str))
    created = np.full(n, np.nan)
    if data.items is not None and "CREATION_TIMESTAMP" in data.items.columns:
        pos = index.get_indexer(data.items["ITEM_ID"].astype(str))
        ts = pd.to_numeric(data.items["CREATION_TIMESTAMP"], errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
        ok = pos >= 0
        created[pos[ok]] = ts[ok]
    inter = data.interactions
    codes = index.get_indexer(inter["ITEM_ID"].astype(str))
    seen = codes >= 0
    first = np.full(n, np.inf)
    np.minimum.at(first, codes[seen], inter["TIMESTAMP"].to_numpy(dtype=np.float64)[seen])
    created = np.where(np.isnan(created), first, created)
    created = np.where(np.isinf(created), as_of, created)  # never interacted: a new item
    age_days = np.maximum(as_of - created, 0.0) / DAY
    recency = 1.0 - age_days / cut_off_days
    clicks = np.bincount(codes[seen], minlength=n).astype(np.float64)
    shown = np.zeros(n)
    if "IMPRESSION" in inter.columns:
        shown = impression_counts(inter["IMPRESSION"], index)
    evidence = clicks + shown
    score = recency * (1.0 - evidence / COLD_EVIDENCE)
    items = np.flatnonzero((recency > 0) & (evidence < COLD_EVIDENCE))
    return items.astype(np.int64), score[items]


#: Interactions whose slates are split and counted at once (bounds the flattened strings).
IMPRESSION_ROWS = 1 << 20


def impression_counts(column: pd.Series, index: pd.Index) -> np.ndarray:
    """How often each item of ``index`` was shown (float64 per item), from ``|``-joined slates.

    Counted in Arrow a slice of rows at a time (split → flatten → value counts), so memory holds
    one slice's slate entries and the distinct ids, never a Python string per entry: at 10M
    interactions with 3–8 items per slate, exploding in pandas made 50M+ Python strings."""
    shown = np.zeros(len(index), dtype=np.float64)
    arr = pa.array(column, from_pandas=True)  # zero-copy for Arrow-backed columns
    chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
    for chunk in chunks:
        chunk = chunk.cast(pa.large_string()) if not pa.types.is_large_string(chunk.type) else chunk
        for start in range(0, len(chunk), IMPRESSION_ROWS):
            flat = pc.list_flatten(pc.split_pattern(chunk.slice(start, IMPRESSION_ROWS), "|"))
            counts = pc.value_counts(flat)
            ids = counts.field("values").to_numpy(zero_copy_only=False)
            pos = index.get_indexer(ids.astype(object))
            ok = pos >= 0
            np.add.at(shown, pos[ok], counts.field("counts").to_numpy()[ok])
    return shown


def exploration_for(
    item_ids: np.ndarray,
    data: Dataset,
    as_of: float,
    weight: float,
    cut_off_days: float,
    seed: int = 0,
) -> Exploration:
    """The :class:`Exploration` of a job (inactive when ``weight`` is 0)."""
    if weight <= 0:
        return Exploration(np.zeros(0, np.int64), np.zeros(0), 0.0, seed)
    items, scores = item_exploration_scores(item_ids, data, as_of, cut_off_days)
    return Exploration(items, scores, float(weight), seed)
