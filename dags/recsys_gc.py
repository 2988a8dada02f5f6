"""
### recsys_gc — weekly retention: delete old outputs that nothing points at

One task, `recsys gc` (`recsys/retention.py`): snapshots, rejects, solution versions,
revisions, batch outputs and uploaded batch inputs older than `keep_days` go, except the
newest `keep_versions` of each kind and everything a pointer references (each dataset group's
`current.json`, each campaign's live and previous deployment and its deploy history within
`keep_days`, each campaign's latest batch, and what those were built from). An item without
its completion marker written to within `grace_hours` is a running job and stays.
`landing/`, `campaigns/` and `locks/` are never touched. With `apply` off the run only
reports (the task's return value lists what would go, and why each other item stays).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from _recsys_airflow import RecsysFailureNotifier, no_retry_on_bad_input, storage
from airflow.sdk import Param, dag, get_current_context, task


@dag(
    dag_id="recsys_gc",
    schedule="0 4 * * 0",
    start_date=pendulum.datetime(1990, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["recsys", "retention"],
    on_failure_callback=[RecsysFailureNotifier()],
    default_args={
        "owner": "recsys",
        "retries": 2,
        "retry_delay": timedelta(minutes=5),
        "execution_timeout": timedelta(hours=2),
    },
    params={
        "keep_days": Param(
            30, type="number", minimum=1, title="Keep days",
            description="keep everything written within this many days",
        ),
        "keep_versions": Param(
            3, type="integer", minimum=1, title="Keep versions",
            description="keep the newest N snapshots, versions, revisions and batches of each",
        ),
        "grace_hours": Param(
            24, type="number", minimum=0, title="Grace hours",
            description="an incomplete item written within this many hours is a running job",
        ),
        "apply": Param(
            True, type="boolean", title="Apply",
            description="delete what the rules let go; off = only report what would go",
        ),
        "storage_conn_id": Param(
            None, type=["null", "string"], title="Storage connection id",
            description="an AWS connection for S3 storage; empty = RECSYS_STORAGE_CONN_ID, "
            "else the environment",
        ),
    },
)  # fmt: skip
def recsys_gc():
    @task
    def collect_garbage() -> dict:
        from recsys.retention import KeepRules, gc

        params = get_current_context()["params"]
        with no_retry_on_bad_input():
            rules = KeepRules(
                float(params["keep_days"]),
                int(params["keep_versions"]),
                float(params["grace_hours"]),
            )
            report = gc(storage(params), rules, apply=bool(params["apply"]))
        # the XCom stays small: counts and what went; the full keep list is in the log
        return {
            "dry_run": report["dry_run"],
            "summary": report["summary"],
            "delete": [r["prefix"] for r in report["delete"]],
            "skipped": [r["prefix"] for r in report.get("skipped", [])],
        }

    collect_garbage()


recsys_gc()
