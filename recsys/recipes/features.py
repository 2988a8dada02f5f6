"""Item metadata → model inputs: categorical fields (multi-value, ``|``-joined), numeric fields
(standardised), textual fields (hashed word uni- and bi-grams).

The vocabularies are learned on the training catalogue and stored with the model (as tensors
and JSON config), so a later catalogue (the 2-hourly update, UPDATE training) is encoded the
same way; unknown categories map to a shared "unknown" slot.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from recsys.schema import Schema

TEXT_BUCKETS = 1 << 15
_WORD = re.compile(r"[a-z0-9]+")


def _hash(token: str) -> int:
    return zlib.crc32(token.encode("utf-8")) % TEXT_BUCKETS


@dataclass
class ItemFeatures:
    """Sparse bags per item: ``offsets``/``tokens`` index into one shared token space.

    Token space: [categorical values of every field..., text hash buckets]. Numeric fields are a
    dense (n_items × n_numeric) standardised matrix (missing = 0 = the mean).
    """

    tokens: np.ndarray  # int64, concatenated token ids
    offsets: np.ndarray  # int64, start of each item's bag (len n_items)
    numeric: np.ndarray  # float32 (n_items × n_numeric)
    n_tokens: int
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def n_numeric(self) -> int:
        return int(self.numeric.shape[1])


def fit_features(items: pd.DataFrame | None, item_ids: np.ndarray, schema: Schema | None) -> dict:
    """Learn the encoding config (vocabularies, numeric means/stds) from a catalogue."""
    config: dict[str, Any] = {"categorical": {}, "numeric": {}, "textual": []}
    if items is None or schema is None:
        return config
    frame = items.drop_duplicates("ITEM_ID", keep="last")
    next_id = 1  # 0 = unknown category
    for f in schema.fields:
        if f.name in ("ITEM_ID", "CREATION_TIMESTAMP") or f.name not in frame.columns:
            continue
        col = frame[f.name]
        if f.categorical or (f.type == "string" and not f.textual):
            values = sorted({v for cell in col.dropna().astype(str) for v in cell.split("|") if v})
            if not values or len(values) > 100_000:
                continue
            config["categorical"][f.name] = {"start": next_id, "values": values}
            next_id += len(values)
        elif f.textual:
            config["textual"].append(f.name)
        elif f.numeric:
            x = col.astype("float64")
            present = bool(x.notna().any())  # an all-missing column: mean 0, std 1
            mean = float(np.nanmean(x)) if present else 0.0
            std = float(np.nanstd(x)) if present else 1.0
            config["numeric"][f.name] = {"mean": mean, "std": std if std > 0 else 1.0}
    config["text_start"] = next_id
    config["n_tokens"] = next_id + (TEXT_BUCKETS if config["textual"] else 0)
    return config


def encode_features(items: pd.DataFrame | None, item_ids: np.ndarray, config: dict) -> ItemFeatures:
    """Encode the catalogue ``item_ids`` (model order) with a fitted config."""
    n = len(item_ids)
    n_tokens = int(config.get("n_tokens", 1))
    num_fields = list(config.get("numeric", {}))
    numeric = np.zeros((n, len(num_fields)), dtype=np.float32)
    bags: list[list[int]] = [[] for _ in range(n)]
    if items is not None and n:
        frame = items.drop_duplicates("ITEM_ID", keep="last").set_index(
            items.drop_duplicates("ITEM_ID", keep="last")["ITEM_ID"].astype(str)
        )
        rows = frame.reindex(pd.Index(item_ids.astype(str)))
        for name, spec in config.get("categorical", {}).items():
            lookup = {v: spec["start"] + i for i, v in enumerate(spec["values"])}
            for i, cell in enumerate(rows[name].tolist()):
                if isinstance(cell, str) and cell:
                    bags[i].extend(lookup.get(v, 0) for v in cell.split("|") if v)
        for name in config.get("textual", []):
            start = config["text_start"]
            for i, cell in enumerate(rows[name].tolist()):
                if isinstance(cell, str) and cell:
                    words = _WORD.findall(cell.lower())
                    grams = words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]
                    bags[i].extend(start + _hash(g) for g in grams)
        for j, name in enumerate(num_fields):
            spec = config["numeric"][name]
            x = rows[name].astype("float64").to_numpy()
            numeric[:, j] = np.nan_to_num((x - spec["mean"]) / spec["std"]).astype(np.float32)
    lengths = np.array([len(b) for b in bags], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    tokens = np.fromiter((t for b in bags for t in b), dtype=np.int64, count=int(lengths.sum()))
    return ItemFeatures(tokens, offsets, numeric, n_tokens, config)


def concat_features(a: ItemFeatures, b: ItemFeatures) -> ItemFeatures:
    """The bags of catalogue ``a`` followed by those of ``b`` (same config)."""
    return ItemFeatures(
        np.concatenate([a.tokens, b.tokens]).astype(np.int64),
        np.concatenate([a.offsets, b.offsets + len(a.tokens)]).astype(np.int64),
        np.concatenate([a.numeric, b.numeric]).astype(np.float32),
        a.n_tokens,
        a.config,
    )


def usable_metadata(
    features: ItemFeatures, items: pd.DataFrame | None = None, item_ids: np.ndarray | None = None
) -> np.ndarray:
    """Per item: does it have metadata the model knows? A known categorical value or a text
    token, or a numeric value — present in ``items`` when given, else non-zero once
    standardised (a stored catalogue keeps no missing-value mask). Unknown categories (slot 0)
    alone are not usable: every item with them looks the same."""
    n = len(features.offsets)
    ends = np.append(features.offsets[1:], len(features.tokens))
    known = np.zeros(n, dtype=bool)
    good = np.flatnonzero(features.tokens > 0)
    if len(good):
        owner = np.searchsorted(features.offsets, good, side="right") - 1
        # empty bags share an offset with the next item: searchsorted picks the last of them
        known[owner] = True
    known &= ends > features.offsets
    fields = list(features.config.get("numeric", {}))
    if fields and items is not None and item_ids is not None:
        frame = items.drop_duplicates("ITEM_ID", keep="last").set_index(
            items.drop_duplicates("ITEM_ID", keep="last")["ITEM_ID"].astype(str)
        )
        rows = frame.reindex(pd.Index(np.asarray(item_ids).astype(str)))
        for name in fields:
            known |= pd.to_numeric(rows[name], errors="coerce").notna().to_numpy()
    elif fields:
        known |= (features.numeric != 0).any(axis=1)
    return known
