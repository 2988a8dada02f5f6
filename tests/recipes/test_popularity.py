"""popularity-count and the artifact format: fit, score, save/load, refusal of bad artifacts."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load as load_safetensors

from recsys.data.dataset import Dataset
from recsys.errors import ArtifactError, ConfigError
from recsys.recipes import (
    FORMAT_VERSION,
    RECIPES,
    PopularityCount,
    TrainingOptions,
    get_recipe,
    load_model,
)
from recsys.storage import Storage

PREFIX = "solutions/pop/versions/v1"


def make_data() -> Dataset:
    # Catalogue: "z" (items file only, never interacted), "a", "b" (items file), "c" (only in
    # interactions). Counts: a=3, b=1, c=4, z=0 -> 8 interactions.
    inter = pd.DataFrame(
        {
            "USER_ID": pd.Series(["u1", "u2", "u1", "u3", "u2", "u1", "u3", "u3"], dtype=str),
            "ITEM_ID": pd.Series(["a", "c", "a", "c", "b", "c", "a", "c"], dtype=str),
            "TIMESTAMP": pd.Series([1, 2, 3, 4, 5, 6, 7, 8], dtype="int64"),
            "EVENT_TYPE": pd.Series(["click"] * 8, dtype=str),
        }
    )
    items = pd.DataFrame({"ITEM_ID": pd.Series(["z", "a", "b"], dtype=str)})
    return Dataset(inter, items=items)


def fitted() -> PopularityCount:
    return PopularityCount().fit(make_data(), TrainingOptions())


def test_fit_gives_each_items_share_of_interactions():
    model = fitted()
    assert model.item_ids.tolist() == ["z", "a", "b", "c"]
    assert model.user_ids.tolist() == ["u1", "u2", "u3"]
    assert model.item_scores.dtype == np.float32
    np.testing.assert_allclose(model.item_scores, [0.0, 3 / 8, 1 / 8, 4 / 8])
    assert model.item_scores.sum() == pytest.approx(1.0)


def test_fit_on_no_interactions_gives_zeros_without_warnings():
    inter = pd.DataFrame(
        {
            "USER_ID": pd.Series([], dtype=str),
            "ITEM_ID": pd.Series([], dtype=str),
            "TIMESTAMP": pd.Series([], dtype="int64"),
            "EVENT_TYPE": pd.Series([], dtype=str),
        }
    )
    data = Dataset(inter, items=pd.DataFrame({"ITEM_ID": pd.Series(["a", "b"], dtype=str)}))
    with np.errstate(all="raise"):
        model = PopularityCount().fit(data, TrainingOptions())
    np.testing.assert_array_equal(model.item_scores, [0.0, 0.0])


def test_score_is_the_same_for_every_user_including_unknown():
    model = fitted()
    users = np.array([0, 2, -1])
    histories = [np.array([1]), np.array([], dtype=np.int64), np.array([3, 1])]
    scores = model.score(users, histories)
    assert scores.shape == (3, 4)
    assert scores.dtype == np.float32
    for row in scores:
        np.testing.assert_allclose(row, [0.0, 3 / 8, 1 / 8, 4 / 8])


def test_score_returns_a_writable_copy():
    model = fitted()
    scores = model.score(np.array([0, 1]), [np.array([]), np.array([])])
    scores[0, 3] = -np.inf  # what recommend_blocks does to exclude seen items
    np.testing.assert_allclose(model.item_scores, [0.0, 3 / 8, 1 / 8, 4 / 8])
    assert scores[1, 3] == pytest.approx(0.5)


def test_score_with_no_users():
    assert fitted().score(np.array([], dtype=np.int64), []).shape == (0, 4)


def test_save_load_round_trip(tmp_path):
    storage = Storage(str(tmp_path))
    model = fitted()
    saved = model.save(storage, PREFIX, extra={"solution": "pop"})

    loaded, model_json = load_model(storage, PREFIX)
    assert isinstance(loaded, PopularityCount)
    assert model_json == saved
    assert model_json["format_version"] == FORMAT_VERSION
    assert model_json["recipe"] == "popularity-count"
    assert model_json["n_items"] == 4
    assert model_json["n_users"] == 3
    assert model_json["solution"] == "pop"
    assert loaded.item_ids.tolist() == model.item_ids.tolist()
    assert loaded.user_ids.tolist() == model.user_ids.tolist()
    assert loaded.hyperparameters == model.hyperparameters

    users = np.array([0, 1, 2, -1])
    histories = [np.array([], dtype=np.int64)] * 4
    np.testing.assert_array_equal(loaded.score(users, histories), model.score(users, histories))
    assert loaded.score(users, histories).dtype == np.float32


def test_artifact_files_and_checksums(tmp_path):
    storage = Storage(str(tmp_path))
    fitted().save(storage, PREFIX)
    directory = Path(tmp_path, PREFIX)
    names = sorted(p.name for p in directory.iterdir())
    assert names == ["items.parquet", "model.json", "model.safetensors", "users.parquet"]
    model_json = json.loads((directory / "model.json").read_text())
    for name, digest in model_json["files"].items():
        assert hashlib.sha256((directory / name).read_bytes()).hexdigest() == digest
    assert set(model_json["files"]) == {"items.parquet", "model.safetensors", "users.parquet"}


def test_artifact_has_no_pickle(tmp_path):
    storage = Storage(str(tmp_path))
    model = fitted()
    model.save(storage, PREFIX)
    raw = Path(tmp_path, PREFIX, "model.safetensors").read_bytes()
    tensors = load_safetensors(raw)
    assert set(tensors) == {"item_scores"}
    np.testing.assert_array_equal(tensors["item_scores"], model.item_scores)
    # Vocabularies are plain Parquet string columns.
    items = pd.read_parquet(Path(tmp_path, PREFIX, "items.parquet"))
    assert items["ITEM_ID"].tolist() == ["z", "a", "b", "c"]
    users = pd.read_parquet(Path(tmp_path, PREFIX, "users.parquet"))
    assert users["USER_ID"].tolist() == ["u1", "u2", "u3"]


def test_tampered_tensors_are_refused(tmp_path):
    storage = Storage(str(tmp_path))
    fitted().save(storage, PREFIX)
    path = Path(tmp_path, PREFIX, "model.safetensors")
    raw = bytearray(path.read_bytes())
    # Change the last byte of the tensor data: still a valid safetensors file, other values.
    raw[-1] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match="checksum"):
        load_model(storage, PREFIX)


def test_overwritten_tensors_are_refused(tmp_path):
    storage = Storage(str(tmp_path))
    fitted().save(storage, PREFIX)
    path = Path(tmp_path, PREFIX, "model.safetensors")
    path.write_bytes(b"\x00" * len(path.read_bytes()))
    with pytest.raises(ArtifactError, match="checksum") as info:
        load_model(storage, PREFIX)
    assert "model.safetensors" in str(info.value)


def test_tampered_vocabulary_is_refused(tmp_path):
    storage = Storage(str(tmp_path))
    fitted().save(storage, PREFIX)
    pd.DataFrame({"ITEM_ID": ["c", "b", "a", "z"]}).to_parquet(
        Path(tmp_path, PREFIX, "items.parquet"), index=False
    )
    with pytest.raises(ArtifactError, match="checksum"):
        load_model(storage, PREFIX)


def test_other_format_version_is_refused(tmp_path):
    storage = Storage(str(tmp_path))
    fitted().save(storage, PREFIX)
    path = Path(tmp_path, PREFIX, "model.json")
    model_json = json.loads(path.read_text())
    model_json["format_version"] = 999
    path.write_text(json.dumps(model_json))
    with pytest.raises(ArtifactError, match="version") as info:
        load_model(storage, PREFIX)
    assert "999" in str(info.value)


def test_missing_format_version_is_refused(tmp_path):
    storage = Storage(str(tmp_path))
    fitted().save(storage, PREFIX)
    path = Path(tmp_path, PREFIX, "model.json")
    model_json = json.loads(path.read_text())
    del model_json["format_version"]
    path.write_text(json.dumps(model_json))
    with pytest.raises(ArtifactError, match="version"):
        load_model(storage, PREFIX)


def test_wrong_tensor_shape_is_refused():
    model = PopularityCount()
    model.item_ids = np.array(["a", "b", "c"], dtype=object)
    with pytest.raises(ArtifactError, match="shape"):
        model.load_tensors({"item_scores": np.zeros(2, dtype=np.float32)})
    model.load_tensors({"item_scores": np.array([1, 2, 3], dtype=np.float64)})
    assert model.item_scores.dtype == np.float32


def test_unknown_hyperparameter_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown hyperparameters") as info:
        PopularityCount(learning_rate=0.1)
    assert "learning_rate" in str(info.value)
    assert "popularity-count" in str(info.value)


def test_no_hyperparameters_is_fine():
    assert PopularityCount().hyperparameters == {}


def test_get_recipe():
    assert get_recipe("popularity-count") is PopularityCount
    assert RECIPES["popularity-count"] is PopularityCount


def test_unknown_recipe_lists_available_ones():
    with pytest.raises(ConfigError, match="nope") as info:
        get_recipe("nope")
    message = str(info.value)
    assert "available" in message
    for name in RECIPES:
        assert name in message
