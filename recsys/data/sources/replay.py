"""Replay a data set's history into the landing prefix as it would have arrived.

Interactions go out as daily drops (``dt=YYYY-MM-DD``) for the last ``days`` days up to and
including ``until``; everything older is one drop dated the day before that window. Items and
users arrive on the day of their ``CREATION_TIMESTAMP`` (items) or first interaction; those
with neither belong to the initial catalogue drop. Nothing after ``until`` is written, so DAG
runs and backfills over a date range see the data as it was. Rerunning writes the same files.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pandas as pd

from recsys.data.imports import landing_prefix
from recsys.data.sources.base import PersonalizeData
from recsys.errors import DataError
from recsys.logs import get_logger, progress
from recsys.storage import Storage

log = get_logger(__name__)


def _days(ts: pd.Series) -> pd.Series:
    return pd.to_datetime(ts.astype("int64"), unit="s", utc=True).dt.date


def replay(
    storage: Storage, data: PersonalizeData, dataset_group: str, until: date | str, days: int = 30
) -> dict[str, Any]:
    """Write drops for every day up to ``until`` (inclusive); return what was written."""
    until = date.fromisoformat(until) if isinstance(until, str) else until
    if days < 1:
        raise DataError(f"--days must be >= 1, got {days}")
    window_start = until - timedelta(days=days - 1)
    initial = window_start - timedelta(days=1)

    inter = data.interactions
    inter_day = _days(inter["TIMESTAMP"])
    if not (inter_day <= until).any():
        first = inter_day.min()
        raise DataError(f"no interactions on or before {until} (the data starts on {first})")
    drop_day = inter_day.where(inter_day >= window_start, initial)
    first_seen = inter.assign(_day=inter_day).groupby("ITEM_ID", sort=False)["_day"].min()
    user_first = inter.assign(_day=inter_day).groupby("USER_ID", sort=False)["_day"].min()

    written: dict[str, list[str]] = {"interactions": [], "items": [], "users": []}
    plan: list[tuple[str, date, pd.DataFrame]] = []
    mask = inter_day <= until
    for day, frame in inter[mask].groupby(drop_day[mask], sort=True):
        plan.append(("interactions", day, frame))
    if data.items is not None:
        items = data.items
        arrival = items["ITEM_ID"].map(first_seen)
        if "CREATION_TIMESTAMP" in items.columns:
            created = items["CREATION_TIMESTAMP"]
            has = created.notna()
            arrival = arrival.astype(object)
            arrival[has] = _days(created[has]).to_numpy()
        arrival = arrival.fillna(initial).map(lambda d: max(d, initial))
        keep = arrival <= until
        for day, frame in items[keep].groupby(arrival[keep], sort=True):
            plan.append(("items", day, frame))
    if data.users is not None:
        users = data.users
        arrival = users["USER_ID"].map(user_first).fillna(initial).map(lambda d: max(d, initial))
        keep = arrival <= until
        for day, frame in users[keep].groupby(arrival[keep], sort=True):
            plan.append(("users", day, frame))

    for dtype, day, frame in progress(plan, desc="replay", total=len(plan)):
        key = f"{landing_prefix(dataset_group, dtype)}/dt={day.isoformat()}/part-00000.csv"
        storage.write_text(key, frame.to_csv(index=False))
        written[dtype].append(key)
    summary = {
        "dataset_group": dataset_group,
        "until": until.isoformat(),
        "window_start": window_start.isoformat(),
        "files": {k: len(v) for k, v in written.items()},
        "interactions": int(mask.sum()),
        "landing": storage.uri(f"landing/{dataset_group}"),
    }
    log.info(
        "replayed",
        until=summary["until"],
        interactions=summary["interactions"],
        files=summary["files"],
    )
    return summary
