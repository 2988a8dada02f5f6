"""Snapshot checks: columns and types, ids, declared event types, and the minimum data to train.

The report goes to ``validation.json`` beside the snapshot. Only a passing snapshot moves the
dataset group's ``current.json`` pointer, so a failed import never becomes the base of the next
INCREMENTAL import and never reaches training.
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

log = get_logger(__name__)

# Personalize's minimum data to train.
MIN_INTERACTIONS = 1000
MIN_USERS = 25
MIN_EVENTS_PER_USER = 2


def _check(name: str, passed: bool, message: str, **details: Any) -> dict[str, Any]:
    return {"check": name, "passed": bool(passed), "message": message, **details}


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
    checks = check_frames(group, frames, tuple(event_types), event_value_threshold)
    failed = [c for c in checks if not c["passed"]]
    report = {
        "snapshot_id": snapshot_id,
        "dataset_group": group.name,
        "passed": not failed,
        "checks": checks,
        "validated_at": utcnow_iso(),
    }
    storage.write_json(f"{prefix}/validation.json", report)
    for c in checks:
        (log.info if c["passed"] else log.error)(
            "validation check", check=c["check"], passed=c["passed"], message=c["message"]
        )
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
