"""What every availability read and every reservation write needs to know about a business.

Shared by the slot listing, direct bookings, reschedules and holds, so all of them apply
exactly the same rules to exactly the same blockers.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.domain.availability import Blocker, SlotRequest
from slotguard.domain.rules import EffectiveRules
from slotguard.domain.timezones import zone
from slotguard.services.businesses import (
    effective_rules,
    get_account,
    resolve_business,
    resolve_meeting_class,
)
from slotguard.services.context import RequestContext
from slotguard.store import repositories as repo
from slotguard.store.models import Business, MeetingClass

DEFAULT_DURATION_MINUTES = 30
# Blockers this far outside a window can still reach into it through buffers; rule and class
# buffers are each capped at a day, so three days covers every combination.
BLOCKER_MARGIN = dt.timedelta(days=3)


@dataclass(frozen=True, slots=True)
class Scheduling:
    business: Business
    tz: ZoneInfo
    rules: EffectiveRules
    meeting_class: MeetingClass

    def duration(self, minutes: int | None) -> dt.timedelta:
        chosen = minutes or self.meeting_class.duration_minutes or DEFAULT_DURATION_MINUTES
        return dt.timedelta(minutes=chosen)

    def slot_request(
        self,
        *,
        duration: dt.timedelta,
        now: dt.datetime,
        extra_buffer_minutes: int = 0,
        interval_minutes: int | None = None,
    ) -> SlotRequest:
        gap = self.rules.buffer_minutes + extra_buffer_minutes
        return SlotRequest(
            tz=self.tz,
            rules=self.rules,
            duration=duration,
            now=now,
            buffer_before=dt.timedelta(minutes=gap + self.meeting_class.buffer_before_minutes),
            buffer_after=dt.timedelta(minutes=gap + self.meeting_class.buffer_after_minutes),
            interval_minutes=interval_minutes
            or self.rules.slot_interval_for(int(duration.total_seconds() // 60)),
        )


async def load_scheduling(
    s: AsyncSession,
    ctx: RequestContext,
    *,
    business_id: str | None,
    owner_email: str | None = None,
    meeting_class: str | None,
    lock: bool,
) -> Scheduling:
    """Resolve business (locked for writers), rules and meeting class for one request."""
    business = await resolve_business(
        s, ctx.actor, business_id=business_id, owner_email=owner_email, lock=lock
    )
    account = await get_account(s, ctx.actor)
    rules, _ = effective_rules(account, business)
    mc = await resolve_meeting_class(s, ctx.actor, meeting_class)
    return Scheduling(business=business, tz=zone(business.timezone), rules=rules, meeting_class=mc)


async def load_blockers(
    s: AsyncSession,
    business_id: str,
    *,
    start: dt.datetime,
    end: dt.datetime,
    now: dt.datetime,
    exclude_booking_id: str | None = None,
    exclude_hold_id: str | None = None,
    holds_below_priority_ignored: int | None = None,
) -> list[Blocker]:
    """Every booking, live held slot and busy interval that can affect [start, end).

    `holds_below_priority_ignored`: holds of strictly lower priority than this do not block
    (a higher-priority caller may take them, §5).
    """
    lo, hi = start - BLOCKER_MARGIN, end + BLOCKER_MARGIN
    blockers: list[Blocker] = []
    for r in await repo.active_reservations(s, business_id, start=lo, end=hi, now=now):
        if exclude_booking_id is not None and r.booking_id == exclude_booking_id:
            continue
        if exclude_hold_id is not None and r.hold_id == exclude_hold_id:
            continue
        if (
            r.kind == "hold"
            and holds_below_priority_ignored is not None
            and r.priority < holds_below_priority_ignored
        ):
            continue
        blockers.append(
            Blocker(
                start=r.start_at,
                end=r.end_at,
                kind="booking" if r.kind == "booking" else "hold",
                buffer_before=dt.timedelta(minutes=r.buffer_before_minutes),
                buffer_after=dt.timedelta(minutes=r.buffer_after_minutes),
            )
        )
    for b_start, b_end in await repo.busy_between(s, business_id, start=lo, end=hi):
        blockers.append(Blocker(start=b_start, end=b_end, kind="busy"))
    return blockers


async def bookings_per_day(
    s: AsyncSession,
    business_id: str,
    tz: ZoneInfo,
    *,
    start: dt.datetime,
    end: dt.datetime,
    exclude_booking_id: str | None = None,
) -> Counter[dt.date]:
    """Confirmed bookings per local day (business zone) for the days touching [start, end)."""
    starts: Sequence[dt.datetime] = await repo.booking_starts_between(
        s,
        business_id,
        start=start - dt.timedelta(days=2),
        end=end + dt.timedelta(days=2),
        exclude_booking_id=exclude_booking_id,
    )
    return Counter(t.astimezone(tz).date() for t in starts)
