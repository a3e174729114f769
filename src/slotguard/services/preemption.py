"""Carrying out displacements decided by the arbitration rules (§5)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.domain.arbitration import Claim
from slotguard.services import audit, events
from slotguard.services.bookings_state import snapshot
from slotguard.services.context import RequestContext
from slotguard.store import repositories as repo


@dataclass
class Displaced:
    hold_ids: list[str] = field(default_factory=list)
    booking_ids: list[str] = field(default_factory=list)


async def displace(
    s: AsyncSession,
    ctx: RequestContext,
    claims: Sequence[Claim],
    *,
    business_id: str,
    by_meeting_class: str,
    by_priority: int,
) -> Displaced:
    """Preempt the holds and bookings in `claims`, each once, with audit rows and events."""
    out = Displaced()
    for ref in sorted({c.ref for c in claims if c.kind == "hold"}):
        hold = await repo.get_hold(s, ctx.account_id, ref, for_update=True)
        if hold is None or hold.status != "active":
            continue
        hold.status = "preempted"
        hold.updated_at = ctx.now
        await repo.deactivate_hold_reservations(s, hold.id)
        audit.record(
            s,
            ctx,
            "hold_preempted",
            business_id=business_id,
            hold_id=hold.id,
            meeting_class=hold.meeting_class,
            decision="preempt",
            reason=f"preempted by {by_meeting_class} (priority {by_priority})",
            details={"status": "preempted", "priority": hold.priority},
        )
        out.hold_ids.append(hold.id)
    for ref in sorted({c.ref for c in claims if c.kind == "booking"}):
        booking = await repo.get_booking(s, ctx.account_id, ref, for_update=True)
        if booking is None or booking.status != "confirmed":
            continue
        booking.status = "preempted"
        booking.version += 1
        booking.updated_at = ctx.now
        await repo.deactivate_booking_reservation(s, booking.id)
        audit.record(
            s,
            ctx,
            "booking_preempted",
            business_id=business_id,
            booking_id=booking.id,
            meeting_class=booking.meeting_class,
            decision="preempt",
            reason=f"preempted by {by_meeting_class} (priority {by_priority})",
            correlation_id=booking.correlation_id,
            details={"state": snapshot(booking)},
        )
        await events.booking_event(s, ctx, "booking.preempted", booking)
        out.booking_ids.append(booking.id)
    return out
