"""The owner's dashboard `/dashboard` (§12): bookings, holds, calendars, outbox, audit log.

Sign-in is a one-time link from `slotguard admin login-link`; the session is a random
token in an HttpOnly, SameSite=Strict cookie, stored hashed. The dashboard acts as the
account's admin, through the same services and repositories as the API.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.api.deps import get_db
from slotguard.api.idempotency import run_write
from slotguard.api.pagination import decode_cursor, encode_cursor
from slotguard.domain.errors import DomainError, ValidationFailed
from slotguard.pages import web
from slotguard.pages.book import _form, forbidden
from slotguard.services import booking_pages as svc
from slotguard.services import bookings
from slotguard.services.context import Actor, RequestContext
from slotguard.services.holds import hold_slots
from slotguard.store import calendar_repo, outbox_repo, pages_repo
from slotguard.store import repositories as repo

router = APIRouter(include_in_schema=False, route_class=web.PageRoute)

UPCOMING = 25
AUDIT_PAGE = 50
AUDIT_FILTERS = ("action", "business_id", "booking_id", "hold_id", "agent_id", "request_id")


def _sign_in_needed(request: Request, message: str | None = None) -> Response:
    return web.render(
        request,
        "message.html",
        status=401,
        heading="Sign in",
        message=message or "Sign in with a link from the command line: slotguard admin login-link",
    )


async def _account(request: Request, s: AsyncSession) -> str | None:
    raw = request.cookies.get(web.SESSION_COOKIE)
    if not raw or len(raw) > 100:
        return None
    return await svc.session_account(s, raw, now=web.now())


def _context(request: Request, account_id: str) -> RequestContext:
    return RequestContext(
        actor=Actor(account_id=account_id, key_id=None),
        request_id=web.request_id(request),
        now=web.now(),
    )


@router.get("/dashboard/login/{token}")
async def login_page(request: Request, token: str) -> Response:
    """A button that spends the one-time link (a link preview fetching it spends nothing)."""
    return web.render(request, "login.html", token=token)


@router.post("/dashboard/login/{token}")
async def login(request: Request, token: str) -> Response:
    """Spend the one-time link and open a session."""
    form = await _form(request)
    if not web.csrf_ok(request, form):
        return forbidden(request)
    async with get_db(request).write() as s:
        session = await svc.sign_in(s, token, now=web.now()) if len(token) <= 100 else None
    if session is None:
        return _sign_in_needed(
            request,
            "This sign-in link was already used or has expired. Run "
            "slotguard admin login-link for a new one.",
        )
    response = web.redirect("/dashboard")
    response.set_cookie(
        web.SESSION_COOKIE,
        session,
        max_age=int(svc.SESSION_TTL.total_seconds()),
        httponly=True,
        samesite="strict",
        secure=web.secure_cookies(request),
        path="/dashboard",
    )
    return response


@router.post("/dashboard/logout")
async def logout(request: Request) -> Response:
    """End the session."""
    form = await _form(request)
    if not web.csrf_ok(request, form):
        return forbidden(request)
    raw = request.cookies.get(web.SESSION_COOKIE)
    if raw and len(raw) <= 100:
        async with get_db(request).write() as s:
            await svc.sign_out(s, raw, now=web.now())
    response = web.redirect("/dashboard")
    response.delete_cookie(web.SESSION_COOKIE, path="/dashboard")
    return response


def _error_text(error: dict[str, Any] | None) -> str:
    if not error:
        return ""
    code, message = error.get("code"), error.get("message")
    return ": ".join(str(x) for x in (code, message) if x)


@router.get("/dashboard")
async def dashboard(request: Request) -> Response:
    """Upcoming bookings per business, live holds, calendars, outbox health."""
    now = web.now()
    async with get_db(request).read() as s:
        account_id = await _account(request, s)
        if account_id is None:
            return _sign_in_needed(request)
        account = await repo.get_account(s, account_id)
        businesses = await repo.list_businesses(s, account_id, after=None, limit=100)
        names = {b.id: b.name for b in businesses}
        sections = []
        for b in businesses[:100]:
            upcoming = await repo.list_bookings(
                s,
                account_id,
                business_ids=frozenset({b.id}),
                statuses=["confirmed"],
                start=now,
                end=None,
                customer_email=None,
                updated_since=None,
                sort="start_time",
                after=None,
                limit=UPCOMING,
            )
            calendars = await calendar_repo.list_calendars(s, b.id, after=None, limit=50)
            sections.append(
                {
                    "business": b,
                    "more": len(upcoming) > UPCOMING,
                    "bookings": [
                        {
                            "id": x.id,
                            "when": web.when_text(x.start_at, x.end_at, b.timezone),
                            "title": x.title or x.meeting_class,
                            "who": x.customer_name or x.customer_email or "",
                            "email": x.customer_email or "",
                        }
                        for x in upcoming[:UPCOMING]
                    ],
                    "calendars": [
                        {
                            "name": c.name or c.provider,
                            "provider": c.provider,
                            "role": c.role,
                            "status": c.status,
                            "synced": web.moment(c.last_synced_at, "UTC")
                            if c.last_synced_at
                            else "never",
                            "error": _error_text(c.last_error),
                        }
                        for c in calendars
                    ],
                }
            )
        holds = [
            {
                "id": h.id,
                "business": names.get(h.business_id, h.business_id),
                "slots": ", ".join(web.moment(x.start, "UTC") for x in hold_slots(h)),
                "meeting_class": h.meeting_class,
                "by": h.agent_id or ("booking page" if h.key_id is None else h.key_id),
                "left": max(0, int((h.expires_at - now).total_seconds())),
            }
            for h in await pages_repo.live_holds(s, account_id, now, 100)
        ]
        stats = await outbox_repo.stats(s, account_id=account_id, now=now)
    return web.render(
        request,
        "dashboard.html",
        account_name=account.name if account else account_id,
        sections=sections,
        holds=holds,
        stats=stats,
        done=request.query_params.get("done"),
    )


@router.post("/dashboard/bookings/{booking_id}/cancel")
async def cancel_booking(request: Request, booking_id: str) -> Response:
    """Cancel a booking (§4.5) as the account's admin."""
    form = await _form(request)
    if not web.csrf_ok(request, form):
        return forbidden(request)
    async with get_db(request).read() as s:
        account_id = await _account(request, s)
    if account_id is None:
        return _sign_in_needed(request)
    ctx = _context(request, account_id)

    async def work(s: AsyncSession) -> Response:
        await bookings.cancel(
            s, ctx, booking_id, reason="Cancelled from the dashboard", if_match=None
        )
        return web.redirect("/dashboard?done=cancelled")

    try:
        return await run_write(request, ctx, None, work)
    except DomainError as exc:
        return web.render(
            request, "message.html", status=exc.status, heading="Not cancelled", message=exc.message
        )


