"""Landing files from a data location: ``recsys import --from`` (Personalize's import job).

Personalize's ``CreateDatasetImportJob`` takes a ``dataLocation`` (a CSV file or a prefix in
S3). Here :func:`land` copies such files, local or ``s3://``, into the landing layout of
:mod:`recsys.data.imports`::

    landing/{dataset_group}/{dataset_type}/dt={drop date}/{name}-{sha256[:12]}.csv

with the drop date that the import for the run's logical date sees: a drop ``dt=D`` is visible
once day D has ended, so an import as of ``T`` gets ``D = T's day - 1``. The object name is
derived from the source (letters, digits, ``_``, ``-`` only, at most 64 characters) plus its
checksum: the source path itself never becomes a key, landing the same content again is a
no-op, and two different files with one name both land. Each file's header (and first block
of records) is checked against the dataset's schema before it lands, so a file that the import
would refuse never reaches ``landing/``, where every later import would trip over it.

:func:`not_yet_visible` lists landed drops the import at a date does not see yet, for the
import's output and its "nothing visible" error.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import IO, Any

import fsspec

from recsys import config
from recsys.data.csvio import CsvReader, RowRules
from recsys.data.imports import _DT, landing_prefix
from recsys.data.sources.base import DATASET_TYPES
from recsys.errors import ConfigError, DataError, NotFoundError
from recsys.ids import as_utc
from recsys.logs import get_logger
from recsys.schema import DatasetGroup
from recsys.storage import Storage

log = get_logger(__name__)

#: dataset group (and other config) names: what may appear as one segment of a key.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_CHECK_BYTES = 1 << 16  # the header and first records are checked before landing


def check_name(kind: str, name: str) -> str:
    """``name`` if it is a plain name (letters, digits, ``_``, ``-``), else ConfigError."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigError(
            f"{kind} name {name!r} is not allowed: use letters, digits, '_' and '-' "
            "(at most 64, starting with a letter or digit)"
        )
    return name


def drop_date_for(logical_date: Any) -> date:
    """The drop date an import as of ``logical_date`` sees: the day before its own day."""
    day = as_utc(logical_date).date()
    if day == date.min:
        raise ConfigError(f"--date {logical_date!r}: no day before it to date the drop")
    return day - timedelta(days=1)


def visible_from(drop: date) -> datetime:
    """When a drop ``dt=drop`` becomes visible: the end of its day (UTC)."""
    start = datetime(drop.year, drop.month, drop.day, tzinfo=UTC)
    return datetime.max.replace(tzinfo=UTC) if drop == date.max else start + timedelta(days=1)


def infer_type(name: str) -> str | None:
    """The dataset type a file name says (``interactions.csv``, ``items-2024.csv``...)."""
    low = name.lower()
    found = [t for t in DATASET_TYPES if t.rstrip("s") in low]
    return found[0] if len(found) == 1 else None


@dataclass(frozen=True)
class SourceFile:
    fs: Any  # fsspec filesystem
    path: str  # path on that filesystem
    uri: str  # for messages
    rel: str  # path relative to the given location (for type inference)


def resolve_sources(source: str, storage: Storage) -> list[SourceFile]:
    """The CSV files a ``--from`` location names: one file, a folder, or a name prefix.

    ``s3://`` locations are read with the storage's S3 connection when the storage is on S3
    (same endpoint and credentials), else with the environment's."""
    if not isinstance(source, str) or not source.strip():
        raise ConfigError("--from needs a CSV file or prefix (local path or s3://bucket/key)")
    protocol, sep, rest = source.partition("://")
    if sep and protocol in ("s3", "s3a"):
        fs = storage.fs if storage.protocol == "s3" else _s3_fs()
        path, scheme = rest.strip("/"), "s3://"
        if not path:
            raise ConfigError(f"--from {source!r}: name a bucket and a key or prefix")
    elif sep and protocol != "file":
        raise ConfigError(f"--from {source!r}: use a local path or s3://bucket/key")
    else:
        fs = fsspec.filesystem("file")
        path, scheme = os.path.abspath(rest if sep else source), ""
    try:
        if fs.isfile(path):
            base, candidates = posixpath.dirname(path), [path]
        elif fs.isdir(path):
            base, candidates = path, list(fs.find(path))
        else:  # a name prefix: every file below its folder whose path starts with it
            base = posixpath.dirname(path)
            candidates = [p for p in fs.find(base) if str(p).startswith(path)] if base else []
    except FileNotFoundError:
        candidates, base = [], path
    except OSError as exc:
        raise NotFoundError(f"--from {source!r}: cannot read it: {exc}") from exc
    files = []
    for p in sorted(str(c) for c in candidates):
        name = posixpath.basename(p)
        if not name.lower().endswith(".csv") or name.startswith("."):
            continue
        rel = posixpath.relpath(p, base) if base else name
        files.append(SourceFile(fs, p, f"{scheme}{p}", rel))
    if not files:
        raise NotFoundError(f"--from {source!r}: no .csv file there (a file, folder or prefix)")
    return files


def _s3_fs() -> Any:
    return fsspec.filesystem("s3", skip_instance_cache=True, **config.s3_storage_options())


def _landed_name(src: SourceFile, sha: str) -> str:
    stem = posixpath.basename(src.path)[: -len(".csv")]
    safe = _UNSAFE.sub("_", stem).strip("_")[:64] or "data"
    return f"{safe}-{sha[:12]}.csv"


def _sha256(fs: Any, path: str) -> str:
    import hashlib

    h = hashlib.sha256()
    with fs.open(path, "rb") as f:
        while block := f.read(8 << 20):
            h.update(block)
    return h.hexdigest()


