"""Retention: ``recsys gc`` deletes old snapshots, rejects, versions, revisions, batches and
uploaded batch inputs, never what something still points at.

A dry run (the default) only reports; ``apply`` deletes. The keep rules (:class:`KeepRules`):

* anything written within the last ``days`` days stays, and so do the newest ``versions``
  complete items of each collection (a dataset group's snapshots, a solution's versions, a
  version's revisions, a campaign's batches, a campaign's ad-hoc batch jobs under
  ``batch-jobs/``), however old;
* **pointers**: each dataset group's ``current.json`` snapshot and its newest validated one
  (the next INCREMENTAL import's base); each campaign's live entry and the one before it (the
  default rollback target), and every entry of its deploy history deployed within the window
  (version, revision and snapshot); each campaign's ``batch/{c}/latest.json`` batch; the
  versions and snapshots that kept batches and revisions were built from, the snapshots that
  kept versions were trained on, the rejects of kept snapshots, the batch inputs of kept
  batches;
* **running jobs**: an item without its completion marker (``manifest.json``,
  ``version.json``, ``revision.json``, ``_SUCCESS``) that was written to within
  ``grace_hours`` is a job still running, and stays; an older one was abandoned, and goes.

Never touched: ``landing/`` (the source data a FULL import rebuilds from), ``campaigns/``
(pointers, history, gate decisions), ``locks/``. Age is the time an item was last written
(object modification time), not the logical date in its id, so a fresh backfill of an old
date is new. ``apply`` plans again and, right before each deletion, rereads the pointers and
skips anything that became referenced meanwhile (a deploy during the gc).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from recsys.errors import ConfigError
from recsys.logs import get_logger
from recsys.storage import Storage

log = get_logger(__name__)

#: (kind, completion marker) in the order items are deleted: dependants before what they use.
KINDS = ("batch", "revision", "version", "snapshot", "rejects", "batch-input")


@dataclass(frozen=True)
class KeepRules:
    days: float = 30.0
    versions: int = 3
    grace_hours: float = 24.0

    def __post_init__(self) -> None:
        if not 1 <= self.days <= 36_500:
            raise ConfigError(f"gc: --keep-days must be within 1..36500, got {self.days:g}")
        if not 1 <= int(self.versions) <= 1_000_000:
            raise ConfigError(f"gc: --keep-versions must be at least 1, got {self.versions}")
        if not 0 <= self.grace_hours <= 24 * 36_500:
            raise ConfigError(
                f"gc: --grace-hours must be within 0..876000, got {self.grace_hours:g}"
            )


@dataclass
class Item:
    kind: str
    prefix: str  # a key prefix (a folder) or, for batch inputs, a key
    complete: bool
    written_at: datetime | None
    bytes: int
    ref: tuple[str, ...]  # (group, snapshot) / (solution, version[, revision]) / (campaign, id)
    reasons: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "prefix": self.prefix,
            "written_at": self.written_at.isoformat() if self.written_at else None,
            "bytes": self.bytes,
            "complete": self.complete,
            "reasons": self.reasons,
        }


def _info(storage: Storage, prefix: str, is_file: bool = False) -> tuple[datetime | None, int]:
    """Newest modification time and total size of what is under ``prefix`` (or the key)."""
    path = storage.path(prefix)
    try:
        found = {path: storage.fs.info(path)} if is_file else storage.fs.find(path, detail=True)
    except FileNotFoundError:
        return None, 0
    newest, size = None, 0
    for info in found.values():
        if info.get("type") == "directory":
            continue
        size += int(info.get("size") or 0)
        t = _mtime(info)
        if t is not None and (newest is None or t > newest):
            newest = t
    return newest, size


def _mtime(info: dict[str, Any]) -> datetime | None:
    value = info.get("LastModified") or info.get("last_modified") or info.get("mtime")
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(float(value), tz=UTC)


def _read(storage: Storage, key: str) -> Any:
    try:
        return storage.read_json(key) if storage.exists(key) else None
    except (ValueError, OSError):
        return None


def _collect(storage: Storage) -> list[Item]:
    items: list[Item] = []

    def add(kind, prefix, marker, ref, is_file=False):
        written, size = _info(storage, prefix, is_file)
        if written is None and not size and not storage.find(prefix):
            return  # an empty "folder" (some S3 servers keep, and list, them after a delete)
        complete = True if marker is None else storage.exists(f"{prefix}/{marker}")
        items.append(Item(kind, prefix, complete, written, size, ref))

    for group in storage.list("datasets"):
        for sid in storage.list(f"datasets/{group}/snapshots"):
            add("snapshot", f"datasets/{group}/snapshots/{sid}", "manifest.json", (group, sid))
        for rid in storage.list(f"datasets/{group}/rejects"):
            add("rejects", f"datasets/{group}/rejects/{rid}", None, (group, rid))
    for sol in storage.list("solutions"):
        for vid in storage.list(f"solutions/{sol}/versions"):
            vprefix = f"solutions/{sol}/versions/{vid}"
            add("version", vprefix, "version.json", (sol, vid))
            for rev in storage.list(f"{vprefix}/revisions"):
                add("revision", f"{vprefix}/revisions/{rev}", "revision.json", (sol, vid, rev))
    for camp in storage.list("batch"):
        for bid in storage.list(f"batch/{camp}"):
            if bid.endswith(".json"):  # latest.json and other pointers
                continue
            add("batch", f"batch/{camp}/{bid}", "_SUCCESS", (camp, bid))
    for camp in storage.list("batch-jobs"):  # ad-hoc batch inference jobs: their own collection
        for bid in storage.list(f"batch-jobs/{camp}"):
            add("batch", f"batch-jobs/{camp}/{bid}", "_SUCCESS", (f"batch-jobs:{camp}", bid))
    for name in storage.list("batch-inputs"):
        add("batch-input", f"batch-inputs/{name}", None, (name,), is_file=True)
    # a version's folder includes its revisions: its own age is that of its own files
    for it in items:
        if it.kind == "version":
            own = [r for r in items if r.kind == "revision" and r.ref[:2] == it.ref]
            it.bytes -= sum(r.bytes for r in own)
            if own:
                it.written_at = _own_written(storage, it.prefix)
    return items


def _own_written(storage: Storage, prefix: str) -> datetime | None:
    newest = None
    try:
        found = storage.fs.find(storage.path(prefix), detail=True)
    except FileNotFoundError:
        return None
    for path, info in found.items():
        if "/revisions/" in str(path)[len(storage.path(prefix)) :]:
            continue
        t = _mtime(info)
        if t is not None and (newest is None or t > newest):
            newest = t
    return newest


@dataclass
class _Pointers:
    """What the pointers reference, and why (one reason string each)."""

    snapshots: dict[tuple[str, str], str] = field(default_factory=dict)
    versions: dict[tuple[str, str], str] = field(default_factory=dict)
    revisions: dict[tuple[str, str, str], str] = field(default_factory=dict)
    batches: dict[tuple[str, str], str] = field(default_factory=dict)

    def entry(self, e: dict[str, Any], group: str | None, why: str) -> None:
        sol, vid = e.get("solution"), e.get("version_id")
        if sol and vid:
            self.versions.setdefault((sol, vid), why)
            if e.get("revision"):
                self.revisions.setdefault((sol, vid, e["revision"]), why)
        if group and e.get("snapshot_id"):
            self.snapshots.setdefault((group, e["snapshot_id"]), why)


def _pointers(storage: Storage, window_start: datetime) -> _Pointers:
    from recsys.data.imports import latest_validated_snapshot

    p = _Pointers()
    for group in storage.list("datasets"):
        current = _read(storage, f"datasets/{group}/current.json")
        if current and current.get("snapshot_id"):
            p.snapshots.setdefault((group, current["snapshot_id"]), "current.json")
        base = latest_validated_snapshot(storage, group)
        if base:
            p.snapshots.setdefault((group, base), "newest validated (next INCREMENTAL base)")
    for name in storage.list("campaigns"):
        if not name.endswith(".json"):
            continue
        state = _read(storage, f"campaigns/{name}")
        if not isinstance(state, dict) or not state.get("live"):
            continue
        camp = name[: -len(".json")]
        group = _group_of(storage, state)
        history = state.get("history") or []
        p.entry(state["live"], group, f"campaign {camp}: live")
        here = (state["live"].get("version_id"), state["live"].get("revision"))
        earlier = [e for e in history if (e.get("version_id"), e.get("revision")) != here]
        if earlier:  # what `campaign rollback` goes back to by default
            p.entry(earlier[-1], group, f"campaign {camp}: previous deployment (rollback)")
        for e in history:
            deployed = _parse(e.get("deployed_at"))
            if deployed is not None and deployed >= window_start:
                p.entry(e, group, f"campaign {camp}: deployed {e['deployed_at']} (in window)")
    for camp in storage.list("batch"):
        latest = _read(storage, f"batch/{camp}/latest.json")
        if latest and latest.get("batch_id"):
            p.batches.setdefault((camp, latest["batch_id"]), f"batch/{camp}/latest.json")
    return p


def _group_of(storage: Storage, state: dict[str, Any]) -> str | None:
    live = state["live"]
    version = _read(
        storage, f"solutions/{live.get('solution')}/versions/{live.get('version_id')}/version.json"
    )
    return version.get("dataset_group") if version else None


def _parse(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def plan(storage: Storage, rules: KeepRules, now: datetime | None = None) -> dict[str, Any]:
    """What a gc would delete and keep (and why), without deleting anything."""
    now = now or datetime.now(UTC)
    window = now - timedelta(days=rules.days)
    grace = now - timedelta(hours=rules.grace_hours)
    items = _collect(storage)
    ptr = _pointers(storage, window)
    keep: dict[int, Item] = {}

    def keep_it(it: Item, why: str) -> None:
        it.reasons.append(why)
        keep[id(it)] = it

    # 1. rules that need no other item: running jobs, age, newest N, pointers
    by_collection: dict[tuple[str, tuple[str, ...]], list[Item]] = {}
    for it in items:
        if not it.complete:
            if it.written_at is None or it.written_at >= grace:
                keep_it(it, f"incomplete, written within {rules.grace_hours:g} h (running)")
            continue
        if it.written_at is not None and it.written_at >= window:
            keep_it(it, f"written within {rules.days:g} days")
        if it.kind in ("snapshot", "version", "revision", "batch"):
            by_collection.setdefault((it.kind, it.ref[:-1]), []).append(it)
        ref = it.ref
        why = {
            "snapshot": ptr.snapshots.get(ref),  # type: ignore[arg-type]
            "version": ptr.versions.get(ref),  # type: ignore[arg-type]
            "revision": ptr.revisions.get(ref),  # type: ignore[arg-type]
            "batch": ptr.batches.get(ref),  # type: ignore[arg-type]
        }.get(it.kind)
        if why:
            keep_it(it, why)
    for (kind, _), members in by_collection.items():
        members.sort(key=lambda m: (m.written_at or now, m.prefix))
        for m in members[-int(rules.versions) :]:
            keep_it(m, f"one of the newest {rules.versions} {kind}s")

    # 2. what kept items were built from, in dependency order
    index = {(it.kind, it.ref): it for it in items}

    def need(kind: str, ref: tuple[str, ...], why: str) -> None:
        it = index.get((kind, ref))
        if it is not None and why not in it.reasons:
            keep_it(it, why)

    for it in [k for k in items if k.kind == "batch" and id(k) in keep and k.complete]:
        spec = _read(storage, f"{it.prefix}/manifest.json") or {}
        why = f"used by kept batch {it.prefix}"
        if spec.get("solution") and spec.get("version_id"):
            need("version", (spec["solution"], spec["version_id"]), why)
            if spec.get("revision"):
                need("revision", (spec["solution"], spec["version_id"], spec["revision"]), why)
        if spec.get("dataset_group") and spec.get("snapshot_id"):
            need("snapshot", (spec["dataset_group"], spec["snapshot_id"]), why)
        if isinstance(spec.get("input_key"), str) and spec["input_key"].startswith("batch-inputs/"):
            need("batch-input", (spec["input_key"].split("/", 1)[1],), why)
    for it in [k for k in items if k.kind == "revision" and id(k) in keep and k.complete]:
        rev = _read(storage, f"{it.prefix}/revision.json") or {}
        need("version", it.ref[:2], f"has kept revision {it.ref[2]}")
        if rev.get("dataset_group") and rev.get("snapshot_id"):
            need("snapshot", (rev["dataset_group"], rev["snapshot_id"]), f"used by {it.prefix}")
    for it in [k for k in items if k.kind == "version" and id(k) in keep and k.complete]:
        ver = _read(storage, f"{it.prefix}/version.json") or {}
        if ver.get("dataset_group") and ver.get("snapshot_id"):
            need("snapshot", (ver["dataset_group"], ver["snapshot_id"]), f"trained {it.prefix}")
    for it in [k for k in items if k.kind == "snapshot" and id(k) in keep]:
        need("rejects", it.ref, f"rejects of kept snapshot {it.ref[1]}")

    # A running batch may read any uploaded input (inputs are content-addressed and reused):
    # while one runs, no input goes.
    running = [i.prefix for i in items if i.kind == "batch" and not i.complete and id(i) in keep]
    if running:
        for it in items:
            if it.kind == "batch-input" and id(it) not in keep:
                keep_it(it, f"a batch is running ({running[0]}): inputs may be in use")

    # A version that goes takes its revisions with it (they are inside its folder).
    doomed_versions = {it.ref for it in items if it.kind == "version" and id(it) not in keep}
    delete = []
    for it in items:
        if id(it) in keep:
            continue
        if it.kind == "revision" and it.ref[:2] in doomed_versions:
            continue  # counted with its version
        it.reasons.append(
            f"incomplete and not written for {rules.grace_hours:g} h (abandoned)"
            if not it.complete
            else f"older than {rules.days:g} days, not among the newest {rules.versions}, "
            "referenced by nothing kept"
        )
        delete.append(it)
    delete.sort(key=lambda i: (KINDS.index(i.kind), i.prefix))
    kept = sorted(keep.values(), key=lambda i: (KINDS.index(i.kind), i.prefix))
    return {
        "dry_run": True,
        "now": now.isoformat(),
        "rules": {"days": rules.days, "versions": rules.versions, "grace_hours": rules.grace_hours},
        "delete": [i.row() for i in delete],
        "keep": [i.row() for i in kept],
        "summary": {
            "delete": _count(delete),
            "keep": _count(kept),
            "bytes_freed": sum(i.bytes for i in delete),
        },
    }


def _count(items: Iterable[Item]) -> dict[str, int]:
    out: dict[str, int] = {}
    for it in items:
        out[it.kind] = out.get(it.kind, 0) + 1
    return out


def gc(
    storage: Storage, rules: KeepRules, apply: bool = False, now: datetime | None = None
) -> dict[str, Any]:
    """Plan; with ``apply``, delete what the plan says (rechecking the pointers before each)."""
    now = now or datetime.now(UTC)
    report = plan(storage, rules, now)
    report["dry_run"] = not apply
    if not apply:
        return report
    deleted, skipped = [], []
    for row in report["delete"]:
        fresh = _pointers(storage, now - timedelta(days=rules.days))
        if _referenced(row, fresh):
            skipped.append({**row, "reasons": ["referenced since the plan: kept"]})
            continue
        if row["kind"] == "batch-input":
            storage.delete(row["prefix"])
        else:
            storage.delete_prefix(row["prefix"])
        deleted.append(row["prefix"])
        log.info("gc deleted", kind=row["kind"], prefix=row["prefix"], bytes=row["bytes"])
    report["deleted"] = deleted
    report["skipped"] = skipped
    return report


def _referenced(row: dict[str, Any], p: _Pointers) -> bool:
    parts = row["prefix"].split("/")
    kind = row["kind"]
    if kind == "snapshot":
        return (parts[1], parts[3]) in p.snapshots
    if kind == "version":
        return (parts[1], parts[3]) in p.versions
    if kind == "revision":
        return (parts[1], parts[3], parts[5]) in p.revisions
    if kind == "batch":
        return (parts[1], parts[2]) in p.batches
    return False
