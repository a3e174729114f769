"""Bookings written to the write calendar (§7.3), delivered from the outbox.

A ``calendar`` outbox message names a booking only. Delivery *reconciles*: it reads the
booking as it is now and makes the remote event match (confirmed → create or update;
cancelled or preempted → delete). So messages may be retried, duplicated or delivered out
of order, and the calendar still ends up right. The remote identity derives from the
booking and a generation (``base.remote_identity``): a retried create adopts the event it
made, and an event removed by someone else is re-created under the next generation.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

import httpx
import structlog

from slotguard.calendars.base import (
    BookingEvent,
    CalendarProvider,
    EventGone,
    EventRef,
    ProviderError,
)
from slotguard.calendars.credentials import CredentialError, secret_box
from slotguard.calendars.registry import get_spec
from slotguard.calendars.sync import SyncConfig, build_context, open_credentials
from slotguard.ids import new_id
from slotguard.store import calendar_repo
from slotguard.store.db import Database
from slotguard.store.models import (
    AuditEntry,
    Booking,
    Business,
    Calendar,
    CalendarEventLink,
    OutboxMessage,
)

log = structlog.get_logger("slotguard.calendars")

KIND = "calendar"

Status = Literal["delivered", "retry", "dead"]


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    """``retry_after``: with ``retry``, the seconds the provider asked to be left alone
    (a throttled write: ``Retry-After`` of a 429, a rate-limit 403, a 503); the outbox
    makes the next attempt no earlier."""

    status: Status
    error: str | None = None
    retry_after: float | None = None


class CalendarWriter:
    def __init__(self, db: Database, *, config: SyncConfig, http: httpx.AsyncClient) -> None:
        self.db = db
        self.config = config
        self.http = http
        self._box = secret_box(config.secret_key)

    async def deliver(self, message: OutboxMessage, *, final: bool) -> WriteOutcome:
        """Make the remote event match the booking. ``final``: no retry follows a failure,
        so a failure marks the booking ``failed`` and writes ``calendar_write_failed``."""
        booking_id = message.booking_id or ""
        try:
            return await self._reconcile(booking_id)
        except (ProviderError, CredentialError) as exc:
            error = exc.message if isinstance(exc, ProviderError) else str(exc)
            if final:
                await self._give_up(booking_id, error)
                return WriteOutcome("dead", error)
            retry_after = exc.retry_after if isinstance(exc, ProviderError) else None
            return WriteOutcome("retry", error, retry_after)

    async def _reconcile(self, booking_id: str) -> WriteOutcome:
        async with self.db.read() as s:
            booking = await s.get(Booking, booking_id)
            if booking is None:
                return WriteOutcome("delivered", "booking no longer exists")
            business = await s.get(Business, booking.business_id)
            link = await calendar_repo.get_link(s, booking_id)
            current = await calendar_repo.write_calendar(s, booking.business_id)
            linked: Calendar | None = None
            if link is not None and link.state == "written":
                linked = await calendar_repo.calendar_by_id(s, link.calendar_id)
        assert business is not None
        if booking.status != "confirmed":
            if linked is not None and link is not None and link.remote_id:
                provider = self._provider(linked, business)
                await provider.delete_event(EventRef(link.remote_id, link.generation, link.etag))
                await self._save(booking_id, linked.id, link.generation, None, None, "deleted")
            elif link is not None:
                await self._save(
                    booking_id, link.calendar_id, link.generation, None, None, "deleted"
                )
            else:
                # Nothing was written, or it was written to a calendar since disconnected
                # (its links went with it, its events stay): nothing to take away.
                await self._mark(booking_id, "synced" if current else "not_applicable", None)
            return WriteOutcome("delivered")
        if current is None:
            await self._mark(booking_id, "not_applicable", None)
            return WriteOutcome("delivered", "no write calendar")
        # The write calendar changed since the event was written: the old event stays where
        # it is (the owner disconnected that calendar) and the new one gets its own.
        same = link is not None and link.calendar_id == current.id and link.state == "written"
        generation = link.generation if link is not None and link.calendar_id == current.id else 1
        existing = (
            EventRef(link.remote_id, link.generation, link.etag)
            if same and link is not None and link.remote_id
            else None
        )
        provider = self._provider(current, business)

        def event(gen: int) -> BookingEvent:
            return BookingEvent(
                booking_id=booking.id,
                generation=gen,
                title=booking.title or "Meeting",
                description=booking.description,
                start=booking.start_at,
                end=booking.end_at,
                timezone=business.timezone,
            )

        try:
            ref = await provider.upsert_event(event(generation), existing)
        except EventGone:
            # Removed remotely (by the owner, or a tombstone): write it again, fresh identity.
            generation += 1
            ref = await provider.upsert_event(event(generation), None)
        status = await self._save(
            booking_id, current.id, ref.generation, ref.remote_id, ref.etag, "written"
        )
        if status != "confirmed":
            # Cancelled while the event was being written (its own message may have found
            # nothing to delete yet): take the event away again.
            await provider.delete_event(ref)
            await self._save(booking_id, current.id, ref.generation, None, None, "deleted")
        return WriteOutcome("delivered")

    def _provider(self, cal: Calendar, business: Business) -> CalendarProvider:
        spec = get_spec(cal.provider)
        if spec is None:
            raise CredentialError(f"unknown calendar provider {cal.provider!r}")
        credentials = open_credentials(self._box, cal)
        ctx = build_context(
            cal, business, credentials=credentials, http=self.http, config=self.config, db=self.db
        )
        return spec.build(ctx)

    async def _save(
        self,
        booking_id: str,
        calendar_id: str,
        generation: int,
        remote_id: str | None,
        etag: str | None,
        state: str,
    ) -> str | None:
        """Store the link; returns the booking's status as of this transaction."""
        now = dt.datetime.now(dt.UTC)
        async with self.db.write() as s:
            link = await calendar_repo.get_link(s, booking_id)
            if link is None:
                link = CalendarEventLink(booking_id=booking_id)
                s.add(link)
            link.calendar_id = calendar_id
            link.generation = generation
            link.remote_id = remote_id if state == "written" else link.remote_id
            link.etag = etag
            link.state = state
            link.updated_at = now
            booking = await s.get(Booking, booking_id, populate_existing=True)
            if booking is None:
                return None
            booking.calendar_sync_status = "synced"
            if state == "written":
                booking.calendar_event_id = remote_id
            return booking.status

    async def _mark(self, booking_id: str, status: str, event_id: str | None) -> None:
        async with self.db.write() as s:
            booking = await s.get(Booking, booking_id, populate_existing=True)
            if booking is not None:
                booking.calendar_sync_status = status
                if event_id is not None:
                    booking.calendar_event_id = event_id

    async def _give_up(self, booking_id: str, error: str) -> None:
        now = dt.datetime.now(dt.UTC)
        async with self.db.write() as s:
            booking = await s.get(Booking, booking_id, populate_existing=True)
            if booking is None:
                return
            booking.calendar_sync_status = "failed"
            link = await calendar_repo.get_link(s, booking_id)
            s.add(
                AuditEntry(
                    id=new_id("aud"),
                    account_id=booking.account_id,
                    at=now,
                    action="calendar_write_failed",
                    agent_id=None,
                    key_id=None,
                    business_id=booking.business_id,
                    hold_id=booking.hold_id,
                    booking_id=booking.id,
                    meeting_class=booking.meeting_class,
                    decision=None,
                    reason=error[:200],
                    request_id=None,
                    correlation_id=booking.correlation_id,
                    details={"calendar_id": link.calendar_id if link else None, "error": error},
                )
            )
        log.warning("calendar_write.failed", booking_id=booking_id, error=error)
