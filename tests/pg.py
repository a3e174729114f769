"""Finding a PostgreSQL server for the tests and making throwaway databases on it."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import asyncpg
from sqlalchemy.engine import make_url

from tests.leaks import harvest_pg

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
T = TypeVar("T")


def pg_admin_url() -> str:
    return os.environ.get("SLOTGUARD_TEST_PG_URL", DEFAULT_ADMIN_URL)


def _in_thread(fn: Callable[[], Awaitable[T]]) -> T:
    # Callable from anywhere, including from inside a running event loop.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(fn())).result()  # type: ignore[arg-type]


def _dsn() -> str:
    return (
        make_url(pg_admin_url()).set(drivername="postgresql").render_as_string(hide_password=False)
    )


async def _execute(sql: str) -> None:
    conn = await asyncpg.connect(_dsn(), timeout=3)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def pg_available() -> bool:
    try:
        _in_thread(lambda: _execute("SELECT 1"))
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    return True


def pg_create_database(name: str) -> str:
    _in_thread(lambda: _execute(f'CREATE DATABASE "{name}"'))
    return make_url(pg_admin_url()).set(database=name).render_as_string(hide_password=False)


def pg_drop_database(name: str) -> None:
    # Its stored secrets count for the log scan of the session (tests/leaks.py).
    url = make_url(_dsn()).set(database=name).render_as_string(hide_password=False)
    with contextlib.suppress(OSError, asyncpg.PostgresError):
        harvest_pg(url)
    _in_thread(lambda: _execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
