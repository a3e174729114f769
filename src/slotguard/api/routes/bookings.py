"""Bookings (§4): direct booking, reads, cancel, reschedule, PATCH."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.api import convert, envelope, openapi
from slotguard.api.deps import context, get_db
from slotguard.api.docs import many, one
from slotguard.api.errors import ApiError, validation_fields
from slotguard.api.idempotency import IdempotencyRequest, idempotency, run_write
from slotguard.api.pagination import clamp_limit, decode_cursor, encode_cursor, split_page
from slotguard.api.schemas import (
    IMMUTABLE_BOOKING_FIELDS,
    BookingCancel,
    BookingCreate,
    BookingRead,
    BookingReschedule,
    BookingUpdate,
    Instant,
    QueryInt,
    parse_instant,
)
from slotguard.domain.errors import FieldImmutable, ValidationFailed
from slotguard.services import bookings as svc
from slotguard.services.context import RequestContext
from slotguard.store.models import Booking

router = APIRouter(prefix="/v1")

Writer = Annotated[RequestContext, Depends(context("bookings:write"))]
Reader = Annotated[RequestContext, Depends(context("bookings:read"))]
IdemRequired = Annotated[IdempotencyRequest | None, Depends(idempotency(required=True))]

_ETAG = re.compile(r'^\s*(?:W/)?"(\d{1,18})"\s*$')
_BARE = re.compile(r"^\s*(\d{1,18})\s*$")
STATUSES = frozenset({"confirmed", "cancelled", "preempted"})


def parse_if_match(request: Request, *, required: bool) -> int | None:
    """The version an If-Match names; `*` or absence (when optional) means no check."""
    raw = request.headers.get("if-match")
    if raw is None:
        if required:
            raise ApiError(428, "missing_if_match", "This request requires an If-Match header.")
        return None
    if raw.strip() == "*":
        return None
    m = _ETAG.match(raw) or _BARE.match(raw)
    if m is None:
        raise ApiError(400, "invalid_if_match", 'If-Match must be an ETag such as "3".')
    return int(m.group(1))


def booking_response(b: Booking, *, status: int = 200, location: bool = False) -> Response:
    headers = {"ETag": convert.etag(b.version)}
    if location:
        headers["Location"] = f"/v1/bookings/{b.id}"
    return envelope.ok(convert.booking(b), status=status, headers=headers)


@router.post("/bookings", status_code=201, responses=one(BookingRead, 201))
async def create_booking(
    body: BookingCreate, request: Request, ctx: Writer, idem: IdemRequired
) -> Response:
    """Book a slot in one step; the slot is re-checked atomically (409 `conflict`)."""

    async def work(s: AsyncSession) -> Response:
        booking = await svc.book(
            s,
            ctx,
            business_id=body.business_id,
            owner_email=body.owner_email,
            start=body.start_time,
            end=body.end_time,
            meeting_class=body.meeting_class,
            details=convert.booking_details(body),
        )
        return booking_response(booking, status=201, location=True)

    return await run_write(request, ctx, idem, work)


@router.get("/bookings", responses=many(BookingRead))
async def list_bookings(
    request: Request,
    ctx: Reader,
    business_id: str | None = None,
    status: str | None = None,
    start: Instant | None = None,
    end: Instant | None = None,
    customer_email: str | None = None,
    updated_since: Instant | None = None,
    sort: str = "start_time",
    limit: QueryInt | None = None,
    cursor: str | None = None,
) -> Response:
    """List bookings, sorted by `start_time` (default) or `updated_at` (incremental sync)."""
    if sort not in ("start_time", "updated_at"):
        raise ValidationFailed(
            "sort must be start_time or updated_at.",
            fields=[{"field": "sort", "message": "must be start_time or updated_at"}],
        )
    statuses = [x.strip() for x in status.split(",") if x.strip()] if status else None
    if statuses and not set(statuses) <= STATUSES:
        raise ValidationFailed(
            "Unknown status.", fields=[{"field": "status", "message": f"one of {sorted(STATUSES)}"}]
        )
    n = clamp_limit(limit)
    after_parts = decode_cursor(cursor, 2)
    after = None
    if after_parts:
        try:
            after = (parse_instant(after_parts[0]), after_parts[1])
        except ValueError:
            raise ValidationFailed(
                "The cursor is not valid.", fields=[{"field": "cursor", "message": "invalid"}]
            ) from None
    filters: dict[str, Any] = {
        "business_id": business_id,
        "statuses": statuses,
        "start": start,
        "end": end,
        "customer_email": customer_email,
        "updated_since": updated_since,
        "sort": sort,
    }
    async with get_db(request).read() as s:
        rows, more = split_page(
            list(await svc.list_bookings(s, ctx, filters=filters, after=after, limit=n)), n
        )
    next_cursor = None
    if more:
        last = rows[-1]
        key = last.updated_at if sort == "updated_at" else last.start_at
        next_cursor = encode_cursor(key.isoformat(), last.id)
    return envelope.page([convert.booking(b) for b in rows], next_cursor=next_cursor)


@router.get("/bookings/{booking_id}", responses=one(BookingRead))
async def get_booking(booking_id: str, request: Request, ctx: Reader) -> Response:
    """Get one booking, with its version as ETag."""
    async with get_db(request).read() as s:
        booking = await svc.get_booking(s, ctx, booking_id)
    return booking_response(booking)


@router.post(
    "/bookings/{booking_id}/cancel",
    responses=one(BookingRead),
    openapi_extra=openapi.if_match(required=False),
)
async def cancel_booking(
    booking_id: str,
    request: Request,
    ctx: Writer,
    idem: IdemRequired,
    body: BookingCancel | None = None,
) -> Response:
    """Cancel a booking; its slot is free at once. Cancelling twice changes nothing."""
    if_match = parse_if_match(request, required=False)

    async def work(s: AsyncSession) -> Response:
        booking = await svc.cancel(
            s, ctx, booking_id, reason=body.reason if body else None, if_match=if_match
        )
        return booking_response(booking)

    return await run_write(request, ctx, idem, work)


@router.post(
    "/bookings/{booking_id}/reschedule",
    responses=one(BookingRead),
    openapi_extra=openapi.if_match(required=False),
)
async def reschedule_booking(
    booking_id: str, body: BookingReschedule, request: Request, ctx: Writer, idem: IdemRequired
) -> Response:
    """Move a booking to a new time (same id, version + 1); untouched on conflict."""
    if_match = parse_if_match(request, required=False)

    async def work(s: AsyncSession) -> Response:
        booking = await svc.reschedule(
            s, ctx, booking_id, start=body.start_time, end=body.end_time, if_match=if_match
        )
        return booking_response(booking)

    return await run_write(request, ctx, idem, work)


@router.patch(
    "/bookings/{booking_id}",
    responses=one(BookingRead),
    openapi_extra=openapi.if_match(required=True),
)
async def update_booking(
    booking_id: str, request: Request, ctx: Writer, idem: IdemRequired
) -> Response:
    """Change title, description, attendees, metadata (merged) or customer_name."""
    if_match = parse_if_match(request, required=True)
    body = _parse_patch(await request.body())

    async def work(s: AsyncSession) -> Response:
        booking = await svc.update(
            s,
            ctx,
            booking_id,
            changes=body.model_dump(include=body.model_fields_set, mode="json"),
            if_match=if_match,
        )
        return booking_response(booking)

    return await run_write(request, ctx, idem, work)


def _parse_patch(raw: bytes) -> BookingUpdate:
    try:
        data = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise ValidationFailed(
            "The request body is not valid JSON.",
            fields=[
                {
                    "field": "",
                    "location": "body",
                    "message": "Malformed JSON body.",
                    "type": "json_invalid",
                }
            ],
        ) from None
    if not isinstance(data, dict):
        raise ValidationFailed(
            "The request body must be a JSON object.",
            fields=[{"field": "", "location": "body", "message": "must be an object"}],
        )
    immutable = sorted(k for k in data if k in IMMUTABLE_BOOKING_FIELDS)
    if immutable:
        raise FieldImmutable("These fields cannot be changed with PATCH.", fields=immutable)
    try:
        return BookingUpdate.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(
            "The request is not valid.",
            fields=validation_fields([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]),
        ) from None
