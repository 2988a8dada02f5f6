"""similar-items: item-to-item from co-interactions and item metadata (Personalize's
aws-similar-items), so an item without interactions still has neighbours.

Two similarities, each in [0, 1], are blended per item pair::

    S_ij = (1 - w_i) · Co_ij + w_i · Meta_ij

* ``Co``: the :class:`~recsys.recipes.sims.Sims` co-occurrence similarity (users who
  interacted with both, popularity-discounted, rare pairs dropped), each row divided by its
  largest value, so an item's best co-interaction neighbour has 1.
* ``Meta``: cosine similarity of the items' metadata bags (categorical values and hashed
  word uni/bi-grams of textual fields, :mod:`recsys.recipes.features`), IDF-weighted so a
  genre every other item has weighs little. Pairs below ``min_metadata_similarity`` count 0.
* ``metadata_popularity_exponent`` γ (default 0): ``Meta_ij`` is multiplied by
  ``(p_j / max p) ** γ`` (p: training interaction share) and each row rescaled to a best of
  1, so among equally similar items the more popular come first (on ml-latest-small γ = 1
  helped the cold queries, docs/BENCHMARKS.md); new items (p = 0) then rank last in others'
  rows.
* ``w_i = metadata_weight`` for an item with co-interaction neighbours and 1 for an item
  without (a cold item): its neighbours come from metadata alone.

Each item keeps its ``max_neighbours`` best. Related items for an item are its row; a user's
score is the sum of the rows of their last ``bptt`` items (as for sims), so the recipe also
serves user batches. The 2-hourly update (:meth:`SimilarItems.add_items`) gives each new item
its metadata neighbours among the whole catalogue (new items included) without retraining,
and adds the new item to its neighbours' rows where it beats their weakest neighbour; existing
co-interaction similarities are kept as they are. The metadata cost is blocked
``O(n_items² · bag)`` sparse products (fine for 10⁵ items; beyond, metadata neighbours would
need an approximate index).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.data.dataset import Dataset
from recsys.errors import ArtifactError
from recsys.recipes.base import TrainingOptions
from recsys.recipes.features import encode_features, fit_features
from recsys.recipes.sims import Sims, _top_per_row

#: Rows of the metadata similarity computed at once (bounds memory at BLOCK × n_items).
BLOCK = 1024


class SimilarItems(Sims):
    name = "similar-items"
    defaults: dict[str, Any] = {
        **Sims.defaults,
        "min_cointeraction_count": 2,
        "max_neighbours": 100,
        "metadata_weight": 0.2,
        "min_metadata_similarity": 0.1,
        "metadata_popularity_exponent": 0.0,
    }

    def __init__(self, **hyperparameters: Any) -> None:
        super().__init__(**hyperparameters)
        self.feature_config: dict[str, Any] = {}
        #: IDF weight per metadata token (the training catalogue's).
        self.idf = np.zeros(0, np.float32)
        #: Per item: does it have co-interaction neighbours (else metadata alone ranks them)?
        self.has_cointeractions = np.zeros(0, bool)

    # -- training --------------------------------------------------------------------------
    def fit(self, data: Dataset, options: TrainingOptions) -> SimilarItems:
        super().fit(data, options)  # co-occurrence neighbours (self.neighbours), popularity
        co = _row_max_normalised(self.neighbours)
        self.feature_config = fit_features(data.items, data.item_ids, data.item_schema)
        F = self._metadata_matrix(data.items, data.item_ids, fit_idf=True)
        meta = metadata_neighbours(
            F,
            F,
            int(self.hyperparameters["max_neighbours"]),
            float(self.hyperparameters["min_metadata_similarity"]),
            self_offset=0,
        )
        self.has_cointeractions = np.diff(co.indptr) > 0
        self.neighbours = self._blend(co, meta)
        return self

    def _metadata_matrix(
        self, items: pd.DataFrame | None, item_ids: np.ndarray, fit_idf: bool = False
    ) -> sp.csr_matrix:
        """Rows: items, L2-normalised IDF-weighted binary token bags (no bag: an empty row)."""
        feats = encode_features(items, np.asarray(item_ids, dtype=object), self.feature_config)
        n = len(item_ids)
        lengths = np.diff(np.append(feats.offsets, len(feats.tokens)))
        rows = np.repeat(np.arange(n), lengths)
        keep = feats.tokens > 0  # slot 0: an unknown category, shared by unrelated items
        B = sp.csr_matrix(
            (np.ones(int(keep.sum()), np.float32), (rows[keep], feats.tokens[keep])),
            shape=(n, max(feats.n_tokens, 1)),
        )
        B.sum_duplicates()
        B.data[:] = 1.0
        if fit_idf:
            df = np.asarray((B > 0).sum(axis=0)).ravel().astype(np.float64)
            with_items = max(int((lengths > 0).sum()), 1)
            # a token no training item has (a new item's word) weighs as the rarest
            self.idf = (np.log((1.0 + with_items) / (1.0 + df)) + 1.0).astype(np.float32)
        idf = self.idf if len(self.idf) == B.shape[1] else np.ones(B.shape[1], np.float32)
        W = (B @ sp.diags(idf)).tocsr()
        norms = np.sqrt(np.asarray(W.multiply(W).sum(axis=1)).ravel())
        return (
            sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ W
        ).tocsr()

    def _popular_meta(self, meta: sp.csr_matrix) -> sp.csr_matrix:
        """Metadata similarity times the neighbour's popularity ** exponent, rows rescaled to
        a best of 1 (0: metadata alone)."""
        if float(self.hyperparameters["metadata_popularity_exponent"]) == 0 or meta.nnz == 0:
            return meta
        p = np.zeros(meta.shape[1], np.float64)  # columns past the known items: new, p = 0
        p[: len(self.popularity)] = self.popularity
        return _row_max_normalised(meta @ sp.diags(self._popularity_scale(p)))

    def _popularity_scale(self, p: np.ndarray) -> np.ndarray:
        g = float(self.hyperparameters["metadata_popularity_exponent"])
        top = max(float(self.popularity.max()) if len(self.popularity) else 0.0, 1e-9)
        return (((np.asarray(p, np.float64) + 1e-9) / top) ** g).astype(np.float32)

    def _blend(self, co: sp.csr_matrix, meta: sp.csr_matrix) -> sp.csr_matrix:
        meta = self._popular_meta(meta)
        w = float(self.hyperparameters["metadata_weight"])
        row_w = np.where(self.has_cointeractions, w, 1.0)
        S = sp.diags(1.0 - row_w) @ co + sp.diags(row_w) @ meta
        S = S.tocsr()
        S.setdiag(0)
        S.eliminate_zeros()
        return _top_per_row(S, int(self.hyperparameters["max_neighbours"]))

    # -- related items -------------------------------------------------------------------
    def related(self, item: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar items to model item ``item`` (never itself): (indices,
        scores), best first, ties by catalogue order."""
        S = self.neighbours
        a, b = S.indptr[item], S.indptr[item + 1]
        cols, vals = S.indices[a:b], S.data[a:b]
        keep = (cols != item) & (vals > 0)
        cols, vals = cols[keep], vals[keep]
        order = np.lexsort((cols, -vals))[:k]
        return cols[order].astype(np.int64), vals[order].astype(np.float32)

    # -- the 2-hourly update -------------------------------------------------------------
    def add_items(self, new_ids, items, options, counts=None) -> dict:
        """New items get their metadata neighbours (among all items, old and new); each
        existing item's row gains the new items that beat its weakest neighbour."""
        from recsys.recipes.cold import report

        new_ids = np.asarray(new_ids, dtype=object)
        m, n = len(new_ids), len(self.item_ids)
        all_ids = np.concatenate([np.asarray(self.item_ids, dtype=object), new_ids])
        k = int(self.hyperparameters["max_neighbours"])
        floor = float(self.hyperparameters["min_metadata_similarity"])
        S = self.neighbours.tocsr()
        S = sp.csr_matrix(
            (S.data, S.indices, np.concatenate([S.indptr, np.full(m, S.indptr[-1])])),
            shape=(n + m, n + m),
        )
        reasons: dict[int, str] = {}
        if m:
            F = self._metadata_matrix(items, all_ids)
            new_rows = metadata_neighbours(F[n:], F, k, floor, self_offset=n)  # m × (n + m)
            new_rows = self._popular_meta(new_rows)
            # the old items' side: a new item enters an old row if it is in its top k
            old_side = metadata_neighbours(F[:n], F[n:], k, floor)  # n × m
            if float(self.hyperparameters["metadata_popularity_exponent"]):
                old_side = old_side @ sp.diags(self._popularity_scale(np.zeros(m)))
            w = float(self.hyperparameters["metadata_weight"])
            row_w = np.where(self.has_cointeractions, w, 1.0).astype(np.float32)
            old_side = sp.diags(row_w) @ old_side
            ext = sp.hstack([sp.csr_matrix((n, n)), old_side]).tocsr()
            S = S + sp.vstack([ext, new_rows]).tocsr()
            S = _top_per_row(S.tocsr(), k)
            empty = np.diff(new_rows.indptr) == 0
            reasons = {int(i): "no metadata neighbour" for i in np.flatnonzero(empty)}
        self.neighbours = S
        self.has_cointeractions = np.concatenate([self.has_cointeractions, np.zeros(m, bool)])
        self.popularity = np.concatenate([self.popularity, np.zeros(m, np.float32)])
        self.item_ids = all_ids
        found = ~np.isin(np.arange(m), list(reasons))
        return report(new_ids, found, reasons, method="metadata-neighbours")

    # -- artifacts -----------------------------------------------------------------------
    def tensors(self) -> dict[str, np.ndarray]:
        return {
            **super().tensors(),
            "idf": self.idf,
            "has_cointeractions": self.has_cointeractions.astype(np.uint8),
        }

    def state_config(self) -> dict[str, Any]:
        return {"feature_config": self.feature_config}

    def load_state(self, tensors: dict[str, np.ndarray], state: dict[str, Any]) -> None:
        self.load_tensors(tensors)
        self.feature_config = dict(state.get("feature_config") or {})

    def load_tensors(self, tensors: dict[str, np.ndarray]) -> None:
        super().load_tensors(tensors)
        if "idf" not in tensors or "has_cointeractions" not in tensors:
            raise ArtifactError("similar-items: the artifact has no idf tensor")
        self.idf = tensors["idf"].astype(np.float32)
        self.has_cointeractions = tensors["has_cointeractions"].astype(bool)


