"""The 2-hourly update through recsys.pipeline: skip when nothing is new, a revision with the
new items deployed through the campaign, reruns reuse it, a failure leaves the campaign alone."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta

import numpy as np
import pytest

from recsys import pipeline
from recsys import update as updates
from recsys.campaigns import campaign_state, rollback
from recsys.data.dataset import Dataset
from recsys.errors import ArtifactError
from recsys.inference.batch import BatchServer
from recsys.recipes import load_model
from recsys.training import revision_prefix

from .conftest import REPO

CAMPAIGN = "synthetic"
NEW_ITEMS = (
    "ITEM_ID,GENRES,PRICE,CREATION_TIMESTAMP,TITLE\n"
    "fresh1,g5,12.5,1706000000,Electric River Voyage\n"
    "fresh2,,,1706000000,\n"
)


def nightly_date(day) -> str:
    return f"{day + timedelta(days=1)}T00:00:00+00:00"


def two_hours_later(date: str) -> str:
    return (datetime.fromisoformat(date) + timedelta(hours=2)).isoformat()


def land_new_items(storage, group="synthetic"):
    storage.write_text(f"landing/{group}/items/new-items.csv", NEW_ITEMS)
    storage.write_text(
        f"landing/{group}/interactions/new-clicks.csv",
        "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,EVENT_VALUE,IMPRESSION\n"
        "u1,fresh1,1706000100,click,1.0,fresh1|fresh2\n",
    )


@pytest.fixture
def nightly(local_storage, landed):
    date = nightly_date(landed)
    out = pipeline.run_nightly(CAMPAIGN, date, storage=local_storage)
    return date, out


def test_nothing_new_skips_and_writes_nothing(local_storage, nightly):
    date, _ = nightly
    files = local_storage.find("")
    out = pipeline.run_update(CAMPAIGN, two_hours_later(date), storage=local_storage)
    assert out == {"skipped": True, "reason": "nothing new since the last snapshot"}
    assert local_storage.find("") == files


def test_never_deployed_campaign_skips(local_storage, landed):
    out = pipeline.run_update(CAMPAIGN, nightly_date(landed), storage=local_storage)
    assert out["skipped"] and "never deployed" in out["reason"]


def test_update_deploys_a_revision_with_the_new_items(local_storage, nightly):
    date, night = nightly
    land_new_items(local_storage)
    when = two_hours_later(date)
    out = pipeline.run_update(CAMPAIGN, when, storage=local_storage, refresh_batch=True)
    assert not out["skipped"] and out["deploy"]["deployed"]
    rev = out["revision"]
    assert rev["version_id"] == night["version"]["version_id"]
    assert rev["new_items"]["added"] == 2 and rev["new_items"]["method"] == "exploration"
    live = campaign_state(local_storage, CAMPAIGN)["live"]
    assert live["revision"] == rev["revision_id"]
    assert live["snapshot_id"] == out["import"]["snapshot_id"] != night["import"]["snapshot_id"]
    prefix = revision_prefix("synthetic-popularity", rev["version_id"], rev["revision_id"])
    recipe, _ = load_model(local_storage, prefix)
    assert list(recipe.item_ids[-2:]) == ["fresh1", "fresh2"]
    # the batch serves the revision, with the update's snapshot
    assert out["batch"]["users"] > 0
    spec = pipeline.plan_batch(CAMPAIGN, when, storage=local_storage)
    assert spec["revision"] == rev["revision_id"]
    assert spec["snapshot_id"] == out["import"]["snapshot_id"]
    server = BatchServer.load(local_storage, spec)
    assert "fresh1" in set(server.recipe.item_ids)

    # a rerun of the same logical date: same revision, no new history entry, no new files
    files = local_storage.find("")
    again = pipeline.run_update(CAMPAIGN, when, storage=local_storage)
    assert again["revision"]["revision_id"] == rev["revision_id"]
    assert again["deploy"]["deployed"] is False and again["deploy"]["reason"] == "already live"
    assert local_storage.find("") == files
    assert len(campaign_state(local_storage, CAMPAIGN)["history"]) == 2

    # rollback of a bad update returns to the plain nightly version
    rollback(local_storage, CAMPAIGN)
    live = campaign_state(local_storage, CAMPAIGN)["live"]
    assert live["revision"] is None and live["snapshot_id"] == night["import"]["snapshot_id"]


def test_failure_mid_update_leaves_the_campaign_as_it_was(local_storage, nightly, monkeypatch):
    date, _ = nightly
    land_new_items(local_storage)
    state = campaign_state(local_storage, CAMPAIGN)

    def broken(storage, revision):
        raise ArtifactError("injected: revision does not score")

    monkeypatch.setattr(updates, "check_revision", broken)
    with pytest.raises(ArtifactError, match="injected"):
        pipeline.run_update(CAMPAIGN, two_hours_later(date), storage=local_storage)
    assert campaign_state(local_storage, CAMPAIGN) == state
    monkeypatch.undo()
    out = pipeline.run_update(CAMPAIGN, two_hours_later(date), storage=local_storage)
    assert out["deploy"]["deployed"]


def test_user_personalization_update_end_to_end(local_storage, landed, tmp_path, monkeypatch):
    """With metadata: the new item with genres is placed by neighbours, the empty one gets
    the prior and is reported; the revision loads and scores (the gate)."""
    configs = tmp_path / "configs"
    shutil.copytree(REPO / "configs", configs)
    (configs / "solutions" / "synthetic-up.yaml").write_text(
        "dataset_group: synthetic\nrecipe: user-personalization\nhyperparameters:\n"
        "  hidden_dimension: 16\n  bptt: 8\n  num_layers: 1\n  epochs: 2\n"
        "  precision: fp32\n  use_metadata: true\n"
    )
    (configs / "campaigns" / "synthetic-up.yaml").write_text(
        "solution: synthetic-up\nconfig:\n  num_results: 10\n"
        "update:\n  k: 5\n  min_similarity: 0.2\n"
    )
    monkeypatch.setenv("RECSYS_CONFIG_DIR", str(configs))
    date = nightly_date(landed)
    pipeline.run_nightly("synthetic-up", date, storage=local_storage, deploy_mode="force")
    land_new_items(local_storage)
    out = pipeline.run_update("synthetic-up", two_hours_later(date), storage=local_storage)
    rev = out["revision"]
    assert rev["new_items"]["method"] == "metadata-neighbours"
    assert rev["new_items"]["added"] == 2 and rev["new_items"]["from_neighbours"] == 1
    assert rev["fallback_items"] == [{"item_id": "fresh2", "reason": "no usable metadata"}]
    assert out["deploy"]["gate"]["passed"] and out["deploy"]["deployed"]
    stored = local_storage.read_json(
        f"{revision_prefix('synthetic-up', rev['version_id'], rev['revision_id'])}/revision.json"
    )
    assert stored["options"]["k"] == 5 and stored["n_items"] == stored["n_items_before"] + 2


def test_revision_of_a_version_no_longer_live_is_not_deployed(local_storage, nightly):
    date, night = nightly
    land_new_items(local_storage)
    when = two_hours_later(date)
    snap = pipeline.import_datasets("synthetic", when, "INCREMENTAL", local_storage)
    pipeline.validate("synthetic", snap["snapshot_id"], None, local_storage)
    rev = pipeline.update_items(CAMPAIGN, snap["snapshot_id"], when, local_storage)
    # meanwhile another version goes live (the nightly of a later day, say)
    other = pipeline.train("synthetic-popularity", snap["snapshot_id"], when, storage=local_storage)
    pipeline.deploy_campaign(CAMPAIGN, other["version_id"], when, storage=local_storage)
    out = pipeline.deploy_update(
        CAMPAIGN, rev["version_id"], rev["revision_id"], when, local_storage
    )
    assert out["deployed"] is False and out["reason"] == "revision of a version not live"
    assert campaign_state(local_storage, CAMPAIGN)["live"]["version_id"] == other["version_id"]


def up_campaign(tmp_path, monkeypatch, update: str) -> None:
    """A tiny user-personalization solution with metadata and a campaign with ``update``."""
    configs = tmp_path / "configs"
    shutil.copytree(REPO / "configs", configs)
    (configs / "solutions" / "synthetic-up.yaml").write_text(
        "dataset_group: synthetic\nrecipe: user-personalization\nhyperparameters:\n"
        "  hidden_dimension: 16\n  bptt: 8\n  num_layers: 1\n  epochs: 2\n"
        "  precision: fp32\n  use_metadata: true\n"
    )
    (configs / "campaigns" / "synthetic-up.yaml").write_text(
        f"solution: synthetic-up\nconfig:\n  num_results: 10\nupdate:\n{update}"
    )
    monkeypatch.setenv("RECSYS_CONFIG_DIR", str(configs))


def batch_lines(storage, manifest_key: str) -> list[tuple[str, str]]:
    manifest = storage.read_json(manifest_key)
    out = []
    for part in manifest["parts"]:
        for line in storage.read_text(part["key"]).splitlines():
            out.append((json.loads(line)["input"]["userId"], line))
    assert len(out) == manifest["users"]
    return out


def test_targeted_refresh_rewrites_only_the_users_whose_top_k_changed(
    local_storage, landed, tmp_path, monkeypatch
):
    # fresh1 (genre g5) gets its neighbours' bias + 50: it enters every top 10 it may enter,
    # so the selection is known; at most 40 users are refreshed, most new items first.
    up_campaign(
        tmp_path,
        monkeypatch,
        "  k: 5\n  min_similarity: 0.2\n  bias_offset: 50.0\n"
        "  refresh:\n    enabled: true\n    max_users: 40\n",
    )
    date = nightly_date(landed)
    night = pipeline.run_nightly("synthetic-up", date, storage=local_storage, deploy_mode="force")
    base_key = local_storage.read_json("batch/synthetic-up/latest.json")["manifest"]
    base = dict(batch_lines(local_storage, base_key))
    base_files = {k: local_storage.read_bytes(k) for k in local_storage.find("batch/")}
    land_new_items(local_storage)
    when = two_hours_later(date)
    out = pipeline.run_update("synthetic-up", when, storage=local_storage)
    assert out["deploy"]["deployed"] and "batch" not in out
    ref = out["refresh"]
    assert ref["refreshed"] and ref["latest_moved"] and ref["new_items"] == 2

    # The previous output is untouched; latest points at the new, complete output.
    for key, body in base_files.items():
        if not key.endswith("latest.json"):
            assert local_storage.read_bytes(key) == body
    latest = local_storage.read_json("batch/synthetic-up/latest.json")
    assert latest["batch_id"] == ref["batch_id"] != night["batch"]["batch_id"]
    assert local_storage.exists(f"{latest['prefix']}/_SUCCESS")
    manifest = local_storage.read_json(latest["manifest"])
    assert manifest["revision"] == out["revision"]["revision_id"]
    assert manifest["refresh"]["base_batch_id"] == night["batch"]["batch_id"]
    new_lines = batch_lines(local_storage, latest["manifest"])
    assert [u for u, _ in new_lines] == list(base)  # same users, same order (no new user)

    # The oracle: the revision's full score matrix (tiny here), seen items out, top 10.
    rev = out["revision"]
    recipe, _ = load_model(
        local_storage, revision_prefix("synthetic-up", rev["version_id"], rev["revision_id"])
    )
    data = Dataset.load(local_storage, "synthetic", out["import"]["snapshot_id"])
    to_model = updates.recipe_index(recipe.item_ids, data.item_ids)
    hists = [to_model[h] for h in data.user_histories()]
    scores = recipe.score(updates.recipe_index(recipe.user_ids, data.user_ids), hists)
    is_new = np.isin(recipe.item_ids.astype(str), ["fresh1", "fresh2"])
    counts = []
    for r, h in enumerate(hists):
        s = scores[r].astype(np.float64)
        s[h] = -np.inf
        top = np.lexsort((np.arange(len(s)), -s))[:10]
        counts.append(int(is_new[top].sum()))
    counts = np.array(counts)
    assert (counts >= 1).sum() > 40  # more candidates than the limit: the limit matters
    order = np.lexsort((np.arange(len(counts)), -counts))[:40]
    expected = {str(data.user_ids[i]) for i in order}
    assert ref["users_refreshed"] == 40 and ref["users_added"] == 0

    changed = {u for u, line in new_lines if line != base[u]}
    assert changed == expected
    for u, line in new_lines:
        items = json.loads(line)["output"]["recommendedItems"]
        assert ("fresh1" in items) == (u in expected)
    assert "fresh1" not in json.loads(base[next(iter(expected))])["output"]["recommendedItems"]

    # A rerun of the same logical date writes nothing and keeps latest.
    files = local_storage.find("")
    again = pipeline.run_update("synthetic-up", when, storage=local_storage)
    assert again["refresh"]["refreshed"] is False
    assert local_storage.find("") == files
    assert local_storage.read_json("batch/synthetic-up/latest.json") == latest


def test_targeted_refresh_is_on_by_default_latest_last_and_can_be_turned_off(
    local_storage, landed, tmp_path, monkeypatch
):
    from recsys.config import load_config_file

    # the shipped MovieLens campaign turns it on explicitly; a campaign without a refresh
    # section gets the default: on
    assert load_config_file("campaigns", "movielens")["update"]["refresh"]["enabled"] is True
    up_campaign(tmp_path, monkeypatch, "  k: 5\n  min_similarity: 0.2\n  bias_offset: 50.0\n")
    assert updates.refresh_options("synthetic-up").enabled is True
    date = nightly_date(landed)
    pipeline.run_nightly("synthetic-up", date, storage=local_storage, deploy_mode="force")
    latest = local_storage.read_json("batch/synthetic-up/latest.json")
    # the live deployment is the plain version: nothing to refresh, even when asked
    asked = pipeline.refresh_update_batch("synthetic-up", date, local_storage, enabled=True)
    assert asked == {"refreshed": False, "reason": "the live deployment is not a revision"}
    land_new_items(local_storage)
    order = []
    original = local_storage.write_pointer

    def pointer(key, obj):  # `latest` moves last: after the refreshed output is complete
        done = "prefix" in obj and local_storage.exists(f"{obj['prefix']}/_SUCCESS")
        order.append((key, done))
        return original(key, obj)

    monkeypatch.setattr(local_storage, "write_pointer", pointer)
    out = pipeline.run_update("synthetic-up", two_hours_later(date), storage=local_storage)
    assert out["deploy"]["deployed"]
    assert out["refresh"]["refreshed"] and out["refresh"]["latest_moved"]
    moved = local_storage.read_json("batch/synthetic-up/latest.json")
    assert moved["batch_id"] == out["refresh"]["batch_id"] != latest["batch_id"]
    assert moved["revision"] == out["revision"]["revision_id"]
    assert ("batch/synthetic-up/latest.json", True) in order
    assert order[-1][0] == "batch/synthetic-up/latest.json"  # the last pointer written
    fresh = batch_lines(local_storage, moved["manifest"])
    assert any("fresh1" in json.loads(line)["output"]["recommendedItems"] for _, line in fresh)


def test_targeted_refresh_off_leaves_latest(local_storage, landed, tmp_path, monkeypatch):
    up_campaign(tmp_path, monkeypatch, "  k: 5\n  refresh:\n    enabled: false\n")
    date = nightly_date(landed)
    pipeline.run_nightly("synthetic-up", date, storage=local_storage, deploy_mode="force")
    latest = local_storage.read_json("batch/synthetic-up/latest.json")
    land_new_items(local_storage)
    out = pipeline.run_update("synthetic-up", two_hours_later(date), storage=local_storage)
    assert out["deploy"]["deployed"]
    assert out["refresh"]["refreshed"] is False and "off" in out["refresh"]["reason"]
    assert local_storage.read_json("batch/synthetic-up/latest.json") == latest


def test_refresh_options_are_checked():
    from recsys.errors import ConfigError
    from recsys.inference.refresh import RefreshOptions

    assert RefreshOptions.from_dict(None) == RefreshOptions(enabled=True)
    with pytest.raises(ConfigError, match="min_new_items"):
        RefreshOptions.from_dict({"min_new_items": 0})
    with pytest.raises(ConfigError, match="unknown"):
        RefreshOptions.from_dict({"threshold": 3})


def test_shipped_movielens_update_finds_metadata_neighbours():
    """The shipped MovieLens setup: the solution trains without metadata, and the update's
    metadata index (the dataset group's GENRES, TAGS, TITLE, YEAR) still places new movies
    by their neighbours, with the shipped campaign's update options."""
    from recsys.config import SolutionConfig
    from recsys.data.sources.movielens import load_movielens
    from recsys.recipes.cold import MetadataIndex
    from recsys.schema import DatasetGroup

    assert SolutionConfig.load("movielens-up").hyperparameters["use_metadata"] is False
    options = updates.update_options("movielens")
    schema = DatasetGroup.load("movielens").schemas["items"]
    items = load_movielens(REPO / "data" / "ml-latest-small").items
    new = np.array(["3114", "78499"], dtype=object)  # Toy Story 2 and 3 arrive late
    known = items["ITEM_ID"][~items["ITEM_ID"].isin(new)].to_numpy()
    index = MetadataIndex.build(items, schema, known)
    assert set(index.config["categorical"]) == {"GENRES"}
    assert set(index.config["textual"]) == {"TITLE", "TAGS"}
    assert set(index.config["numeric"]) == {"YEAR"}
    idx, w, usable = index.neighbours(items, new, options)
    assert usable.all() and (w.sum(axis=1) > 0).all()
    titles = dict(zip(items["ITEM_ID"], items["TITLE"], strict=True))
    for row in idx:
        assert titles[str(known[row[0]])] == "Toy Story"  # the nearest: the first film
