"""Structured logs on stdout, one format for every line of the process.

slotguard's own structlog events and the standard-library loggers (uvicorn's server and error
lines, Alembic's migration lines) go through the same processors and the same renderer: JSON
lines by default when stdout is not a terminal, a readable console format on a terminal
(``SLOTGUARD_LOG_FORMAT`` = ``auto`` | ``json`` | ``console``).
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal, TextIO

import structlog
import structlog.tracebacks

LogFormat = Literal["auto", "json", "console"]


def _shared() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _renderers(json: bool, *, colors: bool = False) -> list[Any]:
    if json:
        return [
            # No local variables in tracebacks: they would carry request headers (API keys)
            # and bodies into the log.
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            structlog.processors.JSONRenderer(),
        ]
    # plain_traceback: the default (rich) formatter would print local variables.
    return [
        structlog.dev.ConsoleRenderer(
            colors=colors, exception_formatter=structlog.dev.plain_traceback
        )
    ]


def processors() -> list[Any]:
    """The processor chain of a JSON log line."""
    return [*_shared(), *_renderers(True)]


def wants_json(fmt: str, stream: TextIO) -> bool:
    if fmt == "json":
        return True
    if fmt == "console":
        return False
    isatty = getattr(stream, "isatty", None)
    return not (callable(isatty) and isatty())


def configure_logging(
    level: str = "INFO", fmt: str = "auto", *, stream: TextIO | None = None
) -> None:
    out = stream or sys.stdout
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    json = wants_json(fmt, out)
    renderers = _renderers(json, colors=not json and fmt == "auto")

    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*_shared(), structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderers],
        )
    )
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)

    # aiosqlite logs every call it runs at DEBUG with its arguments, the bound parameters of
    # the statement (key hashes, webhook secrets): never below INFO, whatever the level.
    logging.getLogger("aiosqlite").setLevel(max(numeric, logging.INFO))
    structlog.configure(
        processors=[*_shared(), *renderers],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(out),
        # Not cached: tests (and reconfiguration at runtime) must see processor changes.
        cache_logger_on_first_use=False,
    )
