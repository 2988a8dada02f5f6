"""Dataset schemas with Personalize field names, declared once per dataset group.

A dataset group's file ``configs/dataset_groups/{name}.yaml`` holds one Avro-style record
schema per dataset type, as in Personalize::

    schemas:
      interactions:
        type: record
        name: Interactions
        fields:
          - {name: USER_ID, type: string}
          - {name: EVENT_VALUE, type: [float, "null"]}
      items:
        fields:
          - {name: GENRES, type: [string, "null"], categorical: true}
          - {name: TITLE, type: [string, "null"], textual: true}
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from recsys.config import load_config_file
from recsys.errors import ConfigError

# Personalize's required fields per dataset type.
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "interactions": ("USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE"),
    "items": ("ITEM_ID",),
    "users": ("USER_ID",),
}
ID_FIELD = {"interactions": None, "items": "ITEM_ID", "users": "USER_ID"}
_TYPES = {"string", "long", "int", "float", "double", "boolean"}

# Personalize's limits on values.
ID_FIELDS = ("USER_ID", "ITEM_ID", "RECOMMENDATION_ID")
MAX_ID_LENGTH = 256
MAX_CATEGORICAL_VALUE_LENGTH = 1000  # per ``|``-separated value
MAX_TEXTUAL_LENGTH = 20_000
TIMESTAMP_FIELDS = ("TIMESTAMP", "CREATION_TIMESTAMP")


@dataclass(frozen=True)
class ValidationPolicy:
    """A dataset group's ``validation:`` settings: what a bad row costs.

    Rows that break a row-level rule are quarantined to ``rejects/``. If more than
    ``max_reject_fraction`` of a dataset's new records (or more than ``max_rejected_rows``)
    are rejected, the import fails instead. Timestamps are epoch seconds within
    ``[min_timestamp, max_timestamp]`` (defaults 1990-01-01 and 2100-01-01 UTC).
    """

    max_reject_fraction: float = 0.01
    max_rejected_rows: int | None = None
    min_timestamp: int = 631_152_000
    max_timestamp: int = 4_102_444_800

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> ValidationPolicy:
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: 'validation' must be a mapping")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(
                f"{where}: unknown validation setting(s) {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})"
            )
        policy = cls(**raw)
        if not 0.0 <= float(policy.max_reject_fraction) <= 1.0:
            raise ConfigError(f"{where}: validation.max_reject_fraction must be within [0, 1]")
        if policy.max_rejected_rows is not None and int(policy.max_rejected_rows) < 0:
            raise ConfigError(f"{where}: validation.max_rejected_rows must be >= 0")
        if not int(policy.min_timestamp) < int(policy.max_timestamp):
            raise ConfigError(f"{where}: validation.min_timestamp must be < max_timestamp")
        return policy


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    nullable: bool = False
    categorical: bool = False
    textual: bool = False

    @property
    def numeric(self) -> bool:
        return self.type in ("long", "int", "float", "double")

    @property
    def integral(self) -> bool:
        return self.type in ("long", "int")


@dataclass(frozen=True)
class Schema:
    dataset_type: str
    fields: tuple[Field, ...]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def required(self) -> list[str]:
        return [f.name for f in self.fields if not f.nullable]

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @classmethod
    def from_avro(cls, dataset_type: str, raw: dict[str, Any], where: str) -> Schema:
        if dataset_type not in REQUIRED_FIELDS:
            raise ConfigError(f"{where}: unknown dataset type {dataset_type!r}")
        fields_raw = raw.get("fields")
        if not isinstance(fields_raw, list) or not fields_raw:
            raise ConfigError(f"{where}: schema {dataset_type!r} needs a non-empty 'fields' list")
        fields = []
        for i, fr in enumerate(fields_raw):
            if not isinstance(fr, dict) or "name" not in fr or "type" not in fr:
                raise ConfigError(f"{where}: {dataset_type} field #{i + 1} needs 'name' and 'type'")
            typ = fr["type"]
            nullable = False
            if isinstance(typ, list):
                nullable = "null" in typ
                non_null = [t for t in typ if t != "null"]
                if len(non_null) != 1:
                    raise ConfigError(f"{where}: field {fr['name']}: unsupported union {typ}")
                typ = non_null[0]
            if typ not in _TYPES:
                raise ConfigError(f"{where}: field {fr['name']}: unsupported type {typ!r}")
            fields.append(
                Field(
                    name=str(fr["name"]),
                    type=typ,
                    nullable=nullable,
                    categorical=bool(fr.get("categorical", False)),
                    textual=bool(fr.get("textual", False)),
                )
            )
        names = [f.name for f in fields]
        if len(set(names)) != len(names):
            raise ConfigError(f"{where}: schema {dataset_type!r} declares a field twice")
        for req in REQUIRED_FIELDS[dataset_type]:
            if req not in names:
                raise ConfigError(f"{where}: schema {dataset_type!r} must declare {req}")
            if next(f for f in fields if f.name == req).nullable:
                raise ConfigError(f"{where}: required field {req} cannot be nullable")
        return cls(dataset_type=dataset_type, fields=tuple(fields))


@dataclass(frozen=True)
class DatasetGroup:
    """A dataset group: its schemas, and the event types it declares (empty = any)."""

    name: str
    schemas: dict[str, Schema]
    event_types: tuple[str, ...] = ()
    validation: ValidationPolicy = field(default_factory=ValidationPolicy)
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def load(cls, name: str) -> DatasetGroup:
        raw = load_config_file("dataset_groups", name)
        return cls.from_dict(name, raw, where=f"dataset group {name!r}")

    @classmethod
    def from_dict(cls, name: str, raw: dict[str, Any], where: str = "schema") -> DatasetGroup:
        # A schema may be a Personalize schema JSON file (recsys/personalize_schema.py).
        from recsys.config import config_dir
        from recsys.personalize_schema import resolve_schema_refs

        root = config_dir()
        raw, files = resolve_schema_refs(raw, root / "dataset_groups", root, where)
        schemas_raw = raw.get("schemas")
        if not isinstance(schemas_raw, dict) or "interactions" not in schemas_raw:
            raise ConfigError(f"{where}: needs 'schemas' with at least 'interactions'")
        schemas = {
            t: Schema.from_avro(t, s, f"{where}, schema file {files[t]}" if t in files else where)
            for t, s in schemas_raw.items()
        }
        return cls(
            name=name,
            schemas=schemas,
            event_types=tuple(raw.get("event_types") or ()),
            validation=ValidationPolicy.from_dict(raw.get("validation"), where),
            raw=raw,
        )

    def digest(self) -> str:
        """A hash of the schema, part of every snapshot id (a schema change is new data)."""
        return hashlib.sha256(json.dumps(self.raw, sort_keys=True).encode()).hexdigest()
