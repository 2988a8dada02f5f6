"""Top-k over the catalogue, blocked over users, with already-seen items excluded.

Ties are broken by catalogue order (lower item index first) so results are deterministic.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from recsys.recipes.base import Recipe


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` columns per row: (indices, scores), -1 / nan where fewer than k are finite."""
    n_rows, n_cols = scores.shape
    kk = min(k, n_cols)
    idx = np.full((n_rows, k), -1, dtype=np.int64)
    val = np.full((n_rows, k), np.nan, dtype=np.float32)
    if kk == 0:
        return idx, val
    # Non-finite scores (nan, ±inf) are never returned: rank them last so they cannot take a
    # slot from a finite score nor turn the threshold into nan.
    neg = np.where(np.isfinite(scores), -scores, np.inf)
    part = np.argpartition(neg, kk - 1, axis=1)[:, :kk]
    kth = -np.take_along_axis(neg, part, axis=1).max(axis=1)
    for r in range(n_rows):
        row = scores[r]
        cand = np.flatnonzero((row >= kth[r]) & np.isfinite(row))
        order = np.lexsort((cand, -row[cand]))[:kk]
        chosen = cand[order]
        idx[r, : len(chosen)] = chosen
        val[r, : len(chosen)] = row[chosen]
    return idx, val


def recommend_blocks(
    recipe: Recipe,
    users: np.ndarray,
    histories: Sequence[np.ndarray],
    k: int,
    exclude_seen: bool = True,
    block_size: int = 1024,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (start, item indices, scores) per block of users; never a users × items matrix."""
    for start in range(0, len(users), block_size):
        stop = min(start + block_size, len(users))
        hist = histories[start:stop]
        scores = recipe.score(users[start:stop], hist).astype(np.float32, copy=False)
        if exclude_seen:
            for r, h in enumerate(hist):
                if len(h):
                    scores[r, h[h >= 0]] = -np.inf
        idx, val = top_k(scores, k)
        yield start, idx, val
