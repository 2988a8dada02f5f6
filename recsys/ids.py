"""Ids derived from a run's logical date (and a content digest), so reruns land in one place.

``20240105T000000-1a2b3c4d``: the date stamp sorts in time order; the digest of what the object
was made from makes a rerun with the same inputs hit the same id (and skip the work), while a
rerun with different inputs gets its own id and never overwrites a complete object.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any


def as_utc(dt: datetime | str) -> datetime:
    """Parse an ISO date/datetime (naive = UTC) into an aware UTC datetime."""
    if isinstance(dt, str):
        text = dt.strip().replace("Z", "+00:00")
        dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def date_stamp(dt: datetime | str) -> str:
    return as_utc(dt).strftime("%Y%m%dT%H%M%S")


def digest(*parts: Any, length: int = 8) -> str:
    payload = json.dumps(parts, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(payload).hexdigest()[:length]


def stamped_id(dt: datetime | str, *parts: Any) -> str:
    return f"{date_stamp(dt)}-{digest(*parts)}"


def utcnow_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def rerun_stamp() -> str:
    """``20240105T101500.123456-1a2b3c`` from the wall clock and a random tail: a rerun's own
    record name beside a write-once audit record (sorts in time order, never collides)."""
    import secrets

    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S.%f')}-{secrets.token_hex(3)}"
