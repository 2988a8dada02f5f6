"""``recsys gc``: old outputs go, whatever a pointer, the deploy history or a running job
references stays; a dry run deletes nothing. On local storage and the real S3 server."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from recsys import pipeline
from recsys.cli import main
from recsys.data.sources.replay import replay
from recsys.errors import ConfigError
from recsys.retention import KeepRules, gc, plan

SOL = "synthetic-popularity"


def _world(storage, synthetic_data):
    """Four daily snapshots, four versions, three deploys (v0, v1, v2), two batches, junk."""
    last = pd.to_datetime(synthetic_data.interactions["TIMESTAMP"].max(), unit="s").date()
    replay(storage, synthetic_data, "synthetic", last, days=10)
    dates = [str(last + timedelta(days=1 + i)) for i in range(4)]
    snaps, versions = [], []
    for d in dates:
        snap = pipeline.import_datasets("synthetic", d, "FULL", storage)["snapshot_id"]
        assert pipeline.validate("synthetic", snap, SOL, storage)["passed"]
        snaps.append(snap)
        versions.append(pipeline.train(SOL, snap, d, storage=storage)["version_id"])
    batches = []
    for i in range(3):
        dep = pipeline.deploy_campaign("synthetic", versions[i], dates[i], storage=storage)
        if i == 0:  # latest follows the live version: the deploy wrote v0's batch
            first_batch = dep["latest"]["batch_id"]
        if i >= 1:
            batches.append(pipeline.batch("synthetic", dates[i], storage=storage)["batch_id"])
    junk = {
        "dead_version": f"solutions/{SOL}/versions/20990101T000000-dead",
        "running_batch": "batch/synthetic/20990101T000000-running",
        "input": "batch-inputs/0123456789abcdef.jsonl",
    }
    storage.write_bytes(f"{junk['dead_version']}/model.safetensors", b"partial")
    storage.write_bytes(f"{junk['running_batch']}/part-00000-00000.jsonl", b'{"input": {}}\n')
    storage.write_bytes(junk["input"], b'{"userId": "u1"}\n')
    return {
        "dates": dates,
        "snaps": snaps,
        "versions": versions,
        "batches": batches,
        "first_batch": first_batch,
        **junk,
    }


def _prefixes(report, key):
    return {row["prefix"] for row in report[key]}


@pytest.mark.parametrize("backend", ["local_storage", "s3_storage"])
def test_gc_keeps_what_pointers_reference(backend, request, synthetic_data):
    storage = request.getfixturevalue(backend)
    w = _world(storage, synthetic_data)
    snaps, versions, batches = w["snaps"], w["versions"], w["batches"]
    later = datetime.now(UTC) + timedelta(days=40)  # everything is now 40 days old
    rules = KeepRules(days=30, versions=1, grace_hours=24)

    report = plan(storage, rules, now=later)
    snap = "datasets/synthetic/snapshots/{}"
    ver = f"solutions/{SOL}/versions/{{}}"
    assert _prefixes(report, "delete") == {
        snap.format(snaps[0]),  # trained v0 only, and v0 goes
        ver.format(versions[0]),  # deployed, replaced twice, outside the window
        w["dead_version"],  # incomplete for 40 days: abandoned
        f"batch/synthetic/{batches[0]}",  # not latest, not the newest
        f"batch/synthetic/{w['first_batch']}",  # v0's, written by its deploy; not latest
        w["running_batch"],
        w["input"],
    }
    why = {row["prefix"]: row["reasons"] for row in report["keep"]}
    assert "campaign synthetic: live" in why[ver.format(versions[2])]
    assert "campaign synthetic: previous deployment (rollback)" in why[ver.format(versions[1])]
    assert "one of the newest 1 versions" in why[ver.format(versions[3])]  # never deployed
    assert f"trained {ver.format(versions[1])}" in why[snap.format(snaps[1])]
    assert "current.json" in why[snap.format(snaps[3])]
    assert "batch/synthetic/latest.json" in why[f"batch/synthetic/{batches[1]}"]
    assert report["summary"]["bytes_freed"] > 0 and report["dry_run"] is True
    assert not storage.exists(f"{w['dead_version']}/version.json")  # a plan deletes nothing
    assert storage.exists(f"{w['dead_version']}/model.safetensors")

    # A job still writing (within the grace period) stays, and so do the inputs it may read.
    running = plan(storage, KeepRules(days=30, versions=1, grace_hours=24 * 45), now=later)
    kept = _prefixes(running, "keep")
    assert {w["running_batch"], w["dead_version"], w["input"]} <= kept

    # A deployment within the window keeps its version and the snapshot it was trained on.
    state = storage.read_json("campaigns/synthetic.json")
    state["history"][0]["deployed_at"] = (later - timedelta(days=5)).isoformat()
    storage.write_pointer("campaigns/synthetic.json", state)
    in_window = _prefixes(plan(storage, rules, now=later), "keep")
    assert {ver.format(versions[0]), snap.format(snaps[0])} <= in_window
    state["history"][0]["deployed_at"] = (later - timedelta(days=31)).isoformat()
    storage.write_pointer("campaigns/synthetic.json", state)

    done = gc(storage, rules, apply=True, now=later)
    assert set(done["deleted"]) == _prefixes(report, "delete") and not done["skipped"]
    for prefix in done["deleted"]:
        assert not storage.find(prefix)  # (an S3 server may keep an empty "folder")
    for prefix in _prefixes(report, "keep"):
        assert storage.find(prefix), prefix
    assert storage.find("landing/synthetic")  # source data is never touched
    assert storage.exists("campaigns/synthetic.json") and storage.exists(
        "batch/synthetic/latest.json"
    )

    # What is left still works: a batch from the live version, a rollback to the previous.
    out = pipeline.batch("synthetic", w["dates"][2], storage=storage, shards=2)
    assert out["users"] == 120
    back = pipeline.rollback_campaign("synthetic", storage=storage)
    assert back["live"]["version_id"] == versions[1]
    # v1's batch was collected, so the rollback wrote it again and latest serves v1
    latest = storage.read_json("batch/synthetic/latest.json")
    assert latest["version_id"] == versions[1] and back["latest"]["moved"]
    # a second gc finds v2's batches that latest no longer serves (the one just written may
    # still be "the newest batch" by modification time: S3 keeps whole seconds)
    again = plan(storage, rules, now=later)
    deleted = _prefixes(again, "delete")
    assert f"batch/synthetic/{batches[1]}" in deleted
    assert deleted <= {f"batch/synthetic/{batches[1]}", f"batch/synthetic/{out['batch_id']}"}
    assert f"batch/synthetic/{latest['batch_id']}" in _prefixes(again, "keep")


def test_gc_from_the_command_line(tmp_path, synthetic_data, capsys):
    from recsys.storage import Storage

    store = str(tmp_path / "store")
    w = _world(Storage(store), synthetic_data)
    # nothing is older than 30 days yet: the dry run lists only nothing; abandoned jobs wait
    assert main(["--storage", store, "gc"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dry_run"] is True and out["delete"] == []
    assert {w["running_batch"], w["dead_version"]} <= _prefixes(out, "keep")
    assert main(["--storage", store, "gc", "--keep-days", "0"]) == 2
    assert "--keep-days must be within 1..36500" in capsys.readouterr().err
    assert main(["--storage", store, "gc", "--keep-versions", "0", "--apply"]) == 2
    capsys.readouterr()
    assert main(["--storage", store, "gc", "--grace-hours", "0", "--apply"]) == 0
    done = json.loads(capsys.readouterr().out)
    # with no grace, the incomplete ones are abandoned; everything complete is recent
    assert set(done["deleted"]) == {w["running_batch"], w["dead_version"]}
    assert Storage(store).exists(f"solutions/{SOL}/versions/{w['versions'][0]}/version.json")


def test_keep_rules_are_checked():
    with pytest.raises(ConfigError, match="keep-days"):
        KeepRules(days=0.5)
    with pytest.raises(ConfigError, match="grace-hours"):
        KeepRules(grace_hours=-1)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="keep-days"):
            KeepRules(days=bad)
