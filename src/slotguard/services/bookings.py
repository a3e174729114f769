"""Booking use cases: book, cancel, reschedule, update, read."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.domain.arbitration import Caller, Claim
from slotguard.domain.availability import Interval, RejectReason, check_slot, compute_slots
from slotguard.domain.errors import (
    BookingNotActive,
    DomainError,
    NotFound,
    SlotConflict,
    ValidationFailed,
)
from slotguard.domain.limits import MIN_MEETING
from slotguard.services import audit, events
from slotguard.services.bookings_state import (
    BookingDetails,
    check_if_match,
    flush_reservations,
    new_booking,
    reservation_for,
    snapshot,
)
from slotguard.services.context import RequestContext
from slotguard.services.preemption import displace
from slotguard.services.scheduling import (
    ClassTerms,
    Occupancy,
    Scheduling,
    clear_stale_holds,
    load_occupancy,
    load_scheduling,
)
from slotguard.store import repositories as repo
from slotguard.store.models import Booking


def _fail(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, fields=[{"field": field, "message": message}])


def _rejected(
    ctx: RequestContext,
    sched: Scheduling,
    reason: str,
    *,
    start: dt.datetime,
    end: dt.datetime,
    booking_id: str | None = None,
    action: str = "booking_rejected",
) -> SlotConflict:
    err = SlotConflict(reason=reason)
    # Written after the rollback, in its own transaction, so the decision is on record.
    err.audit = [
        audit.entry(
            ctx,
            action,
            business_id=sched.business.id,
            booking_id=booking_id,
            meeting_class=sched.terms.name,
            decision="reject",
            reason=reason,
            details={"start_time": start.isoformat(), "end_time": end.isoformat()},
        )
    ]
    return err


async def _check_time(
    s: AsyncSession,
    ctx: RequestContext,
    sched: Scheduling,
    *,
    start: dt.datetime,
    end: dt.datetime,
    exclude_booking_id: str | None = None,
) -> tuple[RejectReason | None, list[Claim]]:
    """Check [start, end) for this caller: the reason it fails, or the holds it displaces."""
    occ = await load_occupancy(
        s,
        sched.business.id,
        start=start,
        end=end,
        now=ctx.now,
        exclude_booking_id=exclude_booking_id,
    )
    await clear_stale_holds(s, occ, sched.business.id, ctx.now)
    return _decide(ctx, sched, occ, start=start, end=end)


def _decide(
    ctx: RequestContext,
    sched: Scheduling,
    occ: Occupancy,
    *,
    start: dt.datetime,
    end: dt.datetime,
) -> tuple[RejectReason | None, list[Claim]]:
    """The booking's rule check on loaded occupancy; shared by writes and the dry run.

    A direct booking may take the slot of a live hold of strictly lower priority (§5);
    confirmed bookings always block it.
    """
    req = sched.slot_request(duration=end - start, now=ctx.now)
    caller = Caller(priority=sched.terms.priority, may_preempt_bookings=False)
    per_day = occ.per_day(sched.tz)
    reason: RejectReason | None = None
    for tier in ("free", "take_holds"):
        blockers = occ.blockers(caller, tier=tier, now=ctx.now)
        reason = check_slot(req, start=start, end=end, blockers=blockers, bookings_per_day=per_day)
        if reason is None:
            sacred = sched.rules.sacred_meeting_age_hours
            return None, occ.displaced(req, start, end, caller, tier=tier, sacred_hours=sacred)
        if reason not in ("overlaps_hold", "buffer"):
            break
    return reason, []


def _interval(
    ctx: RequestContext, sched: Scheduling, start: dt.datetime, end: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime]:
    if end is None:
        end = start + sched.duration(None)
    _check_times(ctx, start, end)
    return start, end


def _check_times(ctx: RequestContext, start: dt.datetime, end: dt.datetime) -> None:
    if end <= start:
        raise _fail("end_time", "end_time must be after start_time")
    if end - start < MIN_MEETING:
        raise _fail("end_time", "a booking lasts at least one minute")
    if start < ctx.now:
        raise _fail("start_time", "start_time is in the past")


@dataclass(frozen=True, slots=True)
class CheckResult:
    """Would `book` with these arguments succeed right now (§3.4)?"""

    scheduling: Scheduling
    start: dt.datetime
    end: dt.datetime
    reason: RejectReason | None
    next_available: Interval | None


NEXT_AVAILABLE_HORIZON = dt.timedelta(hours=72)


async def check_booking(
    s: AsyncSession,
    ctx: RequestContext,
    *,
    business_id: str | None,
    owner_email: str | None,
    start: dt.datetime,
    end: dt.datetime | None,
    meeting_class: str | None,
) -> CheckResult:
    """`book`'s atomic check as a dry run: the same rules on the same blockers, no writes."""
    sched = await load_scheduling(
        s,
        ctx,
        business_id=business_id,
        owner_email=owner_email,
        meeting_class=meeting_class,
        lock=False,
    )
    start, end = _interval(ctx, sched, start, end)
    horizon = start + NEXT_AVAILABLE_HORIZON
    occ = await load_occupancy(s, sched.business.id, start=start, end=horizon, now=ctx.now)
    reason, _ = _decide(ctx, sched, occ, start=start, end=end)
    nxt: Interval | None = None
    if reason is not None:
        # What a direct booking by this caller could get instead: lower-priority holds give
        # way, confirmed bookings do not (as in the slot listing).
        req = sched.slot_request(duration=end - start, now=ctx.now)
        caller = Caller(priority=sched.terms.priority, may_preempt_bookings=False)
        later = compute_slots(
            req,
            window_start=start,
            window_end=horizon,
            blockers=occ.blockers(caller, tier="take_holds", now=ctx.now),
            bookings_per_day=occ.per_day(sched.tz),
            limit=2,
        )
        nxt = next((x for x in later if x.start > start), None)
    return CheckResult(scheduling=sched, start=start, end=end, reason=reason, next_available=nxt)


