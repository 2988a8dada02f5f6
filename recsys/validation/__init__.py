"""Validation of snapshots before anything trains."""

from recsys.validation.checks import (
    MIN_INTERACTIONS,
    MIN_USERS,
    validate_snapshot,
)

__all__ = ["MIN_INTERACTIONS", "MIN_USERS", "validate_snapshot"]
