"""At most ``MAILBOX_CONCURRENCY`` requests in flight per Microsoft mailbox, across every
calendar of that mailbox and every process sharing the database (research note §2.5:
Graph answers a fifth concurrent request with 429 ``MailboxConcurrency``).

A request is sent only while its sender holds one of the mailbox's permits, rows of
``mailbox_permits`` taken and given back by single conditional UPDATEs
(``store/mailbox_repo.py``). So:

* the limit holds whatever the number of ``serve``/``worker`` processes, on SQLite and
  PostgreSQL alike;
* a permit is held only while the request is on the wire (never while waiting out a
  ``Retry-After``: ``rest.RestSession`` sleeps outside it), and carries an expiry past the
  request timeout, so a process that died with permits frees them when they run out;
* within a process the in-process semaphore of the mailbox (``rest.MAILBOXES``) is passed
  first, so the requests of one process queue there, not by polling the database;
* a sender that finds no free permit waits by reading (no writes) with a growing, jittered
  pause, and gives up after ``wait_s`` with ``ProviderRateLimited``: its calendar is
  rescheduled and the worker slot goes to another calendar, so a saturated mailbox holds
  up only its own calendars.

Two statements per request (take, give back), on a path that is never the booking path.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import random
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog

from slotguard.calendars.base import ProviderRateLimited
from slotguard.calendars.rest import MAILBOX_CONCURRENCY, MAILBOXES, MailboxLimits
from slotguard.store import mailbox_repo
from slotguard.store.db import Database

log = structlog.get_logger("slotguard.calendars.permits")

Clock = Callable[[], dt.datetime]

POLL_MIN_S = 0.01
POLL_MAX_S = 0.1


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def mailbox_key(provider: str, mailbox: str) -> str:
    """The key of a mailbox in ``mailbox_permits``: a digest, so no address is stored twice."""
    return hashlib.sha256(f"{provider}:{mailbox.strip().lower()}".encode()).hexdigest()[:64]


class MailboxPermits:
    """The permits of the mailboxes, shared by the provider objects of one process."""

    def __init__(
        self,
        db: Database,
        *,
        per_mailbox: int = MAILBOX_CONCURRENCY,
        hold: dt.timedelta = dt.timedelta(seconds=60),
        wait_s: float = 30.0,
        local: MailboxLimits | None = None,
        clock: Clock = _utcnow,
        rng: random.Random | None = None,
    ) -> None:
        self.db = db
        self.per_mailbox = per_mailbox
        self.hold = hold
        self.wait_s = wait_s
        self.local = local if local is not None else MAILBOXES
        self.clock = clock
        self.rng = rng or random.Random()

    def __repr__(self) -> str:
        return f"MailboxPermits(per_mailbox={self.per_mailbox})"

    def limiter(self, key: str) -> Callable[[], contextlib.AbstractAsyncContextManager[None]]:
        """What ``RestSession(limiter=…)`` takes: one permit of mailbox ``key`` per use."""
        return lambda: self.permit(key)

    @contextlib.asynccontextmanager
    async def permit(self, key: str) -> AsyncIterator[None]:
        async with self.local.get(key):
            # One holder token per permit taken: a permit that expired under a slow request
            # and was taken by another sender is never given back by the first.
            holder = "mbx_" + uuid.uuid4().hex[:16]
            slot = await self._take(key, holder)
            try:
                yield
            finally:
                # Given back even when the request was cancelled; if that fails too, the
                # permit frees itself at its expiry.
                await asyncio.shield(self._give_back(key, slot, holder))

    async def _take(self, key: str, holder: str) -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        pause = POLL_MIN_S
        slots = self._order()
        while True:
            now = self.clock()
            slot = await self._try(key, slots, holder, now)
            if slot is not None:
                return slot
            # Wait by reading until a permit looks free (or expired), then try again.
            while True:
                if loop.time() > deadline:
                    log.warning("mailbox_permit_timeout", wait_s=self.wait_s)
                    raise ProviderRateLimited(
                        "Microsoft Graph: the mailbox already has "
                        f"{self.per_mailbox} requests in flight",
                        retry_after=5.0,
                        status=None,
                    )
                await asyncio.sleep(pause * (1 + self.rng.random()))
                pause = min(pause * 2, POLL_MAX_S)
                async with self.db.read() as s:
                    free, rows = await mailbox_repo.free_slots(
                        s, mailbox=key, count=self.per_mailbox, now=self.clock()
                    )
                if free or rows < self.per_mailbox:
                    slots = free + [n for n in self._order() if n not in free]
                    break

    def _order(self) -> list[int]:
        # Senders start at different slots, so they rarely race for the same row.
        slots = list(range(self.per_mailbox))
        self.rng.shuffle(slots)
        return slots

    async def _try(self, key: str, slots: list[int], holder: str, now: dt.datetime) -> int | None:
        until = now + self.hold
        async with self._session() as s:
            slot = await mailbox_repo.take_permit(
                s, mailbox=key, slots=slots, holder=holder, now=now, until=until
            )
            if slot is None:
                _, rows = await mailbox_repo.free_slots(
                    s, mailbox=key, count=self.per_mailbox, now=now
                )
                if rows < self.per_mailbox:  # first use of this mailbox
                    await mailbox_repo.ensure_permits(s, mailbox=key, count=self.per_mailbox)
                    slot = await mailbox_repo.take_permit(
                        s, mailbox=key, slots=slots, holder=holder, now=now, until=until
                    )
        return slot

    async def _give_back(self, key: str, slot: int, holder: str) -> None:
        try:
            async with self._session() as s:
                await mailbox_repo.give_back(s, mailbox=key, slot=slot, holder=holder)
        except Exception:
            log.warning("mailbox_permit_give_back_failed", exc_info=True)

    def _session(self) -> contextlib.AbstractAsyncContextManager[Any]:
        # Single statements: autocommitted on PostgreSQL; on SQLite through the process's
        # one writer (no contention for the write lock from a second connection).
        return self.db.write() if self.db.is_sqlite else self.db.autocommit()
