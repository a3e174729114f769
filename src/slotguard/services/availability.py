"""Reading free time (§3.1)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.domain.arbitration import Caller
from slotguard.domain.availability import Interval, compute_slots
from slotguard.domain.errors import ValidationFailed, WindowTooLarge
from slotguard.services.calendars import calendar_warnings
from slotguard.services.context import RequestContext
from slotguard.services.scheduling import Scheduling, load_occupancy, load_scheduling

DEFAULT_WINDOW = dt.timedelta(days=14)
MAX_WINDOW = dt.timedelta(days=90)


@dataclass(frozen=True, slots=True)
class SlotsResult:
    scheduling: Scheduling
    duration: dt.timedelta
    slots: list[Interval]
    warnings: list[dict[str, Any]] = field(default_factory=list)


def resolve_window(
    ctx: RequestContext, start: dt.datetime | None, end: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime]:
    start = start or ctx.now
    end = end or start + DEFAULT_WINDOW
    if end <= start:
        raise ValidationFailed(
            "end must be after start.", fields=[{"field": "end", "message": "must be after start"}]
        )
    if end - start > MAX_WINDOW:
        raise WindowTooLarge("The window may span at most 90 days.", max_days=90)
    return start, end


async def get_slots(
    s: AsyncSession,
    ctx: RequestContext,
    *,
    business_id: str | None,
    owner_email: str | None,
    meeting_class: str | None,
    duration_minutes: int | None,
    start: dt.datetime | None,
    end: dt.datetime | None,
    buffer_minutes: int,
    slot_interval_minutes: int | None,
    limit: int,
) -> SlotsResult:
    """Slots that a booking by this caller would get right now."""
    window_start, window_end = resolve_window(ctx, start, end)
    sched = await load_scheduling(
        s,
        ctx,
        business_id=business_id,
        owner_email=owner_email,
        meeting_class=meeting_class,
        lock=False,
    )
    duration = sched.duration(duration_minutes)
    req = sched.slot_request(
        duration=duration,
        now=ctx.now,
        extra_buffer_minutes=buffer_minutes,
        interval_minutes=slot_interval_minutes,
    )
    occ = await load_occupancy(
        s, sched.business.id, start=window_start, end=window_end, now=ctx.now
    )
    # What a direct booking by this caller would get: lower-priority holds give way (§5),
    # confirmed bookings do not.
    caller = Caller(priority=sched.terms.priority, may_preempt_bookings=False)
    slots = compute_slots(
        req,
        window_start=window_start,
        window_end=window_end,
        blockers=occ.blockers(caller, tier="take_holds", now=ctx.now),
        bookings_per_day=occ.per_day(sched.tz),
        limit=limit,
    )
    warnings = calendar_warnings(occ.calendars, now=ctx.now, interval_s=ctx.calendar_sync_seconds)
    return SlotsResult(scheduling=sched, duration=duration, slots=slots, warnings=warnings)