async def book(
    s: AsyncSession,
    ctx: RequestContext,
    *,
    business_id: str | None,
    owner_email: str | None,
    start: dt.datetime,
    end: dt.datetime | None,
    meeting_class: str | None,
    details: BookingDetails,
) -> Booking:
    """One-step booking: every rule re-checked atomically, then the booking is written."""
    sched = await load_scheduling(
        s,
        ctx,
        business_id=business_id,
        owner_email=owner_email,
        meeting_class=meeting_class,
        lock=True,
    )
    start, end = _interval(ctx, sched, start, end)
    reason, taken = await _check_time(s, ctx, sched, start=start, end=end)
    if reason is not None:
        raise _rejected(ctx, sched, reason, start=start, end=end)
    mc = sched.terms
    await displace(
        s,
        ctx,
        taken,
        business_id=sched.business.id,
        by_meeting_class=mc.name,
        by_priority=mc.priority,
    )
    booking = new_booking(
        ctx,
        business_id=sched.business.id,
        meeting_class=mc.name,
        default_title=mc.display_name,
        priority=mc.priority,
        buffers=(mc.buffer_before_minutes, mc.buffer_after_minutes),
        start=start,
        end=end,
        details=details,
    )
    await flush_reservations(s, new=(booking, [reservation_for(booking)]))
    audit.record(
        s,
        ctx,
        "booking_created",
        business_id=booking.business_id,
        booking_id=booking.id,
        meeting_class=mc.name,
        decision="accept",
        correlation_id=booking.correlation_id,
        details={"state": snapshot(booking)},
    )
    await events.booking_event(s, ctx, "booking.created", booking)
    return booking


async def get_booking(
    s: AsyncSession, ctx: RequestContext, booking_id: str, *, lock: bool = False
) -> Booking:
    """The booking, checked against the key's fence.

    With `lock`, the business row is locked first and then the booking's: every writer takes
    them in that order (preemption locks the business, then the bookings it displaces), so
    two writers can never wait on each other in a cycle.
    """
    booking = await repo.get_booking(s, ctx.account_id, booking_id)
    if booking is None:
        raise NotFound("The booking does not exist.")
    ctx.actor.require_business(booking.business_id)
    if lock:
        await repo.lock_business(s, ctx.account_id, booking.business_id)
        booking = await repo.get_booking(s, ctx.account_id, booking_id, for_update=True)
        if booking is None:  # bookings are never deleted; this only narrows the type
            raise NotFound("The booking does not exist.")
    return booking


async def cancel(
    s: AsyncSession,
    ctx: RequestContext,
    booking_id: str,
    *,
    reason: str | None,
    if_match: int | None,
) -> Booking:
    """Cancel and free the slot at once. Cancelling a cancelled booking changes nothing."""
    booking = await get_booking(s, ctx, booking_id, lock=True)
    if booking.status == "cancelled":
        return booking
    if booking.status != "confirmed":
        raise BookingNotActive(status=booking.status)
    check_if_match(booking, if_match)
    booking.status = "cancelled"
    booking.cancelled_at = ctx.now
    booking.cancellation_reason = reason
    booking.version += 1
    booking.updated_at = ctx.now
    await repo.deactivate_booking_reservation(s, booking.id)
    audit.record(
        s,
        ctx,
        "booking_cancelled",
        business_id=booking.business_id,
        booking_id=booking.id,
        meeting_class=booking.meeting_class,
        reason=reason,
        correlation_id=booking.correlation_id,
        details={"state": snapshot(booking)},
    )
    await events.booking_event(s, ctx, "booking.cancelled", booking)
    return booking


