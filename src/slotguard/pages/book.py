"""The public booking page `/book/{slug}` (§12): pick a slot, hold it, confirm it.

Plain HTML forms do everything; the small script only detects the visitor's time zone.
Holding and booking go through the API's own service functions (§3.2, §4.2).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import EmailStr, TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.api.deps import get_db
from slotguard.api.idempotency import run_write
from slotguard.config import Settings
from slotguard.domain.errors import (
    DomainError,
    HoldAlreadyConfirmed,
    HoldExpired,
    HoldNotFound,
    HoldPreempted,
    HoldReleased,
    NoSlotsAvailable,
    NotFound,
    SlotConflict,
)
from slotguard.pages import web
from slotguard.services import booking_pages as svc
from slotguard.services.context import RequestContext
from slotguard.services.holds import effective_status, hold_slots
from slotguard.store.models import BookingPage

router = APIRouter(include_in_schema=False, route_class=web.PageRoute)

_EMAIL: TypeAdapter[str] = TypeAdapter(EmailStr)

NOTICES = {
    "taken": "Sorry, {when} was just taken by someone else. Here are the times still free.",
    "expired": "Your hold on {when} ran out or was taken. Here are the times still free.",
    "released": "You let go of {when}. Pick another time below.",
    "gone": "That hold is no longer yours. Here are the times still free.",
}


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def not_found(
    request: Request, message: str = "There is no booking page at this address."
) -> Response:
    return web.render(request, "message.html", status=404, heading="Not found", message=message)


async def _form(request: Request) -> dict[str, Any]:
    try:
        form = await request.form(max_files=0, max_fields=20)
    except Exception:  # a malformed body is the visitor's problem, not a 500
        return {}
    return {k: v for k, v in form.items() if isinstance(v, str)}


def forbidden(request: Request) -> Response:
    return web.render(
        request,
        "message.html",
        status=403,
        heading="This form has expired",
        message="Please go back, reload the page and try again. (Cookies must be enabled.)",
    )


async def book_page(
    request: Request,
    s: AsyncSession,
    page: BookingPage,
    *,
    tz: str | None,
    day: str | None,
    notice: str | None = None,
    notice_kind: str | None = None,
    notice_at: dt.datetime | None = None,
    status: int = 200,
) -> Response:
    ctx = svc.page_context(page, request_id=web.request_id(request), now=web.now())
    view = await svc.page_slots(s, ctx, page)
    business_tz = view.slots.scheduling.business.timezone
    zone_name, zone_ok = web.pick_zone(tz, business_tz)
    if notice_kind in NOTICES:
        when = web.moment(notice_at, zone_name) if notice_at is not None else "that time"
        notice = NOTICES[notice_kind].format(when=when)
        if notice_at is not None and day is None:
            day = notice_at.astimezone(web.tz_of(zone_name)).date().isoformat()
    days, by_day = web.group_days(view.slots.slots, zone_name)
    chosen = day if day in by_day else (days[0].iso if days else None)
    visitor = web.visitor_id(request)
    held = await svc.visitor_hold(s, ctx, page, visitor)
    held_when = None
    if held is not None:
        slot = hold_slots(held)[0]
        held_when = web.when_text(slot.start, slot.end, zone_name)
    return web.render(
        request,
        "book.html",
        status=status if zone_ok else 400,
        visitor=visitor,
        page=page,
        title=view.title,
        business_name=view.business_name,
        duration=view.duration_minutes,
        tz=zone_name,
        tz_auto=tz is None,
        tz_error=None
        if zone_ok
        else f"That time zone is not known; times are shown in {zone_name}.",
        days=days,
        day=chosen,
        buttons=by_day.get(chosen, []) if chosen else [],
        notice=notice,
        held=held,
        held_when=held_when,
        query=web.query,
    )


@router.get("/book/{slug}")
async def show_page(request: Request, slug: str) -> Response:
    """The booking page: days with free time, and the chosen day's slots as buttons."""
    params = request.query_params
    async with get_db(request).read() as s:
        try:
            page = await svc.public_page(s, slug)
        except NotFound:
            return not_found(request)
        return await book_page(
            request,
            s,
            page,
            tz=params.get("tz"),
            day=params.get("day"),
            notice_kind=params.get("notice"),
            notice_at=web.parse_instant(params.get("at")),
        )


