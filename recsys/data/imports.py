"""Import jobs: CSV drops under ``landing/`` → an immutable, versioned Parquet snapshot.

Landing layout (what ``recsys replay`` writes, and where users drop files)::

    landing/{dataset_group}/{interactions|items|users}/dt=YYYY-MM-DD/*.csv   a day's drop
    landing/{dataset_group}/{interactions|items|users}/*.csv                 undated files

A drop ``dt=D`` holds what arrived on day D; a run whose logical date is T sees the drops whose
day has ended by T (D + 1 day <= T) and every undated file. That makes a backfill of a past
date rebuild the data "as of" that date.

* **FULL** builds the datasets from every visible file.
* **INCREMENTAL** starts from the newest validated snapshot older than this run and adds the
  visible files it has not consumed yet (by key and checksum); records whose id exists replace
  the old ones (items, users) and identical interactions are kept once.

A snapshot's id is ``{logical date}-{digest of its inputs}``: a rerun with the same inputs finds
the complete snapshot and reuses it; a rerun with changed inputs writes a new one beside it.
The manifest is written last; a snapshot without a manifest is incomplete and ignored.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd

from recsys import __version__
from recsys.data.csvio import parse_csv
from recsys.data.sources.base import DATASET_TYPES
from recsys.errors import DataError, NotFoundError
from recsys.ids import as_utc, date_stamp, stamped_id, utcnow_iso
from recsys.logs import get_logger, progress
from recsys.schema import ID_FIELD, DatasetGroup
from recsys.storage import Storage

log = get_logger(__name__)

MODES = ("FULL", "INCREMENTAL")
_DT = re.compile(r"(?:^|/)dt=(\d{4}-\d{2}-\d{2})(?:/|$)")


def landing_prefix(dataset_group: str, dataset_type: str) -> str:
    return f"landing/{dataset_group}/{dataset_type}"


def snapshots_prefix(dataset_group: str) -> str:
    return f"datasets/{dataset_group}/snapshots"


def snapshot_prefix(dataset_group: str, snapshot_id: str) -> str:
    return f"{snapshots_prefix(dataset_group)}/{snapshot_id}"


def current_pointer(dataset_group: str) -> str:
    return f"datasets/{dataset_group}/current.json"


@dataclass(frozen=True)
class LandingFile:
    key: str
    drop_date: date | None


def visible_landing_files(
    storage: Storage, dataset_group: str, dataset_type: str, as_of: datetime
) -> list[LandingFile]:
    """CSV files a run at ``as_of`` may see, oldest drop first (undated files first)."""
    prefix = landing_prefix(dataset_group, dataset_type)
    files = []
    for key in storage.find(prefix):
        if not key.lower().endswith(".csv"):
            continue
        m = _DT.search(posixpath.relpath(key, prefix))
        drop = date.fromisoformat(m.group(1)) if m else None
        if drop is not None:
            day_end = datetime(drop.year, drop.month, drop.day, tzinfo=as_of.tzinfo) + timedelta(
                days=1
            )
            if day_end > as_of:
                continue
        files.append(LandingFile(key, drop))
    return sorted(files, key=lambda f: (f.drop_date or date.min, f.key))


def list_snapshots(storage: Storage, dataset_group: str) -> list[str]:
    """Ids of complete snapshots (with a manifest), oldest first."""
    return storage.list_versions(snapshots_prefix(dataset_group), marker="manifest.json")


def read_manifest(storage: Storage, dataset_group: str, snapshot_id: str) -> dict[str, Any]:
    key = f"{snapshot_prefix(dataset_group, snapshot_id)}/manifest.json"
    if not storage.exists(key):
        raise NotFoundError(f"snapshot {snapshot_id!r} of {dataset_group!r} not found (no {key})")
    return storage.read_json(key)


def latest_validated_snapshot(
    storage: Storage, dataset_group: str, before: str | None = None
) -> str | None:
    """Newest snapshot that passed validation (and sorts before ``before``, if given)."""
    prefix = snapshots_prefix(dataset_group)
    for sid in reversed(list_snapshots(storage, dataset_group)):
        if before is not None and sid[: len(before)] >= before:
            continue
        key = f"{prefix}/{sid}/validation.json"
        if storage.exists(key) and storage.read_json(key).get("passed"):
            return sid
    return None


def _combine(dataset_type: str, frames: list[pd.DataFrame]) -> tuple[pd.DataFrame, int]:
    """Concatenate in arrival order; dedupe (interactions) or upsert by id (items/users)."""
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    before = len(df)
    id_field = ID_FIELD[dataset_type]
    if id_field is None:
        df = df.drop_duplicates(keep="first")
        # Stable: events with equal timestamps keep their arrival (file) order.
        df = df.sort_values("TIMESTAMP", kind="stable")
    else:
        df = df.drop_duplicates(subset=[id_field], keep="last")
    return df.reset_index(drop=True), before - len(df)


def run_import(
    storage: Storage,
    dataset_group: str | DatasetGroup,
    logical_date: datetime | str,
    mode: str = "FULL",
) -> dict[str, Any]:
    """Run an import job for every dataset type of the group; return the snapshot manifest."""
    group = (
        dataset_group
        if isinstance(dataset_group, DatasetGroup)
        else DatasetGroup.load(dataset_group)
    )
    mode = mode.upper()
    if mode not in MODES:
        raise DataError(f"import mode must be FULL or INCREMENTAL, got {mode!r}")
    as_of = as_utc(logical_date)
    dg = group.name

    base_id = None
    base_manifest: dict[str, Any] | None = None
    if mode == "INCREMENTAL":
        base_id = latest_validated_snapshot(storage, dg, before=date_stamp(as_of))
        if base_id is None:
            log.warning("no validated snapshot to build on: importing FULL", dataset_group=dg)
            mode = "FULL"
        else:
            base_manifest = read_manifest(storage, dg, base_id)

    # Read every visible file once: its checksum is part of the snapshot id.
    plan: dict[str, list[tuple[LandingFile, bytes, str]]] = {}
    for dtype in DATASET_TYPES:
        if dtype not in group.schemas:
            continue
        consumed = set()
        if base_manifest is not None:
            consumed = {
                (s["key"], s["sha256"])
                for s in base_manifest["datasets"].get(dtype, {}).get("sources", [])
            }
            consumed |= {
                (s["key"], s["sha256"])
                for s in base_manifest["datasets"].get(dtype, {}).get("consumed", [])
            }
        entries = []
        for lf in visible_landing_files(storage, dg, dtype, as_of):
            data = storage.read_bytes(lf.key)
            sha = hashlib.sha256(data).hexdigest()
            if (lf.key, sha) in consumed:
                continue
            entries.append((lf, data, sha))
        plan[dtype] = entries

    if not plan.get("interactions") and base_manifest is None:
        raise DataError(
            f"no interactions files visible as of {as_of.isoformat()} under "
            f"{storage.uri(landing_prefix(dg, 'interactions'))} (drops dt=YYYY-MM-DD/ count once "
            "their day has ended)"
        )

    inputs = {
        "mode": mode,
        "base": base_id,
        "schema": group.digest(),
        "sources": {t: [(lf.key, sha) for lf, _, sha in e] for t, e in plan.items()},
    }
    snapshot_id = stamped_id(as_of, inputs)
    prefix = snapshot_prefix(dg, snapshot_id)
    if storage.exists(f"{prefix}/manifest.json"):
        log.info("snapshot already complete: reusing it", snapshot_id=snapshot_id)
        return storage.read_json(f"{prefix}/manifest.json")

    datasets: dict[str, Any] = {}
    for dtype, entries in plan.items():
        schema = group.schemas[dtype]
        frames: list[pd.DataFrame] = []
        consumed_before: list[dict[str, Any]] = []
        if base_manifest is not None and dtype in base_manifest["datasets"]:
            base_info = base_manifest["datasets"][dtype]
            frames.append(storage.read_parquet(f"{snapshot_prefix(dg, base_id)}/{dtype}.parquet"))
            consumed_before = base_info.get("consumed", []) + base_info.get("sources", [])
        sources = []
        for lf, data, sha in progress(entries, desc=f"import {dtype}", total=len(entries)):
            frame = parse_csv(data, schema, file=storage.uri(lf.key))
            frames.append(frame)
            sources.append(
                {
                    "key": lf.key,
                    "sha256": sha,
                    "bytes": len(data),
                    "rows": len(frame),
                    "drop_date": lf.drop_date.isoformat() if lf.drop_date else None,
                }
            )
        if not frames:
            continue
        df, dropped = _combine(dtype, frames)
        digest = storage.write_parquet(f"{prefix}/{dtype}.parquet", df)
        datasets[dtype] = {
            "rows": len(df),
            "sha256": digest,
            "columns": {c: str(df[c].dtype) for c in df.columns},
            "sources": sources,
            "consumed": consumed_before,
            "duplicates_or_replaced": dropped,
        }
        log.info(
            "imported dataset",
            dataset_type=dtype,
            rows=len(df),
            new_files=len(sources),
            duplicates_or_replaced=dropped,
        )

    manifest = {
        "snapshot_id": snapshot_id,
        "dataset_group": dg,
        "as_of": as_of.isoformat(),
        "mode": mode,
        "base_snapshot": base_id,
        "datasets": datasets,
        "created_at": utcnow_iso(),
        "code_version": __version__,
    }
    storage.write_json(f"{prefix}/manifest.json", manifest)
    log.info("snapshot written", snapshot_id=snapshot_id, uri=storage.uri(prefix))
    return manifest


def load_snapshot_frames(
    storage: Storage, dataset_group: str, snapshot_id: str
) -> dict[str, pd.DataFrame]:
    manifest = read_manifest(storage, dataset_group, snapshot_id)
    prefix = snapshot_prefix(dataset_group, snapshot_id)
    return {t: storage.read_parquet(f"{prefix}/{t}.parquet") for t in manifest["datasets"]}
