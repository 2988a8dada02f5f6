"""A lease lock on storage: serialises read-modify-write of a pointer (campaign, batch latest).

Acquire = create the lock object only if absent (:meth:`Storage.create_exclusive`: ``os.link``
on disk, a conditional PUT ``If-None-Match: *`` on S3). The holder reads the pointer, writes the
new one whole, then deletes the lock. A holder that dies leaves its lock until the lease
expires (``ttl``); then one waiter breaks it: it must first create ``{lock}.broken-{token}``
exclusively, so two waiters never both break (and delete a fresh lock). Breaking a lease is the
usual caveat: a holder paused longer than ``ttl`` may write after its lock was broken, so
``ttl`` must be far above the few seconds a pointer update takes.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from recsys.errors import LockTimeoutError, NotFoundError, StorageError
from recsys.logs import get_logger
from recsys.storage import Storage

log = get_logger(__name__)
DEFAULT_TTL = 300.0
DEFAULT_WAIT = 120.0


@contextmanager
def storage_lock(
    storage: Storage,
    name: str,
    *,
    ttl: float = DEFAULT_TTL,
    wait: float = DEFAULT_WAIT,
    poll: float = 0.05,
) -> Iterator[str]:
    """Hold ``locks/{name}`` for the ``with`` block; yields the holder's token."""
    key = f"locks/{name}.lock"
    token = uuid.uuid4().hex
    deadline = time.monotonic() + wait
    delay = poll
    while True:
        body = {
            "token": token,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "expires_at": time.time() + ttl,
        }
        if storage.create_exclusive(key, json.dumps(body).encode()):
            break
        try:
            held = storage.read_json(key)
        except (NotFoundError, StorageError):
            continue  # released (or half-visible) between our create and read: try again
        if float(held.get("expires_at", 0)) < time.time():
            if storage.create_exclusive(f"{key}.broken-{held.get('token')}", b""):
                log.warning("breaking an expired lock", lock=key, holder=held.get("host"))
                storage.delete(key)
            continue
        if time.monotonic() > deadline:
            raise LockTimeoutError(
                f"{storage.uri(key)} is held by {held.get('host')} pid {held.get('pid')} "
                f"for another {float(held['expires_at']) - time.time():.0f} s; another "
                "deploy is running (or delete the lock if you are sure it is not)"
            )
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
    try:
        yield token
    finally:
        try:
            if storage.read_json(key).get("token") == token:
                storage.delete(key)
        except NotFoundError:
            pass
