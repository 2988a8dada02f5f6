"""The nightly lifecycle through recsys.pipeline: campaigns, batch outputs, reruns, backfills."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from recsys import pipeline
from recsys.campaigns import campaign_state
from recsys.errors import DataError, NotFoundError
from recsys.inference.batch import latest_key

CAMPAIGN = "synthetic"


def after(day) -> str:
    """The run that sees every drop up to and including ``day``."""
    return f"{day + timedelta(days=1)}T00:00:00+00:00"


def read_batch(storage, manifest_key):
    manifest = storage.read_json(manifest_key)
    lines = []
    for part in manifest["parts"]:
        lines += [json.loads(x) for x in storage.read_text(part["key"]).splitlines()]
    return manifest, lines


def test_run_nightly_writes_every_artifact(local_storage, landed, synthetic_data):
    date = after(landed)
    out = pipeline.run_nightly(CAMPAIGN, date, storage=local_storage)
    sid, vid = out["import"]["snapshot_id"], out["version"]["version_id"]
    assert local_storage.exists(f"datasets/synthetic/snapshots/{sid}/manifest.json")
    vprefix = f"solutions/synthetic-popularity/versions/{vid}"
    for name in ("version.json", "model.json", "model.safetensors", "metrics.json"):
        assert local_storage.exists(f"{vprefix}/{name}")
    assert set(out["metrics"]) >= {"coverage", "precision_at_5", "mean_reciprocal_rank_at_25"}
    state = campaign_state(local_storage, CAMPAIGN)
    assert state["live"]["version_id"] == vid and len(state["history"]) == 1

    latest = local_storage.read_json(latest_key(CAMPAIGN))
    assert local_storage.exists(f"{latest['prefix']}/_SUCCESS")
    manifest, lines = read_batch(local_storage, latest["manifest"])
    users = set(synthetic_data.interactions["USER_ID"]) | set(synthetic_data.users["USER_ID"])
    assert {rec["input"]["userId"] for rec in lines} == users
    assert manifest["users"] == len(lines) == len(users)
    seen = synthetic_data.interactions.groupby("USER_ID")["ITEM_ID"].apply(set)
    for rec in lines:
        assert rec["error"] is None
        items, scores = rec["output"]["recommendedItems"], rec["output"]["scores"]
        assert len(items) == len(scores) == 10  # the synthetic campaign's num_results
        assert scores == sorted(scores, reverse=True)
        assert not set(items) & seen.get(rec["input"]["userId"], set())


def test_rerun_same_date_same_paths_no_duplicates(local_storage, landed):
    date = after(landed)
    first = pipeline.run_nightly(CAMPAIGN, date, storage=local_storage)
    files = local_storage.find("")
    second = pipeline.run_nightly(CAMPAIGN, date, storage=local_storage)
    assert second["import"] == first["import"] and second["version"] == first["version"]
    assert second["batch"] == first["batch"]
    assert local_storage.find("") == files
    assert len(campaign_state(local_storage, CAMPAIGN)["history"]) == 1


def test_backfill_does_not_replace_newer_live_version(local_storage, landed):
    new = pipeline.run_nightly(CAMPAIGN, after(landed), storage=local_storage)
    latest_before = local_storage.read_json(latest_key(CAMPAIGN))
    old = pipeline.run_nightly(CAMPAIGN, f"{landed}T00:00:00+00:00", storage=local_storage)
    assert old["version"]["version_id"] != new["version"]["version_id"]
    assert old["deploy"]["deployed"] is False
    assert old["deploy"]["reason"] == "live version is newer"
    assert (
        campaign_state(local_storage, CAMPAIGN)["live"]["version_id"]
        == (new["version"]["version_id"])
    )
    # the backfill wrote its own batch, but latest still points at the newer one
    assert local_storage.exists(f"batch/{CAMPAIGN}/{old['batch']['batch_id']}/_SUCCESS")
    assert local_storage.read_json(latest_key(CAMPAIGN))["batch_id"] == latest_before["batch_id"]


def test_bad_drop_fails_import_and_leaves_campaign(local_storage, landed):
    good = pipeline.run_nightly(CAMPAIGN, f"{landed}T00:00:00+00:00", storage=local_storage)
    state = local_storage.read_bytes(f"campaigns/{CAMPAIGN}.json")
    latest = local_storage.read_bytes(latest_key(CAMPAIGN))
    snapshots = local_storage.list("datasets/synthetic/snapshots")
    local_storage.write_text(
        f"landing/synthetic/interactions/dt={landed}/late.csv",
        "USER_ID,ITEM_ID,EVENT_TYPE\nu1,i1,click\n",
    )
    with pytest.raises(DataError, match="missing required column TIMESTAMP"):
        pipeline.run_nightly(CAMPAIGN, after(landed), storage=local_storage)
    assert local_storage.read_bytes(f"campaigns/{CAMPAIGN}.json") == state
    assert local_storage.read_bytes(latest_key(CAMPAIGN)) == latest
    assert local_storage.list("datasets/synthetic/snapshots") == snapshots
    assert good["deploy"]["deployed"]


def test_batch_num_results_bounds(local_storage, landed):
    pipeline.run_nightly(CAMPAIGN, after(landed), storage=local_storage)
    with pytest.raises(DataError, match="between 1 and 500"):
        pipeline.batch(CAMPAIGN, after(landed), num_results=501, storage=local_storage)
    out = pipeline.batch(CAMPAIGN, after(landed), num_results=3, storage=local_storage)
    # another numResults than the campaign's: a batch inference job, under its own prefix
    _, lines = read_batch(local_storage, f"batch-jobs/{CAMPAIGN}/{out['batch_id']}/manifest.json")
    assert {len(rec["output"]["recommendedItems"]) for rec in lines} == {3}


def test_interrupted_batch_is_redone_and_latest_only_then_moves(local_storage, landed, monkeypatch):
    from recsys.inference import batch as batch_mod

    date = after(landed)
    out = pipeline.run_nightly(CAMPAIGN, f"{landed}T00:00:00+00:00", storage=local_storage)
    latest = local_storage.read_bytes(latest_key(CAMPAIGN))
    ver = pipeline.train(
        "synthetic-popularity", out["import"]["snapshot_id"], date, storage=local_storage
    )

    def crash(*args, **kwargs):
        raise RuntimeError("killed between parts and manifest")

    monkeypatch.setattr(batch_mod, "advance_latest", crash)
    original_write = local_storage.write_json

    def write_json(key, obj):
        if key.endswith("/manifest.json") and "/batch/" in f"/{key}":
            raise RuntimeError("killed before the manifest")
        return original_write(key, obj)

    monkeypatch.setattr(local_storage, "write_json", write_json)
    with pytest.raises(RuntimeError, match="killed before the manifest"):
        pipeline.batch(CAMPAIGN, date, version_id=ver["version_id"], storage=local_storage)
    assert local_storage.read_bytes(latest_key(CAMPAIGN)) == latest
    monkeypatch.undo()
    done = pipeline.batch(CAMPAIGN, date, version_id=ver["version_id"], storage=local_storage)
    assert local_storage.exists(f"batch/{CAMPAIGN}/{done['batch_id']}/_SUCCESS")
    # complete, but of a version that is not live: latest stays until it is deployed
    assert local_storage.read_bytes(latest_key(CAMPAIGN)) == latest and not done["latest_moved"]
    pipeline.deploy_campaign(CAMPAIGN, ver["version_id"], date, storage=local_storage)
    assert local_storage.read_json(latest_key(CAMPAIGN))["batch_id"] == done["batch_id"]


def test_campaign_status_of_unknown_campaign(local_storage):
    with pytest.raises(NotFoundError, match="never been deployed"):
        pipeline.status("synthetic", local_storage)


def test_a_refused_first_deployment_writes_no_batch_and_the_report_says_why(local_storage, landed):
    from recsys.report import campaign_report

    out = pipeline.run_nightly(CAMPAIGN, after(landed), storage=local_storage, deploy_mode="block")
    assert not out["deploy"]["deployed"] and out["batch"]["skipped"]
    assert not local_storage.exists(latest_key(CAMPAIGN))
    text = campaign_report(local_storage, CAMPAIGN)
    assert "nothing is live yet" in text and "blocked by the deploy param" in text
    assert "NDCG@10" in text  # the evaluation it saw
