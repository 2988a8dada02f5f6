"""DAG integrity: every DAG file imports cleanly and cheaply, with tags, retries and docs.

Parsing runs in a fresh interpreter with a metadata DB URL that cannot be opened and with
connection look-ups made to fail, so any DB query or connection access at parse time breaks
the test, as in Airflow's own example-DAG tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PARSE = r"""
import json, sys, time
import airflow.sdk
def refuse(*a, **k):
    raise RuntimeError("connection looked up at parse time")
airflow.sdk.BaseHook.get_connection = classmethod(refuse)
from pathlib import Path
from airflow.dag_processing.dagbag import BundleDagBag
before = set(sys.modules)
t = time.perf_counter()
bag = BundleDagBag(dag_folder=sys.argv[1], bundle_path=Path(sys.argv[1]))
seconds = time.perf_counter() - t
heavy = sorted(m for m in ("torch", "recsys", "pandas", "great_expectations", "s3fs")
               if m in sys.modules and m not in before)
out = {"errors": {k: str(v) for k, v in bag.import_errors.items()}, "seconds": seconds,
       "heavy": heavy, "dags": {}}
for dag_id, dag in bag.dags.items():
    out["dags"][dag_id] = {
        "tags": sorted(dag.tags), "doc": bool(dag.doc_md), "max_active_runs": dag.max_active_runs,
        "tasks": {t.task_id: {"retries": t.retries, "timeout": t.execution_timeout is not None}
                  for t in dag.tasks},
        "params": sorted(dag.params.keys()),
        "param_docs": {k: {"title": p.schema.get("title"), "description": p.description,
                           "pattern": p.schema.get("pattern")}
                       for k, p in dag.params.items()},
        "dagrun_timeout": dag.dagrun_timeout.total_seconds() if dag.dagrun_timeout else None,
        "on_failure": [type(c).__name__ for c in (
            dag.on_failure_callback if isinstance(dag.on_failure_callback, list)
            else [dag.on_failure_callback] if dag.on_failure_callback else [])],
    }
print("RESULT" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def parsed(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow_home")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/missing-dir/no.db",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    }
    proc = subprocess.run(
        [sys.executable, "-c", PARSE, str(REPO / "dags")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT")), None)
    assert line, f"parse failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(line[len("RESULT") :])


def test_dag_files_import_without_errors(parsed):
    assert parsed["errors"] == {}
    assert "recsys_nightly" in parsed["dags"]


def test_parsing_is_cheap_and_imports_nothing_heavy(parsed):
    assert parsed["heavy"] == []


def test_every_dag_has_tags_docs_and_retries(parsed):
    for dag_id, dag in parsed["dags"].items():
        assert "recsys" in dag["tags"], dag_id
        assert dag["doc"], dag_id
        for task_id, task in dag["tasks"].items():
            assert task["retries"] >= 2, f"{dag_id}.{task_id}"
            assert task["timeout"], f"{dag_id}.{task_id} has no execution_timeout"


def test_every_param_is_documented_in_the_trigger_form(parsed):
    for dag_id, dag in parsed["dags"].items():
        for name, doc in dag["param_docs"].items():
            assert doc["title"], f"{dag_id}.{name} has no title"
            assert doc["description"] and len(doc["description"]) > 10, f"{dag_id}.{name}"


NAME_PARAMS = ("campaign", "storage_conn_id", "snapshot_id", "hpo_conn_id", "to_version")


def test_every_name_param_of_every_dag_has_the_name_grammar(parsed):
    """A name typed in a trigger form becomes a key: every DAG's form refuses '../x'."""
    from recsys.names import NAME_JSON_PATTERN

    seen = 0
    for dag_id, dag in parsed["dags"].items():
        for name, doc in dag["param_docs"].items():
            if name in NAME_PARAMS:
                seen += 1
                assert doc["pattern"] == NAME_JSON_PATTERN, f"{dag_id}.{name} has no name pattern"
    assert seen >= 10


def test_failures_alert_and_the_nightly_run_has_a_timeout(parsed):
    for dag_id, dag in parsed["dags"].items():
        assert "RecsysFailureNotifier" in dag["on_failure"], dag_id
    # Within a day, so a stuck run fails (and alerts) before the next night's run is due.
    assert 0 < parsed["dags"]["recsys_nightly"]["dagrun_timeout"] <= 24 * 3600


def test_nightly_dag_shape_and_params(parsed):
    dag = parsed["dags"]["recsys_nightly"]
    assert dag["max_active_runs"] == 1
    assert list(dag["tasks"]) == [
        "import_datasets",
        "validate_snapshot",
        "train_solution_version",
        "evaluate_solution_version",
        "deploy_campaign",
        "plan_batch",
        "write_batch_shard",
        "finalize_batch",
    ]
    assert {"campaign", "import_mode", "training_mode", "deploy", "as_of", "batch_shards"} <= set(
        dag["params"]
    )


def test_rollback_dag_shape(parsed):
    dag = parsed["dags"]["recsys_rollback"]
    assert list(dag["tasks"]) == [
        "rollback_campaign",
        "plan_batch",
        "write_batch_shard",
        "finalize_batch",
    ]
    assert {"campaign", "to_version", "batch_shards"} <= set(dag["params"])


def test_update_dag_shape(parsed):
    dag = parsed["dags"]["recsys_update"]
    assert dag["max_active_runs"] == 1
    assert list(dag["tasks"]) == [
        "check_for_new_data",
        "import_datasets",
        "validate_snapshot",
        "add_new_items",
        "deploy_revision",
        "refresh_changed_users",
        "plan_batch",
        "write_batch_shard",
        "finalize_batch",
    ]
    assert {"campaign", "refresh_batch", "targeted_refresh", "as_of", "batch_shards"} <= set(
        dag["params"]
    )


def test_hpo_dag_shape(parsed):
    dag = parsed["dags"]["recsys_hpo"]
    assert dag["max_active_runs"] == 1
    assert list(dag["tasks"]) == ["plan", "run_trials", "finalize"]
    assert {"campaign", "snapshot_id", "perform_hpo", "hpo_conn_id", "as_of"} <= set(dag["params"])


def test_item_jobs_dag_shape(parsed):
    dag = parsed["dags"]["recsys_item_jobs"]
    assert list(dag["tasks"]) == ["run_item_jobs"]
    assert {"campaign", "as_of", "storage_conn_id"} <= set(dag["params"])


def test_gc_dag_shape(parsed):
    dag = parsed["dags"]["recsys_gc"]
    assert list(dag["tasks"]) == ["collect_garbage"]
    assert dag["params"] == [
        "apply",
        "grace_hours",
        "keep_days",
        "keep_versions",
        "storage_conn_id",
    ]
    assert dag["max_active_runs"] == 1
