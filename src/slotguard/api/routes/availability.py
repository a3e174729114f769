"""Free time (§3.1) and the dry-run booking check (§3.4)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response

from slotguard.api import envelope
from slotguard.api.deps import context, get_db
from slotguard.api.docs import one
from slotguard.api.schemas import Instant, QueryInt, SlotsRead, ZoneName
from slotguard.api.schemas_agents import AvailabilityCheckRead
from slotguard.domain.availability import Interval
from slotguard.domain.errors import ValidationFailed
from slotguard.domain.timezones import zone
from slotguard.services import availability as svc
from slotguard.services import bookings as bookings_svc
from slotguard.services.context import RequestContext

router = APIRouter(prefix="/v1")

MAX_SLOTS = 5000
# Since 1972 every zone of the tz database keeps a UTC offset of whole minutes (the last
# that did not, Africa/Monrovia at -00:44:30, ended on 1972-01-07), so slots from then on
# need no per-slot offset check; slots are in order, so the first one decides.
WHOLE_MINUTE_OFFSETS_FROM = dt.datetime(1973, 1, 1, tzinfo=dt.UTC)


@router.get("/availability/slots", responses=one(SlotsRead))
async def get_slots(
    request: Request,
    ctx: Annotated[RequestContext, Depends(context("availability:read"))],
    business_id: str | None = None,
    owner_email: str | None = None,
    duration_minutes: Annotated[QueryInt | None, Query(ge=1, le=24 * 60)] = None,
    meeting_class: str | None = None,
    start: Instant | None = None,
    end: Instant | None = None,
    timezone: ZoneName | None = None,
    buffer_minutes: Annotated[QueryInt, Query(ge=0, le=24 * 60)] = 0,
    slot_interval_minutes: Annotated[QueryInt | None, Query(ge=1, le=24 * 60)] = None,
    limit: Annotated[QueryInt, Query(ge=1)] = 500,
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
            "slots": _slot_list(result.slots, tz),
            "computed_at": _local(ctx.now, dt.UTC),
            "warnings": result.warnings,
        }
    )


def _slot_list(slots: list[Interval], tz: dt.tzinfo) -> orjson.Fragment:
    """The slots in `tz`, rendered by orjson from the datetimes themselves (C speed; the
    same text as `_local` for offsets of whole minutes, which orjson alone can write)."""
    local = [{"start": i.start.astimezone(tz), "end": i.end.astimezone(tz)} for i in slots]
    if not local or slots[0].start >= WHOLE_MINUTE_OFFSETS_FROM or _whole_minutes(local):
        return orjson.Fragment(orjson.dumps(local, option=orjson.OPT_UTC_Z))
    # A local mean time of the early 1900s (e.g. +05:21:10): orjson would round it.
    text = [{"start": _local(i.start, tz), "end": _local(i.end, tz)} for i in slots]
    return orjson.Fragment(orjson.dumps(text))


def _whole_minutes(local: list[dict[str, dt.datetime]]) -> bool:
    offsets = {d.utcoffset() for s in local for d in (s["start"], s["end"])}
    return all(o is not None and o.seconds % 60 == 0 and not o.microseconds for o in offsets)


def _local(t: dt.datetime, tz: dt.tzinfo) -> str:
    """RFC 3339 in `tz`, written as pydantic writes instants (a zero offset is `Z`)."""
    text = t.astimezone(tz).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


@router.get("/availability/check", responses=one(AvailabilityCheckRead))
async def check_slot(
    request: Request,
    ctx: Annotated[RequestContext, Depends(context("availability:read"))],
    business_id: str | None = None,
    owner_email: str | None = None,
    start_time: Instant | None = None,
    end_time: Instant | None = None,
    meeting_class: str | None = None,
    start: Annotated[Instant | None, Query(description="Alias of start_time")] = None,
    end: Annotated[Instant | None, Query(description="Alias of end_time")] = None,
) -> Response:
    """Would this booking succeed now? The booking's atomic check as a dry run, no writes."""
    begin = start_time or start
    finish = end_time or end
    missing = [] if begin is not None else [{"field": "start_time", "message": "is required"}]
    if not business_id and not owner_email:
        missing.append({"field": "business_id", "message": "business_id or owner_email"})
    if missing:
        raise ValidationFailed("The query is missing required parameters.", fields=missing)
    assert begin is not None
    async with get_db(request).read() as s:
        result = await bookings_svc.check_booking(
            s,
            ctx,
            business_id=business_id,
            owner_email=owner_email,
            start=begin,
            end=finish,
            meeting_class=meeting_class,
        )
    body: dict[str, object] = {"available": result.reason is None}
    if result.reason is not None:
        body["reason"] = result.reason
        if result.next_available is not None:
            nxt = result.next_available
            body["next_available"] = {
                "start": _local(nxt.start, dt.UTC),
                "end": _local(nxt.end, dt.UTC),
            }
    body |= {
        "business_id": result.scheduling.business.id,
        "meeting_class": result.scheduling.terms.name,
        "start_time": _local(result.start, dt.UTC),
        "end_time": _local(result.end, dt.UTC),
    }
    return envelope.ok(body)
