"""Which SQL does one `POST /v1/bookings` issue right now? (keeps rawdb.py honest)

The raw-rate baseline in rawdb.py replays a fixed statement list. The server's code moves on,
so each run captures what the current code actually sends for one booking (in-process app,
httpx.ASGITransport, SQLAlchemy `before_cursor_execute`/`commit`/`rollback` events, against
the benchmark's own database) and compares its shape (verb + table, transaction ends) with
the replayed list. A mismatch is printed as a warning and stored in results.json.

Standalone: `.venv/bin/python bench/sqlcapture.py [--store sqlite|postgres]` prints the full
statement list of one booking on a fresh throwaway database.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import re
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parent))

_TABLE = r"\"?([a-z_]+)\"?"


def shape(statement: str) -> str | None:
    """'SELECT businesses FOR UPDATE', 'INSERT bookings', 'SAVEPOINT', ... (None: ignored)."""
    sql = " ".join(statement.split())
    head = sql.split(" ", 1)[0].upper()
    if head == "BEGIN":
        return None  # PostgreSQL's BEGIN is not a cursor statement; compare like for like
    if head == "SELECT":
        m = re.search(r" FROM " + _TABLE, sql, re.IGNORECASE)
        table = m.group(1) if m else "?"
        lock = " FOR UPDATE" if " FOR UPDATE" in sql.upper() else ""
        return f"SELECT {table}{lock}"
    if head == "INSERT":
        m = re.search(r"INTO " + _TABLE, sql, re.IGNORECASE)
        return f"INSERT {m.group(1) if m else '?'}"
    if head == "UPDATE":
        m = re.match(r"UPDATE " + _TABLE, sql, re.IGNORECASE)
        return f"UPDATE {m.group(1) if m else '?'}"
    if head == "DELETE":
        m = re.search(r"FROM " + _TABLE, sql, re.IGNORECASE)
        return f"DELETE {m.group(1) if m else '?'}"
    return head


async def capture_booking(
    url: str, api_key: str, business_id: str, start: dt.datetime, minutes: int = 30
) -> dict[str, Any]:
    """Book once through the in-process app and return the statements it issued."""
    from slotguard.api.app import create_app
    from slotguard.store.db import Database

    db = Database.connect(url, pool_size=2)
    log: list[tuple[str, str]] = []
    on = [False]
    # The read engine may be the write engine with other execution options (same pool):
    # listeners on the base engine also see its option engines, not the other way round.
    # So listen once per pool, on the write engine when they share one.
    syncs: dict[int, Any] = {}
    for e in (db.write_engine, db.read_engine):
        syncs.setdefault(id(e.sync_engine.pool), e.sync_engine)
    for sync in syncs.values():

        def before(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
            if on[0]:
                log.append(("sql", statement))

        def commit(_c: Any) -> None:
            if on[0]:
                log.append(("tx", "COMMIT"))

        def rollback(_c: Any) -> None:
            if on[0]:
                log.append(("tx", "ROLLBACK"))

        event.listen(sync, "before_cursor_execute", before)
        event.listen(sync, "commit", commit)
        event.listen(sync, "rollback", rollback)
    try:
        settings = _settings(url)
        app = create_app(settings, db=db)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            end = start + dt.timedelta(minutes=minutes)
            body = {
                "business_id": business_id,
                "start_time": start.isoformat(),
                "end_time": end.isoformat(),
                "customer_email": "bench@example.com",
            }
            headers = {"Authorization": f"Bearer {api_key}", "Idempotency-Key": uuid.uuid4().hex}
            on[0] = True
            r = await client.post("/v1/bookings", json=body, headers=headers)
            on[0] = False
    finally:
        await db.dispose()
    statements = [s for kind, s in log]
    shapes = [s for s in (shape(x) if k == "sql" else x for k, x in log) if s is not None]
    return {"status": r.status_code, "statements": statements, "shapes": shapes}


def _settings(url: str) -> Any:
    """Settings for an in-process app (fields are set by their environment names)."""
    from slotguard.config import Settings

    return Settings(
        DATABASE_URL=url, SLOTGUARD_EMBEDDED_WORKER=False, SLOTGUARD_LOG_LEVEL="WARNING"
    )


def compare(captured: list[str], replayed: list[str]) -> list[str]:
    """Human-readable differences between two shape lists (empty: identical).

    ROLLBACK events are left out: they are read sessions ending and the pool resetting a
    connection it gets back, which cost no round trip when no transaction is open, and
    their number depends on the pool. Statements and COMMITs are what the database works on.
    """
    captured = [x for x in captured if x != "ROLLBACK"]
    replayed = [x for x in replayed if x != "ROLLBACK"]
    if captured == replayed:
        return []
    import difflib

    return [
        line
        for line in difflib.unified_diff(replayed, captured, "replayed", "server", lineterm="", n=1)
        if not line.startswith(("---", "+++"))
    ]


async def _main() -> None:
    import harness
    from run import OPEN_RULES, booking_slot

    from slotguard.api.app import create_app
    from slotguard.services import accounts
    from slotguard.store.db import Database
    from slotguard.store.migrate import upgrade_to_head

    parser = argparse.ArgumentParser(description="Print the SQL of one booking")
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    with harness.temp_workdir() as workdir:
        store = await harness.create_store(args.store, workdir)
        try:
            await asyncio.to_thread(upgrade_to_head, store.url)
            db = Database.connect(store.url, pool_size=2)
            now = dt.datetime.now(dt.UTC)
            try:
                async with db.write() as s:
                    account = await accounts.create_account(s, name="bench", now=now)
                    _, raw = await accounts.create_key(
                        s, account_id=account.id, now=now, name="admin"
                    )
                settings = _settings(store.url)
                app = create_app(settings, db=db)
                async with httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://bench"
                ) as client:
                    r = await client.post(
                        "/v1/businesses",
                        json={"name": "b", "timezone": "UTC", "rules": OPEN_RULES},
                        headers={"Authorization": f"Bearer {raw}"},
                    )
                    business_id = r.json()["data"]["id"]
            finally:
                await db.dispose()
            got = await capture_booking(store.url, raw, business_id, booking_slot(0))
        finally:
            await harness.drop_store(store)
    print(f"status {got['status']}")
    for s in got["statements"]:
        print("  ", " ".join(s.split()))
    print("shapes:", got["shapes"])


if __name__ == "__main__":
    asyncio.run(_main())
