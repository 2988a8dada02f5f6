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

    ``items``: catalogue indices of the *cold* items (young and with little interaction data,
    sorted); ``scores``: their coldness in (0, 1] (1: brand new, never shown); ``weight``: the
    campaign's ``exploration_weight``; ``seed`` fixes the per-user jitter that spreads
    exploration over different cold items for different users.
    """

    items: np.ndarray
    scores: np.ndarray
    weight: float
    seed: int = 0

    @property
    def active(self) -> bool:
        return self.weight > 0 and len(self.items) > 0

    def slots(self, k: int) -> int:
        """Positions of a k-list given to cold items: ``round(weight · k · MAX_SHARE)``, at most
        ``k // 2`` (so they alternate with the model's items and never take the first)."""
        return min(k // 2, int(np.floor(self.weight * k * EXPLORATION_MAX_SHARE + 0.5)))

    def pool(self, k: int, n_items: int) -> int:
        """How many of the user's best items (by the model) cold items are chosen among."""
        return min(n_items, max(EXPLORATION_POOL_FACTOR * k, EXPLORATION_POOL_MIN))


#: At weight 1, this share of a list goes to cold items (when the user's pool has enough).
EXPLORATION_MAX_SHARE = 0.5
#: A cold item is explored for a user only if it is among the user's top
#: max(EXPLORATION_POOL_FACTOR · k, EXPLORATION_POOL_MIN) items by model score: relevant to them.
EXPLORATION_POOL_FACTOR = 20
EXPLORATION_POOL_MIN = 200


def jitter(seed: int, row_keys: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) per (row key, item), a splitmix64 hash: deterministic, no state.

    ``items``: one item index array for every row (1-D) or one row of items per row (2-D)."""
    items = np.asarray(items)
    cols = items[None, :] if items.ndim == 1 else items
    with np.errstate(over="ignore"):
        x = (
            np.uint64(seed & 0xFFFFFFFFFFFFFFFF) * np.uint64(0x9E3779B97F4A7C15)
            + row_keys.astype(np.uint64)[:, None] * np.uint64(0xBF58476D1CE4E5B9)
            + cols.astype(np.uint64) * np.uint64(0x94D049BB133111EB)
        )
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


class Normaliser:
    """A row's score mass over the whole catalogue, accumulated chunk by chunk beside the top-k.

    ``softmax`` (scores are logits): a running logsumexp, and a score becomes
    ``exp(s - logsumexp)``; ``share`` (scores are non-negative): a running sum, and a score
    becomes ``s / sum``. Either way a row's normalised scores over the catalogue sum to 1, so
    any k of them sum to at most 1. Non-finite scores carry no mass.
    """

    def __init__(self, kind: str, n_rows: int) -> None:
        if kind not in SCORE_KINDS:
            raise ValueError(f"score kind must be one of {SCORE_KINDS}, got {kind!r}")
        self.kind = kind
        self.max = np.full(n_rows, -np.inf)
        self.sum = np.zeros(n_rows)
        self._buf: np.ndarray | None = None

    def push(self, scores: np.ndarray) -> None:
        """Offer one chunk (rows × C) of raw scores, before any exclusion."""
        if scores.shape[1] == 0:
            return
        if self.kind == "share":
            total = scores.sum(axis=1, dtype=np.float64)
            if not np.isfinite(total).all() or (scores < 0).any():
                finite = np.isfinite(scores)
                total = np.where(finite, np.maximum(scores, 0.0), 0.0).sum(axis=1, dtype=np.float64)
            self.sum += total
            return
        m = scores.max(axis=1).astype(np.float64)  # nan in a row makes its max nan
        if not np.isfinite(m).all():
            x = np.where(np.isfinite(scores), scores, NEG_INF).astype(np.float32)
            m = x.max(axis=1).astype(np.float64)
        else:
            x = scores
        m = np.maximum(self.max, m)
        safe = np.where(np.isfinite(m), m, 0.0)
        # one scratch buffer: subtract, exp in place, sum (the chunk is a matmul's size)
        if self._buf is None or self._buf.shape != x.shape:
            self._buf = np.empty(x.shape, np.float32)
        buf = self._buf
        np.subtract(x, safe[:, None].astype(np.float32), out=buf, dtype=np.float32)
        np.exp(buf, out=buf)
        with np.errstate(invalid="ignore", over="ignore"):
            self.sum = self.sum * np.exp(np.where(np.isfinite(self.max), self.max - safe, -np.inf))
        self.sum += buf.sum(axis=1)  # float32 pairwise sums per row, accumulated in float64
        self.max = m

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Normalised scores (float64) for raw ``values`` of these rows; nan stays nan."""
        v = np.asarray(values, dtype=np.float64)
        if self.kind == "share":
            total = np.where(self.sum > 0, self.sum, np.inf)[:, None]
            return np.where(np.isfinite(v), np.maximum(v, 0.0) / total, np.nan)
        safe = np.where(np.isfinite(self.max), self.max, 0.0)[:, None]
        lse = safe + np.log(np.where(self.sum > 0, self.sum, 1.0))[:, None]
        with np.errstate(over="ignore", invalid="ignore"):
            out = np.exp(np.minimum(v - lse, 0.0))
        return np.where(np.isfinite(v), out, np.nan)


#: What a recipe's raw scores are (``Recipe.score_kind``): logits (``softmax``) or
#: non-negative masses (``share``).
SCORE_KINDS = ("softmax", "share")


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
    normalise: bool = False,
    block_size: int = 1024,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (start, item indices, scores) per block of users.

    ``exclude[i]``: item indices never recommended to row i (seen items, per-user filters);
    ``disallowed``: bool per item, True = never recommended (item-level filters).

    With an active ``exploration``, each row's top ``exploration.pool(k)`` items by the model
    are the candidates, and up to ``exploration.slots(k)`` cold items among them (not already
    in the model's own top k) take every other position from the end of the list, the
    coldest first (with a per-row jitter seeded by ``row_keys``, uint64 per row, e.g. a hash of
    the user id); the model's items fill the other positions in its order. The first
    position is always the model's best item.

    ``normalise``: scores in [0, 1], normalised over the whole catalogue (every item, before
    exclusions) by the recipe's :attr:`~recsys.recipes.base.Recipe.score_kind` (see
    :class:`Normaliser`), and made non-increasing down the list (an explored item's lower
    score caps the ones after it), so a row's scores are descending and sum to at most 1.
    Without it: the recipe's raw scores.
    """
    n_users = len(users)
    explore = exploration if exploration is not None and exploration.active else None
    n_items = len(recipe.item_ids)
    mask = None if disallowed is None else np.asarray(disallowed, dtype=bool)
    masked_cols = None if mask is None or not mask.any() else np.flatnonzero(mask)
    depth = k if explore is None else max(k, explore.pool(k, n_items))
    if explore is not None and row_keys is None:
        row_keys = np.arange(n_users, dtype=np.uint64)
    kind = getattr(recipe, "score_kind", "share")

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
        acc = TopKAccumulator(stop - start, depth)
        norm = Normaliser(kind, stop - start) if normalise else None
        if factors is not None:
            u_vec, v_mat, bias = recipe.factors(users[start:stop], hist)
            if not factors.made_from(v_mat, bias):
                factors = _prepared(recipe, v_mat, bias)
            u_aug = _Factors.users(u_vec)
            chunk = max(depth, chunk_elements // max(stop - start, 1))
            for c0 in range(0, n_items, chunk):
                c1 = min(c0 + chunk, n_items)
                scores = u_aug @ factors.items[c0:c1].T
                if norm is not None:
                    norm.push(scores)
                _mask_chunk(scores, c0, c1, ex_rows, ex_items, masked_cols)
                acc.push(scores, c0)
        else:
            full = np.asarray(recipe.score(users[start:stop], hist), dtype=np.float32)
            full = np.where(np.isfinite(full), full, NEG_INF).astype(np.float32, copy=False)
            if norm is not None:
                norm.push(full)
            _mask_chunk(full, 0, full.shape[1], ex_rows, ex_items, masked_cols)
            acc.push(full, 0)
        idx, val = acc.idx, acc.val
        if explore is not None:
            idx, val = _explore(idx, val, explore, row_keys[start:stop], k)
        out_val = val.astype(np.float64 if norm is not None else np.float32, copy=True)
        out_val[idx < 0] = np.nan
        if norm is not None:
            out_val = norm.apply(out_val)
            filled = np.where(np.isnan(out_val), np.inf, out_val)
            out_val = np.where(np.isnan(out_val), np.nan, np.minimum.accumulate(filled, axis=1))
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


def _explore(
    idx: np.ndarray, val: np.ndarray, explore: Exploration, row_keys: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The served k per row from the model's deeper top list ``idx``/``val`` (see
    :func:`recommend`): cold candidates beyond the model's own top k take the exploration
    slots, every other position from the end, the model's items the rest in its order."""
    n, depth = idx.shape
    out_idx = idx[:, :k].copy()
    out_val = val[:, :k].copy()
    n_slots = explore.slots(k)
    if n_slots == 0 or depth <= k - n_slots:
        return out_idx, out_val
    pos = np.searchsorted(explore.items, np.maximum(idx, 0))
    pos = np.minimum(pos, len(explore.items) - 1)
    cold = (idx >= 0) & (explore.items[pos] == idx)
    # only items the model itself would not serve: positions >= k - n_slots of its list
    cold[:, : k - n_slots] = False
    if not cold.any():
        return out_idx, out_val
    priority = np.where(
        cold, explore.scores[pos] * (0.5 + 0.5 * jitter(explore.seed, row_keys, idx)), -1.0
    )
    slots = k - 1 - 2 * np.arange(n_slots)  # bottom first: k-1, k-3, ...
    for r in np.flatnonzero(cold.any(axis=1)):
        order = np.argsort(-priority[r], kind="stable")[:n_slots]
        chosen = order[priority[r, order] > 0]
        m = len(chosen)
        keep = np.ones(depth, bool)
        keep[chosen] = False
        own = np.flatnonzero(keep & (idx[r] >= 0))[: k - m]
        places = np.sort(slots[:m])  # the m bottom slots, top-most gets the coldest
        row_idx = np.full(k, -1, np.int64)
        row_val = np.full(k, NEG_INF, np.float32)
        row_idx[places] = idx[r, chosen]
        row_val[places] = val[r, chosen]
        rest = np.setdiff1d(np.arange(k), places)[: len(own)]
        row_idx[rest] = idx[r, own]
        row_val[rest] = val[r, own]
        if len(own) < k - m:  # fewer candidates than k: close the gaps, padding last
            ok = row_idx >= 0
            row_idx = np.concatenate([row_idx[ok], row_idx[~ok]])
            row_val = np.concatenate([row_val[ok], row_val[~ok]])
        out_idx[r], out_val[r] = row_idx, row_val
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
