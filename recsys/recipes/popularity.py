"""popularity-count: every user gets the most-interacted items. The baseline of every metric."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recsys.data.dataset import Dataset
from recsys.errors import ArtifactError
from recsys.recipes.base import Recipe, TrainingOptions


class PopularityCount(Recipe):
    """Scores = each item's share of the training interactions (same for every user).

    Served score (``score_kind = "share"``): that share, i.e. the item's fraction of all
    training interactions (the catalogue's scores sum to 1)."""

    name = "popularity-count"
    defaults: dict = {}

    def __init__(self, **hyperparameters) -> None:
        super().__init__(**hyperparameters)
        #: Share of training interactions per item (sums to 1 over the catalogue).
        self.item_scores = np.zeros(0, dtype=np.float32)
        self._no_factors = np.zeros((0, 0), dtype=np.float32)

    def fit(self, data: Dataset, options: TrainingOptions) -> PopularityCount:
        counts = np.bincount(data.item_codes, minlength=data.n_items).astype(np.float64)
        total = counts.sum()
        self.item_scores = (counts / total if total else counts).astype(np.float32)
        self.item_ids = data.item_ids
        self.user_ids = data.user_ids
        return self

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
        return np.broadcast_to(self.item_scores, (len(users), len(self.item_scores))).copy()

    def factors(self, users: np.ndarray, histories: Sequence[np.ndarray]):
        """Zero-dimensional factors: the score is the item bias alone."""
        if self._no_factors.shape[0] != len(self.item_scores):
            self._no_factors = np.zeros((len(self.item_scores), 0), dtype=np.float32)
        return np.zeros((len(users), 0), np.float32), self._no_factors, self.item_scores

    def add_items(self, new_ids, items, options, counts=None, schema=None) -> dict:
        """New items score 0 (no interactions yet): they enter through exploration."""
        from recsys.recipes.cold import report

        new_ids = np.asarray(new_ids, dtype=object)
        self.item_ids = np.concatenate([np.asarray(self.item_ids, dtype=object), new_ids])
        self.item_scores = np.concatenate([self.item_scores, np.zeros(len(new_ids), np.float32)])
        return report(new_ids, np.zeros(len(new_ids), bool), {}, method="exploration")

    def tensors(self) -> dict[str, np.ndarray]:
        return {"item_scores": self.item_scores}

    def load_tensors(self, tensors: dict[str, np.ndarray]) -> None:
        scores = tensors["item_scores"]
        if scores.shape != (len(self.item_ids),):
            raise ArtifactError(
                f"popularity-count: item_scores has shape {scores.shape}, "
                f"expected ({len(self.item_ids)},)"
            )
        self.item_scores = scores.astype(np.float32)
