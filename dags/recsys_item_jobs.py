"""
### recsys_item_jobs — related items and user segments after each batch

Runs when the campaign's batch Asset (`recsys_batch_<campaign>`) is updated (the nightly or a
rebuilt batch), or by hand. Its one task runs every job of the campaign file's `item_jobs:`
section on the live version (`recsys.inference.item_jobs`):

* `related-items` (similar-items / sims solutions): `{"itemId"}` → `recommendedItems`,
  `scores`, for the input file or every item of the model;
* `segments` (item affinity, any solution): `{"itemId"}` → `usersList`.

Output under `batch-<kind>/<campaign>/<job_id>/`, `latest.json` last. A campaign without an
`item_jobs:` section does nothing (the task skips). Idempotent: the same live version and
input reuse the complete job.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from _recsys_airflow import (
    CAMPAIGN,
    RecsysFailureNotifier,
    as_of,
    no_retry_on_bad_input,
    shared_params,
    storage,
)
from airflow.sdk import Asset, dag, get_current_context, task


@dag(
    dag_id="recsys_item_jobs",
    schedule=[Asset(f"recsys_batch_{CAMPAIGN}")],
    start_date=pendulum.datetime(1990, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["recsys", "batch"],
    on_failure_callback=[RecsysFailureNotifier()],
    default_args={
        "owner": "recsys",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "execution_timeout": timedelta(hours=2),
    },
    params={
        **shared_params(
            campaign="configs/campaigns/<name>.yaml; its item_jobs: section says what runs",
            as_of="name the jobs for this date; empty = the run's logical date",
        ),
    },
)
def recsys_item_jobs():
    @task
    def run_item_jobs() -> list[dict]:
        from airflow.sdk.exceptions import AirflowSkipException

        from recsys.inference.item_jobs import configured_jobs, run_configured

        ctx = get_current_context()
        params = ctx["params"]
        with no_retry_on_bad_input():
            if not configured_jobs(params["campaign"]):
                raise AirflowSkipException(f"campaign {params['campaign']!r} has no item_jobs")
            return run_configured(storage(params), params["campaign"], as_of(ctx))

    run_item_jobs()


recsys_item_jobs()
