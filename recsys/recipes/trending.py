"""trending-now: the items whose interactions grow fastest (Personalize's aws-trending-now),
the same list for every user, recomputed by the 2-hourly update.

Definition. Let ``T`` be the newest interaction's TIMESTAMP in the data and ``W`` the
``trend_discovery_frequency`` (Personalize's values: ``30 minutes``, ``1 hour``, ``3 hours``,
``1 day``; any ``N minutes|hours|days`` is accepted). For each item, ``latest`` counts its
interactions with ``T - W < TIMESTAMP <= T`` and ``previous`` those with
``T - 2W < TIMESTAMP <= T - W`` (an interaction exactly on the boundary belongs to the
earlier window). The item's trend score is its relative growth, smoothed::

    growth = (latest - previous) / (previous + growth_smoothing)

so an item going from 0 to 1 interaction (growth 1 / s) does not outrank one going from 50 to
100 (50 / (50 + s)); declining items score below 0, items absent from both windows 0. Equal
growth is broken by the larger ``latest`` count (a 1e-6 · latest / max(latest) term), then by
catalogue order (inference's tie rule). Every user, known or not, gets this list (minus the
items they already interacted with when the campaign excludes seen items): served like
popularity-count, cold-start users included.

The windows move with the data: the nightly training computes them on its snapshot, and the
2-hourly update (:meth:`TrendingNow.refresh`, called by :func:`recsys.update.build_revision`)
recomputes them on the update's snapshot, new items included, so the revision ranks what is
trending two hours later without retraining anything else.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from recsys.data.dataset import Dataset
from recsys.errors import ArtifactError, ConfigError
from recsys.recipes.base import Recipe, TrainingOptions

_FREQUENCY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(minute|hour|day)s?\s*$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
TIE_BREAK = 1e-6


def window_seconds(frequency: str) -> float:
    """``"30 minutes"`` → 1800.0; a clear ConfigError otherwise."""
    m = _FREQUENCY.match(str(frequency).lower())
    if not m or float(m.group(1)) <= 0:
        raise ConfigError(
            f"trending-now: trend_discovery_frequency must be like '30 minutes', '1 hour', "
            f"'3 hours' or '1 day', got {frequency!r}"
        )
    return float(m.group(1)) * _UNIT_SECONDS[m.group(2)]


def window_counts(
    timestamps: np.ndarray, items: np.ndarray, n_items: int, end: float, width: float
) -> tuple[np.ndarray, np.ndarray]:
    """(latest, previous) interaction counts per item for windows ending at ``end``."""
    ts = np.asarray(timestamps, dtype=np.float64)
    items = np.asarray(items, dtype=np.int64)
    ok = items >= 0
    latest = ok & (ts > end - width) & (ts <= end)
    previous = ok & (ts > end - 2 * width) & (ts <= end - width)
    return (
        np.bincount(items[latest], minlength=n_items).astype(np.float64),
        np.bincount(items[previous], minlength=n_items).astype(np.float64),
    )


def trend_scores(latest: np.ndarray, previous: np.ndarray, smoothing: float) -> np.ndarray:
    growth = (latest - previous) / (previous + smoothing)
    top = latest.max() if len(latest) else 0.0
    return (growth + (TIE_BREAK * latest / top if top > 0 else 0.0)).astype(np.float32)


class TrendingNow(Recipe):
    name = "trending-now"
    defaults: dict[str, Any] = {"trend_discovery_frequency": "1 day", "growth_smoothing": 5.0}
    #: Every user gets the same list: batch serving uses it for cold-start users too.
    user_independent = True

    def __init__(self, **hyperparameters: Any) -> None:
        super().__init__(**hyperparameters)
        self.width = window_seconds(self.hyperparameters["trend_discovery_frequency"])
        self.smoothing = float(self.hyperparameters["growth_smoothing"])
        if not self.smoothing > 0:
            raise ConfigError("trending-now: growth_smoothing must be > 0")
        self.item_scores = np.zeros(0, np.float32)
        self.latest = np.zeros(0, np.float32)
        self.previous = np.zeros(0, np.float32)
        self.window_end: float | None = None
        self._no_factors = np.zeros((0, 0), np.float32)

    def fit(self, data: Dataset, options: TrainingOptions) -> TrendingNow:
        self.item_ids, self.user_ids = data.item_ids, data.user_ids
        self._compute(data, np.arange(data.n_items))
        return self

    def _compute(self, data: Dataset, to_model: np.ndarray) -> dict[str, Any]:
        ts = data.interactions["TIMESTAMP"].to_numpy()
        n = len(self.item_ids)
        end = float(ts.max()) if len(ts) else 0.0
        latest, previous = window_counts(ts, to_model[data.item_codes], n, end, self.width)
        self.latest, self.previous = latest.astype(np.float32), previous.astype(np.float32)
        self.item_scores = trend_scores(latest, previous, self.smoothing)
        self.window_end = end
        top = np.lexsort((np.arange(n), -self.item_scores))[:10]
        return {
            "window_end": pd.Timestamp(end, unit="s", tz="UTC").isoformat() if len(ts) else None,
            "window_seconds": self.width,
            "trending": [str(self.item_ids[i]) for i in top if self.item_scores[i] > 0],
        }

    def refresh(self, data: Dataset) -> dict[str, Any]:
        """Recompute the windows on ``data`` (the update's snapshot)."""
        to_model = pd.Index(np.asarray(self.item_ids).astype(str)).get_indexer(
            data.item_ids.astype(str)
        )
        return self._compute(data, to_model.astype(np.int64))

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
        return np.broadcast_to(self.item_scores, (len(users), len(self.item_scores))).copy()

    def factors(self, users: np.ndarray, histories: Sequence[np.ndarray]):
        if self._no_factors.shape[0] != len(self.item_scores):
            self._no_factors = np.zeros((len(self.item_scores), 0), dtype=np.float32)
        return np.zeros((len(users), 0), np.float32), self._no_factors, self.item_scores

    def add_items(self, new_ids, items, options, counts=None) -> dict:
        """New items join with score 0; :meth:`refresh` then counts their interactions."""
        from recsys.recipes.cold import report

        new_ids = np.asarray(new_ids, dtype=object)
        m = len(new_ids)
        self.item_ids = np.concatenate([np.asarray(self.item_ids, dtype=object), new_ids])
        zeros = np.zeros(m, np.float32)
        self.item_scores = np.concatenate([self.item_scores, zeros])
        self.latest = np.concatenate([self.latest, zeros])
        self.previous = np.concatenate([self.previous, zeros])
        return report(new_ids, np.ones(m, bool), {}, method="trend-recomputed")

    def tensors(self) -> dict[str, np.ndarray]:
        return {"item_scores": self.item_scores, "latest": self.latest, "previous": self.previous}

    def state_config(self) -> dict[str, Any]:
        return {"window_end": self.window_end}

    def load_state(self, tensors: dict[str, np.ndarray], state: dict[str, Any]) -> None:
        self.load_tensors(tensors)
        self.window_end = state.get("window_end")

    def load_tensors(self, tensors: dict[str, np.ndarray]) -> None:
        n = len(self.item_ids)
        for name in ("item_scores", "latest", "previous"):
            if name not in tensors or tensors[name].shape != (n,):
                raise ArtifactError(f"trending-now: {name} missing or not of shape ({n},)")
        self.item_scores = tensors["item_scores"].astype(np.float32)
        self.latest = tensors["latest"].astype(np.float32)
        self.previous = tensors["previous"].astype(np.float32)
