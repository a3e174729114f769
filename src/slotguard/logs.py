"""Structured JSON logs on stdout."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
import structlog.tracebacks


def processors() -> list[Any]:
    """The processor chain every log line goes through."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        # No local variables in tracebacks: they would carry request headers (API keys) and
        # bodies into the log.
        structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        ),
        structlog.processors.JSONRenderer(),
    ]


def configure_logging(level: str = "INFO") -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    logging.basicConfig(format="%(message)s", stream=sys.stdout, level=numeric, force=True)
    structlog.configure(
        processors=processors(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        # Not cached: tests (and reconfiguration at runtime) must see processor changes.
        cache_logger_on_first_use=False,
    )
