"""The one grammar for every name a user types that becomes part of a storage key or a path.

Campaign, solution, dataset-group, snapshot, version, revision and batch names all match
:data:`NAME_PATTERN`: a letter or digit, then up to 127 letters, digits, ``.``, ``_`` or ``-``,
and never ``..``. So a name is one path segment: it cannot hold ``/`` or ``\\``, be ``.`` or
``..``, start with ``-`` (an option) or ``.`` (a hidden file), or climb out of the storage root or
``configs/``. The check runs at every boundary: the command line, the DAG trigger forms
(``Param(pattern=NAME_JSON_PATTERN)``), config loading (file names and the names inside) and key
building; :meth:`recsys.storage.Storage.path` refuses any key that leaves the root as a second
wall.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from recsys.errors import ConfigError

MAX_NAME_LENGTH = 128
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
#: The same grammar as a JSON-schema ``pattern`` (anchored, ``..`` refused by a lookahead).
NAME_JSON_PATTERN = r"^(?!.*\.\.)" + NAME_PATTERN + r"$"
_NAME = re.compile(NAME_PATTERN)


def is_name(value: Any) -> bool:
    return isinstance(value, str) and _NAME.fullmatch(value) is not None and ".." not in value


def check_name(value: Any, kind: str = "name") -> str:
    """``value`` if it is a valid name, else :class:`ConfigError` (exit 2) saying why."""
    if is_name(value):
        return value
    shown = (
        repr(value) if not isinstance(value, str) or len(value) <= 80 else repr(value[:80]) + "..."
    )
    raise ConfigError(
        f"invalid {kind} {shown}: not allowed as a name (1 to {MAX_NAME_LENGTH} letters, "
        "digits, '.', '_' or '-', starting with a letter or digit, without '..')"
    )


def check_names(pairs: Iterable[tuple[str, Any]]) -> None:
    """Check every ``(kind, value)`` whose value is not None."""
    for kind, value in pairs:
        if value is not None:
            check_name(value, kind)


#: Command-line options (argparse ``dest``) that hold names, and what the name is of.
CLI_NAME_ARGS = {
    "dataset_group": "dataset group",
    "snapshot": "snapshot id",
    "solution": "solution",
    "version_id": "version id",
    "campaign": "campaign",
    "campaign_flag": "campaign",
    "to_version": "version id",
    "name": "dataset group",  # dataset-group create --name
}


def check_cli_args(args: Any) -> None:
    """Refuse a command line whose name arguments break the grammar (before any I/O)."""
    check_names((kind, getattr(args, dest, None)) for dest, kind in CLI_NAME_ARGS.items())
