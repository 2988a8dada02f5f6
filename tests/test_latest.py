"""The ``latest`` contract: only a campaign batch of the live deployment moves it; ad-hoc jobs
have their own prefix; deploys and rollbacks reconcile it; the report survives error lines."""

from __future__ import annotations

import json

from recsys import pipeline
from recsys.campaigns import campaign_state, deploy
from recsys.cli import main
from recsys.config import CampaignConfig
from recsys.inference.batch import latest_key
from recsys.report import campaign_report
from tests.test_pipeline import CAMPAIGN, after, read_batch


def latest(storage):
    return storage.read_json(latest_key(CAMPAIGN))


def two_versions(storage, landed):
    """v1 (nightly of the day before), then v2 (nightly, forced): v2 live, latest on v2."""
    first = pipeline.run_nightly(CAMPAIGN, f"{landed}T00:00:00+00:00", storage=storage)
    second = pipeline.run_nightly(CAMPAIGN, after(landed), storage=storage, deploy_mode="force")
    return first, second


def test_ad_hoc_batch_jobs_have_their_own_prefix_and_never_move_latest(
    local_storage, landed, tmp_path, capsys
):
    pipeline.run_nightly(CAMPAIGN, after(landed), storage=local_storage)
    before = local_storage.read_bytes(latest_key(CAMPAIGN))
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"userId": "u1"}\n{"user": 1}\n{"userId": "u2"}\n')
    store = local_storage.uri("")
    code = main(
        ["--storage", store, "batch", "--campaign", CAMPAIGN, "--date", after(landed),
         "--input", str(inp)]
    )  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["kind"] == "job" and out["latest_moved"] is False
    prefix = f"batch-jobs/{CAMPAIGN}/{out['batch_id']}"
    assert out["uri"] == local_storage.uri(prefix)  # where it is, printed on completion
    assert local_storage.exists(f"{prefix}/_SUCCESS")
    manifest, lines = read_batch(local_storage, f"{prefix}/manifest.json")
    assert manifest["users"] == 3 and manifest["errors"] == 1 and len(lines) == 3
    assert local_storage.read_bytes(latest_key(CAMPAIGN)) == before
    # every user but with another filter or numResults: a job too
    other = pipeline.batch(CAMPAIGN, after(landed), num_results=3, storage=local_storage)
    assert other["kind"] == "job" and not other["latest_moved"]
    assert other["uri"].endswith(f"batch-jobs/{CAMPAIGN}/{other['batch_id']}")
    assert local_storage.read_bytes(latest_key(CAMPAIGN)) == before


def test_cli_deploy_between_a_nightlys_deploy_and_its_finalize(local_storage, landed):
    first, second = two_versions(local_storage, landed)
    v1, v2 = first["version"]["version_id"], second["version"]["version_id"]
    # a third nightly (v2 again, a later date) is planned, its shards run ...
    spec = pipeline.plan_batch(CAMPAIGN, "2031-01-01", storage=local_storage)
    assert spec["version_id"] == v2
    pipeline.batch_shard(spec, 0, local_storage)
    # ... then someone deploys v1 by hand: latest is reconciled to v1's existing batch
    out = pipeline.deploy_campaign(CAMPAIGN, v1, "2031-01-01", force=True, storage=local_storage)
    assert out["deployed"] and out["latest"]["moved"]
    assert latest(local_storage)["batch_id"] == first["batch"]["batch_id"]
    # the nightly's finalize completes its batch but leaves latest on the live version
    done = pipeline.finalize_batch(spec, local_storage)
    assert local_storage.exists(f"{spec['prefix']}/_SUCCESS") and not done["latest_moved"]
    assert latest(local_storage)["version_id"] == v1
    assert campaign_state(local_storage, CAMPAIGN)["live"]["version_id"] == v1


def test_deploy_of_a_version_without_a_batch_writes_one(local_storage, landed):
    first, second = two_versions(local_storage, landed)
    v2 = second["version"]["version_id"]
    # a version deployed with the library call (no reconcile): latest lags behind ...
    cfg = CampaignConfig.load(CAMPAIGN)
    pipeline.train("synthetic-popularity", first["import"]["snapshot_id"], after(landed),
                   seed=9, storage=local_storage)  # fmt: skip
    v3 = pipeline.train(
        "synthetic-popularity", first["import"]["snapshot_id"], after(landed), seed=11,
        storage=local_storage,
    )["version_id"]  # fmt: skip
    assert v3 != v2
    deploy(local_storage, cfg, v3, "2031-01-02", force=True)
    assert latest(local_storage)["version_id"] == v2
    # ... a later finalize of a v2 batch does not move it to v2 (not live) ...
    assert not pipeline.batch(CAMPAIGN, "2031-01-03", version_id=v2, storage=local_storage)[
        "latest_moved"
    ]
    # ... and the pipeline's reconcile writes v3's batch and points latest at it
    rec = pipeline.reconcile_latest(CAMPAIGN, local_storage, "2031-01-02")
    assert rec["moved"] and not rec["missing"]
    assert latest(local_storage)["version_id"] == v3
    assert latest(local_storage)["batch_id"] == rec["batch_id"]
    again = pipeline.reconcile_latest(CAMPAIGN, local_storage, "2031-01-02")
    assert not again["moved"] and again["reason"] == "live"


