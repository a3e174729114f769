"""Booking facts shared by several use cases."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.domain.errors import DomainError, SlotConflict, VersionConflict
from slotguard.ids import new_id
from slotguard.services.context import RequestContext
from slotguard.store import repositories as repo
from slotguard.store.models import Booking, Hold, Reservation


def snapshot(b: Booking) -> dict[str, Any]:
    """The state an audit row records, enough to rebuild the booking from the log alone."""
    return {
        "status": b.status,
        "start_time": b.start_at.isoformat(),
        "end_time": b.end_at.isoformat(),
        "version": b.version,
        "business_id": b.business_id,
        "meeting_class": b.meeting_class,
        "hold_id": b.hold_id,
    }


@dataclass(frozen=True, slots=True)
class BookingDetails:
    """What the caller says about a new booking (all optional)."""

    title: str | None = None
    description: str | None = None
    customer_email: str | None = None
    customer_name: str | None = None
    attendees: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)


def new_booking(
    ctx: RequestContext,
    *,
    business_id: str,
    meeting_class: str,
    default_title: str,
    priority: int,
    buffers: tuple[int, int],
    start: dt.datetime,
    end: dt.datetime,
    details: BookingDetails,
    hold_id: str | None = None,
) -> Booking:
    """A confirmed booking, version 1, committed now by the caller."""
    return Booking(
        id=new_id("bk"),
        account_id=ctx.account_id,
        business_id=business_id,
        meeting_class=meeting_class,
        priority=priority,
        buffer_before_minutes=buffers[0],
        buffer_after_minutes=buffers[1],
        status="confirmed",
        start_at=start,
        end_at=end,
        title=details.title or default_title,
        description=details.description,
        customer_email=details.customer_email,
        customer_name=details.customer_name,
        attendees=details.attendees,
        metadata_=details.metadata,
        hold_id=hold_id,
        correlation_id=new_id("corr"),
        version=1,
        calendar_sync_status="not_applicable",
        calendar_event_id=None,
        created_at=ctx.now,
        updated_at=ctx.now,
        cancelled_at=None,
        cancellation_reason=None,
        agent_id=ctx.actor.agent_id,
        key_id=ctx.actor.key_id,
    )


def reservation_for(b: Booking) -> Reservation:
    return Reservation(
        business_id=b.business_id,
        kind="booking",
        booking_id=b.id,
        hold_id=None,
        start_at=b.start_at,
        end_at=b.end_at,
        priority=b.priority,
        buffer_before_minutes=b.buffer_before_minutes,
        buffer_after_minutes=b.buffer_after_minutes,
        expires_at=None,
        active=True,
    )


def check_if_match(booking: Booking, if_match: int | None) -> None:
    if if_match is not None and if_match != booking.version:
        raise VersionConflict(current_version=booking.version)


async def flush_reservations(
    s: AsyncSession,
    *,
    conflict: DomainError | None = None,
    new: tuple[Booking | Hold, Sequence[Reservation]] | None = None,
) -> None:
    """Flush (and insert `new`: a booking or hold with its reservations), turning the
    database's own overlap verdict (PostgreSQL 23P01) into a 409.

    The business row lock makes this unreachable in normal operation; it is the last line:
    whatever a bug above it lets through, the exclusion constraint refuses. No savepoint:
    the error aborts the whole unit of work, which the caller's transaction rolls back.
    """
    try:
        if new is None:
            await s.flush()
        else:
            await repo.insert_reserving(s, *new)
    except IntegrityError as exc:
        if repo.sqlstate_of(exc) == repo.EXCLUSION_VIOLATION:
            raise (conflict or SlotConflict(reason="overlaps_booking")) from None
        raise
