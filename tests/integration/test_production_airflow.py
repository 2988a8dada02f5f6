"""Production-like: a real Airflow (scheduler, dag-processor, api-server) on PostgreSQL, with
SeaweedFS as S3 storage reached through an Airflow connection; once with LocalExecutor and once
with CeleryExecutor (a Celery worker on the local Redis, as in docker-compose.yaml).

The scheduler runs the nightly DAG for its latest logical date once the DAGs are unpaused, and
an ``airflow backfill create`` of three past days; every run must succeed and write its
snapshot, solution version and complete batch. The Recsys plugin's API (behind Airflow's auth)
must then report the same campaign state as storage, and its page must render (screenshot
with Debian's Chromium when it is installed). Every process is stopped by pid at the end, and
the test database is dropped.

Needs PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres) and Redis on 127.0.0.1:6379,
as on the CI machines.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pandas as pd
import pytest
import requests

from recsys.data.sources.replay import replay
from recsys.ids import as_utc
from recsys.storage import Storage
from tests.conftest import REPO

pytestmark = [pytest.mark.integration, pytest.mark.s3]
BIN = Path(sys.executable).parent
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
REDIS = ("127.0.0.1", 6379)
CAMPAIGN = "synthetic"
USER, PASSWORD = "admin", "recsys-it-" + secrets.token_hex(4)
RUNS_TIMEOUT = 900  # seconds for all runs together; they take ~3-5 minutes on 2 cores
BACKFILL_DAYS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _service_missing(what: str, exc: Exception):
    if os.environ.get("CI"):
        pytest.fail(f"{what} is not reachable: {exc}")
    pytest.skip(f"{what} is not reachable: {exc}")


@pytest.fixture(scope="module", params=["LocalExecutor", "CeleryExecutor"])
def executor(request) -> str:
    if request.param == "CeleryExecutor":
        try:
            socket.create_connection(REDIS, timeout=5).close()
        except OSError as exc:
            _service_missing("Redis on 127.0.0.1:6379", exc)
    return request.param


@pytest.fixture(scope="module")
def pg_url(executor):
    """A fresh PostgreSQL database for the metadata DB (one per variant); dropped at the end."""
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        admin = psycopg2.connect(dbname="postgres", connect_timeout=5, **PG)
    except psycopg2.OperationalError as exc:
        _service_missing("PostgreSQL on 127.0.0.1:5432", exc)
    admin.autocommit = True
    name = f"recsys_it_{os.getpid()}_{secrets.token_hex(3)}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


class Cluster:
    """Airflow's processes, started by the test and stopped by pid."""

    def __init__(self, home: Path, env: dict[str, str], api_port: int) -> None:
        self.home, self.env, self.api = home, env, f"http://127.0.0.1:{api_port}"
        self.procs: dict[str, subprocess.Popen] = {}
        self._token: str | None = None

    def start(self, name: str, *args: str) -> None:
        log = open(self.home / f"{name}.log", "wb")  # noqa: SIM115 - closed by the process end
        self.procs[name] = subprocess.Popen(
            [str(BIN / "airflow"), *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: children are stopped with it
        )
        log.close()

    def stop(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def logs(self, lines: int = 40) -> str:
        out = []
        for name in self.procs:
            text = (self.home / f"{name}.log").read_text(errors="replace").splitlines()
            out.append(f"--- {name} (exit {self.procs[name].poll()}) ---")
            out += text[-lines:]
        return "\n".join(out)

    def check_alive(self) -> None:
        dead = {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}
        assert not dead, f"Airflow processes exited: {dead}\n{self.logs()}"

    def cli(self, *args: str, timeout: int = 300) -> str:
        proc = subprocess.run(
            [str(BIN / "airflow"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert proc.returncode == 0, f"airflow {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    def token(self) -> str:
        if self._token is None:
            r = requests.post(
                f"{self.api}/auth/token",
                json={"username": USER, "password": PASSWORD},
                timeout=30,
            )
            assert r.status_code in (200, 201), r.text
            self._token = r.json()["access_token"]
        return self._token

    def get(self, path: str, auth: bool = True, **params) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token()}"} if auth else {}
        return requests.get(f"{self.api}{path}", headers=headers, params=params, timeout=60)

    def patch(self, path: str, body: dict) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token()}"}
        return requests.patch(f"{self.api}{path}", headers=headers, json=body, timeout=60)

    def wait_for(self, what: str, check, timeout: float, every: float = 2.0):
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            try:
                result = check()
            except requests.ConnectionError:
                result = None
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{self.logs()}")
            time.sleep(every)


@pytest.fixture(scope="module")
def landed_s3(s3_server, synthetic_data, executor):
    """The synthetic data set as daily drops in a fresh prefix of the SeaweedFS bucket."""
    url = f"s3://recsys-test/prod-{secrets.token_hex(3)}"
    options = {
        "key": s3_server["key"],
        "secret": s3_server["secret"],
        "client_kwargs": {"endpoint_url": s3_server["endpoint"], "region_name": "us-east-1"},
    }
    storage = Storage(url, options)
    until = pd.to_datetime(
        synthetic_data.interactions["TIMESTAMP"].max(), unit="s", utc=True
    ).date()
    replay(storage, synthetic_data, "synthetic", until, days=10)
    return storage, url, until


@pytest.fixture(scope="module")
def alerts_received():
    """A local HTTP server standing in for a Slack-style webhook: the alerts it was sent."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    received_url = f"http://127.0.0.1:{server.server_address[1]}/alert"
    yield received_url, received
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, executor, pg_url, s3_server, landed_s3, alerts_received):
    home = tmp_path_factory.mktemp("airflow-prod")
    (home / "passwords.json").write_text(json.dumps({USER: PASSWORD}))
    api_port = _free_port()
    _, url, _ = landed_s3
    conn = {
        "conn_type": "aws",
        "login": s3_server["key"],
        "password": s3_server["secret"],
        "extra": {"endpoint_url": s3_server["endpoint"], "region_name": "us-east-1"},
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RECSYS_", "AWS_"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__EXECUTOR=executor,
        AIRFLOW__CORE__PARALLELISM="4",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=pg_url,
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{api_port}/execution/",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=f"{USER}:admin",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(home / "passwords.json"),
        AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_urlsafe(32),
        AIRFLOW__API__SECRET_KEY=secrets.token_urlsafe(16),
        AIRFLOW__API__HOST="127.0.0.1",
        AIRFLOW__API__PORT=str(api_port),
        AIRFLOW__API__WORKERS="1",
        AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(_free_port()),
        AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK="False",
        AIRFLOW__CORE__LAZY_LOAD_PLUGINS="False",
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="10",
        RECSYS_CONFIG_DIR=str(REPO / "configs"),
        RECSYS_PROGRESS="0",
        RECSYS_CAMPAIGN=CAMPAIGN,
        RECSYS_STORAGE_URL=url,
        RECSYS_STORAGE_CONN_ID="recsys_s3",
        AIRFLOW_CONN_RECSYS_S3=json.dumps(conn),
        RECSYS_ALERT_WEBHOOK_URL=alerts_received[0],
        PYTHONPATH=str(REPO),
    )
    if executor == "CeleryExecutor":
        # A queue of its own on the shared Redis: no other run's worker takes these tasks.
        queue = f"recsys-it-{secrets.token_hex(4)}"
        env.update(
            AIRFLOW__CELERY__BROKER_URL=f"redis://{REDIS[0]}:{REDIS[1]}/0",
            AIRFLOW__CELERY__RESULT_BACKEND="db+" + pg_url,
            AIRFLOW__OPERATORS__DEFAULT_QUEUE=queue,
            RECSYS_TRAIN_QUEUE=queue,
        )
    c = Cluster(home, env, api_port)
    c.cli("db", "migrate", timeout=600)
    try:
        c.start("api-server", "api-server")
        c.start("dag-processor", "dag-processor")
        c.start("scheduler", "scheduler")
        if executor == "CeleryExecutor":
            queue = env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"]
            c.start(
                "celery-worker",
                "celery",
                "worker",
                "--queues",
                queue,
                "--concurrency",
                "2",
                "--celery-hostname",
                f"{queue}@%h",
            )
        c.wait_for(
            "the api-server",
            lambda: requests.get(f"{c.api}/api/v2/version", timeout=5).ok,
            timeout=180,
        )
        yield c
    finally:
        c.stop()


def _runs(c: Cluster) -> list[dict]:
    r = c.get("/api/v2/dags/recsys_nightly/dagRuns", limit=100, order_by="logical_date")
    assert r.ok, r.text
    return r.json()["dag_runs"]


def _failure_report(c: Cluster, runs: list[dict]) -> str:
    out = [json.dumps([{k: r[k] for k in ("dag_run_id", "state")} for r in runs])]
    for run in runs:
        if run["state"] != "success":
            tis = c.get(f"/api/v2/dags/recsys_nightly/dagRuns/{run['dag_run_id']}/taskInstances")
            out.append(
                json.dumps([(t["task_id"], t["state"]) for t in tis.json()["task_instances"]])
            )
    for log in sorted((c.home / "logs").rglob("*.log"))[-3:]:
        out.append(f"--- {log}\n" + log.read_text(errors="replace")[-3000:])
    return "\n".join(out) + "\n" + c.logs()


def test_scheduler_runs_nightly_and_backfill_and_the_plugin_reports_them(
    cluster, landed_s3, executor
):
    c = cluster
    storage, _, until = landed_s3
    # Unauthenticated callers get nothing, neither from Airflow nor from the plugin.
    assert c.get("/api/v2/dags", auth=False).status_code == 401
    assert c.get("/recsys/api/campaigns", auth=False).status_code == 401

    c.wait_for(
        "the DAGs to be parsed",
        lambda: all(c.get(f"/api/v2/dags/{d}").ok for d in ("recsys_nightly", "recsys_rollback")),
        timeout=240,
    )
    for dag_id in ("recsys_nightly", "recsys_rollback"):
        r = c.patch(f"/api/v2/dags/{dag_id}", {"is_paused": False})
        assert r.ok and r.json()["is_paused"] is False, r.text

    # Unpaused with catchup off, the scheduler runs the latest scheduled date by itself.
    scheduled = c.wait_for(
        "the scheduled run",
        lambda: [r for r in _runs(c) if r["run_type"] == "scheduled"],
        timeout=120,
    )
    assert len(scheduled) == 1
    # And three past days, as a backfill (two batch shards each).
    first = until + timedelta(days=1)
    last = first + timedelta(days=BACKFILL_DAYS - 1)
    c.cli(
        "backfill",
        "create",
        "--dag-id",
        "recsys_nightly",
        "--from-date",
        f"{first}T00:00:00+00:00",
        "--to-date",
        f"{last}T23:00:00+00:00",
        "--dag-run-conf",
        json.dumps({"batch_shards": 2}),
    )

    def finished():
        runs = _runs(c)
        done = [r for r in runs if r["state"] in ("success", "failed")]
        return runs if len(runs) == 1 + BACKFILL_DAYS and len(done) == len(runs) else None

    runs = c.wait_for("every run to finish", finished, timeout=RUNS_TIMEOUT, every=5)
    assert all(r["state"] == "success" for r in runs), _failure_report(c, runs)
    if executor == "CeleryExecutor":
        # The tasks went through Redis to the Celery worker on the test's own queue.
        queue = c.env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"]
        for run in runs:
            path = f"/api/v2/dags/recsys_nightly/dagRuns/{run['dag_run_id']}/taskInstances"
            assert {t["queue"] for t in c.get(path).json()["task_instances"]} == {queue}
        worker_log = (c.home / "celery-worker.log").read_text(errors="replace")
        assert re.search(r"Task \S+\[[0-9a-f-]+\] received", worker_log), worker_log[-3000:]
    backfill = [r for r in runs if r["run_type"] == "backfill"]
    assert sorted(as_utc(r["logical_date"]).date() for r in backfill) == [
        first + timedelta(days=i) for i in range(BACKFILL_DAYS)
    ]

    # Every run wrote its own complete outputs, stamped with its logical date.
    stamps = {as_utc(r["logical_date"]).strftime("%Y%m%dT%H%M%S"): r for r in runs}
    versions = storage.list_versions(
        "solutions/synthetic-popularity/versions", marker="version.json"
    )
    snapshots = storage.list_versions("datasets/synthetic/snapshots", marker="manifest.json")
    batches = storage.list_versions(f"batch/{CAMPAIGN}", marker="_SUCCESS")
    for stamp, run in stamps.items():
        assert [v for v in versions if v.startswith(stamp)], (stamp, versions)
        assert [s for s in snapshots if s.startswith(stamp)], (stamp, snapshots)
        own = [b for b in batches if b.startswith(stamp)]
        assert len(own) == 1, (stamp, batches)
        manifest = storage.read_json(f"batch/{CAMPAIGN}/{own[0]}/manifest.json")
        assert manifest["users"] > 0 and manifest["errors"] == 0
        assert manifest["shards"] == (4 if run["run_type"] == "scheduled" else 2)
    # The newest run is live and its batch is "latest"; backfills did not move them back.
    newest = max(stamps)
    state = storage.read_json(f"campaigns/{CAMPAIGN}.json")
    assert state["live"]["version_id"].startswith(newest)
    latest = storage.read_json(f"batch/{CAMPAIGN}/latest.json")
    assert latest["batch_id"].startswith(newest)

    # The plugin: registered with its UI link, and answering with the campaign's real state.
    plugins = c.get("/api/v2/plugins").json()["plugins"]
    recsys = next(p for p in plugins if p["name"] == "recsys")
    assert recsys["external_views"][0]["url_route"] == "recsys"
    assert recsys["fastapi_apps"][0]["url_prefix"] == "/recsys"
    r = c.get(f"/recsys/api/campaigns/{CAMPAIGN}")
    assert r.ok, r.text
    view = r.json()
    assert view["live"]["version_id"] == state["live"]["version_id"]
    assert [h["version_id"] for h in view["history"]] == [
        e["version_id"] for e in reversed(state["history"])
    ]
    assert {v["version_id"] for v in view["versions"]} == set(versions)
    # every version was evaluated; those trained on the live version's data had no holdout
    # (nothing happened since), the others have Personalize's metrics
    assert all(
        v["metrics"] is None or v["metrics"]["precision_at_25"] is not None
        for v in view["versions"]
    )
    assert any(v["metrics"] for v in view["versions"])
    assert view["batch"]["batch_id"] == latest["batch_id"]
    assert view["batch"]["complete"] and not view["batch"]["stale"]
    assert c.get("/recsys/api/campaigns/nope").status_code == 404
    overview = c.get("/recsys/api/campaigns").json()
    assert overview["storage"] == storage.uri()
    assert {x["campaign"] for x in overview["campaigns"]} >= {"synthetic", "movielens"}

    page = c.get("/recsys/")
    assert page.ok and page.headers["content-type"].startswith("text/html")
    assert state["live"]["version_id"] in page.text and "<svg" in page.text
    _screenshot(page.text, c.home)


def test_a_failed_run_sends_one_alert(cluster, alerts_received, landed_s3):
    """A run that fails (here: an unknown campaign) reaches the failure callback's webhook."""
    c = cluster
    storage, _, _ = landed_s3
    _, received = alerts_received
    before = storage.read_bytes(f"campaigns/{CAMPAIGN}.json")
    r = requests.post(
        f"{c.api}/api/v2/dags/recsys_nightly/dagRuns",
        headers={"Authorization": f"Bearer {c.token()}"},
        json={"logical_date": None, "conf": {"campaign": "no-such-campaign"}},
        timeout=60,
    )
    assert r.ok, r.text
    run_id = r.json()["dag_run_id"]

    def failed():
        state = c.get(f"/api/v2/dags/recsys_nightly/dagRuns/{run_id}").json()["state"]
        assert state != "success"
        return state == "failed"

    c.wait_for("the bad run to fail", failed, timeout=300, every=3)
    alert = c.wait_for(
        "the failure alert",
        lambda: next((a for a in received if a.get("run_id") == run_id), None),
        timeout=120,
    )
    assert alert["dag_id"] == "recsys_nightly" and alert["campaign"] == "no-such-campaign"
    assert alert["text"].startswith(f"recsys: recsys_nightly run {run_id} failed")
    assert len([a for a in received if a.get("run_id") == run_id]) == 1
    # The live campaign was not touched by the failed run.
    assert storage.read_bytes(f"campaigns/{CAMPAIGN}.json") == before


def _screenshot(html: str, where: Path) -> None:
    """Render the page in Debian's headless Chromium, when installed (apt-get install chromium)."""
    chromium = shutil.which("chromium")
    if not chromium:
        return
    page = where / "recsys.html"
    page.write_text(html)
    shot = where / "recsys.png"
    args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    subprocess.run(
        [*args, f"--screenshot={shot}", "--window-size=1200,1400", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    dom = subprocess.run(
        [*args, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    assert "metrics-chart" in dom and "polyline" in dom
    if os.environ.get("RECSYS_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(os.environ["RECSYS_SCREENSHOT_DIR"]) / "recsys-view.png")
