"""The "Recsys" view in the Airflow 3 UI: a FastAPI app served by the API server, plus a nav
link that embeds it (an external view).

Read-only: each campaign's live version/revision, deploy history, the metrics of recent
solution versions as a chart, and the latest batch output with its freshness. Every route
requires an Airflow user allowed to read the ``recsys_nightly`` DAG (Airflow does not
authenticate plugin apps itself), the OpenAPI schema (``/recsys/openapi.json``) included;
``/recsys/docs`` and ``/recsys/redoc`` are off. The data comes from ``recsys.dashboard``; this file only
wires it into Airflow.

Storage is the DAGs' storage: ``RECSYS_STORAGE_URL``, with S3 credentials from the Airflow
connection named by ``RECSYS_STORAGE_CONN_ID`` (login/password, ``endpoint_url`` in the extra).
``RECSYS_BATCH_STALE_HOURS`` sets when the latest batch counts as stale (default 30).
"""

from __future__ import annotations

import os
from typing import Any

from airflow.api_fastapi.core_api.security import requires_access_dag
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import HTMLResponse

URL_PREFIX = "/recsys"
NIGHTLY_DAG_ID = "recsys_nightly"


def _storage():
    from recsys.storage import Storage, storage_options_from_connection

    conn_id = os.environ.get("RECSYS_STORAGE_CONN_ID")
    if not conn_id:
        return Storage()
    from airflow.models.connection import Connection

    conn = Connection.get_connection_from_secrets(conn_id)
    return Storage(
        None, storage_options_from_connection(conn.login, conn.password, conn.extra_dejson)
    )


def _options() -> dict[str, Any]:
    return {"stale_after_hours": float(os.environ.get("RECSYS_BATCH_STALE_HOURS", "30"))}


app = FastAPI(
    title="recsys",
    description="Read-only view of recsys campaigns, versions and batch outputs",
    # Airflow's own check: the caller (JWT bearer token or the UI's session cookie) must be
    # allowed to read the nightly DAG; anonymous callers get 401, others without access 403.
    dependencies=[Depends(requires_access_dag("GET", param_dag_id=NIGHTLY_DAG_ID))],
    # FastAPI's own schema and docs routes skip the app's dependencies (they would answer
    # anonymous callers): off. The schema is served behind the same auth, below.
    docs_url=None,
    redoc_url=None,
    openapi_url=None,
)


@app.get("/openapi.json", include_in_schema=False)
def openapi() -> dict[str, Any]:
    """The API's OpenAPI schema, for the same callers as the data routes."""
    return app.openapi()


# Plain (sync) handlers: FastAPI runs them in its thread pool, so storage reads never block
# the API server's event loop.
@app.get("/", response_class=HTMLResponse)
def page() -> str:
    from recsys.dashboard import overview, render_html

    return render_html(overview(_storage(), **_options()))


@app.get("/api/campaigns")
def campaigns() -> dict[str, Any]:
    from recsys.dashboard import overview

    return overview(_storage(), **_options())


@app.get("/api/campaigns/{campaign}")
def campaign(campaign: str) -> dict[str, Any]:
    from recsys.dashboard import campaign_view, list_campaigns

    storage = _storage()
    if campaign not in list_campaigns(storage):
        raise HTTPException(status_code=404, detail=f"no campaign {campaign!r}")
    return campaign_view(storage, campaign, **_options())


class RecsysPlugin(AirflowPlugin):
    name = "recsys"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "Recsys"}]
    external_views = [
        {
            "name": "Recsys",
            # Relative to the UI's base URL, so it works behind a proxy prefix too.
            "href": "recsys/",
            "destination": "nav",
            "category": "browse",
            "url_route": "recsys",
        }
    ]
