"""What every availability read and every reservation write needs to know about a business.

Shared by the slot listing, direct bookings, reschedules and holds, so all of them apply
exactly the same rules to exactly the same blockers.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.domain.arbitration import Caller, Claim, Tier, conflicts, displaceable
from slotguard.domain.availability import Blocker, SlotRequest
from slotguard.domain.rules import EffectiveRules
from slotguard.domain.timezones import zone
from slotguard.services.businesses import (
    get_account,
    meeting_class_name,
    merge_layers,
    resolve_business,
    resolve_meeting_class,
)
from slotguard.services.context import RequestContext
from slotguard.store import repositories as repo
from slotguard.store.busy import BusyPeriods, CalendarState
from slotguard.store.models import Business

DEFAULT_DURATION_MINUTES = 30
# Blockers this far outside a window can still reach into it through buffers (rule and class
# buffers are each capped at a day), and the daily cap needs whole local days around it.
BLOCKER_MARGIN = dt.timedelta(days=3)


@dataclass(frozen=True, slots=True)
class ClassTerms:
    """What a request's meeting class contributes: name, title, priority, buffers."""

    name: str
    display_name: str
    duration_minutes: int | None
    priority: int
    buffer_before_minutes: int
    buffer_after_minutes: int


@dataclass(frozen=True, slots=True)
class BusinessRef:
    """The business a request schedules for, as far as scheduling and its answers need it."""

    id: str
    name: str
    timezone: str


@dataclass(frozen=True, slots=True)
class Scheduling:
    # A read's plain row, or a writer's loaded row: kept, it stays in the session's identity
    # map (weakly held there), so later loads of it in the transaction need no statement.
    business: BusinessRef | Business
    tz: ZoneInfo
    rules: EffectiveRules
    terms: ClassTerms

    def duration(self, minutes: int | None) -> dt.timedelta:
        chosen = minutes or self.terms.duration_minutes or DEFAULT_DURATION_MINUTES
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
            buffer_before=dt.timedelta(minutes=gap + self.terms.buffer_before_minutes),
            buffer_after=dt.timedelta(minutes=gap + self.terms.buffer_after_minutes),
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
    business: BusinessRef | Business
    row = None
    if business_id:
        class_name = meeting_class_name(ctx.actor, meeting_class)
        row = await (
            repo.business_and_account_rules(s, ctx.account_id, business_id, class_name)
            if lock
            else repo.business_rules_and_class(s, ctx.account_id, business_id, class_name)
        )
    terms = _class_terms(row) if row is not None else None
    if row is not None and not lock:
        ctx.actor.require_business(row.id)
        business = BusinessRef(row.id, row.name, row.timezone)
        layers = [row.account_rules or {}, row.rules]
    else:
        if row is not None:
            biz, account_rules = row.Business, row.account_rules or {}
            ctx.actor.require_business(biz.id)
        else:  # by owner email, or unknown (resolve_business raises the right error)
            biz = await resolve_business(
                s, ctx.actor, business_id=business_id, owner_email=owner_email, lock=lock
            )
            account_rules = (await get_account(s, ctx.actor)).rules or {}
        business = biz
        layers = [account_rules, biz.rules]
    rules = _effective_rules(orjson.dumps(layers))
    if terms is None:  # not read yet, or not there (then the fallbacks and errors apply)
        mc = await resolve_meeting_class(s, ctx.actor, meeting_class)
        terms = ClassTerms(
            name=mc.name,
            display_name=mc.display_name,
            duration_minutes=mc.duration_minutes,
            priority=mc.priority,
            buffer_before_minutes=mc.buffer_before_minutes,
            buffer_after_minutes=mc.buffer_after_minutes,
        )
    return Scheduling(business=business, tz=zone(business.timezone), rules=rules, terms=terms)


def _class_terms(row: Any) -> ClassTerms | None:
    """The meeting class read with the business (None: no class of that name)."""
    if row.class_name is None:
        return None
    return ClassTerms(
        name=row.class_name,
        display_name=row.class_display_name,
        duration_minutes=row.class_duration_minutes,
        priority=row.class_priority,
        buffer_before_minutes=row.class_buffer_before_minutes,
        buffer_after_minutes=row.class_buffer_after_minutes,
    )


