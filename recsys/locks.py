"""A lease lock on storage: serialises read-modify-write of a pointer (campaign, batch latest)
and one batch job's shard or finalize at a time.

Acquire = create the lock object only if absent (:meth:`Storage.create_exclusive`: ``os.link``
on disk, a conditional PUT ``If-None-Match: *`` on S3). The holder does its work, then deletes
the lock. While it holds the lock a heartbeat thread renews the lease every ``ttl / 3``
seconds, so the lease (``ttl``, 30 s by default) can be short however long the work takes, and
waiters (``wait``, 5 minutes by default) outlast several leases.

A holder that dies stops renewing. Its lock is broken by the next waiter when its lease has
expired, or at once when the holder ran on this host (same host name and PID namespace) and
its process is gone (``kill -9``). Breaking is exclusive: a waiter must first create
``{lock}.broken-{holder's token}``, so two waiters never both break (and delete a fresh lock),
and it deletes the lock only if, read again, it is still that stale holder's. Those markers
are removed by later holders once they are older than :data:`MARKER_KEEP` seconds.

A waiter that gives up raises :class:`~recsys.errors.LockTimeoutError` naming what holds the
lock (purpose, host, pid, since when, how long the lease still runs). The usual lease caveat
remains: a holder paused longer than ``ttl`` (its heartbeat too) may find its lock broken; its
heartbeat then logs an error.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from recsys.errors import LockTimeoutError, NotFoundError, RecsysError, StorageError
from recsys.logs import get_logger
from recsys.storage import Storage

log = get_logger(__name__)
DEFAULT_TTL = 30.0
DEFAULT_WAIT = 300.0
#: Broken-lock markers younger than this are kept (a waiter may still act on what it read).
MARKER_KEEP = 600.0


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this PID namespace runs (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return True


def stale_reason(held: dict[str, Any], now: float | None = None) -> str | None:
    """Why a lock body no longer protects anything (expired lease, dead local holder), or None."""
    now = time.time() if now is None else now
    try:
        expires = float(held.get("expires_at", 0))
    except (TypeError, ValueError):
        expires = 0.0
    if expires < now:
        return "its lease expired"
    if (
        held.get("host") == socket.gethostname()
        and held.get("pid_ns") is not None
        and held.get("pid_ns") == _pid_namespace()
        and isinstance(held.get("pid"), int)
        and not pid_alive(held["pid"])
    ):
        return f"its holder (pid {held['pid']} on this host) is gone"
    return None


def describe(held: dict[str, Any], now: float | None = None) -> str:
    now = time.time() if now is None else now
    left = float(held.get("expires_at", 0) or 0) - now
    return (
        f"{held.get('purpose') or 'another process'} on {held.get('host')} pid "
        f"{held.get('pid')} (since {held.get('acquired_at', '?')}, lease for another "
        f"{max(left, 0):.0f} s)"
    )


class _Heartbeat(threading.Thread):
    """Renews the holder's lease every ``ttl / 3`` seconds until stopped."""

    def __init__(self, storage: Storage, key: str, body: dict[str, Any], ttl: float) -> None:
        super().__init__(name=f"lock-heartbeat {key}", daemon=True)
        self.storage, self.key, self.body, self.ttl = storage, key, body, ttl
        self.stopped = threading.Event()
        self.lost = False

    def run(self) -> None:
        while not self.stopped.wait(self.ttl / 3):
            try:
                held = self.storage.read_json(self.key)
                if held.get("token") != self.body["token"]:
                    self.lost = True
                    log.error(
                        "lock lost: it was broken while held (paused longer than its lease?)",
                        lock=self.key,
                        holder=held.get("host"),
                    )
                    return
                self.body["expires_at"] = time.time() + self.ttl
                self.storage.write_bytes(self.key, json.dumps(self.body).encode())
            except NotFoundError:
                self.lost = True
                log.error("lock lost: deleted while held", lock=self.key)
                return
            except RecsysError as exc:  # storage trouble: try again at the next beat
                log.warning("lock heartbeat failed", lock=self.key, error=str(exc))


