"""sims: item-to-item co-occurrence (Personalize's SIMS), used for user recommendations too.

Two items are similar when the same users interacted with both. With C the co-occurrence
counts (users who have both; pairs seen fewer than ``min_cointeraction_count`` times dropped)
and n the item counts, similarity is ``C_ij / (n_i · n_j) ** popularity_discount_factor``
(0 = raw counts, 0.5 = cosine, 1 = strong discount of popular items). Each item keeps its
``max_neighbours`` most similar items. A user's score for an item is the sum of its
similarities to the user's last ``bptt`` items. Users above the
``max_user_history_length_percentile`` of history lengths (bots) and items above
``max_item_interaction_count_percentile`` are left out of the co-occurrence counts.

Served score (``score_kind = "share"``): the item's similarity sum divided by the sum over the
whole catalogue, i.e. its share of the user's total similarity mass (sums to 1 over the
catalogue; Personalize shows no scores for SIMS).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys.data.dataset import Dataset
from recsys.errors import ArtifactError
from recsys.recipes.base import Recipe, TrainingOptions


class Sims(Recipe):
    name = "sims"
    defaults: dict[str, Any] = {
        "popularity_discount_factor": 0.5,
        "min_cointeraction_count": 3,
        "min_user_history_length_percentile": 0.0,
        "max_user_history_length_percentile": 0.99,
        "min_item_interaction_count_percentile": 0.0,
        "max_item_interaction_count_percentile": 1.0,
        "max_neighbours": 200,
        "bptt": 200,
    }

    def __init__(self, **hyperparameters: Any) -> None:
        super().__init__(**hyperparameters)
        self.neighbours = sp.csr_matrix((0, 0), dtype=np.float32)
        self.popularity = np.zeros(0, dtype=np.float32)

    def fit(self, data: Dataset, options: TrainingOptions) -> Sims:
        hp = self.hyperparameters
        self.item_ids, self.user_ids = data.item_ids, data.user_ids
        X = data.user_item_matrix()
        X.data[:] = 1.0  # who interacted, not how often
        counts = np.asarray(X.sum(axis=0)).ravel()
        self.popularity = (counts / max(counts.sum(), 1)).astype(np.float32)
        lengths = np.asarray(X.sum(axis=1)).ravel()
        active = lengths > 0
        if active.any():
            lo, hi = np.quantile(
                lengths[active],
                [
                    float(hp["min_user_history_length_percentile"]),
                    float(hp["max_user_history_length_percentile"]),
                ],
            )
            keep_users = active & (lengths >= lo) & (lengths <= hi)
            X = X[keep_users]
        seen = counts > 0
        if seen.any():
            lo, hi = np.quantile(
                counts[seen],
                [
                    float(hp["min_item_interaction_count_percentile"]),
                    float(hp["max_item_interaction_count_percentile"]),
                ],
            )
            drop = ~((counts >= lo) & (counts <= hi))
            X = X @ sp.diags((~drop).astype(np.float32))
        C = (X.T @ X).tocsr().astype(np.float32)
        C.setdiag(0)
        C.data[C.data < float(hp["min_cointeraction_count"])] = 0
        C.eliminate_zeros()
        n = np.maximum(counts, 1.0) ** float(hp["popularity_discount_factor"])
        S = sp.diags(1.0 / n) @ C @ sp.diags(1.0 / n)
        self.neighbours = _top_per_row(S.tocsr(), int(hp["max_neighbours"]))
        return self

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
        n_items = len(self.item_ids)
        L = int(self.hyperparameters["bptt"])
        rows, cols = [], []
        for r, h in enumerate(histories):
            h = np.asarray(h)
            h = h[h >= 0][-L:]
            rows.extend([r] * len(h))
            cols.extend(h.tolist())
        H = sp.csr_matrix(
            (np.ones(len(rows), np.float32), (rows, cols)), shape=(len(histories), n_items)
        )
        scores = np.asarray((H @ self.neighbours).todense(), dtype=np.float32)
        # Popularity breaks ties (and answers cold-start users) without outranking a neighbour.
        return scores + 1e-6 * self.popularity / max(float(self.popularity.max()), 1e-12)

    def add_items(self, new_ids, items, options, counts=None, schema=None) -> dict:
        """New items have no co-occurrences yet (empty rows and columns): they enter through
        exploration until the nightly retraining counts them."""
        from recsys.recipes.cold import report

        new_ids = np.asarray(new_ids, dtype=object)
        m, n = len(new_ids), len(self.item_ids)
        S = self.neighbours.tocsr()
        indptr = np.concatenate([S.indptr, np.full(m, S.indptr[-1])]).astype(np.int64)
        self.neighbours = sp.csr_matrix((S.data, S.indices, indptr), shape=(n + m, n + m))
        self.popularity = np.concatenate([self.popularity, np.zeros(m, np.float32)])
        self.item_ids = np.concatenate([np.asarray(self.item_ids, dtype=object), new_ids])
        return report(new_ids, np.zeros(m, bool), {}, method="exploration")

    def tensors(self) -> dict[str, np.ndarray]:
        S = self.neighbours
        return {
            "indptr": S.indptr.astype(np.int64),
            "indices": S.indices.astype(np.int64),
            "data": S.data.astype(np.float32),
            "popularity": self.popularity,
        }

    def load_tensors(self, tensors: dict[str, np.ndarray]) -> None:
        n = len(self.item_ids)
        indptr = tensors["indptr"]
        if len(indptr) != n + 1:
            raise ArtifactError(f"sims: {len(indptr) - 1} rows for {n} items")
        self.neighbours = sp.csr_matrix((tensors["data"], tensors["indices"], indptr), shape=(n, n))
        self.popularity = tensors["popularity"].astype(np.float32)


def _top_per_row(S: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of each row."""
    indptr, indices, data = [0], [], []
    for r in range(S.shape[0]):
        a, b = S.indptr[r], S.indptr[r + 1]
        vals, cols = S.data[a:b], S.indices[a:b]
        if len(vals) > k:
            top = np.argpartition(-vals, k - 1)[:k]
            vals, cols = vals[top], cols[top]
        indices.extend(cols.tolist())
        data.extend(vals.tolist())
        indptr.append(len(indices))
    return sp.csr_matrix(
        (np.array(data, np.float32), np.array(indices, np.int64), np.array(indptr, np.int64)),
        shape=S.shape,
    )