def _check_file(stream: IO[bytes], group: DatasetGroup, dataset_type: str, uri: str) -> None:
    """The header and first block parse against the schema (whole-file problems raise)."""
    reader = CsvReader(
        stream, group.schemas[dataset_type], uri, RowRules.for_group(group), _CHECK_BYTES
    )
    for _ in reader:
        break


def land(
    storage: Storage,
    group: DatasetGroup,
    logical_date: Any,
    source: str,
    dataset_type: str | None = None,
) -> list[dict[str, Any]]:
    """Copy the CSV files at ``source`` into ``landing/`` for the import at ``logical_date``.

    The dataset type is ``dataset_type`` or, per file, what its name says. Returns one entry
    per file: source, key, dataset type, drop date, and whether it was already there."""
    check_name("dataset group", group.name)
    if dataset_type is not None and dataset_type not in DATASET_TYPES:
        raise ConfigError(f"--type {dataset_type!r}: use one of {', '.join(DATASET_TYPES)}")
    drop = drop_date_for(logical_date)
    files = resolve_sources(source, storage)
    planned = []
    for src in files:
        dtype = dataset_type or infer_type(posixpath.basename(src.path)) or infer_type(src.rel)
        if dtype is None:
            raise ConfigError(
                f"{src.uri}: cannot tell the dataset type from the file name "
                f"(interactions, items or users): pass --type"
            )
        if dtype not in group.schemas:
            raise ConfigError(
                f"{src.uri}: dataset group {group.name!r} has no {dtype} schema "
                f"(configs/dataset_groups/{group.name}.yaml declares "
                f"{', '.join(sorted(group.schemas))})"
            )
        with src.fs.open(src.path, "rb") as f:
            _check_file(f, group, dtype, src.uri)
        planned.append((src, dtype))

    out = []
    for src, dtype in planned:
        sha = _sha256(src.fs, src.path)
        name = _landed_name(src, sha)
        prefix = landing_prefix(group.name, dtype)
        existing = _already_landed(storage, prefix, sha, drop)
        key = existing or f"{prefix}/dt={drop.isoformat()}/{name}"
        if existing is None:
            with src.fs.open(src.path, "rb") as f:
                written = storage.write_stream(key, f)
            if written != sha:
                storage.delete(key)
                raise DataError(f"{src.uri} changed while it was copied; run the import again")
        log.info("landed", source=src.uri, key=key, already=existing is not None)
        out.append(
            {
                "source": src.uri,
                "key": key,
                "dataset_type": dtype,
                "drop_date": _drop_of(key) or drop.isoformat(),
                "sha256": sha,
                "already_landed": existing is not None,
            }
        )
    return out


def _drop_of(key: str) -> str | None:
    m = _DT.search(key)
    return m.group(1) if m else None


def _already_landed(storage: Storage, prefix: str, sha: str, drop: date) -> str | None:
    """A landed copy of this content (same checksum suffix) that is visible by ``drop``."""
    suffix = f"-{sha[:12]}.csv"
    for key in storage.find(prefix):
        if not key.endswith(suffix):
            continue
        d = _drop_of(key)
        try:
            visible = d is None or date.fromisoformat(d) <= drop
        except ValueError:
            continue
        if visible and storage.checksum(key)[0] == sha:
            return key
    return None


def not_yet_visible(
    storage: Storage, group: DatasetGroup, logical_date: Any
) -> list[dict[str, Any]]:
    """Landed CSV drops an import as of ``logical_date`` does not see yet, and from when."""
    as_of = as_utc(logical_date)
    out = []
    for dtype in DATASET_TYPES:
        if dtype not in group.schemas:
            continue
        for key in storage.find(landing_prefix(group.name, dtype)):
            d = _drop_of(key)
            if not key.lower().endswith(".csv") or d is None:
                continue
            try:
                when = visible_from(date.fromisoformat(d))
            except ValueError:  # not a calendar date: the import itself says so
                continue
            if when > as_of:
                out.append(
                    {
                        "key": key,
                        "dataset_type": dtype,
                        "drop_date": d,
                        "visible_from": when.isoformat(),
                        "why": f"a drop dt={d} holds day {d}'s data: imports see it once that "
                        f"day has ended ({when.isoformat()}), this one is as of "
                        f"{as_of.isoformat()}",
                    }
                )
    return out


def describe_not_visible(hidden: list[dict[str, Any]]) -> str:
    """One line for messages: how many drops are not visible yet, and the first one's why."""
    if not hidden:
        return ""
    first = hidden[0]
    return f"{len(hidden)} landed file(s) not visible yet, e.g. {first['key']}: {first['why']}"


def import_from(
    storage: Storage,
    dataset_group: str,
    logical_date: Any,
    mode: str,
    source: str | None,
    dataset_type: str | None = None,
    land_only: bool = False,
) -> dict[str, Any]:
    """``recsys import``: land ``source`` (if given), then import FULL or INCREMENTAL
    (``land_only``: leave the import to the next run, e.g. the 2-hourly update)."""
    from recsys import pipeline

    check_name("dataset group", dataset_group)
    landed = []
    if source is not None:
        group = DatasetGroup.load(dataset_group)
        landed = land(storage, group, logical_date, source, dataset_type)
    elif dataset_type is not None or land_only:
        raise ConfigError("--type and --land-only apply to the files of --from; give --from")
    if land_only:
        return {"dataset_group": dataset_group, "landed": landed}
    out = pipeline.import_datasets(dataset_group, logical_date, mode, storage)
    if landed:
        out["landed"] = landed
    return out
