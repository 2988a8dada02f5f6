"""Campaigns: the promotion gate, locked deploys (local disk and SeaweedFS S3), rollback."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from recsys import pipeline
from recsys.campaigns import campaign_state, decisions_prefix, promotion_decision, rollback
from recsys.config import CampaignConfig
from recsys.errors import FilterError, LockTimeoutError, NotFoundError
from recsys.inference.batch import latest_key
from recsys.locks import storage_lock
from tests.test_pipeline import CAMPAIGN, after, read_batch

NDCG10 = "normalized_discounted_cumulative_gain_at_10"
METRICS = (NDCG10,)


def arms(challenger, baseline, champion=None, recipe="user-personalization", live_id="v-live"):
    """An evaluation as recsys.evaluation.run stores it, from per-user NDCG@10 arrays, with
    the real bootstrap intervals."""
    from recsys.evaluation.intervals import bootstrap_counts, intervals, paired

    counts = bootstrap_counts(len(challenger), seed=0)
    per = {"challenger": challenger, "baseline": baseline}
    if champion is not None:
        per["champion"] = champion
    out = {"arms": {}, "paired": {}}
    for role, v in per.items():
        about = {"version_id": live_id, "revision": None} if role == "champion" else {}
        if role == "challenger":
            about = {"recipe": recipe}
        out["arms"][role] = {
            "n": len(v),
            "metrics": {NDCG10: intervals({NDCG10: v}, counts)[NDCG10].to_dict()},
            **about,
        }
    for other in ("champion", "baseline"):
        if other in per:
            d = paired({NDCG10: challenger}, {NDCG10: per[other]}, counts)[NDCG10]
            out["paired"][f"challenger_minus_{other}"] = {NDCG10: d.to_dict()}
    return out


LIVE = {"version_id": "v-live", "revision": None}


def users(mean, n=400, seed=0):
    """Per-user NDCG@10-like values: a hit at a random rank for a share ``mean * 2``."""
    rng = np.random.default_rng(seed)
    hit = rng.random(n) < mean * 2
    return np.where(hit, 1.0 / np.log2(rng.integers(2, 12, n)), 0.0) * 0.5 / 0.5


def decide(evaluation, mode="auto", passed=True, live=LIVE, min_users=50):
    return promotion_decision(
        evaluation,
        live,
        validation_passed=passed,
        mode=mode,
        tolerance=0.05,
        metrics=METRICS,
        min_users=min_users,
    )


# -- the gate ----------------------------------------------------------------------------------
def test_gate_better_than_both_deploys_with_every_number():
    pop, live = users(0.03, seed=1), users(0.06, seed=2)
    better = np.maximum(live, users(0.03, seed=3))  # the live version's hits and more
    out = decide(arms(better, pop, live))
    assert out["deploy"], out["reason"]
    assert [c["condition"] for c in out["checks"]] == [
        "beats popularity-count",
        "not worse than the live version",
    ]
    for c in out["checks"]:
        assert c["ok"] and c["difference"]["low"] > 0 and c["difference"]["n"] == 400
        assert c["challenger"]["mean"] == pytest.approx(better.mean(), abs=1e-6)
    assert out["checks"][1]["threshold"] == pytest.approx(-0.05 * live.mean(), abs=1e-6)


def test_gate_worse_than_live_is_refused_with_the_interval():
    pop, live = users(0.02, seed=1), users(0.08, seed=2)
    worse = np.where(np.arange(400) % 2 == 0, live, 0.0)  # loses half the live version's hits
    worse = np.maximum(worse, pop)
    out = decide(arms(worse, pop, live))
    assert not out["deploy"]
    assert "not worse than the live version not shown" in out["reason"] and "n=400" in out["reason"]
    assert [c["ok"] for c in out["checks"]] == [True, False]


def test_gate_within_the_interval_deploys_and_just_beyond_it_does_not():
    pop, live = users(0.02, seed=1), users(0.08, seed=2)
    # the same rankings for all but 4 users, whose hit drops a little lower: a small drop
    small = live.copy()
    small[np.flatnonzero(live > 0)[:4]] *= 0.8
    out = decide(arms(small, pop, live))
    d = out["checks"][1]["difference"]
    assert d["mean"] < 0 and d["low"] >= out["checks"][1]["threshold"]
    assert out["deploy"], out["reason"]
    # losing a hit for 12% of the live version's hit users: beyond the 5% tolerance
    big = live.copy()
    hits = np.flatnonzero(live > 0)
    big[hits[: len(hits) // 8]] = 0.0
    out = decide(arms(big, pop, live))
    assert not out["deploy"] and out["checks"][1]["ok"] is False


def test_gate_equal_models_give_a_stable_documented_outcome():
    pop, live = users(0.02, seed=1), users(0.08, seed=2)
    same = arms(live.copy(), pop, live)
    d = same["paired"]["challenger_minus_champion"][NDCG10]
    assert d["mean"] == d["low"] == d["high"] == 0.0
    outcomes = {decide(same)["deploy"] for _ in range(3)}
    assert outcomes == {True}  # equal rankings are not worse: the newer version deploys


def test_gate_equal_models_on_the_same_data_deploy_the_newer():
    # nothing happened since the live version trained: no holdout, but the same config, seed
    # and data: the newer of two equal models deploys; a different config does not
    empty = {"arms": {}, "paired": {}, "reason": "no eligible held-out users"}
    same = decide(empty, min_users=50)
    assert not same["deploy"] and "no evidence" in same["reason"]
    equal = promotion_decision(
        empty, LIVE, validation_passed=True, same_as_live=True, metrics=METRICS
    )
    assert equal["deploy"] and "equal models" in equal["reason"]
    assert not promotion_decision(
        empty, LIVE, validation_passed=False, same_as_live=True, metrics=METRICS
    )["deploy"]


def test_gate_first_deployment_needs_only_the_baseline():
    pop = users(0.03, seed=1)
    assert decide(arms(users(0.08, seed=2), pop), live=None)["deploy"]
    tie = decide(arms(users(0.03, seed=5), pop), live=None)  # popularity-level: no evidence
    assert not tie["deploy"] and "beats popularity-count not shown" in tie["reason"]
    # a popularity-count challenger is the baseline itself: no baseline test to fail
    own = decide(arms(pop.copy(), pop, recipe="popularity-count"), live=None)
    assert own["deploy"] and own["checks"] == []


def test_gate_forced_blocked_failed_validation_and_no_evidence():
    pop, live = users(0.02, seed=1), users(0.08, seed=2)
    worse = arms(pop.copy(), pop, live)
    assert decide(worse, mode="force")["deploy"]
    assert decide(worse, mode="force")["reason"] == "forced by the deploy param"
    better = arms(np.maximum(live, users(0.05, seed=9)), pop, live)
    assert not decide(better, mode="block")["deploy"]
    assert not decide(better, passed=False)["deploy"]
    assert not decide(better, mode="force", passed=False)["deploy"]
    assert not decide(None)["deploy"]  # never evaluated
    few = decide(arms(live[:20] + 1, pop[:20], live[:20]), min_users=50)
    assert not few["deploy"] and "20 users" in few["reason"]
    other = decide(better, live={"version_id": "v-other", "revision": None})
    assert not other["deploy"] and "v-other" in other["reason"]
    with pytest.raises(Exception, match="deploy mode"):
        decide(better, mode="sometimes")


def _nightly(storage, landed_day):
    return pipeline.run_nightly(CAMPAIGN, after(landed_day), storage=storage)


def test_promote_stores_every_decision_once_and_refuses_a_worse_version(local_storage, landed):
    first = pipeline.run_nightly(CAMPAIGN, f"{landed}T00:00:00+00:00", storage=local_storage)
    vid = first["version"]["version_id"]
    gate = first["deploy"]["gate"]
    stored = local_storage.read_json(
        f"{decisions_prefix(CAMPAIGN)}/{local_storage.list(decisions_prefix(CAMPAIGN))[0]}"
    )
    assert stored["deploy"] and stored["version_id"] == vid == gate["version_id"]
    assert "first deployment" in stored["reason"]
    # The next day's version: its holdout is what users did since the live version trained.
    ver = pipeline.train(
        "synthetic-popularity",
        pipeline.import_datasets("synthetic", after(landed), storage=local_storage)["snapshot_id"],
        after(landed),
        storage=local_storage,
        campaign=CAMPAIGN,
    )
    version = local_storage.read_json(
        f"solutions/synthetic-popularity/versions/{ver['version_id']}/version.json"
    )
    assert version["holdout"]["champion"]["version_id"] == vid
    assert version["holdout"]["cutoff_timestamp"] is not None
    pipeline.evaluate(CAMPAIGN, ver["version_id"], local_storage)
    key = f"solutions/synthetic-popularity/versions/{ver['version_id']}/metrics.json"
    evaluation = local_storage.read_json(key)
    assert set(evaluation["arms"]) == {"challenger", "champion", "baseline"}
    assert evaluation["arms"]["champion"]["version_id"] == vid
    # made to look worse than the live version
    evaluation["paired"]["challenger_minus_champion"][NDCG10] = {
        "mean": -0.05,
        "low": -0.08,
        "high": -0.02,
        "n": evaluation["arms"]["challenger"]["n"],
    }
    local_storage.write_json(key, evaluation)
    camp = CampaignConfig.load(CAMPAIGN)
    out = pipeline.promote_version(
        CAMPAIGN, ver["version_id"], after(landed), True, "auto", local_storage
    )
    n = evaluation["arms"]["challenger"]["n"]
    if n < camp.promotion_min_users:
        assert "no evidence" in out["reason"]
    else:
        assert "not worse than the live version not shown" in out["reason"]
    assert not out["deployed"]
    assert campaign_state(local_storage, CAMPAIGN)["live"]["version_id"] == vid
    assert len(local_storage.list(decisions_prefix(CAMPAIGN))) == 2
    again = pipeline.promote_version(
        CAMPAIGN, ver["version_id"], after(landed), True, "auto", local_storage
    )
    assert not again["deployed"]
    assert len(local_storage.list(decisions_prefix(CAMPAIGN))) == 3  # beside, not over
    forced = pipeline.promote_version(
        CAMPAIGN, ver["version_id"], after(landed), True, "force", local_storage
    )
    assert forced["deployed"]
    entry = campaign_state(local_storage, CAMPAIGN)["live"]
    assert entry["version_id"] == ver["version_id"]
    assert entry["decision"]["mode"] == "force" and entry["decision"]["checks"]


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
