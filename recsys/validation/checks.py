"""Snapshot validation: the great-expectations suites, recsys' own checks, the minimum data.

Checks have a severity: an ``error`` that fails stops the run before training; a ``warning``
(rows quarantined by the import, duplicates dropped, interactions with unknown items) is
reported with its count and lets the run go on.

The report goes to ``validation.json`` beside the snapshot (one entry per check and a summary),
with great-expectations' own result in ``gx_result.json``; the task log gets one line per check.
Only a passing snapshot moves the dataset group's ``current.json`` pointer, so a failed import
never becomes the base of the next INCREMENTAL import and never reaches training.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from pandas.api import types as ptypes

from recsys.data.dataset import Dataset
from recsys.data.imports import current_pointer, read_manifest, snapshot_prefix
from recsys.errors import ValidationError
from recsys.ids import utcnow_iso
from recsys.logs import get_logger
from recsys.schema import DatasetGroup
from recsys.storage import Storage
from recsys.validation.suites import run_suites

log = get_logger(__name__)

# Personalize's minimum data to train.
MIN_INTERACTIONS = 1000
MIN_USERS = 25
MIN_EVENTS_PER_USER = 2


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


def check_frames(
    group: DatasetGroup,
    frames: dict[str, pd.DataFrame],
    event_types: tuple[str, ...] = (),
    event_value_threshold: float | None = None,
) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []
    for dtype, df in frames.items():
        schema = group.schemas[dtype]
        missing = [c for c in schema.required if c not in df.columns]
        checks.append(
            _check(
                f"{dtype}.required_columns",
                not missing,
                f"missing required columns: {', '.join(missing)}" if missing else "all present",
                missing=missing,
            )
        )
        wrong = [
            f"{f.name} ({df[f.name].dtype}, expected {f.type})"
            for f in schema.fields
            if f.name in df.columns and not _type_ok(df[f.name], f)
        ]
        checks.append(
            _check(
                f"{dtype}.column_types",
                not wrong,
                f"wrong types: {', '.join(wrong)}" if wrong else "types match the schema",
            )
        )
        for id_col in ("USER_ID", "ITEM_ID"):
            if id_col in df.columns:
                nulls = int(df[id_col].isna().sum())
                checks.append(
                    _check(
                        f"{dtype}.{id_col}_not_null",
                        nulls == 0,
                        f"{nulls} rows with an empty {id_col}",
                        rows=nulls,
                    )
                )
    inter = frames["interactions"]
    if group.event_types and "EVENT_TYPE" in inter.columns:
        unknown = inter.loc[~inter["EVENT_TYPE"].isin(list(group.event_types)), "EVENT_TYPE"]
        values = sorted(map(str, unknown.unique()))[:10]
        checks.append(
            _check(
                "interactions.event_types_declared",
                unknown.empty,
                f"{len(unknown)} interactions with undeclared EVENT_TYPE "
                f"(declared: {', '.join(group.event_types)}; found: {', '.join(values)})"
                if len(unknown)
                else "all EVENT_TYPEs declared",
                rows=len(unknown),
            )
        )
    items = frames.get("items")
    if items is not None and "ITEM_ID" in inter.columns and "ITEM_ID" in items.columns:
        unknown_items = ~inter["ITEM_ID"].isin(items["ITEM_ID"])
        n_unknown = int(unknown_items.sum())
        examples = sorted(map(str, inter.loc[unknown_items, "ITEM_ID"].unique()[:5]))
        checks.append(
            _check(
                "interactions.items_known",
                n_unknown == 0,
                f"{n_unknown} interactions refer to {inter.loc[unknown_items, 'ITEM_ID'].nunique()} "
                f"items missing from the items dataset (e.g. {', '.join(examples)})"
                if n_unknown
                else "every interaction's item is in the items dataset",
                severity="warning",
                rows=n_unknown,
            )
        )
    # Minimum data, after the solution's event filters (Personalize's rule).
    data = Dataset(inter).filter_events(event_types, event_value_threshold)
    n = len(data.interactions)
    per_user = data.interactions.groupby("USER_ID", observed=True).size()
    users_ok = int((per_user >= MIN_EVENTS_PER_USER).sum())
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
    frames = {t: storage.read_parquet(f"{prefix}/{t}.parquet") for t in manifest["datasets"]}
    gx_checks, gx_results = run_suites(group, frames)
    checks = gx_checks + import_checks(storage, manifest)
    checks += check_frames(group, frames, tuple(event_types), event_value_threshold)
    del frames
    failed = [c for c in checks if not c["passed"] and c["severity"] == "error"]
    warnings = [c for c in checks if not c["passed"] and c["severity"] == "warning"]
    storage.write_json(f"{prefix}/gx_result.json", gx_results)
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
    storage.write_json(f"{prefix}/validation.json", report)
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