@router.post("/book/{slug}/hold")
async def hold(request: Request, slug: str) -> Response:
    """Hold the picked slot for this visitor (§3.2), then show the details form."""
    form = await _form(request)
    if not web.csrf_ok(request, form):
        return forbidden(request)
    settings = _settings(request)
    visitor = web.visitor_id(request)
    tz = form.get("tz") or None
    start = web.parse_instant(form.get("start"))
    db = get_db(request)
    async with db.read() as s:
        try:
            page = await svc.public_page(s, slug)
        except NotFound:
            return not_found(request)
    if start is None:
        async with db.read() as s:
            return await book_page(
                request,
                s,
                page,
                tz=tz,
                day=None,
                notice="Please pick one of the times below.",
                status=422,
            )
    ctx = svc.page_context(page, request_id=web.request_id(request), now=web.now())

    async def work(s: AsyncSession) -> Response:
        held = await svc.hold_slot(
            s,
            ctx,
            page,
            start=start,
            visitor=visitor,
            client_addr=web.client_address(request),
            ttl_seconds=settings.public_hold_seconds,
            holds_per_address=settings.public_holds_per_address,
        )
        return web.redirect(
            f"/book/{page.slug}/hold/{held.id}?{web.query(tz=tz)}", request, visitor
        )

    try:
        return await run_write(request, ctx, None, work)
    except (NoSlotsAvailable, SlotConflict):
        async with db.read() as s:
            return await _taken(request, s, page, tz=tz, start=start)
    except svc.TooManyHolds:
        return web.render(
            request,
            "message.html",
            status=429,
            heading="Too many times held",
            message="Too many times are held from your network right now. Please finish or "
            "let go of one, or wait a few minutes.",
        )


async def _taken(
    request: Request,
    s: AsyncSession,
    page: BookingPage,
    *,
    tz: str | None,
    start: dt.datetime,
    kind: str = "taken",
) -> Response:
    return await book_page(
        request, s, page, tz=tz, day=None, notice_kind=kind, notice_at=start, status=409
    )


