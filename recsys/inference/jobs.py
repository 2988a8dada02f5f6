"""One batch job per (campaign, batch id) at a time, unit by unit.

A batch id fixes every input of the output, so two jobs with one id (an Airflow rerun beside
a still-running attempt, a CLI batch racing the nightly) would write the same objects. Each
unit of the job, a shard or the finalize, runs under its own storage lease lock
(:mod:`recsys.locks`, renewed while held): the second job's unit waits, then finds the first
one's completion marker (``shards/N.json``, ``_SUCCESS``) and reuses it. So parts are deleted
or written only by the one holder of their shard's lock and only while the shard has no marker,
and a batch with ``_SUCCESS`` is never written again: nothing its manifest lists changes.
Shards of one job still run in parallel (one lock each).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from recsys.locks import storage_lock
from recsys.names import check_name
from recsys.storage import Storage


def batch_job_lock(storage: Storage, spec: dict[str, Any], unit: str) -> AbstractContextManager:
    """The lock of one unit (``shard-00003``, ``finalize``) of batch ``spec``."""
    campaign = check_name(spec["campaign"], "campaign")
    batch_id = check_name(spec["batch_id"], "batch id")
    return storage_lock(
        storage,
        f"batch-{campaign}-{batch_id}-{unit}",
        kind="batch job for this batch id",
        purpose=f"batch {campaign}/{batch_id} {unit}",
    )
