"""Reading configuration files safely, and checking what is in them before it is used.

* :func:`parse_config` turns a file's bytes into a mapping or refuses with one
  :class:`~recsys.errors.ConfigError` line naming the file: larger than
  :data:`MAX_CONFIG_BYTES`, not UTF-8, not valid YAML/JSON, nested too deep, a duplicate key, or
  a YAML alias (``*name``). Aliases are refused outright: a few lines of nested aliases expand
  to gigabytes ("billion laughs"), and no recsys config needs them.
* :func:`check_campaign`, :func:`check_solution`, :func:`check_dataset_group`: the types of the
  fields each loader reads (``num_results: "lots"`` or ``config: [1, 2]`` is a ConfigError, not
  a traceback), the names inside (a campaign's ``solution``, a solution's ``dataset_group``)
  against :mod:`recsys.names`, and a warning for every unknown key (a typo would otherwise be
  ignored silently).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import yaml

from recsys.errors import ConfigError
from recsys.logs import get_logger
from recsys.names import check_name

log = get_logger(__name__)
#: A config larger than this is refused before it is parsed (the repository's are < 4 KiB).
MAX_CONFIG_BYTES = 1 << 20


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader without aliases and without duplicate keys."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(
                f"line {event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not "
                "allowed in recsys configs"
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise ConfigError(
                        f"line {line}: duplicate key {key!r} (first on line {seen[key]})"
                    )
            except TypeError:  # an unhashable key: the base class refuses it with its line
                break
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ConfigError(f"duplicate key {key!r}")
        out[key] = value
    return out


def parse_config(data: bytes, where: str, suffix: str) -> dict[str, Any]:
    """The mapping in a config file's bytes (``suffix``: ``.yaml``, ``.yml`` or ``.json``)."""
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{where}: {len(data)} bytes, larger than the {MAX_CONFIG_BYTES} a config may be"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: not UTF-8 (byte {exc.start}: {exc.reason})") from exc
    kind = suffix.lstrip(".")
    try:
        if suffix == ".json":
            obj = json.loads(text, object_pairs_hook=_json_pairs)
        else:
            obj = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{where}: not valid {kind}: {' '.join(str(exc).split())}") from exc
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    return obj


# -- what is inside -------------------------------------------------------------------------
#: Top-level keys each kind of config is read for; others are reported (a warning).
KNOWN_KEYS = {
    "campaigns": {"solution", "config", "promotion", "update", "item_jobs", "description"},
    "solutions": {
        "dataset_group",
        "recipe",
        "hyperparameters",
        "event_types",
        "event_value_threshold",
        "perform_hpo",
        "hpo_config",
        "description",
    },
    "dataset_groups": {"schemas", "event_types", "validation", "description"},
}
CAMPAIGN_CONFIG_KEYS = {
    "num_results",
    "exploration_weight",
    "exploration_item_age_cut_off",
    "filter",
    "exclude_seen",
}


def warn_unknown(keys: Iterable[str], known: set[str], where: str) -> list[str]:
    unknown = sorted(str(k) for k in keys if k not in known)
    if unknown:
        log.warning(
            f"{where}: unknown keys {unknown} are ignored (known: {sorted(known)})",
            unknown=unknown,
        )
    return unknown


def _mapping(raw: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: '{key}' must be a mapping, got {type(value).__name__}")
    return value


def _number(section: dict[str, Any], key: str, where: str, *, integer: bool = False) -> None:
    value = section.get(key)
    if value is None:
        return
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok:
        want = "an integer" if integer else "a number"
        raise ConfigError(f"{where}: '{key}' must be {want}, got {value!r}")


def _strings(section: dict[str, Any], key: str, where: str) -> None:
    value = section.get(key)
    if value is None:
        return
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: '{key}' must be a list of strings, got {value!r}")


def check_campaign(name: str, raw: dict[str, Any]) -> None:
    where = f"campaign {name!r}"
    warn_unknown(raw, KNOWN_KEYS["campaigns"], where)
    if "solution" in raw:  # absent: the loader says "missing key"
        check_name(raw["solution"], f"solution name in {where}")
    cfg = _mapping(raw, "config", where)
    warn_unknown(cfg, CAMPAIGN_CONFIG_KEYS, f"{where} config")
    _number(cfg, "num_results", where, integer=True)
    for key in ("exploration_weight", "exploration_item_age_cut_off"):
        _number(cfg, key, where)
    if cfg.get("filter") is not None and not isinstance(cfg["filter"], str):
        raise ConfigError(f"{where}: 'filter' must be a string, got {type(cfg['filter']).__name__}")
    if "exclude_seen" in cfg and not isinstance(cfg["exclude_seen"], bool):
        raise ConfigError(f"{where}: 'exclude_seen' must be true or false")
    gate = _mapping(raw, "promotion", where)
    warn_unknown(gate, {"tolerance", "metrics", "min_users"}, f"{where} promotion")
    _number(gate, "tolerance", where)
    _number(gate, "min_users", where, integer=True)
    _strings(gate, "metrics", where)
    _mapping(raw, "update", where)


def check_solution(name: str, raw: dict[str, Any]) -> None:
    where = f"solution {name!r}"
    warn_unknown(raw, KNOWN_KEYS["solutions"], where)
    if "dataset_group" in raw:
        check_name(raw["dataset_group"], f"dataset group name in {where}")
    if "recipe" in raw and not isinstance(raw["recipe"], str):
        raise ConfigError(f"{where}: 'recipe' must be a recipe name")
    _mapping(raw, "hyperparameters", where)
    _strings(raw, "event_types", where)
    _number(raw, "event_value_threshold", where)


def check_dataset_group(name: str, raw: dict[str, Any]) -> None:
    where = f"dataset group {name!r}"
    warn_unknown(raw, KNOWN_KEYS["dataset_groups"], where)
    _strings(raw, "event_types", where)
    _mapping(raw, "validation", where)


_CHECKS = {
    "campaigns": check_campaign,
    "solutions": check_solution,
    "dataset_groups": check_dataset_group,
}


def read_config(path: Any, kind: str, name: str) -> dict[str, Any]:
    """Read, parse and check the config file at ``path`` (a :class:`pathlib.Path`)."""
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: {size} bytes, larger than the {MAX_CONFIG_BYTES} a config may be"
        )
    data = parse_config(path.read_bytes(), str(path), path.suffix)
    check = _CHECKS.get(kind)
    if check is not None:
        check(name, data)
    return data
