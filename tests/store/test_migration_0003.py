"""Migration 0003 on SQLite: busy time written with a short year reads back after it."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import sqlite3
from pathlib import Path

from alembic import command

from slotguard.store import repositories as repo
from slotguard.store.db import Database
from slotguard.store.migrate import alembic_config, upgrade_to_head


async def test_short_years_are_padded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    await asyncio.to_thread(command.upgrade, alembic_config(url), "0002")
    # What the server wrote before 0003 for busy time in the year 999 (strftime's %Y).
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "INSERT INTO accounts (id, name, rules, created_at) VALUES ('acc_1', 'a', '{}', "
            "'2026-01-01 00:00:00.000000')"
        )
        conn.execute(
            "INSERT INTO businesses (id, account_id, name, timezone, rules, created_at, "
            "updated_at) VALUES ('biz_1', 'acc_1', 'b', 'UTC', '{}', "
            "'2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000')"
        )
        conn.execute(
            "INSERT INTO busy_intervals (id, account_id, business_id, start_at, end_at, "
            "source, created_at) VALUES ('bsy_1', 'acc_1', 'biz_1', "
            "'999-03-01 00:00:00.000000', '999-03-02 00:00:00.000000', 'api', "
            "'2026-01-01 00:00:00.000000')"
        )
    await asyncio.to_thread(upgrade_to_head, url)
    db = Database.connect(url)
    try:
        async with db.read() as s:
            [busy] = await repo.list_busy(s, "biz_1")
    finally:
        await db.dispose()
    assert busy.start_at == dt.datetime(999, 3, 1, tzinfo=dt.UTC)
    assert busy.end_at == dt.datetime(999, 3, 2, tzinfo=dt.UTC)
