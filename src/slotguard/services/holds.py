"""Two-phase booking (§3.2, §3.3, §4.2): hold, confirm, release, expire."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.domain.arbitration import Caller, Tier, tiers_for
from slotguard.domain.availability import Interval, choose_non_overlapping, compute_slots
from slotguard.domain.errors import (
    HoldAlreadyConfirmed,
    HoldExpired,
    HoldNotFound,
    HoldPreempted,
    HoldReleased,
    NoSlotsAvailable,
    SlotOutsideHold,
)
from slotguard.ids import new_id
from slotguard.services import audit, events
from slotguard.services.availability import resolve_window
from slotguard.services.bookings_state import (
    BookingDetails,
    flush_reservations,
    new_booking,
    reservation_for,
    snapshot,
)
from slotguard.services.calendars import calendar_warnings
from slotguard.services.context import Actor, RequestContext
from slotguard.services.preemption import Displaced, displace
from slotguard.services.scheduling import (
    Scheduling,
    clear_stale_holds,
    load_occupancy,
    load_scheduling,
)
from slotguard.store import hold_repo
from slotguard.store import repositories as repo
from slotguard.store.db import Database
from slotguard.store.models import Booking, Business, Hold, Reservation

log = structlog.get_logger("slotguard.holds")

# A window may be long, but a hold searches at most this many candidate slots per tier.
SEARCH_LIMIT = 5000


@dataclass
class HoldDecision:
    hold: Hold
    decision: str  # accept | preempt
    displaced: Displaced = field(default_factory=Displaced)
    warnings: list[dict[str, Any]] = field(default_factory=list)


def effective_status(hold: Hold, now: dt.datetime) -> str:
    """An active hold past its expiry is expired at that instant, sweeper or not."""
    if hold.status == "active" and hold.expires_at <= now:
        return "expired"
    return hold.status


def hold_slots(hold: Hold) -> list[Interval]:
    return [
        Interval(dt.datetime.fromisoformat(x["start"]), dt.datetime.fromisoformat(x["end"]))
        for x in hold.slots
    ]


def _caller(ctx: RequestContext, sched: Scheduling) -> Caller:
    return Caller(
        priority=sched.terms.priority,
        may_preempt_bookings=ctx.actor.has_scope("bookings:preempt"),
    )


def _no_slots(
    ctx: RequestContext, sched: Scheduling, next_slot: Interval | None, window: tuple[Any, Any]
) -> NoSlotsAvailable:
    err = NoSlotsAvailable("No slot is available in the window.")
    if next_slot is not None:
        err.extra["next_available"] = {
            "start": next_slot.start.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
            "end": next_slot.end.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        }
    err.audit = [
        audit.entry(
            ctx,
            "hold_rejected",
            business_id=sched.business.id,
            meeting_class=sched.terms.name,
            decision="reject",
            reason="no_slots_available",
            details={"window": {"start": window[0].isoformat(), "end": window[1].isoformat()}},
        )
    ]
    return err


async def create_hold(
    s: AsyncSession,
    ctx: RequestContext,
    *,
    business_id: str | None,
    owner_email: str | None,
    meeting_class: str | None,
    duration_minutes: int | None,
    window_start: dt.datetime | None,
    window_end: dt.datetime | None,
    ttl_seconds: int | None,
    max_slots: int,
    lookahead_hours: int,
) -> HoldDecision:
    """Check availability and hold up to `max_slots` slots, in one atomic step."""
    window_start, window_end = resolve_window(ctx, window_start, window_end)
    sched = await load_scheduling(
        s,
        ctx,
        business_id=business_id,
        owner_email=owner_email,
        meeting_class=meeting_class,
        lock=True,
    )
    duration = sched.duration(duration_minutes)
    req = sched.slot_request(duration=duration, now=ctx.now)
    caller = _caller(ctx, sched)
    sacred = sched.rules.sacred_meeting_age_hours
    occ = await load_occupancy(
        s,
        sched.business.id,
        start=window_start,
        end=window_end + dt.timedelta(hours=lookahead_hours),
        now=ctx.now,
    )
    await clear_stale_holds(s, occ, sched.business.id, ctx.now)
    per_day = occ.per_day(sched.tz)

    # The gentlest tier that finds any slot wins: free time first, then time held at lower
    # priority, then (with the scope) non-sacred bookings of lower priority.
    chosen: list[Interval] = []
    tier: Tier = "free"
    for tier in tiers_for(caller):
        candidates = compute_slots(
            req,
            window_start=window_start,
            window_end=window_end,
            blockers=occ.blockers(caller, tier=tier, now=ctx.now, sacred_hours=sacred),
            bookings_per_day=per_day,
            limit=SEARCH_LIMIT,
        )
        chosen = choose_non_overlapping(candidates, max_slots)
        if chosen:
            break
    if not chosen:
        nxt = compute_slots(
            req,
            window_start=window_end,
            window_end=window_end + dt.timedelta(hours=lookahead_hours),
            blockers=occ.blockers(caller, tier=tier, now=ctx.now, sacred_hours=sacred),
            bookings_per_day=per_day,
            limit=1,
        )
        raise _no_slots(ctx, sched, nxt[0] if nxt else None, (window_start, window_end))

    taken = {
        (c.kind, c.ref): c
        for slot in chosen
        for c in occ.displaced(req, slot.start, slot.end, caller, tier=tier, sacred_hours=sacred)
    }
    displaced = await displace(
        s,
        ctx,
        list(taken.values()),
        business_id=sched.business.id,
        by_meeting_class=sched.terms.name,
        by_priority=sched.terms.priority,
    )
    ttl = ttl_seconds or sched.rules.hold_ttl_seconds
    hold = Hold(
        id=new_id("hld"),
        account_id=ctx.account_id,
        business_id=sched.business.id,
        meeting_class=sched.terms.name,
        priority=sched.terms.priority,
        status="active",
        slots=[{"start": x.start.isoformat(), "end": x.end.isoformat()} for x in chosen],
        expires_at=ctx.now + dt.timedelta(seconds=ttl),
        booking_id=None,
        agent_id=ctx.actor.agent_id,
        key_id=ctx.actor.key_id,
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    reservations = [
        Reservation(
            business_id=hold.business_id,
            kind="hold",
            booking_id=None,
            hold_id=hold.id,
            start_at=x.start,
            end_at=x.end,
            priority=hold.priority,
            buffer_before_minutes=sched.terms.buffer_before_minutes,
            buffer_after_minutes=sched.terms.buffer_after_minutes,
            expires_at=hold.expires_at,
            active=True,
        )
        for x in chosen
    ]
    await flush_reservations(
        s,
        conflict=_no_slots(ctx, sched, None, (window_start, window_end)),
        new=(hold, reservations),
    )
    decision = "preempt" if displaced.booking_ids else "accept"
    audit.record(
        s,
        ctx,
        "hold_created",
        business_id=hold.business_id,
        hold_id=hold.id,
        meeting_class=hold.meeting_class,
        decision=decision,
        details={
            "status": "active",
            "slots": hold.slots,
            "expires_at": hold.expires_at.isoformat(),
            "priority": hold.priority,
            "preempted_holds": displaced.hold_ids,
            "preempted_bookings": displaced.booking_ids,
        },
    )
    # Staleness of the busy calendars as the busy read above found them (no second read).
    warnings = calendar_warnings(occ.calendars, now=ctx.now, interval_s=ctx.calendar_sync_seconds)
    return HoldDecision(hold=hold, decision=decision, displaced=displaced, warnings=warnings)


async def get_hold(
    s: AsyncSession, ctx: RequestContext, hold_id: str, *, lock: bool = False
) -> Hold:
    """The hold, checked against the key's fence (locked as `lock_hold` does, with `lock`)."""
    if lock:
        return (await lock_hold(s, ctx, hold_id))[0]
    hold = await repo.get_hold(s, ctx.account_id, hold_id)
    if hold is None:
        raise HoldNotFound()
    ctx.actor.require_business(hold.business_id)
    return hold


