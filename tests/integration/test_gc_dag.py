"""The weekly retention DAG in a real Airflow (`airflow dags test`): a dry run deletes nothing,
then the run deletes what nothing references and keeps the rest."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from recsys.storage import Storage
from tests.integration.test_nightly_dag import BIN, _airflow_env, dags_test
from tests.test_retention import _world

pytestmark = pytest.mark.integration


def test_gc_dag_on_local_storage(tmp_path, synthetic_data):
    home = tmp_path / "airflow"
    subprocess.run(
        [str(BIN / "airflow"), "db", "migrate"],
        env=_airflow_env(home),
        check=True,
        capture_output=True,
        timeout=300,
    )
    store = tmp_path / "store"
    storage = Storage(str(store))
    w = _world(storage, synthetic_data)
    old = time.time() - 40 * 86400  # every object written 40 days ago
    for root, _, files in os.walk(store):
        for name in files:
            os.utime(os.path.join(root, name), (old, old))
    before = set(storage.find(""))

    ok, out = dags_test(home, "2026-01-04", {"apply": False, "keep_versions": 1}, "recsys_gc",
                        RECSYS_STORAGE_URL=str(store))  # fmt: skip
    assert ok, out[-3000:]
    assert set(storage.find("")) == before  # a dry run deletes nothing

    ok, out = dags_test(home, "2026-01-04", {"keep_versions": 1}, "recsys_gc",
                        RECSYS_STORAGE_URL=str(store))  # fmt: skip
    assert ok, out[-3000:]
    gone = {k for k in before if not storage.exists(k)}
    prefixes = {
        w["dead_version"],
        f"batch/synthetic/{w['first_batch']}",  # v0's, written by its deploy; not latest
        f"batch/synthetic/{w['batches'][0]}",
        w["running_batch"],
    }
    assert {k for k in gone if not k.startswith(tuple(prefixes))} == {w["input"]}
    for prefix in prefixes:
        assert not storage.find(prefix)
    # the deploy history is recent (deployed_at is today): every deployed version stays
    for vid in w["versions"]:
        assert storage.exists(f"solutions/synthetic-popularity/versions/{vid}/version.json")
    assert storage.exists(f"batch/synthetic/{w['batches'][1]}/_SUCCESS")
