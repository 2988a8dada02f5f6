"""Structured logging and progress bars.

``get_logger(__name__).info("finished", rows=n)`` writes ``event key=value`` lines; under
Airflow those lines land in the task log. Progress bars show only on an interactive terminal
outside Airflow (``RECSYS_PROGRESS=0/1`` forces them off/on).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from typing import TypeVar

import structlog

T = TypeVar("T")
_configured = False


def _configure() -> None:
    global _configured
    if _configured:
        return
    _configured = True
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for noisy in ("botocore", "aiobotocore", "s3fs"):  # "Found credentials in ..." at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    _configure()
    return structlog.get_logger(name)


def under_airflow() -> bool:
    return any(k.startswith("AIRFLOW_CTX_") for k in os.environ)


def progress_enabled() -> bool:
    forced = os.environ.get("RECSYS_PROGRESS")
    if forced is not None:
        return forced not in ("0", "false", "False", "")
    return sys.stderr.isatty() and not under_airflow()


def progress(iterable: Iterable[T], *, desc: str, total: int | None = None) -> Iterable[T]:
    """Wrap ``iterable`` in a tqdm bar when progress bars are enabled."""
    if not progress_enabled():
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, file=sys.stderr, leave=False)
