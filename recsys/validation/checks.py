"""Snapshot validation: the great-expectations suites, recsys' own checks, the minimum data.

Checks have a severity: an ``error`` that fails stops the run before training; a ``warning``
(rows quarantined by the import, duplicates dropped, interactions with unknown items) is
reported with its count and lets the run go on.

The report goes to ``validation.json`` beside the snapshot (one entry per check and a summary),
with great-expectations' own result in ``gx_result.json``; the task log gets one line per check.
Both are audit records, written once: a rerun that finds the same report writes nothing, one
whose report differs writes its own beside them, under ``validation-reruns/{utc time}-{random}/``.
The interactions are read, validated by great-expectations and checked ``BATCH_ROWS`` rows at a
time, and the results added up (one per expectation and per check, as for one whole frame);
items and users are read whole. Only a passing snapshot moves the dataset group's
``current.json`` pointer, so a failed import never becomes the base of the next INCREMENTAL
import and never reaches training.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pandas.api import types as ptypes

from recsys.data.dataset import Dataset
from recsys.data.imports import current_pointer, read_manifest, snapshot_prefix
from recsys.data.stream import ROW_GROUP_ROWS
from recsys.errors import ValidationError
from recsys.ids import rerun_stamp, utcnow_iso
from recsys.logs import get_logger
from recsys.schema import DatasetGroup
from recsys.storage import Storage
from recsys.validation.suites import SuiteRunner, merge_results, suite_checks

log = get_logger(__name__)

# Personalize's minimum data to train.
MIN_INTERACTIONS = 1000
MIN_USERS = 25
MIN_EVENTS_PER_USER = 2

INTER = "interactions"
#: Rows of the interactions read, validated by great-expectations and checked at a time (a
#: snapshot's row group). On 2M interactions of 200k users this took about 230 MiB over the
#: process's base, 512k-row batches about 300 MiB, the whole-frame validation it replaced about
#: 390 MiB (tests/validation/test_streaming_memory.py); run time was similar (5-10 s on a
#: loaded 2-core machine; each batch adds ~0.2 s of great-expectations overhead).
BATCH_ROWS = ROW_GROUP_ROWS
#: The interaction columns Dataset.filter_events needs (the minimum-data check, with filters).
_FILTER_COLUMNS = ("USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", "EVENT_VALUE")


def _check(
    name: str, passed: bool, message: str, severity: str = "error", **details: Any
) -> dict[str, Any]:
    return {
        "check": name,
        "passed": bool(passed),
        "severity": severity,
        "message": message,
        **details,
    }


def _type_ok(series: pd.Series, field) -> bool:
    if field.integral:
        return ptypes.is_integer_dtype(series)
    if field.numeric:
        return ptypes.is_numeric_dtype(series)
    if field.type == "boolean":
        return ptypes.is_bool_dtype(series)
    return ptypes.is_string_dtype(series) or ptypes.is_object_dtype(series)


def _column_checks(
    dtype: str, missing: list[str], wrong: list[str], nulls: dict[str, int]
) -> list[dict[str, Any]]:
    checks = [
        _check(
            f"{dtype}.required_columns",
            not missing,
            f"missing required columns: {', '.join(missing)}" if missing else "all present",
            missing=missing,
        ),
        _check(
            f"{dtype}.column_types",
            not wrong,
            f"wrong types: {', '.join(wrong)}" if wrong else "types match the schema",
        ),
    ]
    for id_col, n in nulls.items():
        checks.append(
            _check(f"{dtype}.{id_col}_not_null", n == 0, f"{n} rows with an empty {id_col}", rows=n)
        )
    return checks


class _ColumnStats:
    """Required columns, column types and empty ids of a dataset, fed frame by frame."""

    def __init__(self, schema) -> None:
        self.schema = schema
        self.missing: list[str] = []
        self.wrong: list[str] = []
        self.nulls: dict[str, int] = {}

    def add(self, df: pd.DataFrame) -> None:
        for c in self.schema.required:
            if c not in df.columns and c not in self.missing:
                self.missing.append(c)
        for f in self.schema.fields:
            if f.name in df.columns and not _type_ok(df[f.name], f):
                text = f"{f.name} ({df[f.name].dtype}, expected {f.type})"
                if text not in self.wrong:
                    self.wrong.append(text)
        for id_col in ("USER_ID", "ITEM_ID"):
            if id_col in df.columns:
                self.nulls[id_col] = self.nulls.get(id_col, 0) + int(df[id_col].isna().sum())

    def checks(self, dtype: str) -> list[dict[str, Any]]:
        return _column_checks(dtype, self.missing, self.wrong, self.nulls)


class InteractionChecks:
    """recsys' checks of the interactions, fed batch by batch (:meth:`add`), in O(users +
    distinct unknown items) memory: the column checks, declared EVENT_TYPEs, items known to the
    items dataset (``item_ids``: its ITEM_ID column, held whole) and the minimum data after the
    solution's event filters (rows per user summed across batches)."""

    def __init__(
        self,
        group: DatasetGroup,
        item_ids: pd.Series | None = None,
        event_types: tuple[str, ...] = (),
        event_value_threshold: float | None = None,
    ) -> None:
        self.group = group
        self.item_ids = item_ids
        self.event_types = tuple(event_types)
        self.event_value_threshold = event_value_threshold
        self.columns = _ColumnStats(group.schemas["interactions"])
        self.has_event_type = self.has_item_id = True
        self.undeclared_rows = 0
        self.undeclared: set[str] = set()
        self.unknown_item_rows = 0
        self.unknown_items: dict[Any, None] = {}  # in order of first appearance
        self.filtered_rows = 0
        self.per_user: dict[Any, int] = {}  # USER_ID -> interactions after the event filters

    def add(self, inter: pd.DataFrame) -> None:
        self.columns.add(inter)
        self.has_event_type &= "EVENT_TYPE" in inter.columns
        self.has_item_id &= "ITEM_ID" in inter.columns
        if self.group.event_types and "EVENT_TYPE" in inter.columns:
            declared = list(self.group.event_types)
            unknown = inter.loc[~inter["EVENT_TYPE"].isin(declared), "EVENT_TYPE"]
            self.undeclared_rows += len(unknown)
            self.undeclared.update(map(str, unknown.unique()))
        if self.item_ids is not None and "ITEM_ID" in inter.columns:
            mask = ~inter["ITEM_ID"].isin(self.item_ids)
            self.unknown_item_rows += int(mask.sum())
            for value in inter.loc[mask, "ITEM_ID"].unique():
                self.unknown_items.setdefault(value, None)
        if self.event_types or self.event_value_threshold is not None:
            columns = [c for c in _FILTER_COLUMNS if c in inter.columns]
            filtered = Dataset(inter[columns]).filter_events(
                self.event_types, self.event_value_threshold
            )
            inter = filtered.interactions
        self.filtered_rows += len(inter)
        counts = inter.groupby("USER_ID", observed=True).size()
        per_user = self.per_user
        get = per_user.get
        for user, n in zip(counts.index.tolist(), counts.tolist(), strict=True):
            per_user[user] = get(user, 0) + n

    def checks(self) -> list[dict[str, Any]]:
        """The column checks (as :func:`check_frames` lists them for one dataset)."""
        return self.columns.checks("interactions")

    def data_checks(self) -> list[dict[str, Any]]:
        """Declared EVENT_TYPEs, items known, minimum data."""
        checks: list[dict[str, Any]] = []
        group = self.group
        if group.event_types and self.has_event_type:
            n, values = self.undeclared_rows, sorted(self.undeclared)[:10]
            checks.append(
                _check(
                    "interactions.event_types_declared",
                    n == 0,
                    f"{n} interactions with undeclared EVENT_TYPE "
                    f"(declared: {', '.join(group.event_types)}; found: {', '.join(values)})"
                    if n
                    else "all EVENT_TYPEs declared",
                    rows=n,
                )
            )
        if self.item_ids is not None and self.has_item_id:
            n_unknown = self.unknown_item_rows
            examples = sorted(map(str, list(self.unknown_items)[:5]))
            distinct = sum(1 for v in self.unknown_items if not pd.isna(v))
            checks.append(
                _check(
                    "interactions.items_known",
                    n_unknown == 0,
                    f"{n_unknown} interactions refer to {distinct} "
                    f"items missing from the items dataset (e.g. {', '.join(examples)})"
                    if n_unknown
                    else "every interaction's item is in the items dataset",
                    severity="warning",
                    rows=n_unknown,
                )
            )
        # Minimum data, after the solution's event filters (Personalize's rule).
        n = self.filtered_rows
        users_ok = sum(1 for count in self.per_user.values() if count >= MIN_EVENTS_PER_USER)
        passed = n >= MIN_INTERACTIONS and users_ok >= MIN_USERS
        checks.append(
            _check(
                "interactions.minimum_data",
                passed,
                f"found {n} interactions and {users_ok} users with >= {MIN_EVENTS_PER_USER} "
                f"interactions after event filtering; need {MIN_INTERACTIONS} and {MIN_USERS}",
                interactions=n,
                users_with_2=users_ok,
            )
        )
        return checks


