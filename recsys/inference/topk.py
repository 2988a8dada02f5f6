"""Top-k over the catalogue, blocked over users and items, with exclusions and exploration.

Never a users × items matrix: users go in blocks, and a recipe that exposes factors
(:meth:`~recsys.recipes.base.Recipe.factors`) is scored one item chunk at a time with a float32
matmul ``[U, 1] @ [V, b]ᵀ`` (the bias rides along as one more column, so adding it costs
nothing). Each chunk feeds a :class:`TopKAccumulator`, which keeps the best k per row.

Ties are broken by catalogue order (lower item index first) so results are deterministic.
Non-finite scores (nan, ±inf) are never returned.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from recsys.recipes.base import Recipe

NEG_INF = np.float32(-np.inf)
POS_INF = np.float32(np.inf)
LOWEST = np.float32(np.finfo(np.float32).min)
#: Elements (users × items) of one scored chunk: 4M float32 = 16 MiB, sized for the CPU cache.
CHUNK_ELEMENTS = 1 << 22
#: Most elements a recipe without factors may return from one ``score`` call (128 MiB).
SCORE_ELEMENTS = 1 << 25


#: Group maxima per k used to bound a fresh row's threshold (more groups: tighter bound).
GROUPS_PER_K = 4


def _descending_key(values: np.ndarray) -> np.ndarray:
    """uint64 keys (< 2**32) that sort float32 values in descending order."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    ascending = np.where(bits >> np.uint32(31), ~bits, bits | np.uint32(0x80000000))
    return (~ascending).astype(np.uint64)


class TopKAccumulator:
    """Running best-k per row over column chunks pushed in increasing column order.

    A chunk is never sorted: each row's threshold is the larger of (a) just above its current
    k-th best score (an equal score from a later chunk has a higher index and loses the tie)
    and (b) the smallest of k group maxima of the chunk (k elements of the chunk reach it, so
    nothing below can enter). Only the few elements at or above the threshold are merged, with
    one lexsort over (row, -score, index). Cost: a matmul-sized pass or two per chunk.
    """

    def __init__(self, n_rows: int, k: int) -> None:
        self.k = k
        self.idx = np.full((n_rows, k), -1, dtype=np.int64)
        self.val = np.full((n_rows, k), NEG_INF, dtype=np.float32)

    def push(self, scores: np.ndarray, offset: int) -> None:
        """Offer ``scores`` (rows × C float32, finite or -inf) for columns offset..offset+C-1."""
        k = self.k
        n, c = scores.shape
        if k == 0 or c == 0 or n == 0:
            return
        scores = np.ascontiguousarray(scores, dtype=np.float32)
        kth = self.val[:, -1]
        thr = np.nextafter(kth, POS_INF)  # -inf (row not full) → lowest finite
        n_groups = min(GROUPS_PER_K * k, c)
        width = c // n_groups
        if n_groups >= k and (kth == NEG_INF).any():
            # The k-th largest of the group maxima: k groups reach it, so k elements do.
            # Group j = columns j, j + n_groups, ...: a max over the middle axis is a SIMD
            # elementwise maximum of rows (a max over short contiguous runs is 5x slower).
            gmax = scores[:, : n_groups * width].reshape(n, width, n_groups).max(axis=1)
            tau = np.partition(gmax, n_groups - k, axis=1)[:, n_groups - k]
            np.maximum(thr, tau, out=thr)
        flat = np.flatnonzero(scores >= thr[:, None])
        if flat.size == 0:
            return
        rows = flat // c
        cand_idx = flat - rows * c + offset
        cand_val = scores.ravel()[flat]
        touched = rows[np.concatenate(([True], rows[1:] != rows[:-1]))]
        all_rows = np.concatenate((np.repeat(touched, k), rows))
        all_idx = np.concatenate((self.idx[touched].ravel(), cand_idx))
        all_val = np.concatenate((self.val[touched].ravel(), cand_val))
        # One stable sort on (row, score descending): the kept entries come first and hold
        # lower indices than this chunk's, and each part is in index order for equal scores,
        # so stability breaks ties by index.
        order = np.argsort(
            (all_rows.astype(np.uint64) << np.uint64(32)) | _descending_key(all_val),
            kind="stable",
        )
        start = np.searchsorted(all_rows[order], touched)
        take = order[(start[:, None] + np.arange(k)).ravel()]
        self.idx[touched] = all_idx[take].reshape(-1, k)
        self.val[touched] = all_val[take].reshape(-1, k)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(indices, scores): -1 / nan where a row has fewer than k finite scores."""
        val = self.val.copy()
        val[self.idx < 0] = np.nan
        return self.idx.copy(), val


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` columns per row: (indices, scores), -1 / nan where fewer than k are finite."""
    n_rows = scores.shape[0]
    clean = np.where(np.isfinite(scores), scores, NEG_INF).astype(np.float32, copy=False)
    acc = TopKAccumulator(n_rows, k)
    acc.push(clean, 0)
    return acc.result()