def _row_max_normalised(S: sp.csr_matrix) -> sp.csr_matrix:
    S = S.tocsr().astype(np.float32)
    S.eliminate_zeros()
    row_max = np.zeros(S.shape[0], np.float32)
    filled = np.flatnonzero(np.diff(S.indptr) > 0)
    if len(filled):
        row_max[filled] = np.maximum.reduceat(S.data, S.indptr[filled])
    inv = np.divide(1.0, row_max, out=np.zeros_like(row_max), where=row_max > 0)
    return (sp.diags(inv) @ S).tocsr()


def metadata_neighbours(
    queries: sp.csr_matrix,
    pool: sp.csr_matrix,
    k: int,
    floor: float,
    self_offset: int | None = None,
) -> sp.csr_matrix:
    """Per query row: its ``k`` best cosine neighbours in ``pool`` (rows L2-normalised), pairs
    below ``floor`` dropped. ``self_offset``: query ``i`` is pool row ``self_offset + i``
    (never its own neighbour). Blocked over queries."""
    q, p = queries.shape[0], pool.shape[0]
    parts = []
    PT = pool.T.tocsc()
    for a in range(0, q, BLOCK):
        block = (queries[a : a + BLOCK] @ PT).tocsr().astype(np.float32)  # block × p
        block.data[block.data < floor] = 0
        if self_offset is not None:
            rows = np.repeat(np.arange(block.shape[0]), np.diff(block.indptr))
            block.data[block.indices == self_offset + a + rows] = 0
        block.eliminate_zeros()
        parts.append(_top_per_row(block, k))
    if not parts:
        return sp.csr_matrix((q, p), dtype=np.float32)
    return sp.vstack(parts).tocsr().astype(np.float32)
