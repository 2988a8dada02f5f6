"""Issue 18, case 2: locks that recover: a heartbeat renews a short lease, a holder killed with
SIGKILL frees the lock at once (same host) or within one lease (elsewhere), waiters say what
holds the lock, broken-lock markers are cleaned up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from recsys.campaigns import deploy
from recsys.config import CampaignConfig
from recsys.errors import LockTimeoutError
from recsys.locks import DEFAULT_TTL, clean_markers, stale_reason, storage_lock
from tests.conftest import REPO

HOLD = """
import json, sys, time
from recsys.locks import storage_lock
from recsys.storage import Storage
storage = Storage(sys.argv[1], json.loads(sys.argv[2]) or None)
with storage_lock(storage, sys.argv[3], purpose="test holder"):
    print("HELD", flush=True)
    time.sleep(600)
"""


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def any_storage(request):
    return request.getfixturevalue(f"{request.param}_storage")


def _options(storage, request) -> dict:
    if storage.protocol != "s3":
        return {}
    server = request.getfixturevalue("s3_server")
    return {
        "key": server["key"],
        "secret": server["secret"],
        "client_kwargs": {"endpoint_url": server["endpoint"], "region_name": "us-east-1"},
    }


def _holder(storage, request, name):
    """A separate process that takes the lock and sleeps in it; returns once it holds it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, storage.url, json.dumps(_options(storage, request)), name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    line = proc.stdout.readline()
    assert line.strip() == "HELD", proc.stderr.read()
    return proc


def _fake_version(storage, version_id="20240102T000000-abcdef12"):
    storage.write_json(
        f"solutions/synthetic-popularity/versions/{version_id}/version.json",
        {"version_id": version_id, "snapshot_id": "20240101T000000-00000000"},
    )
    return version_id


def test_holder_killed_with_sigkill_then_deploy_succeeds_within_one_lease(any_storage, request):
    version_id = _fake_version(any_storage)
    proc = _holder(any_storage, request, "campaign-synthetic")
    held = any_storage.read_json("locks/campaign-synthetic.lock")
    assert held["purpose"] == "test holder" and held["pid"] == proc.pid
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()  # reaped, as Airflow's supervisor does
    start = time.monotonic()
    out = deploy(any_storage, CampaignConfig.load("synthetic"), version_id, "2024-01-02")
    elapsed = time.monotonic() - start
    assert out["deployed"] is True
    assert any_storage.read_json("campaigns/synthetic.json")["live"]["version_id"] == version_id
    assert elapsed < DEFAULT_TTL, elapsed
    assert not any_storage.exists("locks/campaign-synthetic.lock")
    assert any_storage.exists(f"locks/campaign-synthetic.lock.broken-{held['token']}")


def test_holder_on_another_host_is_broken_after_its_lease(any_storage):
    dead = {
        "token": "elsewhere",
        "host": "another-host",
        "pid": 12345,
        "purpose": "deploy (campaign-x)",
        "expires_at": time.time() + 1.5,
    }
    any_storage.write_bytes("locks/z.lock", json.dumps(dead).encode())
    start = time.monotonic()
    with storage_lock(any_storage, "z", wait=30) as token:
        assert any_storage.read_json("locks/z.lock")["token"] == token
    assert 1.0 < time.monotonic() - start < 10


def test_heartbeat_keeps_a_short_lease_alive_and_waiters_say_who_holds_it(local_storage):
    done = threading.Event()
    held = threading.Event()

    def hold():
        with storage_lock(local_storage, "long", ttl=0.6, purpose="deploy of campaign movielens"):
            held.set()
            done.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(5)
    try:
        with (
            pytest.raises(LockTimeoutError) as info,
            storage_lock(local_storage, "long", ttl=0.6, wait=2.0),
        ):
            pass  # pragma: no cover - never acquired: the holder renews its 0.6 s lease
    finally:
        done.set()
        t.join()
    message = str(info.value)
    assert "deploy of campaign movielens" in message and f"pid {os.getpid()}" in message
    assert "another deploy is running" in message
    assert not local_storage.exists("locks/long.lock")


def test_a_live_local_holder_is_not_stale():
    body = {
        "token": "t",
        "host": os.uname().nodename,
        "pid": os.getpid(),
        "pid_ns": os.readlink("/proc/self/ns/pid"),
        "expires_at": time.time() + 30,
    }
    assert stale_reason(body) is None
    assert "expired" in stale_reason({**body, "expires_at": time.time() - 1})
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert "is gone" in stale_reason({**body, "pid": gone.pid})
    # another PID namespace (another container): its pid means nothing here
    assert stale_reason({**body, "pid": gone.pid, "pid_ns": "pid:[1]"}) is None


def test_old_broken_markers_are_cleaned_up(local_storage):
    old = {"broken_at": time.time() - 10_000}
    local_storage.write_bytes("locks/m.lock.broken-old", json.dumps(old).encode())
    local_storage.write_bytes("locks/m.lock.broken-legacy", b"")
    local_storage.write_bytes(
        "locks/m.lock.broken-young", json.dumps({"broken_at": time.time()}).encode()
    )
    local_storage.write_bytes("locks/other.lock.broken-old", json.dumps(old).encode())
    with storage_lock(local_storage, "m"):
        pass
    assert not local_storage.exists("locks/m.lock.broken-old")
    assert not local_storage.exists("locks/m.lock.broken-legacy")
    assert local_storage.exists("locks/m.lock.broken-young")
    assert local_storage.exists("locks/other.lock.broken-old")  # another lock's
    assert clean_markers(local_storage, "m", keep=0) == 1


def test_a_waiter_that_died_while_breaking_does_not_block_forever(local_storage):
    dead = {"token": "dead2", "host": "another-host", "pid": 1, "expires_at": time.time() - 1}
    local_storage.write_bytes("locks/w.lock", json.dumps(dead).encode())
    # a breaker that created its marker, then died before deleting the stale lock
    old = {"broken_at": time.time() - 120}
    local_storage.write_bytes("locks/w.lock.broken-dead2", json.dumps(old).encode())
    with storage_lock(local_storage, "w", ttl=5, wait=10) as token:
        assert local_storage.read_json("locks/w.lock")["token"] == token
