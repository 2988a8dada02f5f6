"""Campaigns: the promotion gate, locked deploys (local disk and SeaweedFS S3), rollback."""

from __future__ import annotations

import json
import threading
import time

import pytest

from recsys import pipeline
from recsys.campaigns import campaign_state, decisions_prefix, promotion_decision, rollback
from recsys.config import CampaignConfig
from recsys.errors import FilterError, LockTimeoutError, NotFoundError
from recsys.inference.batch import latest_key
from recsys.locks import storage_lock
from tests.test_pipeline import CAMPAIGN, after, read_batch

METRICS = ("precision_at_25", "normalized_discounted_cumulative_gain_at_25")
LIVE = {"precision_at_25": 0.10, "normalized_discounted_cumulative_gain_at_25": 0.20}


def decide(new, mode="auto", passed=True, live=LIVE):
    return promotion_decision(
        new, live, validation_passed=passed, mode=mode, tolerance=0.05, metrics=METRICS
    )


# -- the gate ----------------------------------------------------------------------------------
def test_gate_better_or_within_tolerance_deploys():
    better = decide({"precision_at_25": 0.12, "normalized_discounted_cumulative_gain_at_25": 0.2})
    assert better["deploy"] and "not worse" in better["reason"]
    # 4% worse on one metric, tolerance 5%: still deploys; the numbers are recorded
    slightly = decide(
        {"precision_at_25": 0.096, "normalized_discounted_cumulative_gain_at_25": 0.3}
    )
    assert slightly["deploy"]
    c = slightly["comparisons"][0]
    assert c == {"metric": "precision_at_25", "new": 0.096, "live": 0.1, "floor": 0.095, "ok": True}


def test_gate_worse_beyond_tolerance_is_refused():
    worse = decide({"precision_at_25": 0.09, "normalized_discounted_cumulative_gain_at_25": 0.3})
    assert not worse["deploy"]
    assert "precision_at_25" in worse["reason"]
    assert [c["ok"] for c in worse["comparisons"]] == [False, True]
    nan = decide(
        {"precision_at_25": float("nan"), "normalized_discounted_cumulative_gain_at_25": 1}
    )
    assert not nan["deploy"]


def test_gate_forced_and_blocked_and_failed_validation():
    worse = {"precision_at_25": 0.0, "normalized_discounted_cumulative_gain_at_25": 0.0}
    assert decide(worse, mode="force")["deploy"]
    assert decide(worse, mode="force")["reason"] == "forced by the deploy param"
    better = {"precision_at_25": 0.9, "normalized_discounted_cumulative_gain_at_25": 0.9}
    assert not decide(better, mode="block")["deploy"]
    assert not decide(better, passed=False)["deploy"]
    assert not decide(better, mode="force", passed=False)["deploy"]
    assert decide(better, live=None)["deploy"]  # first deployment
    assert not decide(None)["deploy"]  # never evaluated
    with pytest.raises(Exception, match="deploy mode"):
        decide(better, mode="sometimes")


def _nightly(storage, landed_day):
    return pipeline.run_nightly(CAMPAIGN, after(landed_day), storage=storage)


def test_promote_stores_the_decision_and_refuses_a_worse_version(local_storage, landed):
    first = _nightly(local_storage, landed)
    vid = first["version"]["version_id"]
    gate = first["deploy"]["gate"]
    stored = local_storage.read_json(
        f"{decisions_prefix(CAMPAIGN)}/{local_storage.list(decisions_prefix(CAMPAIGN))[0]}"
    )
    assert stored["deploy"] and stored["version_id"] == vid == gate["version_id"]
    # A second version of the same day, made to look worse than the live one.
    ver = pipeline.train(
        "synthetic-popularity",
        first["import"]["snapshot_id"],
        after(landed),
        seed=7,
        storage=local_storage,
    )
    key = f"solutions/synthetic-popularity/versions/{ver['version_id']}/metrics.json"
    pipeline.evaluate("synthetic-popularity", ver["version_id"], local_storage)
    worse = local_storage.read_json(key)
    worse["metrics"] = {m: v * 0.5 for m, v in worse["metrics"].items()}
    local_storage.write_json(key, worse)
    out = pipeline.promote_version(
        CAMPAIGN, ver["version_id"], after(landed), True, "auto", local_storage
    )
    assert not out["deployed"] and "worse than live" in out["reason"]
    assert campaign_state(local_storage, CAMPAIGN)["live"]["version_id"] == vid
    assert len(local_storage.list(decisions_prefix(CAMPAIGN))) == 2
    forced = pipeline.promote_version(
        CAMPAIGN, ver["version_id"], after(landed), True, "force", local_storage
    )
    assert forced["deployed"]
    entry = campaign_state(local_storage, CAMPAIGN)["live"]
    assert entry["version_id"] == ver["version_id"]
    assert entry["decision"]["mode"] == "force" and entry["decision"]["comparisons"]


