"""Adding items without retraining: metadata neighbours place a new item among its cluster,
existing items keep their scores, an item without metadata gets the prior and is reported."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.data.dataset import Dataset
from recsys.errors import ConfigError
from recsys.recipes import PopularityCount, Sims, TrainingOptions, UserPersonalization, load_model
from recsys.recipes.cold import NewItemOptions, nearest_neighbours, weighted_mean
from recsys.schema import Field, Schema
from recsys.storage import Storage

CLUSTERS, PER_CLUSTER = 5, 10
SMALL = {
    "hidden_dimension": 24,
    "bptt": 8,
    "num_layers": 1,
    "dropout": 0.0,
    "epochs": 15,
    "batch_size": 64,
    "learning_rate": 1e-2,
    "patience": 25,
    "precision": "fp32",
    "recency_mask": False,
    "max_user_history_length_percentile": 1.0,
    "use_metadata": True,
}
SCHEMA = Schema(
    "items",
    (
        Field("ITEM_ID", "string"),
        Field("GENRES", "string", nullable=True, categorical=True),
        Field("PRICE", "float", nullable=True),
    ),
)


def cluster_catalogue(n_users=150, length=8, seed=0) -> Dataset:
    """Each user stays in one cluster (genre g{c}); within it, items are uniform."""
    rng = np.random.default_rng(seed)
    items = pd.DataFrame(
        {
            "ITEM_ID": [f"i{c}_{j}" for c in range(CLUSTERS) for j in range(PER_CLUSTER)],
            "GENRES": [f"g{c}" for c in range(CLUSTERS) for _ in range(PER_CLUSTER)],
            "PRICE": np.nan,
        }
    )
    rows = []
    for u in range(n_users):
        c = u % CLUSTERS
        for t, j in enumerate(rng.choice(PER_CLUSTER, size=length, replace=False)):
            rows.append((f"u{u}", f"i{c}_{j}", 1_000_000 + t, "click"))
    df = pd.DataFrame(rows, columns=["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE"])
    return Dataset(df, items, None, None, SCHEMA)


@pytest.fixture(scope="module")
def trained():
    data = cluster_catalogue()
    return data, UserPersonalization(**SMALL).fit(data, TrainingOptions(seed=3))


def new_items() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ITEM_ID": ["new_in_2", "new_in_4", "no_meta", "unknown_genre"],
            "GENRES": ["g2", "g4", None, "never-seen"],
            "PRICE": np.nan,
        }
    )


def test_new_item_lands_among_its_clusters_items(trained):
    data, up = trained
    hist = data.user_histories()
    before = up.score(np.arange(data.n_users), hist)
    report = up.add_items(new_items()["ITEM_ID"].to_numpy(), new_items(), NewItemOptions(k=5))
    assert report["added"] == 4 and report["from_neighbours"] == 2
    reasons = {r["item_id"]: r["reason"] for r in report["fallback_items"]}
    assert reasons == {"no_meta": "no usable metadata", "unknown_genre": "no usable metadata"}
    after = up.score(np.arange(data.n_users), hist)
    # existing items keep their scores exactly; the catalogue grew by 4
    assert after.shape == (data.n_users, data.n_items + 4)
    np.testing.assert_allclose(after[:, : data.n_items], before, rtol=1e-5, atol=1e-5)
    for col, cluster in ((data.n_items, 2), (data.n_items + 1, 4)):
        users = [u for u in range(data.n_users) if u % CLUSTERS == cluster]
        for u in users:
            rank = int((after[u, : data.n_items] > after[u, col]).sum())
            assert rank < PER_CLUSTER, (u, rank)  # inside the cluster's block at the top
        others = [u for u in range(data.n_users) if u % CLUSTERS != cluster]
        ranks = [int((after[u, : data.n_items] > after[u, col]).sum()) for u in others]
        assert np.median(ranks) >= PER_CLUSTER  # and not at the top for other clusters
    # the prior is not a random vector: the same row for both fallback items
    e = up.model.item_emb.weight.detach().numpy()
    np.testing.assert_allclose(e[-1], e[-2])


def test_revision_artifact_round_trips(trained, tmp_path):
    data, up = trained
    storage = Storage(str(tmp_path))
    up.save(storage, "m")
    loaded, _ = load_model(storage, "m")
    hist = data.user_histories()[:7]
    np.testing.assert_allclose(
        loaded.score(np.arange(7), hist), up.score(np.arange(7), hist), rtol=1e-5, atol=1e-5
    )
    assert list(loaded.item_ids) == list(up.item_ids)


def test_recipes_without_metadata_add_items_for_exploration():
    data = cluster_catalogue()
    for recipe in (
        PopularityCount().fit(data, TrainingOptions()),
        Sims().fit(data, TrainingOptions()),
    ):
        n = data.n_items
        report = recipe.add_items(np.array(["x", "y"], dtype=object), None, NewItemOptions())
        assert report["added"] == 2 and report["method"] == "exploration"
        scores = recipe.score(np.arange(3), data.user_histories()[:3])
        assert scores.shape == (3, n + 2) and np.isfinite(scores).all()
        assert list(recipe.item_ids[-2:]) == ["x", "y"]


def test_up_without_metadata_uses_the_prior():
    data = cluster_catalogue()
    up = UserPersonalization(**{**SMALL, "use_metadata": False, "epochs": 1}).fit(
        data, TrainingOptions()
    )
    report = up.add_items(np.array(["x"], dtype=object), None, NewItemOptions())
    assert report["method"] == "prior" and report["fallback"] == 1
    assert report["fallback_items"][0]["reason"] == "no item metadata (no items dataset or fields)"


def test_up_trained_without_metadata_finds_neighbours_through_the_metadata_index():
    """The model never saw GENRES; the update's metadata index over the known items does."""
    data = cluster_catalogue()
    up = UserPersonalization(**{**SMALL, "use_metadata": False}).fit(data, TrainingOptions(seed=3))
    assert up.features is None
    hist = data.user_histories()
    before = up.score(np.arange(data.n_users), hist)
    catalogue = pd.concat([data.items, new_items()])  # the update's items: known and new
    report = up.add_items(
        new_items()["ITEM_ID"].to_numpy(), catalogue, NewItemOptions(k=5), schema=SCHEMA
    )
    assert report["method"] == "metadata-index"
    assert report["added"] == 4 and report["from_neighbours"] == 2
    reasons = {r["item_id"]: r["reason"] for r in report["fallback_items"]}
    assert reasons == {"no_meta": "no usable metadata", "unknown_genre": "no usable metadata"}
    after = up.score(np.arange(data.n_users), hist)
    np.testing.assert_allclose(after[:, : data.n_items], before, rtol=1e-5, atol=1e-5)
    for col, cluster in ((data.n_items, 2), (data.n_items + 1, 4)):
        mine = [u for u in range(data.n_users) if u % CLUSTERS == cluster]
        ranks = [int((after[u, : data.n_items] > after[u, col]).sum()) for u in mine]
        assert np.median(ranks) < PER_CLUSTER  # among its cluster's items for its users
        others = [u for u in range(data.n_users) if u % CLUSTERS != cluster]
        ranks = [int((after[u, : data.n_items] > after[u, col]).sum()) for u in others]
        assert np.median(ranks) >= PER_CLUSTER