@dataclass(frozen=True)
class Exploration:
    """What the exploration layer needs for one job (see :mod:`recsys.inference.exploration`).

    ``items``: catalogue indices eligible for exploration (sorted); ``scores``: their item-level
    exploration score in (0, 1]; ``weight``: the campaign's ``exploration_weight``; ``seed``
    fixes the per-user jitter that spreads exploration over different items for different users.
    """

    items: np.ndarray
    scores: np.ndarray
    weight: float
    seed: int = 0

    @property
    def active(self) -> bool:
        return self.weight > 0 and len(self.items) > 0


def jitter(seed: int, row_keys: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) per (row key, item), a splitmix64 hash: deterministic, no state."""
    with np.errstate(over="ignore"):
        x = (
            np.uint64(seed & 0xFFFFFFFFFFFFFFFF) * np.uint64(0x9E3779B97F4A7C15)
            + row_keys.astype(np.uint64)[:, None] * np.uint64(0xBF58476D1CE4E5B9)
            + items.astype(np.uint64)[None, :] * np.uint64(0x94D049BB133111EB)
        )
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


class _Factors:
    """A recipe's factors with the bias folded in as one more column (built once per job)."""

    def __init__(self, item_matrix: np.ndarray, item_bias: np.ndarray | None) -> None:
        v = np.asarray(item_matrix, dtype=np.float32)
        bias = np.zeros(len(v), np.float32) if item_bias is None else item_bias
        self.items = np.ascontiguousarray(
            np.hstack([v, np.asarray(bias, np.float32).reshape(-1, 1)])
        )
        # The arrays themselves (not ids, which a freed array's successor may reuse).
        self.refs = (item_matrix, item_bias)

    def made_from(self, item_matrix: np.ndarray, item_bias: np.ndarray | None) -> bool:
        return self.refs[0] is item_matrix and self.refs[1] is item_bias

    @staticmethod
    def users(user_vectors: np.ndarray) -> np.ndarray:
        u = np.asarray(user_vectors, dtype=np.float32)
        return np.ascontiguousarray(np.hstack([u, np.ones((len(u), 1), np.float32)]))


_PREPARED: weakref.WeakKeyDictionary[Recipe, _Factors] = weakref.WeakKeyDictionary()


def _prepared(recipe: Recipe, item_matrix: np.ndarray, item_bias: np.ndarray | None) -> _Factors:
    """The recipe's augmented item matrix, built once per (recipe, matrix, bias) and reused
    by every call of a job (one per user group); a changed matrix is prepared again."""
    cached = _PREPARED.get(recipe)
    if cached is None or not cached.made_from(item_matrix, item_bias):
        cached = _Factors(item_matrix, item_bias)
        _PREPARED[recipe] = cached
    return cached


def _exclusion_pairs(
    exclude: Sequence[np.ndarray] | None, start: int, stop: int
) -> tuple[np.ndarray, np.ndarray]:
    """(rows, items) to exclude for rows start..stop-1, sorted by item."""
    if exclude is None:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    parts = [np.asarray(h, dtype=np.int64) for h in exclude[start:stop]]
    lens = np.array([len(p) for p in parts], dtype=np.int64)
    items = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    rows = np.repeat(np.arange(stop - start, dtype=np.int64), lens)
    keep = items >= 0
    rows, items = rows[keep], items[keep]
    order = np.argsort(items, kind="stable")
    return rows[order], items[order]


