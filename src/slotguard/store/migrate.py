"""Apply Alembic migrations programmatically (used by `slotguard migrate` and `serve`)."""

from __future__ import annotations

import asyncio
from functools import lru_cache

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from slotguard.store.diagnose import check_sqlite_directory

SCRIPT_LOCATION = "slotguard.store:migrations"
VERSION_TABLE = "alembic_version"


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    cfg.set_main_option(
        "file_template",
        "%%(year)d_%%(month).2d_%%(day).2d_%%(hour).2d%%(minute).2d_%%(rev)s_%%(slug)s",
    )
    cfg.attributes["database_url"] = database_url
    return cfg


def upgrade_to_head(database_url: str) -> None:
    """Run every pending migration. Blocking: call it from a thread inside an event loop."""
    check_sqlite_directory(database_url)
    command.upgrade(alembic_config(database_url), "head")


async def upgrade_to_head_async(database_url: str) -> None:
    await asyncio.to_thread(upgrade_to_head, database_url)


@lru_cache(maxsize=1)
def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def _read_revision(conn: Connection) -> str | None:
    # The version table read directly: a MigrationContext would log two INFO lines on every
    # readiness probe.
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    revision = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
    return None if revision is None else str(revision)


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at; None before the first migration."""
    async with engine.connect() as conn:
        return await conn.run_sync(_read_revision)
