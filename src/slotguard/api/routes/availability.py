"""Free time (§3.1)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from slotguard.api import envelope
from slotguard.api.deps import context, get_db
from slotguard.api.docs import one
from slotguard.api.schemas import Instant, SlotsRead, ZoneName
from slotguard.domain.timezones import zone
from slotguard.services import availability as svc
from slotguard.services.context import RequestContext

router = APIRouter(prefix="/v1")

MAX_SLOTS = 5000


@router.get("/availability/slots", responses=one(SlotsRead))
async def get_slots(
    request: Request,
    ctx: Annotated[RequestContext, Depends(context("availability:read"))],
    business_id: str | None = None,
    owner_email: str | None = None,
    duration_minutes: Annotated[int | None, Query(ge=1, le=24 * 60)] = None,
    meeting_class: str | None = None,
    start: Instant | None = None,
    end: Instant | None = None,
    timezone: ZoneName | None = None,
    buffer_minutes: Annotated[int, Query(ge=0, le=24 * 60)] = 0,
    slot_interval_minutes: Annotated[int | None, Query(ge=1, le=24 * 60)] = None,
    limit: Annotated[int, Query(ge=1)] = 500,
) -> Response:
    """Bookable slots: only those a booking by this caller would get right now."""
    async with get_db(request).read() as s:
        result = await svc.get_slots(
            s,
            ctx,
            business_id=business_id,
            owner_email=owner_email,
            meeting_class=meeting_class,
            duration_minutes=duration_minutes,
            start=start,
            end=end,
            buffer_minutes=buffer_minutes,
            slot_interval_minutes=slot_interval_minutes,
            limit=min(limit, MAX_SLOTS),
        )
    tz_name = timezone or result.scheduling.business.timezone
    tz = zone(tz_name)
    # Built as plain JSON in the shape of `schemas.SlotsRead` rather than through it:
    # validating hundreds of slot objects per request costs more than computing them.
    return envelope.ok(
        {
            "business_id": result.scheduling.business.id,
            "timezone": tz_name,
            "duration_minutes": int(result.duration.total_seconds() // 60),
            "slots": [
                {"start": _local(i.start, tz), "end": _local(i.end, tz)} for i in result.slots
            ],
            "computed_at": _local(ctx.now, dt.UTC),
        }
    )


def _local(t: dt.datetime, tz: dt.tzinfo) -> str:
    """RFC 3339 in `tz`, written as pydantic writes instants (a zero offset is `Z`)."""
    text = t.astimezone(tz).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text
