"""Failure alerts: one structured log line, then optional webhook and/or a hook of your own.

Used by the DAGs' failure notifier (``dags/_recsys_airflow.py``), which fills an alert dict
from the Airflow context; this module knows nothing of Airflow. Configured by environment:

``RECSYS_ALERT_WEBHOOK_URL``
    POST the alert as JSON to this URL; ``text`` holds a one-line summary, so a Slack or
    Mattermost incoming webhook works as is.
``RECSYS_ALERT_HOOK``
    ``package.module:function``, called with the alert dict: page someone, open a ticket,
    send to any system (it may use Airflow's notifiers itself).
"""

from __future__ import annotations

import importlib
import json
import os
import urllib.request
from collections.abc import Callable
from typing import Any

from recsys.errors import ConfigError
from recsys.logs import get_logger

log = get_logger(__name__)


def summary(alert: dict[str, Any]) -> str:
    """``recsys: recsys_nightly run <run_id> failed (task train_solution_version): <error>``."""
    where = f" (task {alert['task_id']})" if alert.get("task_id") else ""
    error = f": {alert['error']}" if alert.get("error") else ""
    return f"recsys: {alert.get('dag_id')} run {alert.get('run_id')} {alert.get('state', 'failed')}{where}{error}"


def load_hook(path: str) -> Callable[[dict[str, Any]], Any]:
    """Import ``package.module:function`` (a clear ConfigError if it is not there)."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ConfigError(
            f"RECSYS_ALERT_HOOK must look like 'package.module:function', got {path!r}"
        )
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"RECSYS_ALERT_HOOK {path!r} cannot be imported: {exc}") from exc
    if not callable(target):
        raise ConfigError(f"RECSYS_ALERT_HOOK {path!r} is not callable")
    return target


def send_alert(
    alert: dict[str, Any],
    *,
    webhook_url: str | None = None,
    hook: str | None = None,
    timeout: float = 10.0,
) -> list[str]:
    """Log the alert, then deliver it to the webhook and the hook (env defaults).

    Returns the channels used (``log``, ``webhook``, ``hook``). A delivery that fails raises,
    after the log line is written, so the failure to alert is itself visible.
    """
    webhook_url = (
        webhook_url if webhook_url is not None else os.environ.get("RECSYS_ALERT_WEBHOOK_URL")
    )
    hook = hook if hook is not None else os.environ.get("RECSYS_ALERT_HOOK")
    text = summary(alert)
    log.error("alert", text=text, **{k: v for k, v in alert.items() if k != "text"})
    used = ["log"]
    if webhook_url:
        body = json.dumps({"text": text, **alert}, default=str).encode("utf-8")
        request = urllib.request.Request(
            webhook_url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            response.read()
        used.append("webhook")
    if hook:
        load_hook(hook)({**alert, "text": text})
        used.append("hook")
    return used
