"""The exploration layer's item statistics: recency within the age cut-off, and impressions.

An item's exploration score is ``recency × impression_factor``:

* ``recency = 1 - age / exploration_item_age_cut_off`` for items younger than the cut-off (0
  otherwise: old items are not explored). The age runs from ``CREATION_TIMESTAMP`` or, when
  that is missing, the item's first interaction; an item with neither is brand new (age 0).
* at most ``MAX_EXPLORED`` items (the highest scores) are explored per job;
* ``impression_factor = 1 / (1 + unclicked / IMPRESSION_SCALE)``, where ``unclicked`` is how
  often the item was shown (the ``IMPRESSION`` column) minus how often it was interacted with:
  an item shown many times without a click gets less exploration.

:func:`recsys.inference.topk.recommend` blends it with relevance by ``exploration_weight``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recsys.data.dataset import Dataset
from recsys.inference.topk import Exploration

DAY = 86_400.0
#: Most items explored per job: the best by exploration score (ties: catalogue order). Each
#: user block scores these items too, so this bounds that extra work (users × MAX_EXPLORED).
MAX_EXPLORED = 4096
#: Unclicked impressions that halve an item's exploration score.
IMPRESSION_SCALE = 10.0


def item_exploration_scores(
    item_ids: np.ndarray, data: Dataset, as_of: float, cut_off_days: float
) -> tuple[np.ndarray, np.ndarray]:
    """(catalogue indices of explorable items, their scores in (0, 1]) for a catalogue."""
    n = len(item_ids)
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
    if cut_off_days <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    recency = 1.0 - age_days / cut_off_days
    clicks = np.bincount(codes[seen], minlength=n).astype(np.float64)
    shown = np.zeros(n)
    if "IMPRESSION" in inter.columns:
        shown = impression_counts(inter["IMPRESSION"], index)
    unclicked = np.maximum(shown - clicks, 0.0)
    score = recency / (1.0 + unclicked / IMPRESSION_SCALE)
    items = np.flatnonzero(recency > 0)
    if len(items) > MAX_EXPLORED:
        best = items[np.lexsort((items, -score[items]))[:MAX_EXPLORED]]
        items = np.sort(best)
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
