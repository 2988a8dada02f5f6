"""New items without retraining: metadata-neighbour initialisation (the 2-hourly update).

A new item's metadata representation ``f`` is computed with the stored feature config (a model
trained with metadata), or else taken from a :class:`MetadataIndex` over the known items'
metadata in the update's items dataset (categorical, textual and numeric fields of its
schema: the model need not have trained on them); its ``k`` nearest known items by cosine
similarity of ``f`` (at least ``min_similarity``) give its id embedding and output bias as a
weighted mean of theirs. An item with no usable metadata (or
no neighbour above the floor) gets the *prior*: the popularity-weighted mean embedding and the
median bias, i.e. "an average item", which exploration then surfaces as new. Never a random
vector: a random row scores arbitrarily and cannot be told apart from a learned one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.errors import ConfigError

if TYPE_CHECKING:
    from recsys.schema import Schema

WEIGHTINGS = ("similarity", "softmax", "uniform")
#: Rows of new items per similarity block (bounds memory at BLOCK × n_known floats).
BLOCK = 256
#: Fallback items listed by id in a report (the count is always exact).
MAX_LISTED = 100


@dataclass(frozen=True)
class NewItemOptions:
    """How new items are initialised; configured per campaign (``update:``)."""

    #: Neighbours per new item. 3 (with popularity_bias) had the best NDCG@10 on the cold-item
    #: benchmark's validation update, against 10 and 30 (docs/BENCHMARKS.md, protocol 3).
    k: int = 3
    #: Neighbours below this cosine similarity are ignored (none left → the prior).
    min_similarity: float = 0.3
    #: ``similarity`` (w ∝ cos), ``softmax`` (w ∝ exp(cos / temperature)) or ``uniform``.
    weighting: str = "similarity"
    temperature: float = 0.1
    #: Rescale a neighbour mean to the neighbours' mean norm: averaging k vectors shrinks
    #: the norm, which would rank every new item as a bland "average" item.
    preserve_norm: bool = True
    #: Added to a neighbour-initialised item's bias (logits): the neighbours' biases carry
    #: their popularity, which a brand-new item does not have yet (see docs/BENCHMARKS.md).
    bias_offset: float = 0.0
    #: Bias from the item's own interactions so far (the update's snapshot) instead of the
    #: neighbours' popularity: b = Σ w·(b_j − log p_j) + log p_new (+ bias_offset), with
    #: p = (count + 1) / N, N the version's training interactions. The neighbours say how much
    #: more (or less) than its popularity an item like this is chosen; the item's count says
    #: how popular it is already. Off: the neighbours' mean bias (their popularity), which
    #: ranked brand-new items too high for most users and too low for the popular ones.
    popularity_bias: bool = True

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ConfigError(f"update.k must be >= 1, got {self.k}")
        if not -1.0 <= self.min_similarity <= 1.0:
            raise ConfigError(
                f"update.min_similarity must be in [-1, 1], got {self.min_similarity}"
            )
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(
                f"update.weighting must be one of {WEIGHTINGS}, got {self.weighting!r}"
            )
        if self.temperature <= 0:
            raise ConfigError("update.temperature must be > 0")
        if not np.isfinite(self.bias_offset):
            raise ConfigError(f"update.bias_offset must be finite, got {self.bias_offset}")

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> NewItemOptions:
        raw = dict(raw or {})
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"update: unknown options {sorted(unknown)}")
        return cls(**raw)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def nearest_neighbours(
    known: np.ndarray, new: np.ndarray, candidates: np.ndarray, options: NewItemOptions
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k known rows per new row by cosine: (indices m × k, weights m × k).

    ``candidates`` masks the known rows that may be neighbours. Weights of neighbours below
    ``min_similarity`` are 0; a row whose weights are all 0 has no neighbour. Ties go to the
    lower index (a stable order), so the result is deterministic.
    """
    m = new.shape[0]
    pool = np.flatnonzero(candidates)
    k = min(options.k, len(pool))
    idx = np.zeros((m, max(k, 1)), dtype=np.int64)
    w = np.zeros((m, max(k, 1)), dtype=np.float32)
    if m == 0 or k == 0:
        return idx, w
    K = _normalise(known[pool])
    for a in range(0, m, BLOCK):
        S = _normalise(new[a : a + BLOCK]) @ K.T  # block × pool
        S = S.toarray() if sp.issparse(S) else np.asarray(S)
        part = (
            np.argpartition(-S, k - 1, axis=1)[:, :k]
            if k < S.shape[1]
            else np.tile(np.arange(S.shape[1]), (len(S), 1))
        )
        top = np.take_along_axis(S, part, 1)
        order = np.lexsort((part, -top), axis=1)  # by similarity, then index
        part = np.take_along_axis(part, order, 1)
        top = np.take_along_axis(top, order, 1)
        keep = top >= options.min_similarity
        if options.weighting == "similarity":
            wb = np.where(keep, np.maximum(top, 1e-6), 0.0)
        elif options.weighting == "softmax":
            z = np.where(keep, top / options.temperature, -np.inf)
            zmax = np.max(np.where(keep, z, -1e30), axis=1, keepdims=True)
            wb = np.where(keep, np.exp(z - zmax), 0.0)
        else:
            wb = keep.astype(np.float64)
        total = wb.sum(axis=1, keepdims=True)
        wb = np.divide(wb, total, out=np.zeros_like(wb), where=total > 0)
        idx[a : a + len(S)] = pool[part]
        w[a : a + len(S)] = wb
    return idx, w