async def _hold_form(
    request: Request,
    s: AsyncSession,
    page: BookingPage,
    ctx: RequestContext,
    hold_id: str,
    *,
    tz: str | None,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    visitor = web.visitor_id(request)
    try:
        held = await svc.visitors_hold(s, ctx, page, hold_id, visitor)
    except HoldNotFound:
        return await book_page(request, s, page, tz=tz, day=None, notice_kind="gone", status=404)
    view = await svc.page_slots(s, ctx, page)
    zone_name, _ = web.pick_zone(tz, view.slots.scheduling.business.timezone)
    slot = hold_slots(held)[0]
    if effective_status(held, ctx.now) != "active":
        return await _taken(request, s, page, tz=zone_name, start=slot.start, kind="expired")
    return web.render(
        request,
        "hold.html",
        status=status,
        visitor=visitor,
        page=page,
        title=view.title,
        business_name=view.business_name,
        duration=view.duration_minutes,
        tz=zone_name,
        hold=held,
        when=web.when_text(slot.start, slot.end, zone_name),
        expires_at=web.utc_text(held.expires_at),
        expires_local=f"{held.expires_at.astimezone(web.tz_of(zone_name)):%H:%M}",
        seconds_left=max(0, int((held.expires_at - ctx.now).total_seconds())),
        values=values or {},
        errors=errors or {},
    )


@router.get("/book/{slug}/hold/{hold_id}")
async def show_hold(request: Request, slug: str, hold_id: str) -> Response:
    """The held slot and the form for name, email and an optional note."""
    async with get_db(request).read() as s:
        try:
            page = await svc.public_page(s, slug)
        except NotFound:
            return not_found(request)
        ctx = svc.page_context(page, request_id=web.request_id(request), now=web.now())
        return await _hold_form(request, s, page, ctx, hold_id, tz=request.query_params.get("tz"))


def _check_details(form: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    values = {
        "name": form.get("name", "").strip(),
        "email": form.get("email", "").strip(),
        "note": form.get("note", "").strip(),
    }
    errors: dict[str, str] = {}
    if not values["name"]:
        errors["name"] = "Please enter your name."
    elif len(values["name"]) > 200:
        errors["name"] = "Your name may be at most 200 characters."
    try:
        _EMAIL.validate_python(values["email"])
    except ValidationError:
        errors["email"] = "Please enter a valid email address, like name@example.com."
    if len(values["note"]) > 2000:
        errors["note"] = "The note may be at most 2000 characters."
    return values, errors


@router.post("/book/{slug}/confirm")
async def confirm(request: Request, slug: str) -> Response:
    """Book the held slot (§4.2) and show the confirmation with the manage link."""
    form = await _form(request)
    if not web.csrf_ok(request, form):
        return forbidden(request)
    visitor = web.visitor_id(request)
    tz = form.get("tz") or None
    hold_id = form.get("hold_id", "")
    db = get_db(request)
    async with db.read() as s:
        try:
            page = await svc.public_page(s, slug)
        except NotFound:
            return not_found(request)
    ctx = svc.page_context(page, request_id=web.request_id(request), now=web.now())
    values, errors = _check_details(form)
    if errors:
        async with db.read() as s:
            return await _hold_form(
                request, s, page, ctx, hold_id, tz=tz, values=values, errors=errors, status=422
            )
    base = web.public_base(request)

    async def work(s: AsyncSession) -> Response:
        made = await svc.confirm_slot(
            s,
            ctx,
            page,
            hold_id=hold_id,
            visitor=visitor,
            name=values["name"],
            email=values["email"],
            note=values["note"],
            manage_url=f"{base}/manage/",
        )
        return web.redirect(f"/manage/{made.manage_token}?{web.query(tz=tz, new='1')}")

    try:
        return await run_write(request, ctx, None, work)
    except HoldAlreadyConfirmed:
        return web.render(
            request,
            "message.html",
            status=409,
            heading="Already booked",
            message="This time is already booked. The confirmation email has the link to "
            "manage it.",
        )
    except (HoldExpired, HoldReleased, HoldPreempted, HoldNotFound, SlotConflict):
        async with db.read() as s:
            held = None
            try:
                held = await svc.visitors_hold(s, ctx, page, hold_id, visitor)
            except HoldNotFound:
                return await book_page(
                    request, s, page, tz=tz, day=None, notice_kind="gone", status=409
                )
            return await _taken(
                request, s, page, tz=tz, start=hold_slots(held)[0].start, kind="expired"
            )


@router.get("/book/{slug}/hold")
@router.get("/book/{slug}/confirm")
@router.get("/book/{slug}/release")
async def back_to_page(request: Request, slug: str) -> Response:
    """A reload of a form's address (these take posts): back to the page."""
    return web.redirect(f"/book/{slug}")


@router.post("/book/{slug}/release")
async def release(request: Request, slug: str) -> Response:
    """Let go of the held slot and go back to the times."""
    form = await _form(request)
    if not web.csrf_ok(request, form):
        return forbidden(request)
    visitor = web.visitor_id(request)
    tz = form.get("tz") or None
    hold_id = form.get("hold_id", "")
    db = get_db(request)
    async with db.read() as s:
        try:
            page = await svc.public_page(s, slug)
        except NotFound:
            return not_found(request)
    ctx = svc.page_context(page, request_id=web.request_id(request), now=web.now())
    at: str | None = None

    async def work(s: AsyncSession) -> Response:
        nonlocal at
        held = await svc.visitors_hold(s, ctx, page, hold_id, visitor)
        at = web.utc_text(hold_slots(held)[0].start)
        await svc.release_visitor_hold(s, ctx, page, hold_id, visitor)
        return web.redirect(f"/book/{page.slug}?{web.query(tz=tz, notice='released', at=at)}")

    try:
        return await run_write(request, ctx, None, work)
    except DomainError:
        return web.redirect(f"/book/{page.slug}?{web.query(tz=tz)}")