def test_metadata_index_uses_categorical_text_and_numeric_fields():
    from recsys.recipes.cold import MetadataIndex

    schema = Schema(
        "items",
        (
            Field("ITEM_ID", "string"),
            Field("TITLE", "string", nullable=True, textual=True),
            Field("YEAR", "int", nullable=True),
            Field("GENRES", "string", nullable=True, categorical=True),
        ),
    )
    known = pd.DataFrame(
        {
            "ITEM_ID": ["ts1", "ts2", "heat", "alien", "old"],
            "TITLE": ["Toy Story", "Toy Story 2", "Heat", "Alien", "Nosferatu"],
            "YEAR": [1995, 1999, 1995, 1979, 1922],
            "GENRES": ["Animation|Children", "Animation|Children", "Action|Crime",
                       "Horror|Sci-Fi", "Horror"],
        }
    )  # fmt: skip
    new = pd.DataFrame(
        {
            "ITEM_ID": ["ts3", "horror-1925", "no-fields"],
            "TITLE": ["Toy Story 3", None, None],
            "YEAR": [2010, 1925, None],
            "GENRES": ["Animation|Children", "Horror", None],
        }
    )
    items = pd.concat([known, new])
    index = MetadataIndex.build(items, schema, known["ITEM_ID"].to_numpy())
    assert set(index.config["categorical"]) == {"GENRES"}
    assert index.config["textual"] == ["TITLE"] and set(index.config["numeric"]) == {"YEAR"}
    idx, w, usable = index.neighbours(
        items, new["ITEM_ID"].to_numpy(), NewItemOptions(k=2, min_similarity=0.1)
    )
    ids = known["ITEM_ID"].to_numpy()
    assert set(ids[idx[0]]) == {"ts1", "ts2"}  # title words and genres
    # genre alone ties alien and old; the year (1925) picks the silent film first
    assert ids[idx[1][0]] == "old"
    assert usable.tolist() == [True, True, False] and w[2].sum() == 0
    assert MetadataIndex.build(None, schema, ids) is None