async def reschedule(
    s: AsyncSession,
    ctx: RequestContext,
    booking_id: str,
    *,
    start: dt.datetime,
    end: dt.datetime | None,
    if_match: int | None,
    manage_url: str | None = None,
) -> Booking:
    """Move a booking: same id, version + 1; the new time passes the booking checks.

    `manage_url` (booking pages, §12) goes into the customer's update mail.
    """
    booking = await get_booking(s, ctx, booking_id, lock=True)
    if booking.status != "confirmed":
        raise BookingNotActive(status=booking.status)
    check_if_match(booking, if_match)
    sched = await load_scheduling(
        s, ctx, business_id=booking.business_id, meeting_class=None, lock=True
    )
    # Buffers and priority stay those the booking was made with, even if its class changed.
    sched = replace(
        sched,
        terms=ClassTerms(
            name=booking.meeting_class,
            display_name=sched.terms.display_name,
            duration_minutes=None,
            priority=booking.priority,
            buffer_before_minutes=booking.buffer_before_minutes,
            buffer_after_minutes=booking.buffer_after_minutes,
        ),
    )
    if end is None:
        end = start + (booking.end_at - booking.start_at)
    _check_times(ctx, start, end)
    reason, taken = await _check_time(
        s, ctx, sched, start=start, end=end, exclude_booking_id=booking.id
    )
    if reason is not None:
        raise _rejected(
            ctx,
            sched,
            reason,
            start=start,
            end=end,
            booking_id=booking.id,
            action="booking_rejected",
        )
    old = {"start_time": booking.start_at.isoformat(), "end_time": booking.end_at.isoformat()}
    await displace(
        s,
        ctx,
        taken,
        business_id=booking.business_id,
        by_meeting_class=booking.meeting_class,
        by_priority=booking.priority,
    )
    await repo.deactivate_booking_reservation(s, booking.id)
    booking.start_at, booking.end_at = start, end
    booking.version += 1
    booking.updated_at = ctx.now
    s.add(reservation_for(booking))
    await flush_reservations(s)
    audit.record(
        s,
        ctx,
        "booking_rescheduled",
        business_id=booking.business_id,
        booking_id=booking.id,
        meeting_class=booking.meeting_class,
        decision="accept",
        correlation_id=booking.correlation_id,
        details={"state": snapshot(booking), "previous": old},
    )
    await events.booking_event(s, ctx, "booking.rescheduled", booking, manage_url=manage_url)
    return booking


MUTABLE_FIELDS = ("title", "description", "attendees", "metadata", "customer_name")


async def update(
    s: AsyncSession,
    ctx: RequestContext,
    booking_id: str,
    *,
    changes: dict[str, Any],
    if_match: int | None,
) -> Booking:
    """Change descriptive fields (If-Match checked); metadata merges shallowly."""
    booking = await get_booking(s, ctx, booking_id, lock=True)
    check_if_match(booking, if_match)
    if booking.status != "confirmed":
        raise BookingNotActive(status=booking.status)
    changed: list[str] = []
    for field in MUTABLE_FIELDS:
        if field not in changes:
            continue
        value = changes[field]
        if field == "metadata":
            merged = dict(booking.metadata_ or {})
            for k, v in (value or {}).items():
                if v is None:
                    merged.pop(k, None)
                else:
                    merged[k] = v
            _check_metadata_size(merged)
            booking.metadata_ = merged
        else:
            setattr(booking, field, value)
        changed.append(field)
    booking.version += 1
    booking.updated_at = ctx.now
    audit.record(
        s,
        ctx,
        "booking_updated",
        business_id=booking.business_id,
        booking_id=booking.id,
        meeting_class=booking.meeting_class,
        correlation_id=booking.correlation_id,
        details={"state": snapshot(booking), "fields": changed},
    )
    await events.booking_event(s, ctx, "booking.updated", booking)
    return booking


def _check_metadata_size(merged: dict[str, Any]) -> None:
    if len(merged) > 50:
        raise _fail("metadata", "metadata may hold at most 50 keys")


async def list_bookings(
    s: AsyncSession,
    ctx: RequestContext,
    *,
    filters: dict[str, Any],
    after: tuple[dt.datetime, str] | None,
    limit: int,
) -> Sequence[Booking]:
    business_ids = ctx.actor.allowed_business_ids
    if filters.get("business_id"):
        ctx.actor.require_business(filters["business_id"])
        business_ids = frozenset({filters["business_id"]})
    return await repo.list_bookings(
        s,
        ctx.account_id,
        business_ids=business_ids,
        statuses=filters.get("statuses"),
        start=filters.get("start"),
        end=filters.get("end"),
        customer_email=filters.get("customer_email"),
        updated_since=filters.get("updated_since"),
        sort=filters.get("sort", "start_time"),
        after=after,
        limit=limit,
    )


__all__ = [
    "CheckResult",
    "DomainError",
    "book",
    "cancel",
    "check_booking",
    "get_booking",
    "list_bookings",
    "reschedule",
    "update",
]
