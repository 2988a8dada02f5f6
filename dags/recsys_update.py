"""
### recsys_update — the 2-hourly update: new items join the live model without retraining

**check → import (INCREMENTAL) → validate → add new items → gate + deploy the revision →
targeted refresh (on by default) of the changed users' batch lines, or a whole batch**, each task a thin call into `recsys.pipeline` / `recsys.update`.

* *check_for_new_data* (short-circuit): when no landing file arrived since the newest
  validated snapshot (or the campaign was never deployed), every later task is skipped and the
  run is marked success.
* *import* / *validate*: an INCREMENTAL snapshot (new items, interactions, impressions),
  validated like the nightly's.
* *add_new_items*: a **revision** of the live solution version: every item of the snapshot the
  version does not know is appended; user-personalization initialises its id embedding and
  bias from its `k` nearest known items in metadata space (cosine, similarity-weighted; the
  campaign file's `update:` section sets `k`, `min_similarity`, `weighting`); items without
  usable metadata get the popularity prior and are listed in the task's output; popularity and
  sims add new items for exploration only. Existing items' weights never change.
* *deploy_revision*: the gate (the revision must load and score real users with finite
  scores), then the campaign's live entry gets the revision and the new snapshot (so
  exploration sees the new items' ages and impression counts). A failure before this leaves
  the campaign as it was; a revision of a version that is no longer live is not deployed.
* *refresh_changed_users* (campaign file `update: refresh:`, or param `targeted_refresh`):
  re-answer only the users whose top-k the new items entered (at least `min_new_items`, most
  changed first, at most `max_users`) and publish a complete new batch output beside the
  previous one (its other users' lines copied), manifest and `_SUCCESS`, then `latest`.
* *batch* (param `refresh_batch`): rebuild the batch recommendations from the revision
  (instead of the targeted refresh).

Idempotent for its logical date: a rerun reuses the snapshot and the revision (same ids) and
deploys nothing new. The next nightly version supersedes every revision; `recsys_rollback`
takes a bad revision back to its version.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from _recsys_airflow import (
    CAMPAIGN,
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
    dag_id="recsys_update",
    schedule="0 */2 * * *",
    start_date=pendulum.datetime(1990, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["recsys", "update"],
    on_failure_callback=[RecsysFailureNotifier()],
    default_args={
        "owner": "recsys",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
        "execution_timeout": timedelta(minutes=60),
    },
    params={
        **shared_params(
            campaign="configs/campaigns/<name>.yaml (its `update:` section sets k etc.)",
            as_of="run as of this date instead of the logical date",
            batch_shards="number of mapped batch tasks when refresh_batch is on",
        ),
        "refresh_batch": Param(
            False, type="boolean", title="Refresh batch", description="rebuild batch outputs"
        ),
        "targeted_refresh": Param(
            None,
            type=["null", "boolean"],
            title="Targeted refresh",
            description="re-answer only the users whose top lists the new items changed; "
            "empty = the campaign file's update.refresh.enabled",
        ),
    },
)
def recsys_update():
    @task.short_circuit
    def check_for_new_data() -> dict | None:
        from recsys import pipeline

        ctx = get_current_context()
        params = ctx["params"]
        with no_retry_on_bad_input():
            out = pipeline.check_update(params["campaign"], as_of(ctx), storage(params))
        return out if out["new"] else None  # falsy: skip the rest, the run succeeds

    @task
    def import_datasets(check: dict) -> dict:
        from recsys import pipeline

        ctx = get_current_context()
        with no_retry_on_bad_input():
            return pipeline.import_datasets(
                check["dataset_group"], as_of(ctx), "INCREMENTAL", storage(ctx["params"])
            )

    @task
    def validate_snapshot(imported: dict) -> dict:
        from recsys import pipeline
        from recsys.config import CampaignConfig

        params = get_current_context()["params"]
        with no_retry_on_bad_input():
            solution = CampaignConfig.load(params["campaign"]).solution
            return pipeline.validate(
                imported["dataset_group"], imported["snapshot_id"], solution, storage(params)
            )

    @task
    def add_new_items(validated: dict) -> dict:
        from recsys import pipeline

        ctx = get_current_context()
        params = ctx["params"]
        with no_retry_on_bad_input():
            return pipeline.update_items(
                params["campaign"], validated["snapshot_id"], as_of(ctx), storage(params)
            )

    @task
    def deploy_revision(revision: dict) -> dict:
        from recsys import pipeline

        ctx = get_current_context()
        params = ctx["params"]
        with no_retry_on_bad_input():
            return pipeline.deploy_update(
                params["campaign"],
                revision["version_id"],
                revision["revision_id"],
                as_of(ctx),
                storage(params),
            )

    @task
    def plan_batch(deployed: dict) -> list[dict]:
        from airflow.sdk.exceptions import AirflowSkipException

        from recsys import pipeline

        ctx = get_current_context()
        params = ctx["params"]
        if not params["refresh_batch"]:
            raise AirflowSkipException("refresh_batch is off")
        if not deployed["deployed"] and deployed["reason"] != "already live":
            raise AirflowSkipException(f"revision not deployed: {deployed['reason']}")
        with no_retry_on_bad_input():
            spec = pipeline.plan_batch(
                params["campaign"],
                as_of(ctx),
                shards=params["batch_shards"],
                storage=storage(params),
            )
        return shard_list(spec)

    @task(outlets=[BATCH_ASSET])
    def refresh_changed_users(deployed: dict) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from recsys import pipeline

        ctx = get_current_context()
        params = ctx["params"]
        if params["refresh_batch"]:
            raise AirflowSkipException("refresh_batch is on: the whole batch is rebuilt")
        if not deployed["deployed"] and deployed["reason"] != "already live":
            raise AirflowSkipException(f"revision not deployed: {deployed['reason']}")
        with no_retry_on_bad_input():
            out = pipeline.refresh_update_batch(
                params["campaign"], as_of(ctx), storage(params), params["targeted_refresh"]
            )
        if not out["refreshed"]:
            raise AirflowSkipException(out["reason"])
        ctx["outlet_events"][BATCH_ASSET].extra = {
            "batch_id": out["batch_id"],
            "uri": out["uri"],
            "users": out["users"],
        }
        return out

    check = check_for_new_data()
    validated = validate_snapshot(import_datasets(check))
    deployed = deploy_revision(add_new_items(validated))
    refresh_changed_users(deployed)
    sharded_batch(plan_batch(deployed), BATCH_ASSET)


recsys_update()
