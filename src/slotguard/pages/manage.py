"""The invitee's manage link `/manage/{token}` (§12): see, cancel or reschedule a booking.

The token is the only credential: random, stored hashed, never the booking id. Cancel and
reschedule are the API's own `bookings.cancel` and `bookings.reschedule`.
"""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.api.deps import get_db
from slotguard.api.idempotency import run_write
from slotguard.domain.errors import BookingNotActive, DomainError, NotFound, SlotConflict
from slotguard.pages import web
from slotguard.pages.book import _form, forbidden
from slotguard.services import booking_pages as svc

router = APIRouter(include_in_schema=False, route_class=web.PageRoute)

DONE = {
    "cancelled": "Your booking is cancelled. The time is free again.",
    "rescheduled": "Your booking is moved to the new time. We sent you an updated invitation.",
}


def _invalid(request: Request) -> Response:
    return web.render(
        request,
        "message.html",
        status=404,
        heading="Link not valid",
        message="This manage link is not valid. Please use the link from your confirmation email.",
    )


async def manage_page(
    request: Request,
    s: AsyncSession,
    token: str,
    *,
    tz: str | None,
    day: str | None,
    notice: str | None = None,
    taken_at: dt.datetime | None = None,
    status: int = 200,
) -> Response:
    m = await svc.managed_booking(s, token)
    booking = m.booking
    zone_name, zone_ok = web.pick_zone(tz, m.business_timezone)
    ctx = svc.manage_context(m, request_id=web.request_id(request), now=web.now())
    days: list[web.Day] = []
    by_day: dict[str, list[web.SlotButton]] = {}
    active = booking.status == "confirmed" and booking.end_at > ctx.now
    if active:
        slots = await svc.reschedule_slots(s, ctx, m)
        days, by_day = web.group_days(slots.slots, zone_name)
    if taken_at is not None:
        notice = (
            f"Sorry, {web.moment(taken_at, zone_name)} was just taken. Here are the times "
            "still free."
        )
        day = day or taken_at.astimezone(web.tz_of(zone_name)).date().isoformat()
    chosen = day if day in by_day else (days[0].iso if days else None)
    params = request.query_params
    return web.render(
        request,
        "manage.html",
        status=status if zone_ok else 400,
        token=token,
        manage_url=f"{web.public_base(request)}/manage/{token}",
        booking=booking,
        business_name=m.business_name,
        page=m.page,
        title=booking.title or "Meeting",
        when=web.when_text(booking.start_at, booking.end_at, zone_name),
        cancelled_on=web.moment(booking.cancelled_at, zone_name) if booking.cancelled_at else None,
        tz=zone_name,
        tz_auto=tz is None,
        tz_error=None if zone_ok else f"That time zone is not known; times are in {zone_name}.",
        new=params.get("new") == "1" and booking.status == "confirmed",
        done=DONE.get(params.get("done") or ""),
        notice=notice,
        active=active,
        days=days,
        day=chosen,
        buttons=by_day.get(chosen, []) if chosen else [],
        query=web.query,
    )


@router.get("/manage/{token}")
async def show(request: Request, token: str) -> Response:
    """The booking, its state, and the forms to cancel or move it."""
    params = request.query_params
    async with get_db(request).read() as s:
        try:
            return await manage_page(request, s, token, tz=params.get("tz"), day=params.get("day"))
        except NotFound:
            return _invalid(request)


@router.get("/manage/{token}/cancel")
@router.get("/manage/{token}/reschedule")
async def back_to_manage(request: Request, token: str) -> Response:
    """A reload of a form's address (these take posts): back to the manage page."""
    return web.redirect(f"/manage/{token}")


@router.post("/manage/{token}/cancel")
async def cancel(request: Request, token: str) -> Response:
    """Cancel the booking (§4.5)."""
    form = await _form(request)
    if not web.csrf_ok(request, form):
        return forbidden(request)
    tz = form.get("tz") or None
    reason = (form.get("reason") or "").strip()[:500] or "Cancelled by the invitee"
    db = get_db(request)
    async with db.read() as s:
        try:
            m = await svc.managed_booking(s, token)
        except NotFound:
            return _invalid(request)
    ctx = svc.manage_context(m, request_id=web.request_id(request), now=web.now())

    async def work(s: AsyncSession) -> Response:
        await svc.cancel_managed(s, ctx, token, reason=reason)
        return web.redirect(f"/manage/{token}?{web.query(tz=tz, done='cancelled')}")

    try:
        return await run_write(request, ctx, None, work)
    except DomainError as exc:
        async with db.read() as s:
            return await manage_page(
                request, s, token, tz=tz, day=None, notice=exc.message, status=409
            )


@router.post("/manage/{token}/reschedule")
async def reschedule(request: Request, token: str) -> Response:
    """Move the booking to the picked free slot (§4.5); a slot just taken shows fresh ones."""
    form = await _form(request)
    if not web.csrf_ok(request, form):
        return forbidden(request)
    tz = form.get("tz") or None
    start = web.parse_instant(form.get("start"))
    db = get_db(request)
    async with db.read() as s:
        try:
            m = await svc.managed_booking(s, token)
        except NotFound:
            return _invalid(request)
        if start is None:
            return await manage_page(
                request,
                s,
                token,
                tz=tz,
                day=None,
                notice="Please pick one of the times.",
                status=422,
            )
    ctx = svc.manage_context(m, request_id=web.request_id(request), now=web.now())
    manage_url = f"{web.public_base(request)}/manage/{token}"

    async def work(s: AsyncSession) -> Response:
        await svc.reschedule_managed(s, ctx, token, start=start, manage_url=manage_url)
        return web.redirect(f"/manage/{token}?{web.query(tz=tz, done='rescheduled')}")

    try:
        return await run_write(request, ctx, None, work)
    except SlotConflict:
        async with db.read() as s:
            return await manage_page(request, s, token, tz=tz, day=None, taken_at=start, status=409)
    except BookingNotActive:
        async with db.read() as s:
            return await manage_page(
                request,
                s,
                token,
                tz=tz,
                day=None,
                notice="This booking is no longer active and cannot be moved.",
                status=409,
            )
    except DomainError as exc:
        async with db.read() as s:
            return await manage_page(
                request, s, token, tz=tz, day=None, notice=exc.message, status=422
            )
