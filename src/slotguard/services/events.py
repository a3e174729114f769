"""Side effects of state changes, recorded in the caller's transaction (the outbox).

Services call these after changing a booking or a hold; the rows commit (or vanish) with
the change itself, and the worker delivers them at least once.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.services.context import RequestContext
from slotguard.store.models import Booking, Hold

BOOKING_EVENTS = (
    "booking.created",
    "booking.confirmed",
    "booking.cancelled",
    "booking.rescheduled",
    "booking.updated",
    "booking.preempted",
)
HOLD_EVENTS = ("hold.expired",)
EVENT_TYPES = BOOKING_EVENTS + HOLD_EVENTS


async def booking_event(
    s: AsyncSession, ctx: RequestContext | None, event_type: str, booking: Booking
) -> None:
    """Enqueue the webhooks, emails and calendar writes that `event_type` causes."""
    del s, ctx, event_type, booking  # the outbox (issue 4) fills this in


async def hold_event(
    s: AsyncSession, ctx: RequestContext | None, event_type: str, hold: Hold
) -> None:
    """Enqueue the webhooks a hold event causes (only `hold.expired` today)."""
    del s, ctx, event_type, hold
