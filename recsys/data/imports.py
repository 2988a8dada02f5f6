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

Files are streamed (checksummed, then parsed block by block), never read whole into memory, and
so is the snapshot: each block of typed rows goes to a sink (:mod:`recsys.data.stream`) that
writes a local Parquet file row group by row group, uploaded once the thresholds have passed.
Interactions are deduplicated with a set of 64-bit row hashes and sorted by an external merge
(8 bytes per row held for each); items and users are held whole (as Arrow columns) for the
last-record-wins upsert. An INCREMENTAL import reads its base snapshot row group by row group. A
record that breaks a row rule (see :mod:`recsys.data.csvio`) is quarantined under
``datasets/{group}/rejects/{snapshot_id}/{type}/{file}`` — the file's header and the rejected
records byte for byte, so a fixed copy can be dropped again — with ``{file}.reasons.csv`` giving
line, column and reason for each. If a dataset's rejected share of this import's new records is
above the group's ``validation.max_reject_fraction`` (or above ``max_rejected_rows``), the
import fails after writing the rejects and a ``report.json`` beside them, and no snapshot is
written; otherwise the snapshot holds every good row and the manifest counts the rejects.
"""

from __future__ import annotations

import csv
import io
import os
import posixpath
import re
import tempfile
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd

from recsys import __version__
from recsys.data import csvio
from recsys.data.csvio import CsvReader, Reject, RowRules
from recsys.data.sources.base import DATASET_TYPES
from recsys.data.stream import InteractionsSink, UpsertSink, iter_parquet, snapshot_frame_schema
from recsys.errors import DataError, NotFoundError, ValidationError
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


def rejects_prefix(dataset_group: str, import_id: str) -> str:
    return f"datasets/{dataset_group}/rejects/{import_id}"


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


def _unconsumed(
    storage: Storage, group: DatasetGroup, as_of: datetime, base_manifest: dict[str, Any] | None
) -> dict[str, list[tuple[LandingFile, int, str]]]:
    """Per dataset type: the visible files (with size, sha256) the base has not consumed."""
    plan: dict[str, list[tuple[LandingFile, int, str]]] = {}
    for dtype in DATASET_TYPES:
        if dtype not in group.schemas:
            continue
        consumed = set()
        if base_manifest is not None:
            info = base_manifest["datasets"].get(dtype, {})
            consumed = {
                (s["key"], s["sha256"]) for s in info.get("sources", []) + info.get("consumed", [])
            }
        entries = []
        for lf in visible_landing_files(storage, group.name, dtype, as_of):
            sha, size = storage.checksum(lf.key)
            if (lf.key, sha) in consumed:
                continue
            entries.append((lf, size, sha))
        plan[dtype] = entries
    return plan


def pending_files(
    storage: Storage, dataset_group: str | DatasetGroup, logical_date: datetime | str
) -> dict[str, Any]:
    """What an INCREMENTAL import at ``logical_date`` would add: the base snapshot and, per
    dataset type, the keys of visible files it has not consumed (empty lists: nothing new)."""
    group = (
        dataset_group
        if isinstance(dataset_group, DatasetGroup)
        else DatasetGroup.load(dataset_group)
    )
    as_of = as_utc(logical_date)
    base_id = latest_validated_snapshot(storage, group.name, before=date_stamp(as_of))
    base = read_manifest(storage, group.name, base_id) if base_id else None
    plan = _unconsumed(storage, group, as_of, base)
    return {
        "base_snapshot": base_id,
        "files": {t: [lf.key for lf, _, _ in e] for t, e in plan.items()},
    }


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

    # Checksum every visible file (streamed): the checksums are part of the snapshot id.
    plan = _unconsumed(storage, group, as_of, base_manifest)

    if not plan.get("interactions") and base_manifest is None:
        from recsys.data.landing import describe_not_visible, not_yet_visible

        hidden = describe_not_visible(not_yet_visible(storage, group, as_of))
        raise DataError(
            f"no interactions files visible as of {as_of.isoformat()} under "
            f"{storage.uri(landing_prefix(dg, 'interactions'))} (drops dt=YYYY-MM-DD/ count once "
            f"their day has ended){'; ' + hidden if hidden else ''}"
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

    rules = RowRules.for_group(group)
    rej_prefix = rejects_prefix(dg, snapshot_id)
    # dtype -> (sink, sources, consumed before); sinks write local Parquet files under workdir
    parsed: dict[str, tuple[InteractionsSink | UpsertSink, list[dict], list[dict]]] = {}
    quarantine: list[_Quarantine] = []
    workdir = tempfile.TemporaryDirectory(prefix="recsys-import-")  # noqa: SIM115 - cleaned up
    try:
        for dtype, entries in plan.items():
            schema = group.schemas[dtype]
            id_field = ID_FIELD[dtype]
            sink = (
                InteractionsSink(schema, workdir.name)
                if id_field is None
                else UpsertSink(schema, id_field)
            )
            consumed_before: list[dict[str, Any]] = []
            has_base = base_manifest is not None and dtype in base_manifest["datasets"]
            if has_base:
                base_info = base_manifest["datasets"][dtype]
                # The base snapshot streams in row group by row group, ahead of the new files.
                with storage.open(f"{snapshot_prefix(dg, base_id)}/{dtype}.parquet") as f:
                    for frame in iter_parquet(f):
                        sink.add(frame)
                consumed_before = base_info.get("consumed", []) + base_info.get("sources", [])
            sources = []
            for lf, size, sha in progress(entries, desc=f"import {dtype}", total=len(entries)):
                rel = posixpath.relpath(lf.key, landing_prefix(dg, dtype))
                q = _Quarantine(f"{rej_prefix}/{dtype}/{rel}", storage.uri(lf.key), dtype)
                quarantine.append(q)
                with storage.open(lf.key) as stream:
                    reader = CsvReader(
                        stream, schema, storage.uri(lf.key), rules, csvio.BLOCK_BYTES
                    )
                    for chunk in reader:
                        sink.add(chunk.frame)
                        if chunk.rejects:
                            q.add(reader.header_raw, chunk.rejects)
                _log_file(reader, lf.key)
                sources.append(
                    {
                        "key": lf.key,
                        "sha256": sha,
                        "bytes": size,
                        "rows": reader.rows,
                        "rejected": reader.rejected,
                        "blank_lines": reader.blank_lines,
                        "ignored_columns": reader.ignored_columns,
                        "rejects": q.key if q.count else None,
                        "drop_date": lf.drop_date.isoformat() if lf.drop_date else None,
                    }
                )
            if sources or has_base:  # header-only files give an empty dataset
                parsed[dtype] = (sink, sources, consumed_before)
        failures = _over_threshold(group, parsed, quarantine)
        written = [q.write(storage) for q in quarantine if q.count]
        if failures:
            report = {
                "import_id": snapshot_id,
                "dataset_group": dg,
                "as_of": as_of.isoformat(),
                "passed": False,
                "failures": [f["message"] for f in failures],
                "datasets": {
                    t: {"sources": srcs, "rejected": sum(s["rejected"] for s in srcs)}
                    for t, (_, srcs, _) in parsed.items()
                },
                "rejects": written,
                "created_at": utcnow_iso(),
            }
            storage.write_json(f"{rej_prefix}/report.json", report)
            first = failures[0]
            raise ValidationError(
                f"{first['reject'].reason} — {first['message']}; every rejected row with its "
                f"reason is under {storage.uri(rej_prefix)}",
                file=first["file"],
                row=first["reject"].line,
                column=first["reject"].column,
            )
        for q in quarantine:
            q.close()
        quarantine = []

        datasets: dict[str, Any] = {}
        for dtype, (sink, sources, consumed_before) in parsed.items():
            local = os.path.join(workdir.name, f"{dtype}.parquet")
            sink.finish(local)
            with open(local, "rb") as f:
                digest = storage.write_stream(f"{prefix}/{dtype}.parquet", f)
            os.unlink(local)
            rejected = sum(s["rejected"] for s in sources)
            dtypes, _ = snapshot_frame_schema(group.schemas[dtype])
            datasets[dtype] = {
                "rows": sink.rows,
                "sha256": digest,
                "columns": {c: str(t) for c, t in dtypes.items()},
                "sources": sources,
                "consumed": consumed_before,
                "duplicates_or_replaced": sink.dropped,
                "rejected": rejected,
            }
            log.info(
                "imported dataset",
                dataset_type=dtype,
                rows=sink.rows,
                new_files=len(sources),
                rejected=rejected,
                duplicates_or_replaced=sink.dropped,
            )
    finally:
        for q in quarantine:
            q.close()
        workdir.cleanup()

    manifest = {
        "snapshot_id": snapshot_id,
        "dataset_group": dg,
        "as_of": as_of.isoformat(),
        "mode": mode,
        "base_snapshot": base_id,
        "datasets": datasets,
        "rejects": rej_prefix if any(d["rejected"] for d in datasets.values()) else None,
        "created_at": utcnow_iso(),
        "code_version": __version__,
    }
    storage.write_json(f"{prefix}/manifest.json", manifest)
    log.info("snapshot written", snapshot_id=snapshot_id, uri=storage.uri(prefix))
    return manifest


class _Quarantine:
    """Rejected records of one source file, spooled to local disk until they are written."""

    def __init__(self, key: str, file: str, dataset_type: str) -> None:
        self.key = key
        self.file = file
        self.dataset_type = dataset_type
        self.count = 0
        self.first: Reject | None = None
        self._raw = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115 - closed
        self._reasons = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115
        self._reasons_text = io.TextIOWrapper(self._reasons, encoding="utf-8", newline="")
        self._writer = csv.writer(self._reasons_text, lineterminator="\n")

    def add(self, header_raw: bytes, rejects: list[Reject]) -> None:
        if not self.count:
            self.first = rejects[0]
            self._raw.write(header_raw if header_raw.endswith(b"\n") else header_raw + b"\n")
            self._writer.writerow(["line", "column", "reason", "record"])
        for r in rejects:
            self._raw.write(r.raw + b"\n")
            self._writer.writerow(
                [r.line, r.column or "", r.reason, r.raw.decode("utf-8", "backslashreplace")]
            )
        self.count += len(rejects)

    def write(self, storage: Storage) -> dict[str, Any]:
        self._raw.seek(0)
        storage.write_stream(self.key, self._raw)
        self._reasons_text.flush()
        self._reasons.seek(0)
        storage.write_stream(f"{self.key}.reasons.csv", self._reasons)
        log.warning(
            "rows quarantined",
            file=self.file,
            rejected=self.count,
            rejects=storage.uri(self.key),
            first=f"row {self.first.line}: {self.first.reason}" if self.first else None,
        )
        return {
            "file": self.file,
            "rejected": self.count,
            "records": self.key,
            "reasons": f"{self.key}.reasons.csv",
        }

    def close(self) -> None:
        self._reasons_text.close()
        self._raw.close()


def _log_file(reader: CsvReader, key: str) -> None:
    if reader.records == 0:
        log.warning("file has a header and no records", file=key)
    if reader.ignored_columns:
        log.warning(
            "columns not in the schema are ignored", file=key, columns=reader.ignored_columns
        )
    log.info(
        "parsed file",
        file=key,
        rows=reader.rows,
        rejected=reader.rejected,
        blank_lines=reader.blank_lines,
    )


def _over_threshold(group: DatasetGroup, parsed, quarantine: list[_Quarantine]) -> list[dict]:
    """The datasets whose rejects are above the group's thresholds, with a message each."""
    policy = group.validation
    failures = []
    for dtype, (_, sources, _) in parsed.items():
        rejected = sum(s["rejected"] for s in sources)
        records = rejected + sum(s["rows"] for s in sources)
        if not rejected:
            continue
        limits = []
        if rejected > policy.max_reject_fraction * records:
            limits.append(f"max_reject_fraction {policy.max_reject_fraction:g}")
        if policy.max_rejected_rows is not None and rejected > policy.max_rejected_rows:
            limits.append(f"max_rejected_rows {policy.max_rejected_rows}")
        if not limits:
            continue
        q = next(q for q in quarantine if q.dataset_type == dtype and q.count)
        failures.append(
            {
                "dataset_type": dtype,
                "file": q.file,
                "reject": q.first,
                "message": f"{rejected} of {records} {dtype} records rejected "
                f"({100 * rejected / records:.2f}%), above the dataset group's "
                f"{' and '.join(limits)} (validation: in configs/dataset_groups/{group.name}.yaml)",
            }
        )
    return failures


def load_snapshot_frames(
    storage: Storage, dataset_group: str, snapshot_id: str
) -> dict[str, pd.DataFrame]:
    manifest = read_manifest(storage, dataset_group, snapshot_id)
    prefix = snapshot_prefix(dataset_group, snapshot_id)
    return {t: storage.read_parquet(f"{prefix}/{t}.parquet") for t in manifest["datasets"]}
