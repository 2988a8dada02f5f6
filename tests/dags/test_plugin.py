"""The Recsys UI plugin: what it registers with Airflow, and that no route is anonymous.

(The full behaviour, with a real api-server, auth and data, is in
tests/integration/test_production_airflow.py.)
"""

from __future__ import annotations

import importlib.util
import sys

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def plugin():
    spec = importlib.util.spec_from_file_location(
        "recsys_plugin_under_test", REPO / "plugins" / "recsys_plugin.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_registers_an_app_and_a_nav_view(plugin):
    from airflow.api_fastapi.app import RESERVED_URL_PREFIXES
    from airflow.plugins_manager import AirflowPlugin

    cls = plugin.RecsysPlugin
    assert issubclass(cls, AirflowPlugin) and cls.name == "recsys"
    (app,) = cls.fastapi_apps
    assert app["app"] is plugin.app and app["url_prefix"] == "/recsys"
    assert not any(app["url_prefix"].startswith(p) for p in RESERVED_URL_PREFIXES)
    (view,) = cls.external_views
    # The UI frames href (relative: resolved against the UI's base URL) at /plugin/<url_route>.
    assert view["href"] == "recsys/" and not view["href"].startswith("/")
    assert view["destination"] == "nav" and view["url_route"] == "recsys"


def test_every_route_requires_an_airflow_user(plugin):
    from fastapi.testclient import TestClient

    client = TestClient(plugin.app)
    paths = {r.path for r in plugin.app.routes if getattr(r, "methods", None)} - {
        "/openapi.json",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
    }
    assert paths == {"/", "/api/campaigns", "/api/campaigns/{campaign}"}
    for path in ("/", "/api/campaigns", "/api/campaigns/movielens"):
        assert client.get(path).status_code == 401, path
    # Read-only: no route accepts a write.
    assert client.post("/api/campaigns").status_code == 405