@router.get("/dashboard/audit")
async def audit_log(request: Request) -> Response:
    """The audit log in id order (oldest first), filterable, a page at a time."""
    params = request.query_params
    filters = {k: (params.get(k) or "").strip()[:100] or None for k in AUDIT_FILTERS}
    try:
        after = decode_cursor(params.get("cursor"), 1)
        since = _day(params.get("since"), "since")
        until = _day(params.get("until"), "until")
    except ValidationFailed as exc:
        return web.render(
            request, "message.html", status=422, heading="Bad filter", message=exc.message
        )
    async with get_db(request).read() as s:
        account_id = await _account(request, s)
        if account_id is None:
            return _sign_in_needed(request)
        rows = await repo.list_audit(
            s,
            account_id,
            after=after[0] if after else None,
            limit=AUDIT_PAGE,
            business_ids=None,
            since=since,
            until=until,
            **filters,
        )
    page, more = rows[:AUDIT_PAGE], len(rows) > AUDIT_PAGE
    shown = {k: v for k, v in filters.items() if v}
    nxt = None
    if more:
        nxt = web.query(
            **shown,
            since=params.get("since"),
            until=params.get("until"),
            cursor=encode_cursor(page[-1].id),
        )
    return web.render(
        request,
        "audit.html",
        rows=[
            {
                "id": r.id,
                "at": r.at.strftime("%Y-%m-%d %H:%M:%S"),
                "action": r.action,
                "by": r.agent_id or r.key_id or "",
                "business_id": r.business_id or "",
                "hold_id": r.hold_id or "",
                "booking_id": r.booking_id or "",
                "decision": r.decision or "",
                "reason": r.reason or "",
                "request_id": r.request_id or "",
            }
            for r in page
        ],
        filters=filters,
        since=params.get("since") or "",
        until=params.get("until") or "",
        next_query=nxt,
    )


def _day(raw: str | None, field: str) -> dt.datetime | None:
    """A filter date `YYYY-MM-DD` (UTC midnight)."""
    if not raw:
        return None
    try:
        day = dt.date.fromisoformat(raw)
    except ValueError:
        raise ValidationFailed(
            f"{field} must be a date like 2026-12-24.",
            fields=[{"field": field, "message": "must be YYYY-MM-DD"}],
        ) from None
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
