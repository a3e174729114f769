"""Booking facts shared by several use cases."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.domain.errors import DomainError, SlotConflict, VersionConflict
from slotguard.store import repositories as repo
from slotguard.store.models import Booking, Reservation


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


async def flush_reservations(s: AsyncSession, *, conflict: DomainError | None = None) -> None:
    """Flush, turning the database's own overlap verdict (PostgreSQL 23P01) into a 409.

    The business row lock makes this unreachable in normal operation; it is the last line:
    whatever a bug above it lets through, the exclusion constraint refuses.
    """
    try:
        async with s.begin_nested():
            await s.flush()
    except IntegrityError as exc:
        if repo.sqlstate_of(exc) == repo.EXCLUSION_VIOLATION:
            raise (conflict or SlotConflict(reason="overlaps_booking")) from None
        raise