def weighted_mean(
    vectors: np.ndarray, idx: np.ndarray, w: np.ndarray, preserve_norm: bool
) -> np.ndarray:
    """Σ w·vectors[idx] per row; optionally rescaled to Σ w·‖vectors[idx]‖."""
    rows = vectors[idx]  # m × k × d
    mean = np.einsum("mk,mkd->md", w, rows)
    if preserve_norm:
        target = (w * np.linalg.norm(rows, axis=2)).sum(axis=1, keepdims=True)
        norm = np.linalg.norm(mean, axis=1, keepdims=True)
        mean = mean * np.divide(target, norm, out=np.ones_like(norm), where=norm > 0)
    return mean.astype(np.float32)


def _normalise(x):
    if sp.issparse(x):
        x = sp.csr_matrix(x, dtype=np.float32)
        n = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
        return sp.diags(np.divide(1.0, n, out=np.zeros_like(n), where=n > 0)) @ x
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)


def prior_row(
    emb: np.ndarray, bias: np.ndarray, popularity: np.ndarray
) -> tuple[np.ndarray, float]:
    """The fallback: popularity-weighted mean embedding and the median bias."""
    p = np.asarray(popularity, dtype=np.float64)
    if p.sum() <= 0:
        p = np.ones(len(emb))
    e = (p[:, None] * emb).sum(axis=0) / p.sum()
    return e.astype(np.float32), float(np.median(bias)) if len(bias) else 0.0


def report(
    new_ids: np.ndarray, from_neighbours: np.ndarray, reasons: dict[int, str], **extra: Any
) -> dict[str, Any]:
    """What the update did with each new item: counts plus the fallback items (first 100)."""
    fallback = [
        {"item_id": str(new_ids[i]), "reason": reasons[i]} for i in sorted(reasons)[:MAX_LISTED]
    ]
    return {
        "added": int(len(new_ids)),
        "from_neighbours": int(from_neighbours.sum()),
        "fallback": int(len(reasons)),
        "fallback_items": fallback,
        **extra,
    }


def log_popularity(popularity: np.ndarray, counts: np.ndarray | None = None) -> tuple:
    """(log p of the known items, log p of ``counts``), p = (count + 1) / N, where N is
    recovered from the stored popularity shares (the smallest share is one interaction)."""
    p = np.asarray(popularity, dtype=np.float64)
    pos = p[p > 0]
    n = 1.0 / pos.min() if len(pos) else 1.0
    known = np.log(p + 1.0 / n)
    new = None if counts is None else np.log((np.asarray(counts, np.float64) + 1.0) / n)
    return known, new


