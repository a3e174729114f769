"""Engines, sessions and the unit of work.

Writes that touch reservations must be serialised per business. PostgreSQL does that with a
row lock on the business plus the exclusion constraint on `reservations`; SQLite does it by
making every write transaction `BEGIN IMMEDIATE`, which takes the database's single write
lock up front so two writers can never interleave their read-check-write steps. Neither
relies on anything inside this process, so several server processes can share a database.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from slotguard.store.diagnose import DatabaseURLError


def normalize_url(url: str) -> str:
    """Accept the URLs people write (`postgresql://`, `sqlite:///x.db`) and pick our drivers."""
    try:
        u = make_url(url)
    except ArgumentError as exc:
        raise DatabaseURLError("it cannot be parsed") from exc
    backend = u.get_backend_name()
    if backend in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+asyncpg")
    elif backend == "sqlite":
        u = u.set(drivername="sqlite+aiosqlite")
    else:
        raise DatabaseURLError(f"unsupported database URL scheme: {u.drivername}")
    return u.render_as_string(hide_password=False)


def _json_dumps(value: Any) -> str:
    # JSON columns through orjson: several times faster than the stdlib on the booking path's
    # payloads. What orjson refuses (integers beyond 64 bits, non-string keys) goes through
    # the stdlib, as before.
    try:
        return orjson.dumps(value).decode("utf-8")
    except TypeError:
        return json.dumps(value)


def _json_loads(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # e.g. NaN, which the stdlib writes and reads
        return json.loads(text)


JSON_OPTIONS: dict[str, Any] = {"json_serializer": _json_dumps, "json_deserializer": _json_loads}


def create_engine(url: str, **options: Any) -> AsyncEngine:
    """Every engine of slotguard (server, worker, migrations) is made here.

    Bound parameters are never rendered into error messages or SQL logs: they carry key
    hashes, webhook secrets and encrypted credentials, and a failed statement's message ends
    up in the log.
    """
    return create_async_engine(url, hide_parameters=True, **options)


def _sqlite_engine(
    url: str, *, immediate: bool, busy_timeout_s: float, pool_size: int
) -> AsyncEngine:
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=120,
        connect_args={"timeout": busy_timeout_s},
        **JSON_OPTIONS,
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (pysqlite's implicit transactions would defer it).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    if immediate:

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@dataclass
class Database:
    """The database of one process: a write engine and a read engine (the same on PostgreSQL)."""

    url: str
    write_engine: AsyncEngine
    read_engine: AsyncEngine

    def __post_init__(self) -> None:
        self._write_maker = async_sessionmaker(
            self.write_engine, expire_on_commit=False, autoflush=False
        )
        self._read_maker = async_sessionmaker(
            self.read_engine, expire_on_commit=False, autoflush=False
        )

    @property
    def dialect(self) -> str:
        return self.write_engine.dialect.name

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @classmethod
    def connect(cls, url: str, *, pool_size: int = 10, busy_timeout_s: float = 30.0) -> Database:
        url = normalize_url(url)
        if make_url(url).get_backend_name() == "sqlite":
            # One writer connection per process: SQLite admits one writer at a time anyway,
            # and queueing in the pool is cheaper than spinning in SQLite's busy handler.
            write = _sqlite_engine(url, immediate=True, busy_timeout_s=busy_timeout_s, pool_size=1)
            read = _sqlite_engine(
                url, immediate=False, busy_timeout_s=busy_timeout_s, pool_size=pool_size
            )
            return cls(url=url, write_engine=write, read_engine=read)
        engine = create_engine(
            url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=False, **JSON_OPTIONS
        )
        # Reads run in autocommit: no BEGIN/ROLLBACK round trips around a lookup. Nothing
        # that decides a write reads through it; every check that matters is repeated
        # inside the write transaction.
        reads = engine.execution_options(isolation_level="AUTOCOMMIT")
        return cls(url=url, write_engine=engine, read_engine=reads)

    async def dispose(self) -> None:
        await self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            await self.read_engine.dispose()

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """One write transaction: committed when the block ends, rolled back on error."""
        async with self._write_maker() as session, session.begin():
            yield session

    def autocommit(self) -> contextlib.AbstractAsyncContextManager[AsyncSession]:
        """A session whose statements commit one by one (for single-statement writes)."""
        return self.read()

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read-only transaction, never committed.

        Closing (not rolling back) ends it: close releases the connection, which rolls the
        transaction back, and leaves loaded objects usable after the block.
        """
        async with self._read_maker() as session:
            yield session
