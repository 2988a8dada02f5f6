"""Failure alerts: log line, webhook (a real local HTTP server) and a user hook."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from recsys import alerts
from recsys.errors import ConfigError

ALERT = {
    "dag_id": "recsys_nightly",
    "run_id": "scheduled__2024-01-02",
    "task_id": "train_solution_version",
    "logical_date": "2024-01-02T02:00:00+00:00",
    "campaign": "movielens",
    "error": "DataError: too few users",
}
RECEIVED: list[dict] = []


def record_hook(alert: dict) -> None:
    """A user hook (RECSYS_ALERT_HOOK=tests.test_alerts:record_hook)."""
    RECEIVED.append(alert)


@pytest.fixture
def webhook():
    bodies: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            length = int(self.headers["Content-Length"])
            bodies.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", bodies
    server.shutdown()
    server.server_close()


def test_summary_names_run_task_and_error():
    text = alerts.summary(ALERT)
    assert text == (
        "recsys: recsys_nightly run scheduled__2024-01-02 failed "
        "(task train_solution_version): DataError: too few users"
    )


def test_alert_goes_to_webhook_and_hook(webhook, monkeypatch):
    url, bodies = webhook
    RECEIVED.clear()
    monkeypatch.setenv("RECSYS_ALERT_WEBHOOK_URL", url)
    monkeypatch.setenv("RECSYS_ALERT_HOOK", "tests.test_alerts:record_hook")
    assert alerts.send_alert(ALERT) == ["log", "webhook", "hook"]
    assert len(bodies) == 1
    assert bodies[0]["text"] == alerts.summary(ALERT)  # Slack/Mattermost-compatible
    assert bodies[0]["run_id"] == ALERT["run_id"]
    assert [{**ALERT, "text": alerts.summary(ALERT)}] == RECEIVED


def test_without_configuration_only_logs(monkeypatch):
    monkeypatch.delenv("RECSYS_ALERT_WEBHOOK_URL", raising=False)
    monkeypatch.delenv("RECSYS_ALERT_HOOK", raising=False)
    assert alerts.send_alert(ALERT) == ["log"]


def test_bad_hook_and_dead_webhook_raise():
    with pytest.raises(ConfigError, match="package.module:function"):
        alerts.send_alert(ALERT, webhook_url="", hook="no_colon")
    with pytest.raises(ConfigError, match="cannot be imported"):
        alerts.send_alert(ALERT, webhook_url="", hook="tests.test_alerts:missing")
    with pytest.raises(OSError):
        alerts.send_alert(ALERT, webhook_url="http://127.0.0.1:9/nothing", hook="", timeout=2)
