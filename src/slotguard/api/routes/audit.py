"""The audit log (§8): paged reads and a JSONL export of any size."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse

from slotguard.api import convert, envelope
from slotguard.api.deps import context, get_db
from slotguard.api.docs import ERRORS, many
from slotguard.api.pagination import clamp_limit, decode_cursor, encode_cursor, split_page
from slotguard.api.schemas import AuditRead, Instant, QueryInt
from slotguard.services.context import RequestContext
from slotguard.store import repositories as repo

router = APIRouter(prefix="/v1")

Auditor = Annotated[RequestContext, Depends(context("audit:read"))]


def _filters(ctx: RequestContext, **given: Any) -> dict[str, Any]:
    if given.get("business_id"):
        ctx.actor.require_business(given["business_id"])
    return {"business_ids": ctx.actor.allowed_business_ids, **given}


@router.get("/audit-log", responses=many(AuditRead))
async def list_audit(
    request: Request,
    ctx: Auditor,
    business_id: str | None = None,
    action: str | None = None,
    agent_id: str | None = None,
    booking_id: str | None = None,
    hold_id: str | None = None,
    request_id: str | None = None,
    since: Instant | None = None,
    until: Instant | None = None,
    limit: QueryInt | None = None,
    cursor: str | None = None,
) -> Response:
    """Audit rows, oldest first; `action` takes a comma list."""
    n = clamp_limit(limit)
    after = decode_cursor(cursor, 1)
    filters = _filters(
        ctx,
        business_id=business_id,
        action=action,
        agent_id=agent_id,
        booking_id=booking_id,
        hold_id=hold_id,
        request_id=request_id,
        since=since,
        until=until,
    )
    async with get_db(request).read() as s:
        rows, more = split_page(
            list(
                await repo.list_audit(
                    s, ctx.account_id, after=after[0] if after else None, limit=n, **filters
                )
            ),
            n,
        )
    return envelope.page(
        [convert.audit(a) for a in rows], next_cursor=encode_cursor(rows[-1].id) if more else None
    )


class NDJSONResponse(StreamingResponse):
    media_type = "application/x-ndjson"


@router.get(
    "/audit-log/export",
    response_class=NDJSONResponse,
    responses={
        200: {"description": "JSON Lines: one audit entry (as in GET /v1/audit-log) per line"},
        **ERRORS,
    },
)
async def export_audit(
    request: Request,
    ctx: Auditor,
    business_id: str | None = None,
    action: str | None = None,
    agent_id: str | None = None,
    booking_id: str | None = None,
    hold_id: str | None = None,
    request_id: str | None = None,
    since: Instant | None = None,
    until: Instant | None = None,
) -> NDJSONResponse:
    """Every matching audit row as JSON Lines, streamed in keyset pages."""
    filters = _filters(
        ctx,
        business_id=business_id,
        action=action,
        agent_id=agent_id,
        booking_id=booking_id,
        hold_id=hold_id,
        request_id=request_id,
        since=since,
        until=until,
    )
    db = get_db(request)

    async def lines() -> AsyncIterator[bytes]:
        async with db.read() as s:
            async for row in repo.stream_audit(s, ctx.account_id, **filters):
                yield envelope.dumps(convert.audit(row).model_dump(mode="json")) + b"\n"

    return NDJSONResponse(lines())