# -- rollback ------------------------------------------------------------------------------
def test_rollback_restores_the_earlier_versions_recommendations(local_storage, landed):
    day1 = f"{landed}T00:00:00+00:00"
    first = pipeline.run_nightly(CAMPAIGN, day1, storage=local_storage)
    _, lines1 = read_batch(local_storage, local_storage.read_json(latest_key(CAMPAIGN))["manifest"])
    second = pipeline.run_nightly(
        CAMPAIGN, after(landed), storage=local_storage, deploy_mode="force"
    )
    v1, v2 = first["version"]["version_id"], second["version"]["version_id"]
    assert campaign_state(local_storage, CAMPAIGN)["live"]["version_id"] == v2
    _, lines2 = read_batch(local_storage, local_storage.read_json(latest_key(CAMPAIGN))["manifest"])
    assert lines1 != lines2  # the versions recommend differently

    out = pipeline.rollback_campaign(CAMPAIGN, storage=local_storage)
    state = campaign_state(local_storage, CAMPAIGN)
    assert out["live"]["version_id"] == state["live"]["version_id"] == v1
    assert state["live"]["rolled_back_from"] == v2 and len(state["history"]) == 3
    assert state["live"]["config"] == state["history"][0]["config"]
    # The live version's batch, recomputed (3 shards: a new batch id, nothing reused) for the
    # same "as of" (exploration ages items from it), equals the earlier batch line for line.
    redo = pipeline.batch(CAMPAIGN, day1, shards=3, storage=local_storage)
    assert redo["batch_id"] != first["batch"]["batch_id"]
    _, lines_back = read_batch(local_storage, f"batch/{CAMPAIGN}/{redo['batch_id']}/manifest.json")
    assert lines_back == lines1
    with pytest.raises(NotFoundError, match="not an earlier deployment"):
        rollback(local_storage, CAMPAIGN, "no-such-version")
    with pytest.raises(NotFoundError, match="it is live now"):
        rollback(local_storage, CAMPAIGN, v1)
    back = rollback(local_storage, CAMPAIGN, v2)  # any earlier version, by id
    assert back["live"]["version_id"] == v2


def test_rollback_of_a_never_deployed_campaign(local_storage):
    with pytest.raises(NotFoundError, match="never been deployed"):
        rollback(local_storage, CAMPAIGN)


# -- concurrency -------------------------------------------------------------------------------
@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def any_storage(request):
    return request.getfixturevalue(f"{request.param}_storage")


def test_lock_serialises_read_modify_write(any_storage):
    """Eight writers each append to one JSON list under the lock: no update is lost."""
    any_storage.write_json("counter.json", [])

    def append(i):
        with storage_lock(any_storage, "counter", wait=60):
            items = any_storage.read_json("counter.json")
            time.sleep(0.01)  # widen the race window
            any_storage.write_json("counter.json", [*items, i])

    threads = [threading.Thread(target=append, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(any_storage.read_json("counter.json")) == list(range(8))
    assert not any_storage.exists("locks/counter.lock")


def test_lock_waits_then_times_out_and_breaks_an_expired_lease(any_storage):
    with (
        storage_lock(any_storage, "x", ttl=60),
        pytest.raises(LockTimeoutError, match="another deploy is running"),
        storage_lock(any_storage, "x", wait=0.3),
    ):
        pass
    # A holder that died: its lease expired, so the next one breaks it (exactly once).
    dead = {"token": "dead", "host": "h", "pid": 1, "expires_at": time.time() - 1}
    any_storage.write_bytes("locks/y.lock", json.dumps(dead).encode())
    with storage_lock(any_storage, "y", wait=5) as token:
        assert any_storage.read_json("locks/y.lock")["token"] == token
    assert any_storage.exists("locks/y.lock.broken-dead")


def test_concurrent_deploys_keep_every_history_entry(local_storage, landed):
    first = _nightly(local_storage, landed)
    snap = first["import"]["snapshot_id"]
    versions = [
        pipeline.train("synthetic-popularity", snap, after(landed), seed=s, storage=local_storage)
        for s in (1, 2, 3, 4)
    ]
    errors = []

    def go(v):
        try:
            pipeline.deploy_campaign(
                CAMPAIGN, v["version_id"], after(landed), force=True, storage=local_storage
            )
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(v,)) for v in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    state = campaign_state(local_storage, CAMPAIGN)
    assert len(state["history"]) == 5 and state["seq"] == 5
    assert {e["version_id"] for e in state["history"][1:]} == {v["version_id"] for v in versions}


def test_malformed_default_filter_is_refused_at_creation():
    with pytest.raises(FilterError, match="at position 15"):
        CampaignConfig.from_dict(
            {"name": "c", "solution": "s", "filter": "EXCLUDE ItemID WHRE Items.PRICE > 1"}
        )


def test_rollback_retry_with_the_same_request_is_a_no_op(local_storage, landed):
    first = pipeline.run_nightly(CAMPAIGN, f"{landed}T00:00:00+00:00", storage=local_storage)
    pipeline.run_nightly(CAMPAIGN, after(landed), storage=local_storage, deploy_mode="force")
    a = rollback(local_storage, CAMPAIGN, request_id="run-1")
    b = rollback(local_storage, CAMPAIGN, request_id="run-1")  # a retried task
    assert a["live"]["version_id"] == b["live"]["version_id"] == first["version"]["version_id"]
    assert b["reason"] == "already rolled back"
    assert len(campaign_state(local_storage, CAMPAIGN)["history"]) == 3