def recommend(
    recipe: Recipe,
    users: np.ndarray,
    histories: Sequence[np.ndarray],
    k: int,
    *,
    exclude: Sequence[np.ndarray] | None = None,
    disallowed: np.ndarray | None = None,
    exploration: Exploration | None = None,
    row_keys: np.ndarray | None = None,
    block_size: int = 1024,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (start, item indices, scores) per block of users.

    ``exclude[i]``: item indices never recommended to row i (seen items, per-user filters);
    ``disallowed``: bool per item, True = never recommended (item-level filters). With an active
    ``exploration``, its items leave the relevance top-k and come back through the blend
    ``(1 - w) · relevance (min-max scaled over the row's candidates) + w · exploration``;
    ``row_keys`` (uint64 per row, e.g. a hash of the user id) seed each row's jitter.
    """
    n_users = len(users)
    explore = exploration if exploration is not None and exploration.active else None
    n_items = len(recipe.item_ids)
    mask = None if disallowed is None else np.asarray(disallowed, dtype=bool).copy()
    if explore is not None:
        mask = np.zeros(n_items, bool) if mask is None else mask
        x_disallowed = mask[explore.items].copy()
        mask[explore.items] = True
        if row_keys is None:
            row_keys = np.arange(n_users, dtype=np.uint64)
    masked_cols = None if mask is None or not mask.any() else np.flatnonzero(mask)

    probe = recipe.factors(users[:1], histories[:1]) if n_users else None
    factors = None
    if probe is not None:
        factors = _prepared(recipe, probe[1], probe[2])
    else:
        block_size = max(1, min(block_size, SCORE_ELEMENTS // max(n_items, 1)))

    for start in range(0, n_users, block_size):
        stop = min(start + block_size, n_users)
        hist = histories[start:stop]
        ex_rows, ex_items = _exclusion_pairs(exclude, start, stop)
        acc = TopKAccumulator(stop - start, k)
        if factors is not None:
            u_vec, v_mat, bias = recipe.factors(users[start:stop], hist)
            if not factors.made_from(v_mat, bias):
                factors = _prepared(recipe, v_mat, bias)
            u_aug = _Factors.users(u_vec)
            chunk = max(k, chunk_elements // max(stop - start, 1))
            for c0 in range(0, n_items, chunk):
                c1 = min(c0 + chunk, n_items)
                scores = u_aug @ factors.items[c0:c1].T
                _mask_chunk(scores, c0, c1, ex_rows, ex_items, masked_cols)
                acc.push(scores, c0)
            x_scores = None
            if explore is not None:
                x_scores = u_aug @ factors.items[explore.items].T
        else:
            full = np.asarray(recipe.score(users[start:stop], hist), dtype=np.float32)
            full = np.where(np.isfinite(full), full, NEG_INF).astype(np.float32, copy=False)
            x_scores = full[:, explore.items].copy() if explore is not None else None
            _mask_chunk(full, 0, full.shape[1], ex_rows, ex_items, masked_cols)
            acc.push(full, 0)
        idx, val = acc.idx, acc.val
        if explore is not None:
            # The exploration items' relevance, with the same exclusions as the rest.
            x_scores = np.where(np.isfinite(x_scores), x_scores, NEG_INF).astype(np.float32)
            x_scores[:, x_disallowed] = NEG_INF
            pos = np.searchsorted(explore.items, ex_items)
            hit = (pos < len(explore.items)) & (
                explore.items[np.minimum(pos, len(explore.items) - 1)] == ex_items
            )
            x_scores[ex_rows[hit], pos[hit]] = NEG_INF
            idx, val = _blend(idx, val, x_scores, explore, row_keys[start:stop], k)
        out_val = val.astype(np.float32, copy=True)
        out_val[idx < 0] = np.nan
        yield start, idx.copy(), out_val


def _mask_chunk(
    scores: np.ndarray,
    c0: int,
    c1: int,
    ex_rows: np.ndarray,
    ex_items: np.ndarray,
    masked_cols: np.ndarray | None,
) -> None:
    lo, hi = np.searchsorted(ex_items, [c0, c1])
    if hi > lo:
        scores[ex_rows[lo:hi], ex_items[lo:hi] - c0] = NEG_INF
    if masked_cols is not None:
        a, b = np.searchsorted(masked_cols, [c0, c1])
        if b > a:
            scores[:, masked_cols[a:b] - c0] = NEG_INF


def _blend(
    idx: np.ndarray,
    val: np.ndarray,
    x_scores: np.ndarray,
    explore: Exploration,
    row_keys: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    n = len(idx)
    cand_idx = np.concatenate([idx, np.broadcast_to(explore.items, (n, len(explore.items)))], 1)
    rel = np.concatenate([val, x_scores], axis=1).astype(np.float64)
    finite = np.isfinite(rel) & (cand_idx >= 0)
    hi = np.where(finite, rel, -np.inf).max(axis=1, initial=-np.inf)
    lo = np.where(finite, rel, np.inf).min(axis=1, initial=np.inf)
    span = hi - lo
    rel = np.where(finite, rel, 0.0)
    lo = np.where(np.isfinite(lo), lo, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel_n = np.where(span[:, None] > 0, (rel - lo[:, None]) / span[:, None], 1.0)
    expl = np.zeros_like(rel)
    expl[:, idx.shape[1] :] = explore.scores[None, :] * (
        0.5 + 0.5 * jitter(explore.seed, row_keys, explore.items)
    )
    w = float(explore.weight)
    blended = np.where(finite, (1.0 - w) * rel_n + w * expl, -np.inf)
    order = np.lexsort((np.where(finite, cand_idx, np.iinfo(np.int64).max), -blended), axis=1)
    order = order[:, :k]
    out_idx = np.take_along_axis(cand_idx, order, axis=1)
    out_val = np.take_along_axis(blended, order, axis=1).astype(np.float32)
    bad = ~np.take_along_axis(finite, order, axis=1)
    out_idx = np.where(bad, -1, out_idx)
    out_val[bad] = NEG_INF
    if out_idx.shape[1] < k:  # fewer candidates than k
        pad = k - out_idx.shape[1]
        out_idx = np.pad(out_idx, ((0, 0), (0, pad)), constant_values=-1)
        out_val = np.pad(out_val, ((0, 0), (0, pad)), constant_values=NEG_INF)
    return out_idx, out_val


def recommend_blocks(
    recipe: Recipe,
    users: np.ndarray,
    histories: Sequence[np.ndarray],
    k: int,
    exclude_seen: bool = True,
    block_size: int = 1024,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (start, item indices, scores) per block of users; never a users × items matrix."""
    yield from recommend(
        recipe,
        users,
        histories,
        k,
        exclude=histories if exclude_seen else None,
        block_size=block_size,
    )
