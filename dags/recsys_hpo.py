"""
### recsys_hpo — hyperparameter optimisation, trials as mapped tasks (Personalize's performHPO)

**plan → run_trials (mapped: `max_parallel_training_jobs` workers) → finalize**, each a thin
call into `recsys.hpo`.

* *plan*: the campaign's solution on `snapshot_id` (empty: the newest validated snapshot).
  Runs only when HPO is on: the `perform_hpo` param, or when empty the solution file's
  `perform_hpo: true` (with its `hpo_config`: ranges per hyperparameter, objective metric,
  `max_number_of_training_jobs`, `max_parallel_training_jobs`). Creates (or finds) one Optuna
  study and enqueues the solution's own hyperparameters as the baseline trial.
* *run_trials*: every mapped task trains trials until the study has
  `max_number_of_training_jobs` finished ones; Celery or Kubernetes workers run them in
  parallel and share only the study's database. A task killed mid-trial is resumed: its
  trial's heartbeat stops, the next worker (or the retry) fails it and retries its point.
* *finalize*: the best trial's model becomes the solution version (`version.json` records
  every trial and the gain over the baseline). Deploy it as usual (`recsys deploy`, or the
  nightly's gate).

The study's database: the `hpo_conn_id` param (or `RECSYS_HPO_CONN_ID`), an Airflow
connection to PostgreSQL, e.g. the metadata server **in its own database** (`CREATE DATABASE
recsys_hpo`; Optuna's tables, `alembic_version` among them, must not share Airflow's); else
`RECSYS_HPO_DATABASE_URL`; else SQLite under a local storage root (the embedded default).
Idempotent for its logical date: a rerun finds the same study and the same version.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from _recsys_airflow import (
    NAME_JSON_PATTERN,
    TRAIN_POOL,
    TRAIN_QUEUE,
    RecsysFailureNotifier,
    as_of,
    no_retry_on_bad_input,
    shared_params,
    storage,
)
from airflow.sdk import Param, dag, get_current_context, task


def database_url(params: dict) -> str | None:
    """The study database from an Airflow connection (never logged), else None (recsys then
    reads RECSYS_HPO_DATABASE_URL or uses SQLite)."""
    conn_id = params.get("hpo_conn_id") or os.environ.get("RECSYS_HPO_CONN_ID")
    if not conn_id:
        return None
    from airflow.sdk import BaseHook

    uri = BaseHook.get_connection(conn_id).get_uri()
    return "postgresql://" + uri[len("postgres://") :] if uri.startswith("postgres://") else uri


@dag(
    dag_id="recsys_hpo",
    schedule=None,
    start_date=pendulum.datetime(1990, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["recsys", "hpo"],
    on_failure_callback=[RecsysFailureNotifier()],
    default_args={
        "owner": "recsys",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
        "execution_timeout": timedelta(hours=6),
    },
    params={
        **shared_params(
            campaign="configs/campaigns/<name>.yaml; its solution is tuned",
            as_of="the logical date the study and version are named from; empty = the "
            "run's logical date",
        ),
        "snapshot_id": Param(
            None,
            type=["null", "string"],
            pattern=NAME_JSON_PATTERN,
            title="Snapshot",
            description="train trials on this snapshot; empty = the newest validated one",
        ),
        "perform_hpo": Param(
            None,
            type=["null", "boolean"],
            title="performHPO",
            description="true: run the study; false: skip; empty = the solution file's perform_hpo",
        ),
        "hpo_conn_id": Param(
            None,
            type=["null", "string"],
            pattern=NAME_JSON_PATTERN,
            title="Study database connection",
            description="Airflow connection of the PostgreSQL database holding the Optuna "
            "study; empty = RECSYS_HPO_CONN_ID, RECSYS_HPO_DATABASE_URL, else SQLite",
        ),
    },
)
def recsys_hpo():
    @task
    def plan() -> list[dict]:
        from airflow.sdk.exceptions import AirflowSkipException

        from recsys import hpo

        ctx = get_current_context()
        params = ctx["params"]
        with no_retry_on_bad_input():
            out = hpo.plan_for_campaign(
                storage(params),
                params["campaign"],
                as_of(ctx),
                params["snapshot_id"],
                database_url(params),
                params["perform_hpo"],
            )
        if out["skipped"]:
            raise AirflowSkipException(out["reason"])
        return [{"plan": out, "worker": w} for w in out["workers"]]

    @task(pool=TRAIN_POOL, queue=TRAIN_QUEUE)
    def run_trials(job: dict) -> dict:
        from recsys import hpo

        params = get_current_context()["params"]
        p = job["plan"]
        with no_retry_on_bad_input():
            return hpo.run_trials(
                storage(params),
                p["solution"],
                p["snapshot_id"],
                p["logical_date"],
                job["worker"],
                database_url(params),
            )

    @task
    def finalize(jobs: list, trials: list) -> dict:
        from recsys import hpo

        params = get_current_context()["params"]
        p = list(jobs)[0]["plan"]
        with no_retry_on_bad_input():
            version = hpo.finalize_hpo(
                storage(params),
                p["solution"],
                p["snapshot_id"],
                p["logical_date"],
                database_url(params),
            )
        return {
            "solution": version["solution"],
            "version_id": version["version_id"],
            "best_value": version["hpo"]["best_value"],
            "gain_over_baseline": version["hpo"]["gain_over_baseline"],
        }

    jobs = plan()
    finalize(jobs, run_trials.expand(job=jobs))


recsys_hpo()
