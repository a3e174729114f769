"""One clear sentence for the ways a database can fail a starting process.

The CLI prints it instead of a traceback: what failed, where (the URL without its password),
and how to fix it. Anything not recognised here returns None and is raised as it is.
"""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from alembic.script.revision import ResolutionError
from alembic.util.exc import CommandError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

# SQLSTATEs of a PostgreSQL server refusing the connection.
INVALID_CATALOG_NAME = "3D000"
INVALID_PASSWORD = "28P01"
INVALID_AUTHORIZATION = "28000"

URL_HINT = "use sqlite:///path/to/slotguard.db or postgresql://user:password@host:5432/dbname"


class DatabaseURLError(ValueError):
    """DATABASE_URL is not a URL slotguard can use."""


class SQLiteDirectoryMissing(OSError):
    """The directory of the SQLite file does not exist (SQLite would not create it)."""


def check_sqlite_directory(url: str) -> None:
    """Raise SQLiteDirectoryMissing before any driver runs, rather than after a failed open.

    A failed aiosqlite open leaves its worker thread to report on an event loop that is
    already closed, which prints a stray traceback from that thread.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        return
    path = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or path in ("", ":memory:") or "mode=memory" in path:
        return
    parent = Path(path).expanduser().absolute().parent
    if not parent.is_dir():
        raise SQLiteDirectoryMissing(f"directory {parent} does not exist")


def safe_url(url: str) -> str:
    """The URL as it can be shown: password masked, or only its scheme if it does not parse."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        scheme, sep, _ = url.partition("://")
        return f"{scheme}://…" if sep else "(no scheme://)"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo.extend([getattr(current, "orig", None), current.__cause__, current.__context__])


def explain_database_error(exc: BaseException, url: str) -> str | None:
    """A one-line explanation of ``exc`` raised while opening or migrating ``url``."""
    where = safe_url(url)
    try:
        parsed = make_url(url)
        host = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
        database = parsed.database or ""
        user = parsed.username or ""
    except Exception:
        host = database = user = ""
    for e in _chain(exc):
        if isinstance(e, SQLiteDirectoryMissing):
            return (
                f"cannot open the SQLite file of {where} ({e}): create its directory and "
                "make it writable for this user, or fix DATABASE_URL"
            )
        if isinstance(e, DatabaseURLError | ArgumentError):
            return f"DATABASE_URL {where} is not usable ({e}): {URL_HINT}"
        if isinstance(e, ResolutionError) or (
            isinstance(e, CommandError) and "Can't locate revision" in str(e)
        ):
            return (
                f"the database {where} is at a migration this slotguard does not have ({e}); "
                "a newer slotguard migrated it: run that version, or restore a backup made "
                "before the upgrade"
            )
        sqlstate = getattr(e, "sqlstate", None)  # asyncpg's server errors
        if sqlstate == INVALID_CATALOG_NAME:
            return (
                f"PostgreSQL at {host} has no database {database!r} ({where}): "
                f"create it (createdb {database}) or fix DATABASE_URL"
            )
        if sqlstate in (INVALID_PASSWORD, INVALID_AUTHORIZATION):
            return (
                f"PostgreSQL at {host} refused user {user!r} ({e}): "
                "fix the user or password in DATABASE_URL"
            )
        if isinstance(sqlstate, str) and sqlstate[:2] in ("08", "28", "3D", "53", "57"):
            return f"PostgreSQL at {host} answered an error ({e}) for {where}"
        if isinstance(e, socket.gaierror):
            return (
                f"cannot resolve the database host in {where} ({e.strerror}): "
                "fix the host name in DATABASE_URL"
            )
        if isinstance(e, ConnectionRefusedError):
            return (
                f"nothing accepts connections at {host} ({where}): start PostgreSQL there "
                "or fix the host and port in DATABASE_URL"
            )
        if isinstance(e, TimeoutError):
            return (
                f"connecting to the database at {host} timed out ({where}): check that the "
                "host is reachable and DATABASE_URL is right"
            )
        if isinstance(e, OSError) and e.errno is not None:
            return f"cannot reach the database {where} ({e.strerror or e}): check DATABASE_URL"
        if isinstance(e, sqlite3.OperationalError) and "unable to open" in str(e):
            return (
                f"cannot open the SQLite file of {where} ({e}): create its directory and "
                "make it writable for this user, or fix DATABASE_URL"
            )
        if isinstance(e, sqlite3.DatabaseError) and "not a database" in str(e):
            return f"{where} is not an SQLite database file ({e}): fix DATABASE_URL"
    return None
