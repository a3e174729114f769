"""The background worker: outbox delivery, hold expiry, housekeeping.

Runs embedded in `slotguard serve` (one per API process) or alone as `slotguard worker`.
Every job is safe to run in several processes at once: the outbox claims rows with leases
(`effects/outbox.py`), the hold sweeper and the purges are idempotent updates.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import signal
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from typing import Any

import structlog

from slotguard.calendars.sync import CalendarSync, SyncConfig
from slotguard.calendars.writeback import CalendarWriter
from slotguard.config import Settings, get_settings
from slotguard.effects.email import MailDeliveryError, MailSender, mail_sender_from_settings
from slotguard.effects.netguard import make_webhook_client
from slotguard.effects.outbox import WEBHOOK_TIMEOUT_S, OutboxSettings, OutboxWorker
from slotguard.services.calendar_oauth import purge_states
from slotguard.store import outbox_repo, pages_repo
from slotguard.store import repositories as repo
from slotguard.store.db import Database

log = structlog.get_logger("slotguard.worker")

IDEMPOTENCY_RETENTION = dt.timedelta(hours=24)
DELIVERED_OUTBOX_RETENTION = dt.timedelta(days=7)
DELIVERY_LOG_RETENTION = dt.timedelta(days=30)
PURGE_EVERY_S = 600.0
SWEEP_HOLDS_EVERY_S = 5.0

HoldSweeper = Callable[[Database, dt.datetime], Awaitable[Any]]


async def purge_oauth_states(db: Database, now: dt.datetime) -> int:
    """Calendar connect-flow states a day past their expiry (§7.5)."""
    async with db.write() as s:
        return await purge_states(s, now=now)


async def purge_idempotency_keys(db: Database, now: dt.datetime) -> int:
    async with db.write() as s:
        return await repo.purge_idempotency_keys(s, completed_before=now - IDEMPOTENCY_RETENTION)


async def purge_outbox(db: Database, now: dt.datetime) -> tuple[int, int]:
    """Drop delivered messages and old delivery log rows (dead messages stay for operators)."""
    async with db.write() as s:
        messages = await outbox_repo.purge_delivered(s, before=now - DELIVERED_OUTBOX_RETENTION)
        deliveries = await outbox_repo.purge_deliveries(s, before=now - DELIVERY_LOG_RETENTION)
    return messages, deliveries


def hold_sweeper() -> HoldSweeper | None:
    """`services.holds.sweep_expired_holds`, once the holds service provides it."""
    try:
        from slotguard.services import holds
    except ImportError:
        return None
    sweeper: HoldSweeper | None = getattr(holds, "sweep_expired_holds", None)
    return sweeper


class _UnusableMailer:
    """Stands in when `SLOTGUARD_SMTP_URL` cannot be parsed: mails wait in the outbox
    (retried on the schedule) instead of being dropped or merely logged."""

    def __init__(self, problem: str) -> None:
        self.problem = problem

    async def send(self, msg: EmailMessage) -> None:
        raise MailDeliveryError(f"SLOTGUARD_SMTP_URL is not usable: {self.problem}")


def mailer_from_settings(settings: Settings) -> MailSender:
    try:
        return mail_sender_from_settings(settings.smtp_url)
    except ValueError as exc:
        log.error("smtp_url_invalid", error=str(exc))
        return _UnusableMailer(str(exc))


async def _every(
    stop: asyncio.Event, period_s: float, name: str, job: Callable[[], Awaitable[None]]
) -> None:
    """Run `job` now and then every `period_s` until `stop`; failures are logged, not fatal."""
    while not stop.is_set():
        try:
            await job()
        except Exception:
            log.exception(f"{name}_failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=period_s)


async def run(
    db: Database,
    stop: asyncio.Event,
    *,
    settings: Settings | None = None,
    outbox_settings: OutboxSettings | None = None,
    mailer: MailSender | None = None,
) -> None:
    """Loop until `stop` is set, then let the outbox finish or release what it holds.

    Embedded in `serve`, this shares the API's event loop. That is deliberate: on its own
    thread the worker lost the GIL to a busy API (a thread waiting for the GIL gets it only
    after the holder's 5 ms switch interval, at every I/O wait) and fell seconds behind at
    full booking load, while on the shared loop its few round trips per batch keep the
    201-to-webhook delay near 100 ms (bench/outbox_bench.py).
    """
    await _run(db, stop, settings or get_settings(), outbox_settings, mailer)


async def _run(
    db: Database,
    stop: asyncio.Event,
    settings: Settings,
    outbox_settings: OutboxSettings | None,
    mailer: MailSender | None,
) -> None:
    outbox_settings = outbox_settings or OutboxSettings()
    mailer = mailer or mailer_from_settings(settings)

    async def purge() -> None:
        now = dt.datetime.now(dt.UTC)
        purged = await purge_idempotency_keys(db, now)
        if purged:
            log.info("idempotency_keys_purged", count=purged)
        states = await purge_oauth_states(db, now)
        if states:
            log.info("oauth_states_purged", count=states)
        messages, deliveries = await purge_outbox(db, now)
        if messages or deliveries:
            log.info("outbox_purged", messages=messages, deliveries=deliveries)
        async with db.write() as s:
            pages = await pages_repo.purge_page_state(s, now=now)
        if pages:
            log.info("page_state_purged", rows=pages)

    jobs = [_every(stop, PURGE_EVERY_S, "purge", purge)]
    sweeper = hold_sweeper()
    if sweeper is not None:
        sweep = sweeper

        async def sweep_holds() -> None:
            await sweep(db, dt.datetime.now(dt.UTC))

        jobs.append(_every(stop, SWEEP_HOLDS_EVERY_S, "hold_sweep", sweep_holds))
    else:
        log.warning("hold_sweeper_unavailable")

    calendar_config = SyncConfig.from_settings(settings)
    async with (
        make_webhook_client(
            allow_private=settings.allow_private_webhooks, timeout=WEBHOOK_TIMEOUT_S
        ) as http,
        calendar_config.client() as calendar_http,
    ):
        outbox = OutboxWorker(
            db,
            http=http,
            mailer=mailer,
            email_from=settings.email_from,
            settings=outbox_settings,
            calendar_writer=CalendarWriter(db, config=calendar_config, http=calendar_http),
        )
        calendar_sync = CalendarSync(db, config=calendar_config, http=calendar_http)
        log.info("worker_started", worker=outbox.worker_id, hold_sweeper=sweeper is not None)
        await asyncio.gather(outbox.run(stop), calendar_sync.run(stop), *jobs)
        log.info("worker_stopped", worker=outbox.worker_id, delivered=outbox.delivered)


async def run_forever(settings: Settings) -> None:
    db = Database.connect(
        settings.database_url, pool_size=4, busy_timeout_s=settings.sqlite_busy_timeout_s
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await run(db, stop, settings=settings)
    finally:
        await db.dispose()