def test_neighbours_floor_weighting_and_ties():
    known = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [1.0, 0.0]], np.float32)
    new = np.array([[1.0, 0.0], [-1.0, -1.0]], np.float32)
    ok = np.ones(4, bool)
    idx, w = nearest_neighbours(known, new, ok, NewItemOptions(k=2, min_similarity=0.5))
    assert list(idx[0]) == [0, 3]  # tie at cos 1 → lower index first
    np.testing.assert_allclose(w[0], [0.5, 0.5])
    assert w[1].sum() == 0  # nothing above the floor → the prior
    idx, w = nearest_neighbours(
        known, new[:1], ok, NewItemOptions(k=3, weighting="uniform", min_similarity=0.0)
    )
    np.testing.assert_allclose(w[0], [1 / 3] * 3)
    with pytest.raises(ConfigError):
        NewItemOptions(weighting="random")
    with pytest.raises(ConfigError):
        NewItemOptions.from_dict({"kk": 3})


def test_weighted_mean_keeps_the_neighbours_norm():
    vectors = np.array([[2.0, 0.0], [0.0, 2.0]], np.float32)
    idx, w = np.array([[0, 1]]), np.array([[0.5, 0.5]], np.float32)
    np.testing.assert_allclose(weighted_mean(vectors, idx, w, False), [[1.0, 1.0]])
    kept = weighted_mean(vectors, idx, w, True)
    np.testing.assert_allclose(np.linalg.norm(kept), 2.0, rtol=1e-6)


def test_bias_offset_and_popularity_bias(trained):
    """Same metadata, same neighbours: the bias differs only by what the options say."""
    import copy

    _, up = trained
    twins = pd.DataFrame({"ITEM_ID": ["a", "b"], "GENRES": ["g3", "g3"], "PRICE": np.nan})
    ids = twins["ITEM_ID"].to_numpy()
    counts = np.array([0, 50])

    def biases(**options):
        rec = copy.deepcopy(up)
        rec.add_items(ids, twins, NewItemOptions(k=5, **options), counts=counts)
        return rec.model.item_bias.detach().numpy()[-2:].astype(np.float64)

    plain = biases(popularity_bias=False)
    assert plain[0] == pytest.approx(plain[1])  # counts unused without popularity_bias
    np.testing.assert_allclose(
        biases(popularity_bias=False, bias_offset=-1.5), plain - 1.5, atol=1e-5
    )
    popular = biases(popularity_bias=True)
    # b = mean(b_j - log p_j) + log((count + 1) / N): 50 interactions vs none is log 51
    assert popular[1] - popular[0] == pytest.approx(np.log(51.0), abs=1e-4)
    assert not np.allclose(popular, plain)
    shifted = biases(popularity_bias=True, bias_offset=2.0)
    np.testing.assert_allclose(shifted, popular + 2.0, atol=1e-5)
    with pytest.raises(ConfigError, match="bias_offset"):
        NewItemOptions(bias_offset=float("nan"))
