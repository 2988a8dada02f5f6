"""
### recsys_nightly — the nightly lifecycle

**import → validate → train → evaluate → deploy (campaign swap) → batch recommendations**,
each task a thin call into the `recsys` library. Every path derives from the run's logical
date (or the `as_of` param), so a retry, a rerun or a backfill writes only its own outputs.

* *import*: CSV drops under `landing/{dataset_group}/` become a versioned Parquet snapshot.
  Bad rows are quarantined under `rejects/{import_id}/` with a reason each; above the dataset
  group's `validation.max_reject_fraction` (or on a whole-file problem) the import fails.
* *validate*: great-expectations suites built from the schema, declared event types, the
  minimum data to train; warnings (rows quarantined, unknown items) are logged with counts. A
  failure stops the run here: the live campaign and the previous snapshot are untouched.
* *train*: one training: the recipe is fitted (early stopping, budget) on today's snapshot
  minus one holdout (each user's newest 10% of interactions; with a live version, only what
  users did since it trained), then brought to the whole snapshot; `version.json` says why
  training stopped and whether validation was still rising.
* *evaluate*: the new version (challenger), the live version (champion) and popularity-count
  (baseline) served as the campaign serves, on that one holdout: Personalize's metrics and
  HR@10, each with n and a 95% bootstrap interval, and paired per-user differences.
* *deploy*: the promotion gate: the campaign pointer moves to the new version only if
  validation passed, it beats popularity-count and it is not worse than the live version
  beyond the campaign's tolerance, each by the paired interval (and not for a backfill older
  than the live version). `deploy` = `force` deploys anyway, `block` never; every number the
  decision used is stored under `campaigns/<campaign>/decisions/` and logged.
* *batch*: planned once, then `write_batch_shard` is mapped over `batch_shards` shards of the
  users (each writes its parts), and `finalize_batch` writes the manifest, `_SUCCESS`, then the
  `latest` pointer, and publishes the `recsys_batch_<campaign>` Asset.

Rollback is the `recsys_rollback` DAG (or `recsys campaign rollback`). A run that fails or
outlives `RECSYS_NIGHTLY_TIMEOUT_HOURS` (12 by default) raises one alert (`recsys.alerts`).
Each param of the trigger form says what it does; docs/OPERATIONS.md has the whole runbook.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from _recsys_airflow import (
    CAMPAIGN,
    NAME_JSON_PATTERN,
    NIGHTLY_TIMEOUT,
    TRAIN_POOL,
    TRAIN_QUEUE,
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
    dag_id="recsys_nightly",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(1990, 1, 1, tz="UTC"),  # any "as of" date may be backfilled,
    catchup=False,
    max_active_runs=1,
    # A run still going after this fails (its running tasks are stopped) and alerts.
    dagrun_timeout=NIGHTLY_TIMEOUT,
    on_failure_callback=[RecsysFailureNotifier()],
    doc_md=__doc__,
    tags=["recsys", "nightly"],
    default_args={
        "owner": "recsys",
        "retries": 2,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=30),
        "execution_timeout": timedelta(hours=3),
    },
    params={
        **shared_params(
            campaign="configs/campaigns/<name>.yaml; its solution and dataset group are used",
            as_of="rebuild as of this date instead of the logical date "
            "(drops whose day ended by then); empty = the run's logical date",
            batch_shards="mapped batch tasks (workers share them)",
        ),
        "import_mode": Param(
            "FULL",
            enum=["FULL", "INCREMENTAL"],
            title="Import mode",
            description="FULL: the snapshot is every drop up to the as-of date; INCREMENTAL: "
            "the newest validated snapshot plus the new drops, upserted by id",
        ),
        "training_mode": Param(
            "FULL",
            enum=["FULL", "UPDATE"],
            title="trainingMode",
            description="FULL: train from scratch; UPDATE: warm-start from the latest version",
        ),
        "recipe": Param(
            None,
            type=["null", "string"],
            pattern=NAME_JSON_PATTERN,
            title="Recipe override",
            description="e.g. popularity-count; empty = the solution's recipe",
        ),
        "hyperparameters": Param(
            {},
            type="object",
            title="Hyperparameter overrides",
            description='merged over the solution\'s, for this run only, e.g. {"epochs": 5}',
        ),
        "deploy": Param(
            "auto",
            enum=["auto", "force", "block"],
            title="Deploy",
            description="auto: the promotion gate decides; force: deploy anyway; block: never",
        ),
    },
)
def recsys_nightly():
    @task
    def import_datasets() -> dict:
        from recsys import pipeline
        from recsys.config import CampaignConfig, SolutionConfig

        ctx = get_current_context()
        params = ctx["params"]
        with no_retry_on_bad_input():
            solution = SolutionConfig.load(CampaignConfig.load(params["campaign"]).solution)
            return pipeline.import_datasets(
                solution.dataset_group, as_of(ctx), params["import_mode"], storage(params)
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

    @task(pool=TRAIN_POOL, queue=TRAIN_QUEUE)
    def train_solution_version(validated: dict) -> dict:
        from recsys import pipeline
        from recsys.config import CampaignConfig

        ctx = get_current_context()
        params = ctx["params"]
        overrides = {"recipe": params["recipe"], "hyperparameters": params["hyperparameters"]}
        with no_retry_on_bad_input():
            return pipeline.train(
                CampaignConfig.load(params["campaign"]).solution,
                validated["snapshot_id"],
                as_of(ctx),
                params["training_mode"],
                overrides,
                storage=storage(params),
                campaign=params["campaign"],
            )

    @task(pool=TRAIN_POOL, queue=TRAIN_QUEUE)
    def evaluate_solution_version(version: dict) -> dict:
        from recsys import pipeline

        params = get_current_context()["params"]
        with no_retry_on_bad_input():
            return pipeline.evaluate(params["campaign"], version["version_id"], storage(params))

    @task
    def deploy_campaign(version: dict, evaluated: dict, validated: dict) -> dict:
        from recsys import pipeline

        ctx = get_current_context()
        params = ctx["params"]
        with no_retry_on_bad_input():
            return pipeline.promote_version(
                params["campaign"],
                version["version_id"],
                as_of(ctx),
                bool(validated["passed"]),
                params["deploy"],
                storage(params),
            )

    @task
    def plan_batch(version: dict, deployed: dict) -> list[dict]:
        from recsys import pipeline

        ctx = get_current_context()
        params = ctx["params"]
        # The new version when deployed (or a backfill's own version); else what is live.
        own = deployed["deployed"] or deployed["reason"] in (
            "already live",
            "live version is newer",
        )
        if not own and not deployed.get("live"):
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(f"nothing is live: {deployed['reason']}")
        with no_retry_on_bad_input():
            spec = pipeline.plan_batch(
                params["campaign"],
                as_of(ctx),
                version["version_id"] if own else None,
                shards=params["batch_shards"],
                storage=storage(params),
            )
        return shard_list(spec)

    imported = import_datasets()
    validated = validate_snapshot(imported)
    version = train_solution_version(validated)
    evaluated = evaluate_solution_version(version)
    deployed = deploy_campaign(version, evaluated, validated)
    sharded_batch(plan_batch(version, deployed), BATCH_ASSET)


recsys_nightly()
