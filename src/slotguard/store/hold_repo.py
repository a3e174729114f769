"""Queries for holds."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.store.models import Hold, Reservation


async def hold_reservations(s: AsyncSession, hold_id: str) -> Sequence[Reservation]:
    return (
        await s.scalars(
            select(Reservation).where(Reservation.hold_id == hold_id).order_by(Reservation.start_at)
        )
    ).all()


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