@functools.lru_cache(maxsize=256)
def _effective_rules(layers: bytes) -> EffectiveRules:
    # Validating and merging both layers cost ~0.1 ms a request. Keyed by the stored layers'
    # JSON, so a changed rule is a new key. The result is shared: it is never modified.
    account_rules, business_rules = orjson.loads(layers)
    return merge_layers(account_rules, business_rules)[0]


@dataclass
class Occupancy:
    """Everything that takes time near a window: claims (bookings, held slots) and busy time."""

    claims: list[Claim] = field(default_factory=list)
    busy: list[Blocker] = field(default_factory=list)
    # Hold rows past expiry that are still marked active: they block nothing, but a writer
    # must clear them before inserting over them (the exclusion constraint cannot see time).
    stale_holds: bool = False
    # The business's busy calendars as the busy read found them (for staleness warnings).
    calendars: Sequence[CalendarState] = ()

    def blockers(
        self,
        caller: Caller | None = None,
        *,
        tier: Tier = "free",
        now: dt.datetime,
        sacred_hours: int = 0,
    ) -> list[Blocker]:
        """The blockers for `caller` at `tier`: claims it may displace are left out."""
        kept = [
            c.blocker
            for c in self.claims
            if caller is None
            or not displaceable(c, caller, tier=tier, now=now, sacred_hours=sacred_hours)
        ]
        return kept + self.busy

    def displaced(
        self,
        req: SlotRequest,
        start: dt.datetime,
        end: dt.datetime,
        caller: Caller,
        *,
        tier: Tier,
        sacred_hours: int,
    ) -> list[Claim]:
        """Claims a slot chosen at `tier` takes away from their owners."""
        return [
            c
            for c in self.claims
            if conflicts(req, start, end, c.blocker)
            and displaceable(c, caller, tier=tier, now=req.now, sacred_hours=sacred_hours)
        ]

    def per_day(self, tz: ZoneInfo) -> Counter[dt.date]:
        """Meetings per local day for the daily cap: bookings, plus each live hold once."""
        seen: set[tuple[str, dt.date]] = set()
        counts: Counter[dt.date] = Counter()
        for c in self.claims:
            day = c.blocker.start.astimezone(tz).date()
            if (c.ref, day) in seen:
                continue
            seen.add((c.ref, day))
            counts[day] += 1
        return counts


async def load_occupancy(
    s: AsyncSession,
    business_id: str,
    *,
    start: dt.datetime,
    end: dt.datetime,
    now: dt.datetime,
    exclude_booking_id: str | None = None,
    exclude_hold_id: str | None = None,
) -> Occupancy:
    lo, hi = start - BLOCKER_MARGIN, end + BLOCKER_MARGIN
    occ = Occupancy()
    for r, booked_at in await repo.active_claims(s, business_id, start=lo, end=hi):
        if r.expires_at is not None and r.expires_at <= now:
            occ.stale_holds = True
            continue
        if r.kind == "booking" and r.booking_id == exclude_booking_id:
            continue
        if r.kind == "hold" and r.hold_id == exclude_hold_id:
            continue
        blocker = Blocker(
            start=r.start_at,
            end=r.end_at,
            kind="booking" if r.kind == "booking" else "hold",
            buffer_before=dt.timedelta(minutes=r.buffer_before_minutes),
            buffer_after=dt.timedelta(minutes=r.buffer_after_minutes),
        )
        ref = r.booking_id if r.kind == "booking" else r.hold_id
        occ.claims.append(
            Claim(
                ref=ref or "",
                kind="booking" if r.kind == "booking" else "hold",
                blocker=blocker,
                priority=r.priority,
                committed_at=booked_at or now,
            )
        )
    found = await repo.busy_periods(s, business_id, start=lo, end=hi)
    for w in found.windows:
        occ.busy += _busy_blockers(w.periods)[w.first : w.last]
    occ.calendars = found.calendars
    return occ


@functools.lru_cache(maxsize=256)
def _busy_blockers(periods: BusyPeriods) -> tuple[Blocker, ...]:
    # Keyed by the decoded object (identity), which the store hands out once per packed
    # text: the blockers of a calendar copy or a busy window are built once, not per read.
    return tuple(
        Blocker(start=a, end=b, kind="busy")
        for a, b in zip(periods.starts, periods.ends, strict=True)
    )


async def clear_stale_holds(
    s: AsyncSession, occ: Occupancy, business_id: str, now: dt.datetime
) -> None:
    """Deactivate expired hold rows before a reservation is written (only when there are any)."""
    if occ.stale_holds:
        await repo.expire_holds(s, business_id, now)
