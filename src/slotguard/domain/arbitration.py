"""Priorities and preemption between requests (§5). Pure and deterministic.

A request acts at the priority of its meeting class (0-100).
- A live hold of strictly lower priority does not block it: the request takes the slot and
  the old hold becomes `preempted`. Equal priority: the first hold wins.
- A confirmed booking is displaced only when the caller may preempt (scope
  `bookings:preempt`), its priority is strictly higher, and the booking is not sacred
  (committed at least `sacred_meeting_age_hours` ago).
- Busy time is never displaced.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from slotguard.domain.availability import Blocker, SlotRequest

ClaimKind = Literal["booking", "hold"]
Tier = Literal["free", "take_holds", "preempt_bookings"]
# Tried in this order; a request only goes as far as it must to find any slot.
TIERS: tuple[Tier, ...] = ("free", "take_holds", "preempt_bookings")


@dataclass(frozen=True, slots=True)
class Claim:
    """A reservation someone holds: one confirmed booking or one slot of a live hold."""

    ref: str  # booking id or hold id
    kind: ClaimKind
    blocker: Blocker
    priority: int
    committed_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Caller:
    priority: int
    may_preempt_bookings: bool


def is_sacred(claim: Claim, *, now: dt.datetime, sacred_hours: int) -> bool:
    return claim.kind == "booking" and claim.committed_at <= now - dt.timedelta(hours=sacred_hours)


def displaceable(
    claim: Claim, caller: Caller, *, tier: Tier, now: dt.datetime, sacred_hours: int
) -> bool:
    """May `caller`, searching at `tier`, take the time `claim` occupies?"""
    if tier == "free" or claim.priority >= caller.priority:
        return False
    if claim.kind == "hold":
        return True
    return (
        tier == "preempt_bookings"
        and caller.may_preempt_bookings
        and not is_sacred(claim, now=now, sacred_hours=sacred_hours)
    )


def tiers_for(caller: Caller) -> tuple[Tier, ...]:
    return TIERS if caller.may_preempt_bookings else TIERS[:2]


def conflicts(req: SlotRequest, start: dt.datetime, end: dt.datetime, b: Blocker) -> bool:
    """The buffered half-open conflict rule of the slot engine, for one blocker."""
    return (start - req.buffer_before < b.end + b.buffer_after) and (
        b.start - b.buffer_before < end + req.buffer_after
    )
