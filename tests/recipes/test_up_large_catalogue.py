"""user-personalization at a large catalogue: the sampled path computes only the rows a batch
touches (with sparse, lazily-updated tables), learns what the full softmax learns, stops
mid-epoch on a time budget, and scores through item factors that batch inference can block."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import torch

from recsys.data.dataset import Dataset
from recsys.recipes import TrainingOptions, UserPersonalization
from recsys.recipes.features import encode_features, fit_features
from recsys.recipes.user_personalization import training
from recsys.schema import DatasetGroup
from tests.recipes.test_user_personalization import SMALL, cycle_data, next_item_accuracy

SAMPLED = {**SMALL, "full_softmax_max_items": 0, "num_negatives": 16}


def catalogue(n=30, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    genres = np.array(["a", "b", "c", "d"])
    return pd.DataFrame(
        {
            "ITEM_ID": [f"i{i}" for i in range(n)],
            # some items have no categorical value at all: empty bags must stay empty
            "GENRES": ["" if i % 7 == 0 else "|".join(rng.choice(genres, 2)) for i in range(n)],
            "PRICE": rng.lognormal(2, 0.5, n),
        }
    )


def items_schema():
    return DatasetGroup.load("synthetic").schemas["items"]


def model_with_metadata():
    items = catalogue()
    ids = items["ITEM_ID"].to_numpy(object)
    config = fit_features(items, ids, items_schema())
    rec = UserPersonalization(**{**SMALL, "hidden_dimension": 8})
    rec.features = encode_features(items, ids, config)
    torch.manual_seed(0)
    model = rec._build(len(ids), rec.features)
    assert model.has_meta and model.meta_num is not None
    return model


def test_item_vectors_of_some_rows_equal_the_full_table():
    model = model_with_metadata()
    with torch.no_grad():
        full = model.item_vectors()
        codes = torch.tensor([0, 1, 7, 8, 15, 30])  # padding, an empty bag (code 8 = i7), last
        part = model.item_vectors(codes)
    torch.testing.assert_close(part[1:], full[codes[1:]])
    # padding: e = 0 and f = 0, as in the full table
    torch.testing.assert_close(part[0], full[0])


def test_sampled_step_updates_only_the_rows_it_touched():
    data = cycle_data(n_users=50, k=40, length=6)
    rec = UserPersonalization(**{**SAMPLED, "epochs": 1, "batch_size": 4, "num_negatives": 3})
    rec.fit(data, TrainingOptions(seed=0))
    kinds = [type(o).__name__ for o in training.optimizers(rec.model, rec.hyperparameters, True)]
    assert kinds == ["AdamW", "SparseAdam"]
    # a single sparse step leaves every row it did not touch exactly as it was
    model = rec.model
    opt = torch.optim.SparseAdam(model.sparse_parameters(), lr=0.1)
    w0 = model.item_emb.weight.detach().clone()
    model.zero_grad(set_to_none=True)
    codes = torch.tensor([0, 3, 5])
    model.item_vectors(codes, sparse=True).sum().backward()
    assert model.item_emb.weight.grad.is_sparse
    opt.step()
    changed = (model.item_emb.weight.detach() != w0).any(dim=1).nonzero().ravel().tolist()
    assert changed == [3, 5]


def test_sampled_softmax_learns_the_sequence():
    data = cycle_data()
    rec = UserPersonalization(**SAMPLED).fit(data, TrainingOptions(seed=1))
    assert next_item_accuracy(rec, data) > 0.85


def test_sampled_training_with_metadata_runs_and_is_deterministic():
    data = cycle_data(n_users=60, k=30, length=8)
    data = Dataset(data.interactions, catalogue(), item_schema=items_schema())
    hp = {**SAMPLED, "epochs": 3, "use_metadata": True}
    a = UserPersonalization(**hp).fit(data, TrainingOptions(seed=3))
    b = UserPersonalization(**hp).fit(data, TrainingOptions(seed=3))
    assert a.model.has_meta
    hist = data.user_histories()[:4]
    np.testing.assert_allclose(a.score(np.arange(4), hist), b.score(np.arange(4), hist))


def test_time_budget_stops_inside_an_epoch():
    data = cycle_data(n_users=4000, length=12)  # 2,000 steps of batch 2: far over 0.5 s
    hp = {**SMALL, "batch_size": 2, "max_training_minutes": 0.5 / 60, "validation_users": 20}
    rec = UserPersonalization(**hp).fit(data, TrainingOptions(seed=0))
    per_epoch = sum(len(h) - 1 for h in data.user_histories())
    assert rec.epochs_trained == 1
    assert 0 < rec.tokens_trained < per_epoch


def test_factors_reproduce_scores_including_cold_users():
    data = cycle_data(n_users=40, length=6)
    rec = UserPersonalization(**{**SMALL, "epochs": 2}).fit(data, TrainingOptions(seed=0))
    hist = data.user_histories()[:5] + [np.array([], dtype=np.int64)]
    u, items, bias = rec.factors(np.arange(6), hist)
    assert items is rec.factors(np.arange(1), hist[:1])[1]  # prepared once, reused
    np.testing.assert_allclose(u @ items.T + bias, rec.score(np.arange(6), hist), rtol=1e-6)
    # the cold user gets log-popularity
    np.testing.assert_allclose(
        (u @ items.T + bias)[-1], np.log(rec.popularity + 1e-9), rtol=1e-5, atol=1e-5
    )
    # and the cache follows the model: after more training the factors are fresh
    again = rec.fit(data, TrainingOptions(seed=5))
    assert not np.array_equal(again.factors(np.arange(1), hist[:1])[1], items)


def test_batch_top_k_of_the_recipe_matches_its_scores():
    from recsys.inference.topk import recommend_blocks

    data = cycle_data(n_users=60, length=6)
    rec = UserPersonalization(**{**SMALL, "epochs": 3}).fit(data, TrainingOptions(seed=0))
    hist = data.user_histories()
    users = np.arange(data.n_users)
    got = np.concatenate(
        [idx for _, idx, _ in recommend_blocks(rec, users, hist, 5, exclude_seen=False)]
    )
    expected = np.argsort(-rec.score(users, hist), axis=1, kind="stable")[:, :5]
    assert (got == expected).mean() > 0.99


@pytest.mark.parametrize("n_val", [3, 700])
def test_validation_in_blocks_matches_one_block(n_val, monkeypatch):
    data = cycle_data(n_users=800, length=5)
    rec = UserPersonalization(**{**SMALL, "epochs": 1}).fit(data, TrainingOptions(seed=0))
    hist = data.user_histories()
    users = np.arange(n_val)
    one = rec._validate(users, hist)
    monkeypatch.setattr(training, "SCORE_ELEMENTS", 40 * 7)  # 7 users per block
    assert rec._validate(users, hist) == pytest.approx(one)


def test_epoch_callback_time_is_off_the_training_clock():
    """A benchmark's per-epoch test evaluation must not eat the training budget."""
    data = cycle_data(n_users=20, length=6)
    seen: list[float] = []

    def slow_callback(recipe, epoch, elapsed):
        seen.append(elapsed)
        time.sleep(0.05)

    hp = {**SMALL, "epochs": 10_000, "patience": 10_000, "validation_users": 5}
    UserPersonalization(**hp).fit(
        data, TrainingOptions(seed=0, time_budget_s=0.3, on_epoch=slow_callback)
    )
    assert len(seen) * 0.05 > 0.6  # the callbacks alone outlast the budget twice over
    assert seen == sorted(seen) and seen[-1] < 0.3 + 0.25  # yet the clock saw only training
