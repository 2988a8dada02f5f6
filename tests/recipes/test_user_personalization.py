"""user-personalization: learns a sequential pattern popularity cannot, round-trips its
artifact, refuses a tampered one, and warm-starts (UPDATE) keeping what it knew."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from recsys.data.dataset import Dataset
from recsys.errors import ArtifactError, ConfigError
from recsys.recipes import PopularityCount, TrainingOptions, UserPersonalization, load_model
from recsys.storage import Storage

SMALL = {
    "hidden_dimension": 32,
    "bptt": 12,
    "num_layers": 1,
    "dropout": 0.0,
    "epochs": 60,
    "batch_size": 64,
    "learning_rate": 5e-3,
    "patience": 40,
    "precision": "fp32",
    "recency_mask": False,
    "max_user_history_length_percentile": 1.0,
}


def cycle_data(n_users=200, k=40, length=10, seed=0, offset=0) -> Dataset:
    """Each user walks the cycle i0 → i1 → … → i{k-1} → i0 from a random start: the next
    (unseen) item is fully determined by the last one, while items are equally popular."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        start = rng.integers(k)
        for t in range(length):
            rows.append((f"u{u + offset}", f"i{(start + t) % k}", 1_000_000 + t))
    df = pd.DataFrame(rows, columns=["USER_ID", "ITEM_ID", "TIMESTAMP"])
    df["EVENT_TYPE"] = "click"
    return Dataset(df)


def next_item_accuracy(recipe, data: Dataset, k=40) -> float:
    """Share of users whose top unseen item is the next one on their cycle."""
    hist = data.user_histories()
    scores = recipe.score(np.arange(data.n_users), hist)
    for r, h in enumerate(hist):
        scores[r, h] = -np.inf
    top = scores.argmax(axis=1)
    expected = [(int(data.item_ids[h[-1]][1:]) + 1) % k for h in hist]
    return float(
        np.mean([int(data.item_ids[t][1:]) == e for t, e in zip(top, expected, strict=True)])
    )


@pytest.fixture(scope="module")
def trained():
    data = cycle_data()
    return data, UserPersonalization(**SMALL).fit(data, TrainingOptions(seed=1))


def test_learns_sequence_popularity_cannot(trained):
    data, rec = trained
    assert next_item_accuracy(rec, data) > 0.9
    pop = PopularityCount().fit(data, TrainingOptions())
    assert next_item_accuracy(pop, data) < 0.15


def test_deterministic_given_seed(trained):
    data, rec = trained
    again = UserPersonalization(**SMALL).fit(data, TrainingOptions(seed=1))
    hist = data.user_histories()[:5]
    np.testing.assert_allclose(
        rec.score(np.arange(5), hist), again.score(np.arange(5), hist), rtol=1e-5, atol=1e-5
    )


def test_cold_start_user_gets_popularity(trained):
    data, rec = trained
    scores = rec.score(np.array([-1]), [np.zeros(0, dtype=np.int64)])
    np.testing.assert_allclose(scores[0], np.log(rec.popularity + 1e-9), rtol=1e-6)


def test_save_load_round_trip_and_tamper(trained, tmp_path):
    data, rec = trained
    storage = Storage(str(tmp_path))
    rec.save(storage, "v1")
    loaded, model_json = load_model(storage, "v1")
    hist = data.user_histories()
    np.testing.assert_allclose(
        loaded.score(np.arange(10), hist[:10]),
        rec.score(np.arange(10), hist[:10]),
        rtol=1e-5,
        atol=1e-5,
    )
    assert model_json["state"]["epochs_trained"] == rec.epochs_trained
    meta = storage.read_json("v1/model.json")
    meta["state"]["n_items"] = 99
    storage.write_json("v1/model.json", meta)
    with pytest.raises(ArtifactError, match="model has 99 items"):
        load_model(storage, "v1")


def test_update_keeps_rankings_and_adds_users_and_items(trained):
    data, rec = trained
    # New data: the old users plus new users who also use two brand-new items.
    extra = cycle_data(n_users=30, seed=5, offset=1000).interactions
    new_items = pd.DataFrame(
        {
            "USER_ID": ["u2000"] * 4,
            "ITEM_ID": ["n1", "n2", "n1", "n2"],
            "TIMESTAMP": [2_000_000 + i for i in range(4)],
            "EVENT_TYPE": "click",
        }
    )
    data2 = Dataset(pd.concat([data.interactions, extra, new_items], ignore_index=True))
    hp = {**SMALL, "update_epochs": 2}
    updated = UserPersonalization(**hp).fit(data2, TrainingOptions(seed=2, previous=rec))
    assert updated.epochs_trained <= 2
    assert {"n1", "n2"} <= set(updated.item_ids) and "u2000" in set(updated.user_ids)
    # existing users' top unseen items barely move after a short warm-started update
    hist_old = data.user_histories()[:50]
    idx = pd.Index(updated.item_ids).get_indexer(data.item_ids)
    before = rec.score(np.arange(50), hist_old)
    after = updated.score(np.arange(50), [idx[h] for h in hist_old])[:, idx]
    overlap = []
    for r, h in enumerate(hist_old):
        before[r, h] = after[r, h] = -np.inf
        top_b, top_a = set(np.argsort(-before[r])[:5]), set(np.argsort(-after[r])[:5])
        overlap.append(len(top_b & top_a) / 5)
    assert np.mean(overlap) > 0.6
    # the new items are scorable for the user who used them
    u = list(updated.user_ids).index("u2000")
    new_scores = updated.score(np.array([u]), [np.array([list(updated.item_ids).index("n1")])])
    assert np.isfinite(new_scores).all()


def test_gru_encoder_learns_the_sequence_too_and_round_trips(tmp_path):
    data = cycle_data()
    rec = UserPersonalization(**{**SMALL, "encoder": "gru"}).fit(data, TrainingOptions(seed=1))
    assert isinstance(rec.model.encoder, torch.nn.GRU)
    assert next_item_accuracy(rec, data) > 0.9
    again = UserPersonalization(**{**SMALL, "encoder": "gru"})
    again.item_ids, again.user_ids = rec.item_ids, rec.user_ids
    again.load_state(rec.tensors(), rec.state_config())
    hist = data.user_histories()[:5]
    np.testing.assert_allclose(again.score(np.arange(5), hist), rec.score(np.arange(5), hist))


def test_unknown_encoder_is_a_config_error():
    with pytest.raises(ConfigError, match="encoder must be transformer or gru"):
        UserPersonalization(**{**SMALL, "encoder": "lstm"}).fit(cycle_data(20), TrainingOptions())
