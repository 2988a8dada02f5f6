"""Glue between Airflow task context and recsys: storage from a connection, the run's date.

Not a DAG file (listed in .airflowignore). Imported by the DAG files at parse time, so it
imports nothing heavy at module level.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseNotifier

# recsys.names.NAME_JSON_PATTERN, repeated so that parsing imports nothing of recsys (a test
# checks that the two agree): campaign and version names are names, never paths.
NAME_JSON_PATTERN = r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"

CAMPAIGN = os.environ.get("RECSYS_CAMPAIGN", "movielens")
# Training and evaluation run in this pool and (CeleryExecutor) queue: GPU workers listen on
# their own queue and the pool's slots cap how many trainings share them (docs/OPERATIONS.md).
TRAIN_POOL = os.environ.get("RECSYS_TRAIN_POOL", "default_pool")
TRAIN_QUEUE = os.environ.get("RECSYS_TRAIN_QUEUE", "default")
# The nightly run fails (and alerts) when it has not finished within this many hours.
NIGHTLY_TIMEOUT = timedelta(hours=float(os.environ.get("RECSYS_NIGHTLY_TIMEOUT_HOURS", "12")))


def shared_params(*, campaign: str, as_of: str, batch_shards: str | None = None) -> dict[str, Any]:
    """The trigger-form params every recsys DAG has; the descriptions say what they do there
    (``batch_shards`` only for the DAGs that write a batch)."""
    from airflow.sdk import Param

    params = {
        "campaign": Param(
            CAMPAIGN,
            type="string",
            pattern=NAME_JSON_PATTERN,  # a name, never a path (recsys.names)
            title="Campaign",
            description=campaign,
        ),
        "batch_shards": Param(
            4,
            type="integer",
            minimum=1,
            maximum=1024,
            title="Batch shards",
            description=batch_shards,
        ),
        "as_of": Param(None, type=["null", "string"], title="As of (ISO date)", description=as_of),
        "storage_conn_id": Param(
            None,
            type=["null", "string"],
            pattern=NAME_JSON_PATTERN,
            title="Storage connection id",
            description="an AWS connection for S3 storage (login/password = key/secret, "
            "endpoint_url in the extra); empty = RECSYS_STORAGE_CONN_ID, else the environment",
        ),
    }
    if batch_shards is None:
        del params["batch_shards"]
    return params


class RecsysFailureNotifier(BaseNotifier):
    """The DAGs' failure hook point: a failed (or timed-out) run becomes one alert.

    Delivery is ``recsys.alerts.send_alert``: a log line always, then the webhook
    (``RECSYS_ALERT_WEBHOOK_URL``) and/or your own function (``RECSYS_ALERT_HOOK``). To use
    one of Airflow's provider notifiers instead (Slack, SMTP, ...), add it beside this one in
    the DAG's ``on_failure_callback`` list.
    """

    def notify(self, context: dict[str, Any]) -> None:
        from recsys.alerts import send_alert

        send_alert(failure_alert(context))


def failure_alert(context: dict[str, Any]) -> dict[str, Any]:
    """The alert's fields from an Airflow callback context (DAG- or task-level)."""
    dag_run = context.get("dag_run")
    ti = context.get("ti") or context.get("task_instance")
    dag = context.get("dag")
    logical = context.get("logical_date") or getattr(dag_run, "logical_date", None)
    error = context.get("exception") or context.get("reason")
    return {
        "dag_id": getattr(dag, "dag_id", None) or getattr(dag_run, "dag_id", None),
        "run_id": context.get("run_id") or getattr(dag_run, "run_id", None),
        "state": "failed",
        "task_id": getattr(ti, "task_id", None),
        "logical_date": logical.isoformat() if hasattr(logical, "isoformat") else logical,
        "campaign": (context.get("params") or {}).get("campaign"),
        "error": str(error) if error else None,
    }


def storage(params: dict[str, Any]):
    """The run's Storage: root from RECSYS_STORAGE_URL, S3 credentials from a connection.

    The connection id comes from the ``storage_conn_id`` param or RECSYS_STORAGE_CONN_ID; its
    login/password are the access key/secret and ``endpoint_url`` in its extra points at
    MinIO/SeaweedFS. Without one, credentials come from the environment (never from code).
    """
    from recsys.storage import Storage, storage_options_from_connection

    conn_id = params.get("storage_conn_id") or os.environ.get("RECSYS_STORAGE_CONN_ID")
    if not conn_id:
        return Storage()
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    return Storage(
        None, storage_options_from_connection(conn.login, conn.password, conn.extra_dejson)
    )


def as_of(context: dict[str, Any]) -> str:
    """The run's "as of" datetime (ISO, UTC).

    The ``as_of`` param wins (rebuild a past day from a manual run); else the logical date;
    else, for runs without one (asset-triggered, manual without a date), the run's run_after.
    """
    override = (context.get("params") or {}).get("as_of")
    if override:
        return str(override)
    logical = context.get("logical_date")
    if logical is None:
        logical = context["dag_run"].run_after
    return logical.isoformat()


@contextmanager
def no_retry_on_bad_input():
    """Bad input, a failed validation or a bad config will not fix itself on retry: fail the
    task at once (AirflowFailException) and keep retries for transient trouble (storage)."""
    from recsys.errors import ArtifactError, ConfigError, DataError

    try:
        yield
    except (DataError, ConfigError, ArtifactError) as exc:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc


def sharded_batch(shards, asset):
    """Map ``write_batch_shard`` over the planned shards, then ``finalize_batch`` (manifest,
    ``_SUCCESS``, the ``latest`` pointer) which emits ``asset`` with the batch's location.

    ``shards``: the XComArg of a planning task returning ``[{"spec": ..., "shard": i}, ...]``.
    Call inside a DAG definition; returns the finalize task's XComArg.
    """
    from airflow.sdk import get_current_context, task

    @task
    def write_batch_shard(shard: dict) -> dict:
        from recsys import pipeline

        params = get_current_context()["params"]
        with no_retry_on_bad_input():
            return pipeline.batch_shard(shard["spec"], shard["shard"], storage(params))

    @task(outlets=[asset])
    def finalize_batch(shards: list, written: list) -> dict:
        from recsys import pipeline

        ctx = get_current_context()
        spec = list(shards)[0]["spec"]
        with no_retry_on_bad_input():
            out = pipeline.finalize_batch(spec, storage(ctx["params"]))
        ctx["outlet_events"][asset].extra = {
            "batch_id": out["batch_id"],
            "uri": out["uri"],
            "users": out["users"],
        }
        return out

    written = write_batch_shard.expand(shard=shards)
    return finalize_batch(shards, written)


def shard_list(spec: dict) -> list[dict]:
    """A batch spec → one mapped-task argument per shard."""
    return [{"spec": spec, "shard": i} for i in range(spec["shards"])]