def test_rollback_leaves_latest_serving_the_restored_version(local_storage, landed):
    first, second = two_versions(local_storage, landed)
    v1 = first["version"]["version_id"]
    assert latest(local_storage)["batch_id"] == second["batch"]["batch_id"]
    # the rollback DAG's call: re-pointed at once at v1's own (complete) nightly batch
    out = pipeline.rollback_campaign(CAMPAIGN, storage=local_storage, write_batch=False)
    assert out["live"]["version_id"] == v1 and out["latest"]["moved"]
    assert latest(local_storage)["batch_id"] == first["batch"]["batch_id"]
    # the DAG's rebuilt batch (a later as-of) then moves latest: it serves the live version
    rebuilt = pipeline.batch(CAMPAIGN, "2031-01-01", storage=local_storage)
    assert rebuilt["latest_moved"] and latest(local_storage)["batch_id"] == rebuilt["batch_id"]


def test_cli_rollback_without_a_batch_of_the_restored_version_writes_one(local_storage, landed):
    first, second = two_versions(local_storage, landed)
    # the restored version's batch is gone (e.g. cleaned up): the CLI writes one
    gone = f"batch/{CAMPAIGN}/{first['batch']['batch_id']}"
    local_storage.delete_prefix(gone)
    assert not local_storage.exists(f"{gone}/_SUCCESS")
    code = main(["--storage", local_storage.uri(""), "campaign", "rollback", CAMPAIGN])
    assert code == 0
    # rewritten as of the restored deployment's logical date: the same batch, again
    assert local_storage.exists(f"{gone}/_SUCCESS")
    assert latest(local_storage)["version_id"] == first["version"]["version_id"]
    manifest, lines = read_batch(local_storage, latest(local_storage)["manifest"])
    assert manifest["version_id"] == first["version"]["version_id"] and len(lines) == 120


def test_report_never_crashes_on_an_error_line(local_storage, landed, capsys):
    pipeline.run_nightly(CAMPAIGN, after(landed), storage=local_storage)
    pointer = latest(local_storage)
    manifest, lines = read_batch(local_storage, pointer["manifest"])
    # a batch whose first lines are an error line and a line that is not JSON at all
    prefix = f"batch/{CAMPAIGN}/20990101T000000-witherrors"
    body = "\n".join(
        [
            json.dumps({"input": {"user": 1}, "output": None, "error": "userId must be ..."}),
            "{half a line",
            json.dumps(lines[0]),
        ]
    )
    local_storage.write_text(f"{prefix}/part-00000-00000.jsonl", body + "\n")
    local_storage.write_json(
        f"{prefix}/manifest.json",
        {**manifest, "errors": 1, "parts": [{"key": f"{prefix}/part-00000-00000.jsonl"}]},
    )
    local_storage.write_pointer(
        latest_key(CAMPAIGN), {**pointer, "prefix": prefix, "manifest": f"{prefix}/manifest.json"}
    )
    text = campaign_report(local_storage, CAMPAIGN, n_users=3)
    assert "error: userId must be" in text and "unreadable output line" in text
    assert f"User {lines[0]['input']['userId']}:" in text
    assert "1 input line(s) of this batch were errors" in text
    assert main(["--storage", local_storage.uri(""), "report", "--campaign", CAMPAIGN]) == 0


def test_gc_collects_old_batch_jobs_and_keeps_the_newest(local_storage, landed, tmp_path):
    from datetime import UTC, datetime, timedelta

    from recsys.retention import KeepRules, plan

    pipeline.run_nightly(CAMPAIGN, after(landed), storage=local_storage)
    jobs = [
        pipeline.batch(CAMPAIGN, after(landed), num_results=n, storage=local_storage)
        for n in (3, 4)
    ]
    later = datetime.now(UTC) + timedelta(days=40)
    report = plan(local_storage, KeepRules(days=30, versions=1), now=later)
    prefixes = [f"batch-jobs/{CAMPAIGN}/{j['batch_id']}" for j in jobs]
    deleted = {row["prefix"] for row in report["delete"]}
    kept = {row["prefix"] for row in report["keep"]}
    # one of the two (the older by write time) goes, the newest job stays; latest's batch stays
    assert len(set(prefixes) & deleted) == 1 and len(set(prefixes) & kept) == 1
    assert latest(local_storage)["prefix"] in kept