async def lock_hold(
    s: AsyncSession, ctx: RequestContext, hold_id: str
) -> tuple[Hold, Business | None]:
    """The hold and its business (None if deleted), both rows locked.

    The business row is locked before the hold's, the order every writer uses (a
    preempting request locks the business, then the holds it takes), so no two writers
    can deadlock.
    """
    hold = await get_hold(s, ctx, hold_id)
    business = await repo.lock_business(s, ctx.account_id, hold.business_id)
    locked = await repo.get_hold(s, ctx.account_id, hold_id, for_update=True)
    if locked is None:  # holds are never deleted; this only narrows the type
        raise HoldNotFound()
    return locked, business


async def release_hold(s: AsyncSession, ctx: RequestContext, hold_id: str) -> Hold:
    """Release a hold. Releasing twice is fine; a confirmed hold cannot be released."""
    hold = await get_hold(s, ctx, hold_id, lock=True)
    status = effective_status(hold, ctx.now)
    if status == "confirmed":
        raise HoldAlreadyConfirmed(booking_id=hold.booking_id)
    if status != "active":
        return hold  # released, expired or preempted: nothing is held any more
    hold.status = "released"
    hold.updated_at = ctx.now
    await repo.deactivate_hold_reservations(s, hold.id)
    audit.record(
        s,
        ctx,
        "hold_released",
        business_id=hold.business_id,
        hold_id=hold.id,
        meeting_class=hold.meeting_class,
        details={"status": "released"},
    )
    return hold


