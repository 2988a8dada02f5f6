"""top_k and recommend_blocks: best k, deterministic ties, -inf exclusion, blocking over users."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

from recsys.data.dataset import Dataset
from recsys.inference.topk import TopKAccumulator, recommend, recommend_blocks, top_k
from recsys.recipes import PopularityCount, TrainingOptions
from recsys.recipes.base import Recipe

INF = np.inf


def arr(*rows) -> np.ndarray:
    return np.array(rows, dtype=np.float32)


# -- top_k ----------------------------------------------------------------------------------
def test_picks_best_k_in_descending_order():
    idx, val = top_k(arr([0.1, 0.5, 0.3, 0.9]), 2)
    assert idx.tolist() == [[3, 1]]
    np.testing.assert_allclose(val, [[0.9, 0.5]])
    assert idx.dtype == np.int64
    assert val.dtype == np.float32


def test_rows_are_independent():
    idx, _ = top_k(arr([3, 2, 1, 0], [0, 1, 2, 3], [1, 3, 0, 2]), 2)
    assert idx.tolist() == [[0, 1], [3, 2], [1, 3]]


def test_negative_scores():
    idx, val = top_k(arr([-3, -1, -2, -5]), 3)
    assert idx.tolist() == [[1, 2, 0]]
    np.testing.assert_allclose(val, [[-1, -2, -3]])


def test_ties_broken_by_lower_index():
    idx, _ = top_k(arr([1, 2, 2, 2, 0]), 2)
    assert idx.tolist() == [[1, 2]]
    idx, _ = top_k(arr([1, 2, 2, 2, 0]), 4)
    assert idx.tolist() == [[1, 2, 3, 0]]
    # A tie straddling the k boundary: the lowest tied indices win.
    idx, _ = top_k(arr([3, 7, 3, 9, 3, 3]), 3)
    assert idx.tolist() == [[3, 1, 0]]
    # All equal: catalogue order.
    idx, _ = top_k(arr([5, 5, 5, 5, 5, 5, 5]), 4)
    assert idx.tolist() == [[0, 1, 2, 3]]


def test_minus_inf_is_excluded_and_padded():
    idx, val = top_k(arr([-INF, 1, -INF, 2]), 3)
    assert idx.tolist() == [[3, 1, -1]]
    assert val[0, :2].tolist() == [2.0, 1.0]
    assert np.isnan(val[0, 2])


def test_all_minus_inf_row_is_all_padding():
    idx, val = top_k(arr([-INF, -INF, -INF], [1, -INF, 0]), 2)
    assert idx.tolist() == [[-1, -1], [0, 2]]
    assert np.isnan(val[0]).all()
    np.testing.assert_allclose(val[1], [1, 0])


def test_k_larger_than_catalogue():
    idx, val = top_k(arr([1, 3, 2]), 5)
    assert idx.shape == (1, 5)
    assert idx.tolist() == [[1, 2, 0, -1, -1]]
    np.testing.assert_allclose(val[0, :3], [3, 2, 1])
    assert np.isnan(val[0, 3:]).all()


def test_k_zero_and_empty_catalogue():
    idx, val = top_k(arr([1, 2]), 0)
    assert idx.shape == (1, 0) and val.shape == (1, 0)
    idx, val = top_k(np.zeros((2, 0), dtype=np.float32), 3)
    assert idx.tolist() == [[-1, -1, -1], [-1, -1, -1]]
    assert np.isnan(val).all()


def test_matches_a_full_sort_on_random_scores_with_ties_and_non_finite():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, size=(60, 17)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.3] = -INF
    scores[rng.random(scores.shape) < 0.05] = np.nan
    scores[rng.random(scores.shape) < 0.05] = INF
    scores[:3] = -INF  # a few rows with nothing to recommend
    for k in (1, 3, 10, 17, 25):
        idx, val = top_k(scores, k)
        for r, row in enumerate(scores):
            finite = np.flatnonzero(np.isfinite(row))
            order = finite[np.lexsort((finite, -row[finite]))][:k]
            expected = np.full(k, -1)
            expected[: len(order)] = order
            assert idx[r].tolist() == expected.tolist(), (r, k)
            np.testing.assert_array_equal(val[r, : len(order)], row[order])
            assert np.isnan(val[r, len(order) :]).all()


# -- recommend_blocks -----------------------------------------------------------------------
class UserDependent(Recipe):
    """Scores that differ per user (so a block offset error shows); records each call."""

    name = "test-user-dependent"

    def __init__(self, n_items: int = 6) -> None:
        super().__init__()
        self.n_items = n_items
        self.calls: list[list[int]] = []

    def fit(self, data, options):  # pragma: no cover - not used
        return self

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
        self.calls.append(users.tolist())
        assert len(users) == len(histories)
        j = np.arange(self.n_items)
        return np.stack([((u + 2) * 7 + j * 3) % 11 for u in users]).astype(np.float64)

    def tensors(self):  # pragma: no cover - not used
        return {}

    def load_tensors(self, tensors):  # pragma: no cover - not used
        pass


def expected_top(recipe: UserDependent, users, histories, k, exclude_seen=True):
    out = []
    for u, h in zip(users, histories, strict=True):
        j = np.arange(recipe.n_items)
        row = (((u + 2) * 7 + j * 3) % 11).astype(float)
        if exclude_seen:
            row[[x for x in h if x >= 0]] = -INF
        finite = np.flatnonzero(np.isfinite(row))
        order = finite[np.lexsort((finite, -row[finite]))][:k].tolist()
        out.append(order + [-1] * (k - len(order)))
    return out


USERS = np.array([0, 1, 2, 3, -1])
HISTORIES = [
    np.array([0, 5], dtype=np.int64),
    np.array([], dtype=np.int64),
    np.array([1, 2, 3, 4], dtype=np.int64),
    np.array([3], dtype=np.int64),
    np.array([2], dtype=np.int64),
]


def collect(blocks):
    starts, idx, val = [], [], []
    for start, i, v in blocks:
        starts.append(start)
        idx.append(i)
        val.append(v)
    return starts, np.concatenate(idx), np.concatenate(val)


def test_blocks_of_two_match_one_big_block():
    small = UserDependent()
    starts, idx2, val2 = collect(recommend_blocks(small, USERS, HISTORIES, k=3, block_size=2))
    assert starts == [0, 2, 4]
    assert small.calls == [[0, 1], [2, 3], [-1]]

    big = UserDependent()
    starts, idx_big, val_big = collect(
        recommend_blocks(big, USERS, HISTORIES, k=3, block_size=1024)
    )
    assert starts == [0]
    assert big.calls == [[0, 1, 2, 3, -1]]

    np.testing.assert_array_equal(idx2, idx_big)
    np.testing.assert_array_equal(val2, val_big)
    assert idx2.tolist() == expected_top(small, USERS, HISTORIES, 3)


def test_block_shapes():
    blocks = list(recommend_blocks(UserDependent(), USERS, HISTORIES, k=4, block_size=2))
    assert [b[1].shape for b in blocks] == [(2, 4), (2, 4), (1, 4)]
    assert [b[2].shape for b in blocks] == [(2, 4), (2, 4), (1, 4)]


def test_seen_items_are_excluded():
    recipe = UserDependent()
    _, idx, _ = collect(recommend_blocks(recipe, USERS, HISTORIES, k=6, block_size=2))
    for row, hist in zip(idx, HISTORIES, strict=True):
        assert not set(row.tolist()) & set(hist.tolist())
        # Everything not seen is still recommended (k = catalogue size), then padding.
        unseen = 6 - len(set(hist.tolist()))
        assert sorted(row[:unseen].tolist()) == sorted(set(range(6)) - set(hist.tolist()))
        assert (row[unseen:] == -1).all()


def test_exclude_seen_false_keeps_seen_items():
    recipe = UserDependent()
    _, idx, _ = collect(
        recommend_blocks(recipe, USERS, HISTORIES, k=6, exclude_seen=False, block_size=2)
    )
    assert (idx >= 0).all()
    assert idx.tolist() == expected_top(recipe, USERS, HISTORIES, 6, exclude_seen=False)


def test_minus_one_in_history_does_not_exclude_the_last_item():
    recipe = UserDependent()
    users = np.array([0])
    hist_pad = [np.array([-1, 0], dtype=np.int64)]
    _, idx, _ = collect(recommend_blocks(recipe, users, hist_pad, k=6))
    assert 5 in idx[0].tolist()  # item 5 is index -1 from the end: must stay
    assert 0 not in idx[0].tolist()


def test_popularity_with_seen_items(tmp_path):
    inter = pd.DataFrame(
        {
            "USER_ID": pd.Series(["u1", "u1", "u2", "u2", "u2", "u3"], dtype=str),
            "ITEM_ID": pd.Series(["a", "a", "a", "b", "c", "b"], dtype=str),
            "TIMESTAMP": pd.Series([1, 2, 3, 4, 5, 6], dtype="int64"),
            "EVENT_TYPE": pd.Series(["click"] * 6, dtype=str),
        }
    )
    data = Dataset(inter)
    model = PopularityCount().fit(data, TrainingOptions())
    before = model.item_scores.copy()
    # Catalogue a, b, c with counts 3, 2, 1.
    users = np.arange(data.n_users)
    _, idx, val = collect(recommend_blocks(model, users, data.user_histories(), k=3, block_size=2))
    assert idx.tolist() == [[1, 2, -1], [-1, -1, -1], [0, 2, -1]]
    np.testing.assert_allclose(val[0, :2], [2 / 6, 1 / 6])
    # Excluding seen items must not change the model.
    np.testing.assert_array_equal(model.item_scores, before)


def test_no_users_yields_nothing():
    assert list(recommend_blocks(UserDependent(), np.array([], dtype=np.int64), [], k=3)) == []


@pytest.mark.parametrize("block_size", [1, 2, 3, 5, 6])
def test_any_block_size_gives_the_same_result(block_size):
    recipe = UserDependent()
    _, idx, val = collect(recommend_blocks(recipe, USERS, HISTORIES, k=4, block_size=block_size))
    assert idx.tolist() == expected_top(recipe, USERS, HISTORIES, 4)


def test_nan_scores_are_skipped_not_poisoning_the_row():
    # Fewer than k non-NaN scores: the finite ones must still come out, best first.
    idx, val = top_k(arr([1, np.nan, 2], [np.nan, np.nan, np.nan]), 3)
    assert idx.tolist() == [[2, 0, -1], [-1, -1, -1]]
    np.testing.assert_allclose(val[0, :2], [2, 1])
    assert np.isnan(val[0, 2]) and np.isnan(val[1]).all()
    # Enough finite scores: NaN never displaces them.
    idx, _ = top_k(arr([np.nan, 1, 3, np.nan, 2]), 2)
    assert idx.tolist() == [[2, 4]]


def test_plus_inf_is_not_finite_and_does_not_hide_finite_scores():
    idx, val = top_k(arr([INF, 1, 2, -INF]), 1)
    assert idx.tolist() == [[2]]
    idx, val = top_k(arr([INF, 1, 2, 0]), 2)
    assert idx.tolist() == [[2, 1]]
    np.testing.assert_allclose(val, [[2, 1]])


# -- the blocked engine ---------------------------------------------------------------------
class Factor(Recipe):
    """A factor model exposing both score() and the factors() fast path."""

    name = "test-factor"

    def __init__(self, u: np.ndarray, v: np.ndarray, b: np.ndarray | None) -> None:
        super().__init__()
        self.u, self.v, self.b = u, v, b
        self.item_ids = np.array([f"i{j}" for j in range(len(v))], dtype=object)

    def fit(self, data, options):  # pragma: no cover - not used
        return self

    def score(self, users, histories):
        out = self.u[users] @ self.v.T
        return out + self.b if self.b is not None else out

    def factors(self, users, histories):
        return self.u[users], self.v, self.b

    def tensors(self):  # pragma: no cover - not used
        return {}

    def load_tensors(self, tensors):  # pragma: no cover - not used
        pass


def test_accumulator_over_many_chunks_matches_one_exact_sort():
    """Chunks of every size, integer scores (many ties across chunk borders), -inf holes."""
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 9, size=(40, 300)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.2] = -INF
    scores[5] = -INF
    for k in (1, 7, 25, 40):
        expected_idx, expected_val = top_k(scores, k)
        for chunk in (1, 13, 64, 299):
            acc = TopKAccumulator(len(scores), k)
            for c0 in range(0, scores.shape[1], chunk):
                acc.push(scores[:, c0 : c0 + chunk], c0)
            idx, val = acc.result()
            assert idx.tolist() == expected_idx.tolist(), (k, chunk)
            np.testing.assert_array_equal(val, expected_val)


def test_factor_path_equals_dense_path_with_exclusions_and_filters():
    rng = np.random.default_rng(1)
    u = rng.standard_normal((30, 8)).astype(np.float32)
    v = rng.standard_normal((500, 8)).astype(np.float32)
    b = rng.standard_normal(500).astype(np.float32)
    recipe = Factor(u, v, b)
    users = np.arange(30)
    hist = [rng.choice(500, size=rng.integers(0, 20), replace=False) for _ in users]
    disallowed = rng.random(500) < 0.3
    kwargs = dict(exclude=hist, disallowed=disallowed, block_size=7, chunk_elements=7 * 37)
    fast = collect(recommend(recipe, users, hist, 25, **kwargs))
    dense = np.where(disallowed, -INF, recipe.score(users, hist)).astype(np.float32)
    for r, h in enumerate(hist):
        dense[r, h] = -INF
    idx, val = top_k(dense, 25)
    assert fast[1].tolist() == idx.tolist()
    np.testing.assert_allclose(fast[2], val, rtol=1e-5)
    assert not np.isin(fast[1], np.flatnonzero(disallowed)).any()


def test_popularity_factors_match_its_scores():
    model = PopularityCount()
    model.item_ids = np.array(["a", "b", "c", "d"], dtype=object)
    model.item_scores = np.array([0.1, 0.4, 0.1, 0.4], dtype=np.float32)
    u, v, b = model.factors(np.array([0, -1]), [np.array([], np.int64)] * 2)
    np.testing.assert_array_equal(u @ v.T + b, model.score(np.array([0, -1]), [[], []]))
    _, idx, _ = collect(recommend(model, np.array([0]), [np.array([3])], 3, exclude=[[3]]))
    assert idx.tolist() == [[1, 0, 2]]  # ties by catalogue order, the seen item left out


def test_exploration_serves_relevant_cold_items_in_proportion_to_the_weight():
    from recsys.inference.topk import Exploration

    rng = np.random.default_rng(2)
    n_items, k = 2000, 10
    u = rng.standard_normal((50, 4)).astype(np.float32)
    v = rng.standard_normal((n_items, 4)).astype(np.float32)
    near = np.arange(150, 200)  # cold items the model finds fairly relevant
    far = np.arange(1950, 2000)  # cold items the model finds irrelevant to everyone
    b = np.zeros(n_items, np.float32)
    b[near] = -1.0
    b[far] = -20.0
    recipe = Factor(u, v, b)
    users = np.arange(50)
    hist = [np.array([], np.int64)] * 50
    cold = np.concatenate([near, far])
    base_idx = collect(recommend(recipe, users, hist, k))[1]
    pool = Exploration(cold, cold * 0.0 + 1, 1.0).pool(k, n_items)
    assert pool < n_items
    deep = collect(recommend(recipe, users, hist, pool))[1]  # each user's candidate pool

    def served(weight, seed=0):
        ex = Exploration(cold, np.linspace(1.0, 0.5, len(cold)), weight, seed)
        _, idx, val = collect(recommend(recipe, users, hist, k, exploration=ex))
        return idx, val

    shares = []
    for w in (0.0, 0.1, 0.3, 0.6, 1.0):
        idx, _ = served(w)
        shares.append(np.isin(idx, cold).mean())
        assert not np.isin(idx, far).any()  # irrelevant cold items: never, at any weight
        assert (idx[:, 0] == base_idx[:, 0]).all()  # the first position is the model's best
        slots = Exploration(cold, cold * 0.0 + 1, w).slots(k)
        for r in range(len(idx)):
            # explored: cold items the model alone would not have put in the list's head
            head = base_idx[r][: k - slots].tolist()
            explored = [i for i in idx[r] if i in cold and i not in head]
            assert set(explored) <= set(deep[r])  # explored items come from the user's pool
            assert len(explored) <= slots
            own = [i for i in idx[r] if i not in explored]  # the model's items, in its order
            assert own == [i for i in base_idx[r] if i not in explored][: len(own)]
    assert shares[0] == np.isin(base_idx, cold).mean()  # weight 0: plain relevance
    assert shares == sorted(shares) and shares[-1] > shares[1] > shares[0]
    idx1, _ = served(1.0)
    assert served(1.0)[0].tolist() == idx1.tolist()  # same seed: same answer
    assert served(1.0, seed=5)[0].tolist() != idx1.tolist()  # the seed spreads exploration


def test_normalised_scores_are_the_softmax_over_the_whole_catalogue():
    rng = np.random.default_rng(4)
    u = rng.standard_normal((30, 3)).astype(np.float32)
    v = rng.standard_normal((500, 3)).astype(np.float32)
    b = rng.standard_normal(500).astype(np.float32)
    recipe = Factor(u, v, b)
    recipe.score_kind = "softmax"
    users = np.arange(30)
    hist = [rng.choice(500, 5, replace=False) for _ in users]
    full = (u @ v.T + b).astype(np.float64)
    p = np.exp(full - full.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    # many small item chunks: the logsumexp is accumulated across chunks
    _, idx, val = collect(
        recommend(recipe, users, hist, 7, exclude=hist, normalise=True, chunk_elements=64)
    )
    np.testing.assert_allclose(val, np.take_along_axis(p, idx, 1), rtol=1e-4)
    assert (np.diff(val, axis=1) <= 0).all() and (val.sum(axis=1) <= 1).all()
    # the dense path (no factors) gives the same
    dense = collect(
        recommend(
            PlainScores(full.astype(np.float32)), users, hist, 7, exclude=hist, normalise=True
        )
    )[2]
    np.testing.assert_allclose(dense, val, rtol=1e-4)
    # share: non-negative masses divided by the catalogue's total
    pop = PopularityCount()
    pop.item_scores = np.array([5, 3, 2, 0], np.float32)
    pop.item_ids = np.array(list("abcd"), dtype=object)
    _, idx, val = collect(
        recommend(pop, np.arange(1), [np.array([0])], 2, exclude=[[0]], normalise=True)
    )
    assert idx.tolist() == [[1, 2]]
    np.testing.assert_allclose(val, [[0.3, 0.2]])  # over the whole catalogue, seen item too


class PlainScores(Recipe):
    name = "test-plain"
    score_kind = "softmax"

    def __init__(self, full: np.ndarray) -> None:
        super().__init__()
        self.full = full
        self.item_ids = np.array([f"i{j}" for j in range(full.shape[1])], dtype=object)

    def fit(self, data, options):  # pragma: no cover - not used
        return self

    def score(self, users, histories):
        return self.full[users]

    def tensors(self):  # pragma: no cover - not used
        return {}

    def load_tensors(self, tensors):  # pragma: no cover - not used
        pass


def test_normaliser_over_chunks_with_non_finite_scores():
    from recsys.inference.topk import Normaliser

    x = np.array(
        [[1.0, 2.0, np.nan, 0.5, 3.0, -INF], [-INF, -INF, -INF, -INF, -INF, -INF]], np.float32
    )
    norm = Normaliser("softmax", 2)
    for c0 in range(0, 6, 2):  # three chunks of two columns
        norm.push(x[:, c0 : c0 + 2])
    finite = np.array([1.0, 2.0, 0.5, 3.0])
    p = norm.apply(x)
    np.testing.assert_allclose(p[0, [0, 1, 3, 4]], np.exp(finite) / np.exp(finite).sum(), 1e-6)
    # a non-finite score is no score (nan), and carries no mass; a row without any finite
    # score has none to normalise
    assert np.isnan(p[0, [2, 5]]).all() and np.isnan(p[1]).all()
    share = Normaliser("share", 1)
    share.push(np.array([[2.0, -1.0, np.inf, 6.0]], np.float32))
    np.testing.assert_allclose(share.apply(np.array([[2.0, 6.0]])), [[0.25, 0.75]])