def check_frames(
    group: DatasetGroup,
    frames: dict[str, pd.DataFrame],
    event_types: tuple[str, ...] = (),
    event_value_threshold: float | None = None,
) -> list[dict[str, Any]]:
    """recsys' checks of whole frames (the interactions as one batch)."""
    items = frames.get("items")
    inter = InteractionChecks(
        group,
        items["ITEM_ID"] if items is not None and "ITEM_ID" in items.columns else None,
        event_types,
        event_value_threshold,
    )
    inter.add(frames["interactions"])
    checks: list[dict[str, Any]] = []
    for dtype, df in frames.items():
        if dtype == "interactions":
            checks += inter.checks()
        else:
            stats = _ColumnStats(group.schemas[dtype])
            stats.add(df)
            checks += stats.checks(dtype)
    return checks + inter.data_checks()


def import_checks(storage: Storage, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Warnings from the import: rows quarantined, duplicates dropped or ids replaced."""
    checks = []
    for dtype, info in manifest["datasets"].items():
        rejected = int(info.get("rejected", 0))
        where = storage.uri(manifest["rejects"]) if manifest.get("rejects") else None
        checks.append(
            _check(
                f"{dtype}.rejected_rows",
                rejected == 0,
                f"{rejected} rows quarantined by the import (within the thresholds), in {where}"
                if rejected
                else "no rows rejected",
                severity="warning",
                rows=rejected,
            )
        )
        dropped = int(info.get("duplicates_or_replaced", 0))
        what = "identical interactions kept once" if dtype == "interactions" else "ids replaced"
        checks.append(
            _check(
                f"{dtype}.duplicates",
                dropped == 0,
                f"{dropped} {what}" if dropped else "no duplicates",
                severity="warning",
                rows=dropped,
            )
        )
    return checks


def log_summary(report: dict[str, Any]) -> None:
    """One line per check in the task log, then the verdict."""
    for c in report["checks"]:
        status = "ok" if c["passed"] else ("FAILED" if c["severity"] == "error" else "WARNING")
        (log.info if c["passed"] else log.warning if status == "WARNING" else log.error)(
            f"validation {status:<7} {c['check']}: {c['message']}"
        )
    s = report["summary"]
    (log.info if report["passed"] else log.error)(
        f"validation {'passed' if report['passed'] else 'FAILED'}: {s['checks']} checks, "
        f"{s['failed']} failed, {s['warnings']} warnings",
        snapshot_id=report["snapshot_id"],
        rows=s["rows"],
        rejected=s["rejected"],
    )


def _interaction_batches(storage: Storage, key: str) -> Iterator[pd.DataFrame]:
    """The interactions file in frames of BATCH_ROWS rows, indexed by row number in the file
    (so GX's example row indices are the whole file's); one empty frame for an empty file."""
    with storage.open(key) as f:
        file = pq.ParquetFile(f)
        start = batches = 0
        for record_batch in file.iter_batches(batch_size=BATCH_ROWS):
            frame = pa.Table.from_batches([record_batch], schema=file.schema_arrow).to_pandas()
            frame.index = pd.RangeIndex(start, start + len(frame))
            start += len(frame)
            batches += 1
            yield frame
        if not batches:
            yield file.schema_arrow.empty_table().to_pandas()


def validate_snapshot(
    storage: Storage,
    group: DatasetGroup,
    snapshot_id: str,
    event_types: tuple[str, ...] = (),
    event_value_threshold: float | None = None,
) -> dict[str, Any]:
    """Check a snapshot, store the report, advance ``current.json`` if it passed.

    Raises ValidationError (with every failed check in the message) if it did not pass.
    """
    manifest = read_manifest(storage, group.name, snapshot_id)
    prefix = snapshot_prefix(group.name, snapshot_id)
    dtypes = list(manifest["datasets"])
    runner = SuiteRunner(group, dtypes)
    # Items and users are read whole (at most a few million rows): their suites check that ids
    # are unique, which needs every row at once. The interactions are read and checked batch by
    # batch; their expectations are all per row, so per-batch results add up exactly.
    frames = {t: storage.read_parquet(f"{prefix}/{t}.parquet") for t in dtypes if t != INTER}
    gx = {t: runner.run(t, df) for t, df in frames.items()}
    items = frames.get("items")
    inter = InteractionChecks(
        group,
        items["ITEM_ID"] if items is not None and "ITEM_ID" in items.columns else None,
        tuple(event_types),
        event_value_threshold,
    )
    batches = 0
    for batch in _interaction_batches(storage, f"{prefix}/{INTER}.parquet"):
        result = runner.run(INTER, batch)
        gx[INTER] = result if INTER not in gx else merge_results(gx[INTER], result)
        inter.add(batch)
        batches += 1
    # (GX's meta, e.g. its batch_markers, is the first batch's.)
    gx[INTER].meta["recsys_batches"] = {"batches": batches, "batch_rows": BATCH_ROWS}
    gx = {t: gx[t] for t in dtypes}
    gx_checks, gx_results = suite_checks(gx)
    checks = gx_checks + import_checks(storage, manifest)
    for dtype in dtypes:
        if dtype == INTER:
            checks += inter.checks()
        else:
            stats = _ColumnStats(group.schemas[dtype])
            stats.add(frames[dtype])
            checks += stats.checks(dtype)
    checks += inter.data_checks()
    del frames, items, inter
    failed = [c for c in checks if not c["passed"] and c["severity"] == "error"]
    warnings = [c for c in checks if not c["passed"] and c["severity"] == "warning"]
    report = {
        "snapshot_id": snapshot_id,
        "dataset_group": group.name,
        "passed": not failed,
        "summary": {
            "checks": len(checks),
            "failed": len(failed),
            "warnings": len(warnings),
            "rows": {t: d["rows"] for t, d in manifest["datasets"].items()},
            "rejected": {t: d.get("rejected", 0) for t, d in manifest["datasets"].items()},
        },
        "checks": checks,
        "great_expectations": {
            "result": "gx_result.json",
            "success": {t: r["success"] for t, r in gx_results.items()},
            "statistics": {t: r["statistics"] for t, r in gx_results.items()},
        },
        "validated_at": utcnow_iso(),
    }
    write_records(storage, prefix, report, gx_results)
    log_summary(report)
    if failed:
        raise ValidationError(
            f"snapshot {snapshot_id} failed validation: "
            + "; ".join(f"{c['check']}: {c['message']}" for c in failed)
        )
    pointer = current_pointer(group.name)
    current = storage.read_json(pointer) if storage.exists(pointer) else None
    if current is None or current["as_of"] <= manifest["as_of"]:
        storage.write_pointer(
            pointer,
            {"snapshot_id": snapshot_id, "as_of": manifest["as_of"], "updated_at": utcnow_iso()},
        )
    return report


def write_records(
    storage: Storage, prefix: str, report: dict[str, Any], gx_results: dict[str, Any]
) -> str | None:
    """Store ``validation.json`` + ``gx_result.json`` write-once; the folder written, or None.

    The first validation of a snapshot writes them beside it. A rerun never rewrites them: when
    its report equals the stored one (but for ``validated_at``) it writes nothing, so a rerun
    leaves the same objects; otherwise (e.g. a solution's event filter) its own pair goes to
    ``validation-reruns/{time}-{random}/``.
    """
    key = f"{prefix}/validation.json"
    if storage.exists(key):
        stored = storage.read_json(key)
        if _same_report(stored, report):
            return None
        folder = f"{prefix}/validation-reruns/{rerun_stamp()}"
    else:
        folder = prefix
    storage.write_json(f"{folder}/gx_result.json", gx_results)
    if not storage.write_json_once(f"{folder}/validation.json", report):  # lost a race
        folder = f"{prefix}/validation-reruns/{rerun_stamp()}"
        storage.write_json(f"{folder}/gx_result.json", gx_results)
        storage.write_json(f"{folder}/validation.json", report)
    return folder


def _same_report(a: dict[str, Any], b: dict[str, Any]) -> bool:
    from recsys.storage import json_dumps

    def text(r: dict[str, Any]) -> str:
        return json_dumps({k: v for k, v in r.items() if k != "validated_at"})

    return text(a) == text(b)