#: Weight of the standardised numeric fields beside the (unit-norm) token part of a vector.
NUMERIC_WEIGHT = 0.5


@dataclass
class MetadataIndex:
    """Item metadata as sparse vectors for neighbour search, fitted on the known items.

    Categorical values (``|``-joined multi-values) and textual word uni- and bi-grams are
    tokens (:mod:`recsys.recipes.features`), weighted by tf-idf over the known items (a genre
    every item has says little) and scaled to unit norm; the standardised numeric fields follow,
    times ``NUMERIC_WEIGHT``. An item with no known token and no numeric value has no usable
    metadata."""

    config: dict[str, Any]
    idf: np.ndarray
    #: The known items' vectors (n_known × dim, CSR) and whether each has usable metadata.
    vectors: sp.csr_matrix
    usable: np.ndarray

    @classmethod
    def build(
        cls, items: pd.DataFrame | None, schema: Schema | None, known_ids: np.ndarray
    ) -> MetadataIndex | None:
        """The index over ``known_ids`` (model order); None when there is no metadata field."""
        from recsys.recipes.features import fit_features

        if items is None or schema is None or not len(known_ids):
            return None
        known = np.asarray(known_ids).astype(str)
        frame = items[items["ITEM_ID"].astype(str).isin(set(known))]
        config = fit_features(frame, known, schema)
        if not (config["categorical"] or config["textual"] or config["numeric"]):
            return None
        index = cls(config, np.ones(int(config["n_tokens"]), np.float32), sp.csr_matrix((0, 0)),
                    np.zeros(0, bool))  # fmt: skip
        bags, _, has = index._bags(items, known)
        df = np.bincount(bags.indices, minlength=bags.shape[1]).astype(np.float64)
        index.idf = np.log((1.0 + len(known)) / (1.0 + df)).astype(np.float32) + 1.0
        index.vectors, index.usable = index.encode(items, known)
        return index

    def _bags(self, items: pd.DataFrame, ids: np.ndarray):
        from recsys.recipes.features import encode_features, usable_metadata

        feats = encode_features(items, np.asarray(ids, dtype=object), self.config)
        n = len(ids)
        lengths = np.diff(np.append(feats.offsets, len(feats.tokens)))
        rows = np.repeat(np.arange(n), lengths)
        keep = feats.tokens > 0  # slot 0: an unknown category, the same for every item
        bags = sp.csr_matrix(
            (np.ones(int(keep.sum()), np.float32), (rows[keep], feats.tokens[keep])),
            shape=(n, int(self.config["n_tokens"])),
        )
        bags.sum_duplicates()
        return bags, feats.numeric, usable_metadata(feats, items, np.asarray(ids, dtype=object))

    def encode(
        self, items: pd.DataFrame | None, ids: np.ndarray
    ) -> tuple[sp.csr_matrix, np.ndarray]:
        """(vectors, usable) of ``ids`` in this index's space (unknown values ignored)."""
        n_tok = int(self.config["n_tokens"])
        n_num = len(self.config.get("numeric", {}))
        if items is None or not len(ids):
            return sp.csr_matrix((len(ids), n_tok + n_num), dtype=np.float32), np.zeros(
                len(ids), bool
            )
        bags, numeric, usable = self._bags(items, np.asarray(ids).astype(str))
        tfidf = _normalise(bags @ sp.diags(self.idf))
        parts = [tfidf]
        if n_num:
            parts.append(sp.csr_matrix(numeric * np.float32(NUMERIC_WEIGHT / np.sqrt(n_num))))
        return sp.hstack(parts, format="csr", dtype=np.float32), usable

    def neighbours(
        self, items: pd.DataFrame | None, new_ids: np.ndarray, options: NewItemOptions
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(indices m × k into the known items, weights m × k, usable per new item)."""
        vectors, usable = self.encode(items, new_ids)
        idx, w = nearest_neighbours(self.vectors, vectors, self.usable, options)
        w[~usable] = 0.0
        return idx, w, usable
