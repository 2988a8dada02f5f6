"""Issue 18, case 3: two batch jobs for one campaign and batch id never write the same objects
at once, and a complete batch's objects are never rewritten or deleted."""

from __future__ import annotations

import threading
import time

from recsys.inference import batch as batch_jobs
from tests.inference.test_batch import campaign, live  # noqa: F401 - fixture


def _spec(storage, live, shards=2):  # noqa: F811
    return batch_jobs.plan_batch(
        storage,
        campaign(exploration_weight=0),
        live["date"],
        version_id=live["version_id"],
        shards=shards,
    )


def _objects(storage, prefix):
    return {k: storage.read_bytes(k) for k in storage.find(prefix)}


def test_racing_jobs_answer_a_shard_once(local_storage, live, monkeypatch):  # noqa: F811
    spec = _spec(local_storage, live)
    calls = []
    answer = batch_jobs.BatchServer.answer

    def slow_answer(self, requests):
        calls.append(threading.get_ident())
        time.sleep(0.5)  # job A is still writing shard 0 when job B starts it
        return answer(self, requests)

    monkeypatch.setattr(batch_jobs.BatchServer, "answer", slow_answer)
    results, errors = [], []

    def job():
        try:
            results.append(batch_jobs.run_shard(local_storage, spec, 0))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=job) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(calls) == 1  # the second job waited, then reused the first one's shard
    assert results[0] == results[1]
    parts = [p["key"] for p in results[0]["parts"]]
    assert sorted(k for k in local_storage.find(spec["prefix"]) if "/part-" in k) == sorted(parts)


def test_racing_finalizes_write_the_manifest_once(local_storage, live, monkeypatch):  # noqa: F811
    spec = _spec(local_storage, live)
    for shard in range(spec["shards"]):
        batch_jobs.run_shard(local_storage, spec, shard)
    writes = []
    write_json = type(local_storage).write_json

    def counting(self, key, obj):
        if key.endswith("/manifest.json"):
            writes.append(key)
            time.sleep(0.3)
        return write_json(self, key, obj)

    monkeypatch.setattr(type(local_storage), "write_json", counting)
    threads = [
        threading.Thread(target=batch_jobs.finalize_batch, args=(local_storage, spec))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(writes) == 1
    assert local_storage.exists(f"{spec['prefix']}/_SUCCESS")


def test_a_complete_batch_is_never_rewritten_or_deleted(local_storage, live):  # noqa: F811
    spec = _spec(local_storage, live)
    manifest = batch_jobs.run_batch(
        local_storage,
        campaign(exploration_weight=0),
        live["date"],
        version_id=live["version_id"],
        shards=2,
    )
    before = _objects(local_storage, manifest["prefix"])
    # a rerun's shards and finalize (a duplicate DAG run, a retried task) find _SUCCESS
    for shard in range(spec["shards"]):
        batch_jobs.run_shard(local_storage, spec, shard)
    again = batch_jobs.finalize_batch(local_storage, spec)
    assert again == manifest
    assert _objects(local_storage, manifest["prefix"]) == before
    assert not any(
        k.startswith("locks/batch-") and k.endswith(".lock") for k in local_storage.find("locks")
    )