def _check_confirmable(hold: Hold, now: dt.datetime) -> None:
    status = effective_status(hold, now)
    if status == "confirmed":
        raise HoldAlreadyConfirmed(booking_id=hold.booking_id)
    if status == "released":
        raise HoldReleased()
    if status == "preempted":
        raise HoldPreempted()
    if status == "expired":
        raise HoldExpired(expired_at=hold.expires_at.isoformat())


async def confirm_hold(
    s: AsyncSession,
    ctx: RequestContext,
    hold_id: str,
    *,
    start: dt.datetime | None,
    details: BookingDetails,
    manage_url: str | None = None,
) -> Booking:
    """Turn one held slot into a confirmed booking and release the rest, atomically.

    `manage_url` (booking pages, §12) goes into the customer's confirmation mail.
    """
    hold, business = await lock_hold(s, ctx, hold_id)
    _check_confirmable(hold, ctx.now)
    if business is None:
        raise HoldNotFound()
    slots = hold_slots(hold)
    if start is None:
        slot = slots[0]
    else:
        matches = [x for x in slots if x.start == start]
        if not matches:
            raise SlotOutsideHold(
                "start is not one of the held slots.",
                held_starts=[x.start.astimezone(dt.UTC).isoformat() for x in slots],
            )
        slot = matches[0]
    rows = await hold_repo.hold_reservations(s, hold.id)
    buffers = (rows[0].buffer_before_minutes, rows[0].buffer_after_minutes) if rows else (0, 0)
    mc = await repo.get_meeting_class(s, ctx.account_id, hold.meeting_class)
    await repo.deactivate_hold_reservations(s, hold.id)
    booking = new_booking(
        ctx,
        business_id=hold.business_id,
        meeting_class=hold.meeting_class,
        default_title=mc.display_name if mc else hold.meeting_class,
        priority=hold.priority,
        buffers=buffers,
        start=slot.start,
        end=slot.end,
        details=details,
        hold_id=hold.id,
    )
    await flush_reservations(s, new=(booking, [reservation_for(booking)]))
    hold.status = "confirmed"
    hold.booking_id = booking.id
    hold.updated_at = ctx.now
    audit.record(
        s,
        ctx,
        "booking_confirmed",
        business_id=booking.business_id,
        booking_id=booking.id,
        hold_id=hold.id,
        meeting_class=booking.meeting_class,
        decision="accept",
        correlation_id=booking.correlation_id,
        details={"state": snapshot(booking), "hold_status": "confirmed"},
    )
    await events.booking_event(s, ctx, "booking.confirmed", booking, manage_url=manage_url)
    return booking


async def sweep_expired_holds(db: Database, now: dt.datetime, *, batch: int = 200) -> int:
    """Mark holds past `expires_at` as expired: one `hold_expired` audit row per hold.

    Safe with several workers: each hold is locked (SKIP LOCKED on PostgreSQL; SQLite
    serialises writers) and only an `active` hold moves to `expired`, so the row and its
    audit entry are written exactly once.
    """
    done = 0
    async with db.write() as s:
        holds: Sequence[Hold] = await hold_repo.claim_expired_holds(s, now=now, limit=batch)
        for hold in holds:
            hold.status = "expired"
            hold.updated_at = now
            await repo.deactivate_hold_reservations(s, hold.id)
            ctx = RequestContext(
                actor=Actor(account_id=hold.account_id, key_id=None), request_id=None, now=now
            )
            audit.record(
                s,
                ctx,
                "hold_expired",
                business_id=hold.business_id,
                hold_id=hold.id,
                meeting_class=hold.meeting_class,
                reason="ttl_elapsed",
                details={"status": "expired", "expires_at": hold.expires_at.isoformat()},
            )
            await events.hold_event(s, ctx, "hold.expired", hold)
            done += 1
    return done
