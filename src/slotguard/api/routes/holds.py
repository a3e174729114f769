"""Two-phase booking (§3.2, §3.3, §4.2)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.api import convert, envelope
from slotguard.api.deps import context, get_db
from slotguard.api.docs import one
from slotguard.api.idempotency import IdempotencyRequest, idempotency, run_write
from slotguard.api.schemas import (
    ConfirmRead,
    HoldConfirm,
    HoldCreate,
    HoldDecisionRead,
    HoldRead,
    Slot,
)
from slotguard.services import holds as svc
from slotguard.services.context import RequestContext
from slotguard.store.models import Hold

router = APIRouter(prefix="/v1")

HoldWriter = Annotated[RequestContext, Depends(context("holds:write"))]
Booker = Annotated[RequestContext, Depends(context("bookings:write"))]
Idem = Annotated[IdempotencyRequest | None, Depends(idempotency(required=False))]
IdemRequired = Annotated[IdempotencyRequest | None, Depends(idempotency(required=True))]


def hold_read(hold: Hold, ctx: RequestContext) -> HoldRead:
    return HoldRead(
        hold_id=hold.id,
        status=svc.effective_status(hold, ctx.now),
        slots=[Slot(start=x.start, end=x.end) for x in svc.hold_slots(hold)],
        expires_at=hold.expires_at,
        meeting_class=hold.meeting_class,
        business_id=hold.business_id,
        booking_id=hold.booking_id,
    )


@router.post("/availability", responses=one(HoldDecisionRead))
async def create_hold(body: HoldCreate, request: Request, ctx: HoldWriter, idem: Idem) -> Response:
    """Check availability and hold the first free slots in one atomic step (200)."""

    async def work(s: AsyncSession) -> Response:
        result = await svc.create_hold(
            s,
            ctx,
            business_id=body.business_id,
            owner_email=body.owner_email,
            meeting_class=body.meeting_class,
            duration_minutes=body.duration_minutes,
            window_start=body.window.start if body.window else None,
            window_end=body.window.end if body.window else None,
            ttl_seconds=body.ttl_seconds,
            max_slots=body.max_slots,
            lookahead_hours=body.next_available_lookahead_hours,
        )
        hold = result.hold
        return envelope.ok(
            HoldDecisionRead(
                hold_id=hold.id,
                expires_at=hold.expires_at,
                slots=[Slot(start=x.start, end=x.end) for x in svc.hold_slots(hold)],
                meeting_class=hold.meeting_class,
                decision=result.decision,
                preempted_holds=result.displaced.hold_ids,
                preempted_bookings=result.displaced.booking_ids,
                warnings=result.warnings,
            ),
            headers={"Location": f"/v1/holds/{hold.id}"},
        )

    return await run_write(request, ctx, idem, work)


@router.get("/holds/{hold_id}", responses=one(HoldRead))
async def get_hold(hold_id: str, request: Request, ctx: HoldWriter) -> Response:
    """A hold and its status (an active hold past `expires_at` reads as expired)."""
    async with get_db(request).read() as s:
        hold = await svc.get_hold(s, ctx, hold_id)
    return envelope.ok(hold_read(hold, ctx))


@router.delete("/holds/{hold_id}", responses=one(HoldRead))
async def release_hold(hold_id: str, request: Request, ctx: HoldWriter, idem: Idem) -> Response:
    """Release a hold at once; releasing twice is fine."""

    async def work(s: AsyncSession) -> Response:
        hold = await svc.release_hold(s, ctx, hold_id)
        return envelope.ok(hold_read(hold, ctx))

    return await run_write(request, ctx, idem, work)


@router.post("/bookings/{hold_id}/confirm", responses=one(ConfirmRead))
async def confirm_hold(
    hold_id: str,
    request: Request,
    ctx: Booker,
    idem: IdemRequired,
    body: HoldConfirm | None = None,
) -> Response:
    """Turn a held slot into a confirmed booking (200), releasing the hold's other slots."""
    body = body or HoldConfirm()

    async def work(s: AsyncSession) -> Response:
        booking = await svc.confirm_hold(
            s,
            ctx,
            hold_id,
            start=body.start,
            details=convert.booking_details(body),
        )
        return envelope.ok(
            ConfirmRead(
                booking_id=booking.id,
                correlation_id=booking.correlation_id,
                booking=convert.booking(booking),
            ),
            headers={
                "ETag": convert.etag(booking.version),
                "Location": f"/v1/bookings/{booking.id}",
            },
        )

    return await run_write(request, ctx, idem, work)
