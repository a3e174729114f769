"""Ops view of the outbox (§8): what waits, what retries, what died. Scope `admin`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from slotguard.api import envelope
from slotguard.api.deps import context, get_db
from slotguard.api.docs import one
from slotguard.api.webhook_schemas import OutboxKindStats, OutboxStatsRead
from slotguard.services.context import RequestContext
from slotguard.store import outbox_repo

router = APIRouter(prefix="/v1")

Admin = Annotated[RequestContext, Depends(context("admin"))]


@router.get("/outbox/stats", responses=one(OutboxStatsRead))
async def outbox_stats(request: Request, ctx: Admin) -> Response:
    """Side effects of this account by kind: pending, retrying, dead, in flight."""
    async with get_db(request).read() as s:
        stats = await outbox_repo.stats(s, account_id=ctx.account_id, now=ctx.now)

    def read(kind: str) -> OutboxKindStats:
        k = stats[kind]
        return OutboxKindStats(
            pending=k.pending,
            retrying=k.retrying,
            dead=k.dead,
            in_flight=k.in_flight,
            oldest_due_at=k.oldest_due_at,
        )

    return envelope.ok(
        OutboxStatsRead(webhook=read("webhook"), email=read("email"), computed_at=ctx.now)
    )