@contextmanager
def storage_lock(
    storage: Storage,
    name: str,
    *,
    ttl: float = DEFAULT_TTL,
    wait: float = DEFAULT_WAIT,
    poll: float = 0.05,
    purpose: str | None = None,
    kind: str = "deploy",
) -> Iterator[str]:
    """Hold ``locks/{name}`` for the ``with`` block; yields the holder's token.

    ``purpose`` says what the holder does (shown to waiters); ``kind`` names the work in the
    timeout message ("another deploy is running").
    """
    key = f"locks/{name}.lock"
    token = uuid.uuid4().hex
    deadline = time.monotonic() + wait
    delay = poll
    while True:
        now = time.time()
        body = {
            "token": token,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "pid_ns": _pid_namespace(),
            "purpose": purpose or f"{kind} ({name})",
            "acquired_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "expires_at": now + ttl,
        }
        if storage.create_exclusive(key, json.dumps(body).encode()):
            break
        try:
            held = storage.read_json(key)
        except (NotFoundError, StorageError):
            continue  # released (or half-visible) between our create and read: try again
        reason = stale_reason(held)
        if reason is not None:
            _break(storage, key, held, reason, ttl)
            continue
        if time.monotonic() > deadline:
            raise LockTimeoutError(
                f"{storage.uri(key)} is held by {describe(held)}; waited {wait:.0f} s: another "
                f"{kind} is running (a holder that died frees it within {ttl:.0f} s, or at once "
                "when it ran on this host)"
            )
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
    beat = _Heartbeat(storage, key, body, ttl)
    beat.start()
    try:
        yield token
    finally:
        beat.stopped.set()
        beat.join()
        with suppress(NotFoundError):
            if storage.read_json(key).get("token") == token:
                storage.delete(key)
        with suppress(RecsysError):
            clean_markers(storage, name)


def _break(storage: Storage, key: str, held: dict[str, Any], reason: str, ttl: float) -> bool:
    """Delete a stale lock, exactly once among waiters; True if this call deleted it."""
    marker = f"{key}.broken-{held.get('token')}"
    record = {"broken_at": time.time(), "by": socket.gethostname(), "pid": os.getpid()}
    if not storage.create_exclusive(marker, json.dumps(record).encode()):
        # Another waiter is breaking it, or died doing so (its marker is old while the stale
        # lock is still there): then remove its marker, and the next round breaks the lock.
        if time.time() - _broken_at(storage, marker) > ttl:
            log.warning("removing the marker of a waiter that died breaking a lock", lock=key)
            storage.delete(marker)
        else:
            time.sleep(0.05)
        return False
    try:
        again = storage.read_json(key)
    except NotFoundError:
        return False
    if again.get("token") != held.get("token") or stale_reason(again) is None:
        return False  # renewed or replaced meanwhile: not stale any more
    log.warning(f"breaking a lock: {reason}", lock=key, holder=describe(again))
    storage.delete(key)
    return True


def clean_markers(storage: Storage, name: str, keep: float = MARKER_KEEP) -> int:
    """Delete ``locks/{name}.lock.broken-*`` markers older than ``keep`` seconds."""
    prefix = f"{name}.lock.broken-"
    removed = 0
    for entry in storage.list("locks"):
        if not entry.startswith(prefix):
            continue
        if time.time() - _broken_at(storage, f"locks/{entry}") > keep:
            storage.delete(f"locks/{entry}")
            removed += 1
    return removed


def _broken_at(storage: Storage, marker: str) -> float:
    """When a broken-lock marker was written (0 for an empty one of older recsys)."""
    try:
        return float(json.loads(storage.read_bytes(marker) or b"{}")["broken_at"])
    except NotFoundError:
        return time.time()  # just removed: as good as young
    except (KeyError, TypeError, ValueError):
        return 0.0
