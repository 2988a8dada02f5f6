"""Every error class of recsys, each saying when it is raised.

The command line maps each class to an exit code (``exit_code``), so scripts and Airflow can
tell bad input from a missing object from a bug.
"""

from __future__ import annotations


class RecsysError(Exception):
    """Base class. Raised directly only for errors that fit no subclass."""

    exit_code = 1


class ConfigError(RecsysError):
    """A configuration file or setting is missing or invalid (schema, solution, campaign, env)."""

    exit_code = 2


class FilterError(ConfigError):
    """A filter expression is malformed; raised when the filter is created (parsed).

    ``position`` is the 0-based character offset of the problem in ``expression``.
    """

    def __init__(self, message: str, expression: str, position: int) -> None:
        self.expression = expression
        self.position = position
        self.reason = message
        super().__init__(
            f"filter expression, at position {position}: {message}\n"
            f"  {expression}\n  {' ' * position}^"
        )


class DataError(RecsysError):
    """Input data is unusable: a missing column, an unparsable value, an empty file.

    ``file``, ``row`` (1-based line number in the file, header = line 1) and ``column`` say
    where, when known, and appear in the message.
    """

    exit_code = 3

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.file = file
        self.row = row
        self.column = column
        where = []
        if file is not None:
            where.append(f"file {file}")
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class ValidationError(DataError):
    """A snapshot failed validation (e.g. below the minimum data to train); nothing was trained."""


class NotFoundError(RecsysError):
    """A snapshot, solution version, campaign or batch that was asked for does not exist."""

    exit_code = 4


class StorageError(RecsysError):
    """Storage could not be reached or refused an operation."""

    exit_code = 5


class ArtifactError(RecsysError):
    """A model artifact is incompatible (format version) or was tampered with (checksum)."""

    exit_code = 6


class LockTimeoutError(StorageError):
    """Another process held a storage lock (a concurrent deploy) for longer than we waited."""
