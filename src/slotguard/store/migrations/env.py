"""Alembic environment: runs migrations on the async engine of either store."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from slotguard.store.db import create_engine, normalize_url
from slotguard.store.models import Base

config = context.config
target_metadata = Base.metadata

# Any number, fixed: serialises concurrent `migrate` runs of several processes on PostgreSQL.
MIGRATION_LOCK_KEY = 7_310_512_001


def _run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=sqlite,
        # One transaction for the whole upgrade, on SQLite too (its DDL is transactional).
        # Otherwise Alembic commits after each migration, releasing the write lock, and a
        # second process starting at the same moment runs a migration the first is about
        # to run as well.
        transactional_ddl=True,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        if not sqlite:
            connection.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"))
        context.run_migrations()


async def _run_async(url: str) -> None:
    sqlite = url.startswith("sqlite")
    # SQLite: wait for another process's write lock (60 s) from the first statement on,
    # including the journal-mode switch, which needs the lock too.
    engine = create_engine(url, connect_args={"timeout": 60} if sqlite else {})
    if sqlite:
        from sqlalchemy import event

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_conn, _rec):  # type: ignore[no-untyped-def]
            dbapi_conn.isolation_level = None
            dbapi_conn.execute("PRAGMA busy_timeout=60000")
            dbapi_conn.execute("PRAGMA journal_mode=WAL")

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn):  # type: ignore[no-untyped-def]
            # The write lock up front: two processes migrating at once run one after the other.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run)
            await conn.commit()
    finally:
        await engine.dispose()


url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
if not url:
    raise RuntimeError("no database URL given to the migration environment")
asyncio.run(_run_async(normalize_url(url)))
