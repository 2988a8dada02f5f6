"""Personalize's own schema JSON files as a dataset group's schemas.

Personalize's ``CreateSchema`` takes an Avro record as JSON::

    {"type": "record", "name": "Items", "namespace": "com.amazonaws.personalize.schema",
     "fields": [{"name": "ITEM_ID", "type": "string"},
                {"name": "GENRES", "type": ["null", "string"], "categorical": true}],
     "version": "1.0"}

A dataset group's YAML may name such a file instead of writing the schema inline::

    schemas:
      interactions: personalize/interactions.json      # relative to the YAML's folder
      items: {file: personalize/items.json}

and ``recsys dataset-group create --name G --interactions-schema FILE [--items-schema FILE]
[--users-schema FILE]`` writes ``configs/dataset_groups/G.yaml`` with the files' schemas in
it (Personalize's CreateDatasetGroup + CreateSchema + CreateDataset). Either way the schema
goes through the same checks as an inline one (:meth:`recsys.schema.Schema.from_avro`), and an
error names the file (and the field). A referenced file must lie inside the configs directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from recsys.errors import ConfigError

NAMESPACE = "com.amazonaws.personalize.schema"
_TOP_KEYS = {"type", "name", "namespace", "fields", "version", "doc"}


def read_schema_json(path: Path, dataset_type: str) -> dict[str, Any]:
    """The Avro record of a Personalize schema file, checked for its shape (not its fields)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"schema file {path} ({dataset_type}): no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"schema file {path} ({dataset_type}): cannot read it: {exc}") from exc
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"schema file {path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"schema file {path}: expected a JSON object (an Avro record)")
    if raw.get("type", "record") != "record":
        raise ConfigError(f"schema file {path}: 'type' must be \"record\", got {raw['type']!r}")
    if "namespace" in raw and raw["namespace"] != NAMESPACE:
        raise ConfigError(
            f"schema file {path}: 'namespace' must be {NAMESPACE!r} (Personalize's), "
            f"got {raw['namespace']!r}"
        )
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"schema file {path}: unknown key(s) {', '.join(unknown)}")
    return raw


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def resolve_schema_refs(
    raw: dict[str, Any], base_dir: Path, root: Path, where: str
) -> tuple[dict[str, Any], dict[str, Path]]:
    """``raw`` (a dataset group's mapping) with every schema file reference read in.

    A reference is a string or ``{file: ...}``, relative to ``base_dir``; it must lie under
    ``root`` (the configs directory) and end in ``.json``. Returns a new mapping whose
    ``schemas`` are the records themselves (so the group's digest covers their content, not
    where they are), and the file each came from, by dataset type."""
    schemas = raw.get("schemas")
    if not isinstance(schemas, dict):
        return raw, {}
    out = {}
    files: dict[str, Path] = {}
    for dtype, spec in schemas.items():
        ref = spec if isinstance(spec, str) else None
        if isinstance(spec, dict) and set(spec) == {"file"}:
            ref = spec["file"]
        if ref is None:
            out[dtype] = spec
            continue
        if not isinstance(ref, str) or not ref.endswith(".json") or "\x00" in ref:
            raise ConfigError(f"{where}: schemas.{dtype}: a schema file must be a .json path")
        path = Path(ref) if os.path.isabs(ref) else base_dir / ref
        if not _inside(path, root):
            raise ConfigError(
                f"{where}: schemas.{dtype}: {ref!r} is outside the configs directory {root}"
            )
        out[dtype] = read_schema_json(path, dtype)
        files[dtype] = path
    return ({**raw, "schemas": out} if files else raw), files


def create_dataset_group(
    name: str,
    schema_files: dict[str, str | None],
    event_types: list[str] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Write ``configs/dataset_groups/{name}.yaml`` from Personalize schema JSON files."""
    import yaml

    from recsys.config import config_dir
    from recsys.data.landing import check_name
    from recsys.schema import DatasetGroup, Schema

    check_name("dataset group", name)
    raw: dict[str, Any] = {}
    if event_types:
        raw["event_types"] = list(event_types)
    raw["schemas"] = {}
    if not schema_files.get("interactions"):
        raise ConfigError("dataset-group create needs --interactions-schema (Personalize's too)")
    for dtype, file in schema_files.items():
        if file is None:
            continue
        path = Path(file)
        record = read_schema_json(path, dtype)
        Schema.from_avro(dtype, record, where=f"schema file {path}")
        raw["schemas"][dtype] = record
    group = DatasetGroup.from_dict(name, raw, where=f"dataset group {name!r}")
    folder = config_dir() / "dataset_groups"
    target = folder / f"{name}.yaml"
    existing = [folder / f"{name}{suffix}" for suffix in (".yaml", ".yml", ".json")]
    if any(p.exists() for p in existing) and not force:
        raise ConfigError(
            f"dataset group {name!r} already exists ({target}); --force replaces it "
            "(its next import is new data: the schema is part of every snapshot id)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Dataset group {name}: written by `recsys dataset-group create` from Personalize "
        "schema JSON\n# (" + ", ".join(f"{t}: {f}" for t, f in schema_files.items() if f) + ").\n"
    )
    tmp = target.with_suffix(".yaml.tmp")
    tmp.write_text(header + yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    os.replace(tmp, target)
    return {
        "dataset_group": name,
        "path": str(target),
        "datasets": {t: s.names for t, s in group.schemas.items()},
    }
