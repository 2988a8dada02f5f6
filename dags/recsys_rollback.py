"""
### recsys_rollback — put an earlier solution version back live

A manual run: the campaign pointer goes back to an earlier deployment (`to_version`, or the
one before the live version when empty), with the serving config it had; `latest` is
re-pointed at once at the newest complete batch of the restored deployment (if any); then the
batch recommendations are rebuilt from it (sharded like the nightly batch), the `latest`
pointer moves to them, and the `recsys_batch_<campaign>` Asset is published. Serialised with the nightly
deploy by the campaign's storage lock. Same as `recsys campaign rollback <campaign>`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from _recsys_airflow import (
    CAMPAIGN,
    NAME_JSON_PATTERN,
    RecsysFailureNotifier,
    as_of,
    no_retry_on_bad_input,
    shard_list,
    sharded_batch,
    shared_params,
    storage,
)
from airflow.sdk import Asset, Param, dag, get_current_context, task

BATCH_ASSET = Asset(f"recsys_batch_{CAMPAIGN}")


@dag(
    dag_id="recsys_rollback",
    schedule=None,
    start_date=pendulum.datetime(1990, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    on_failure_callback=[RecsysFailureNotifier()],
    doc_md=__doc__,
    tags=["recsys", "rollback"],
    default_args={
        "owner": "recsys",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "execution_timeout": timedelta(hours=3),
    },
    params={
        **shared_params(
            campaign="configs/campaigns/<name>.yaml; the campaign to roll back",
            as_of="the rebuilt batch's as-of date; empty = the run's logical date",
            batch_shards="mapped batch tasks for the rebuilt batch",
        ),
        "to_version": Param(
            None,
            type=["null", "string"],
            pattern=NAME_JSON_PATTERN,
            title="Version to restore",
            description="a version id from the campaign's history; empty = the previous one",
        ),
    },
)
def recsys_rollback():
    @task
    def rollback_campaign() -> dict:
        from recsys import pipeline

        ctx = get_current_context()
        params = ctx["params"]
        with no_retry_on_bad_input():
            # The run id makes a retry of this task a no-op instead of a second rollback.
            # `latest` is re-pointed at once when the restored deployment has a batch; the
            # batch below is rebuilt either way and moves `latest` when it completes.
            return pipeline.rollback_campaign(
                params["campaign"],
                params["to_version"],
                storage(params),
                ctx["run_id"],
                write_batch=False,
            )

    @task
    def plan_batch(rolled_back: dict) -> list[dict]:
        from recsys import pipeline

        ctx = get_current_context()
        params = ctx["params"]
        with no_retry_on_bad_input():
            spec = pipeline.plan_batch(
                params["campaign"],
                as_of(ctx),
                rolled_back["live"]["version_id"],
                shards=params["batch_shards"],
                storage=storage(params),
            )
        return shard_list(spec)

    sharded_batch(plan_batch(rollback_campaign()), BATCH_ASSET)


recsys_rollback()
