"""Queries for agents and keys that `repositories` does not have yet."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.store.models import ApiKey


async def list_agent_keys_page(
    s: AsyncSession, account_id: str, agent_id: str, *, after: str | None, limit: int
) -> Sequence[ApiKey]:
    """An agent's keys (revoked ones too) by id, limit + 1 rows for `split_page`."""
    q = select(ApiKey).where(ApiKey.account_id == account_id, ApiKey.agent_id == agent_id)
    if after:
        q = q.where(ApiKey.id > after)
    return (await s.scalars(q.order_by(ApiKey.id).limit(limit + 1))).all()
