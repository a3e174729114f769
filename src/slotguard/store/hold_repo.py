"""Queries for holds."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.store.models import Hold, Reservation

# Built once: every confirm reads it.
_HOLD_RESERVATIONS = (
    select(Reservation)
    .where(Reservation.hold_id == bindparam("hold_id"))
    .order_by(Reservation.start_at)
)


async def hold_reservations(s: AsyncSession, hold_id: str) -> Sequence[Reservation]:
    return (await s.scalars(_HOLD_RESERVATIONS, {"hold_id": hold_id})).all()


async def claim_expired_holds(s: AsyncSession, *, now: dt.datetime, limit: int) -> Sequence[Hold]:
    """Active holds past expiry, locked for this transaction (others skip them)."""
    return (
        await s.scalars(
            select(Hold)
            .where(Hold.status == "active", Hold.expires_at <= now)
            .order_by(Hold.expires_at, Hold.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
