"""The 2-hourly update through recsys.pipeline: skip when nothing is new, a revision with the
new items deployed through the campaign, reruns reuse it, a failure leaves the campaign alone."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta

import pytest

from recsys import pipeline
from recsys import update as updates
from recsys.campaigns import campaign_state, rollback
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
