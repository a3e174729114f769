"""The background worker: housekeeping now; hold expiry and the outbox plug in here.

Runs embedded in `slotguard serve` (one per API process) or alone as `slotguard worker`.
Every job is safe to run in several processes at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import signal

import structlog

from slotguard.config import Settings
from slotguard.store import repositories as repo
from slotguard.store.db import Database

log = structlog.get_logger("slotguard.worker")

IDEMPOTENCY_RETENTION = dt.timedelta(hours=24)
PURGE_EVERY_S = 600.0


async def purge_idempotency_keys(db: Database, now: dt.datetime) -> int:
    async with db.write() as s:
        return await repo.purge_idempotency_keys(s, completed_before=now - IDEMPOTENCY_RETENTION)


async def run(db: Database, stop: asyncio.Event) -> None:
    """Loop until `stop` is set; each job catches its own failures and goes on."""
    next_purge = 0.0
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        if loop.time() >= next_purge:
            try:
                purged = await purge_idempotency_keys(db, dt.datetime.now(dt.UTC))
                if purged:
                    log.info("idempotency_keys_purged", count=purged)
            except Exception:
                log.exception("idempotency_purge_failed")
            next_purge = loop.time() + PURGE_EVERY_S
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)


async def run_forever(settings: Settings) -> None:
    db = Database.connect(
        settings.database_url, pool_size=4, busy_timeout_s=settings.sqlite_busy_timeout_s
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await run(db, stop)
    finally:
        await db.dispose()
