"""Booking pages (§12): the pages themselves, visitors' holds and bookings, manage links,
and the owner dashboard's sign-in.

Every rule about time stays where the API keeps it: a visitor's pick is a hold through
`holds.create_hold` (§3.2), confirming is `holds.confirm_hold` (§4.2), and the manage link
cancels and reschedules through `bookings.cancel` and `bookings.reschedule`. What lives here
is only what pages add: who the visitor is, the abuse limits, and the tokens.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.domain.errors import (
    Conflict,
    DomainError,
    HoldNotFound,
    NoSlotsAvailable,
    NotFound,
    ValidationFailed,
)
from slotguard.ids import new_id
from slotguard.services import bookings, holds
from slotguard.services.availability import SlotsResult, get_slots
from slotguard.services.bookings_state import BookingDetails
from slotguard.services.businesses import resolve_business, resolve_meeting_class
from slotguard.services.context import Actor, RequestContext
from slotguard.services.scheduling import load_scheduling
from slotguard.store import pages_repo
from slotguard.store import repositories as repo
from slotguard.store.models import (
    Booking,
    BookingPage,
    Business,
    DashboardToken,
    Hold,
    ManageToken,
    PageHold,
)

SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{1,62}[a-z0-9])$")
DEFAULT_DAYS_AHEAD = 14
MAX_DAYS_AHEAD = 90
LOGIN_LINK_TTL = dt.timedelta(minutes=15)
SESSION_TTL = dt.timedelta(hours=12)
# What a public page may do on its visitors' behalf: read and hold time, book held time.
# Never `bookings:preempt`: a visitor cannot displace anyone's booking.
PAGE_SCOPES = frozenset({"availability:read", "availability:write", "bookings:write"})


class TooManyHolds(DomainError):
    code, status = "rate_limited", 429
    default_message = "Too many slots are held from this address right now."


def token_hash(raw: str) -> str:
    """Tokens are 256-bit random, so one SHA-256 is enough to store them and look them up."""
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def _fail(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{field} {message}.", fields=[{"field": field, "message": message}])


# -- the pages (admin API) ---------------------------------------------------------------


def _slugify(text: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40].strip("-")
    return f"{base or 'book'}-{secrets.token_hex(3)}"


def _check_fields(changes: dict[str, Any]) -> None:
    slug = changes.get("slug")
    if slug is not None and not SLUG.match(slug):
        raise _fail("slug", "must be 3-64 characters: lower-case letters, digits and inner hyphens")
    days = changes.get("days_ahead")
    if days is not None and not 1 <= days <= MAX_DAYS_AHEAD:
        raise _fail("days_ahead", f"must be between 1 and {MAX_DAYS_AHEAD}")
    duration = changes.get("duration_minutes")
    if duration is not None and not 5 <= duration <= 24 * 60:
        raise _fail("duration_minutes", "must be between 5 and 1440")


async def _check_refs(s: AsyncSession, actor: Actor, changes: dict[str, Any]) -> None:
    if changes.get("business_id") is not None:
        await resolve_business(s, actor, business_id=changes["business_id"])
    if changes.get("meeting_class") is not None:
        await resolve_meeting_class(s, actor, changes["meeting_class"])


async def _flush_slug(s: AsyncSession) -> None:
    """Flush; a slug taken by a concurrent request (the unique index) is a 409 too."""
    try:
        async with s.begin_nested():
            await s.flush()
    except IntegrityError as exc:
        if repo.is_unique_violation(exc):
            raise Conflict("A booking page with this slug already exists.", field="slug") from None
        raise


async def _claim_slug(s: AsyncSession, slug: str, *, except_id: str | None = None) -> None:
    if await pages_repo.slug_taken(s, slug, except_id=except_id):
        raise Conflict("A booking page with this slug already exists.", field="slug")


async def create_page(
    s: AsyncSession, actor: Actor, *, fields: dict[str, Any], now: dt.datetime
) -> BookingPage:
    _check_fields(fields)
    await _check_refs(s, actor, fields)
    business = await resolve_business(s, actor, business_id=fields["business_id"])
    slug = fields.get("slug") or _slugify(fields.get("title") or business.name)
    await _claim_slug(s, slug)
    page = BookingPage(
        id=new_id("bpg"),
        account_id=actor.account_id,
        business_id=business.id,
        meeting_class=fields.get("meeting_class"),
        slug=slug,
        title=fields.get("title"),
        description=fields.get("description"),
        duration_minutes=fields.get("duration_minutes"),
        days_ahead=fields.get("days_ahead") or DEFAULT_DAYS_AHEAD,
        created_at=now,
        updated_at=now,
    )
    s.add(page)
    await _flush_slug(s)
    return page


async def get_page(s: AsyncSession, actor: Actor, page_id: str) -> BookingPage:
    page = await pages_repo.get_page(s, actor.account_id, page_id)
    if page is None:
        raise NotFound("The booking page does not exist.")
    actor.require_business(page.business_id)
    return page


async def update_page(
    s: AsyncSession, actor: Actor, page_id: str, *, changes: dict[str, Any], now: dt.datetime
) -> BookingPage:
    page = await get_page(s, actor, page_id)
    if "business_id" in changes and changes["business_id"] is None:
        raise _fail("business_id", "may not be null")
    if "days_ahead" in changes and changes["days_ahead"] is None:
        changes["days_ahead"] = DEFAULT_DAYS_AHEAD
    if "slug" in changes and changes["slug"] is None:
        raise _fail("slug", "may not be null")
    _check_fields(changes)
    await _check_refs(s, actor, changes)
    if "slug" in changes:
        await _claim_slug(s, changes["slug"], except_id=page.id)
    for name, value in changes.items():
        setattr(page, name, value)
    page.updated_at = now
    await _flush_slug(s)
    return page


async def delete_page(s: AsyncSession, actor: Actor, page_id: str) -> None:
    """Delete a page; bookings made from it, and their manage links, stay."""
    page = await get_page(s, actor, page_id)
    await pages_repo.delete_page(s, page.id)


# -- the public page ---------------------------------------------------------------------


def page_context(page: BookingPage, *, request_id: str | None, now: dt.datetime) -> RequestContext:
    """The page acts in its account, for its one business, with `PAGE_SCOPES` only."""
    actor = Actor(
        account_id=page.account_id,
        key_id=None,
        scopes=PAGE_SCOPES,
        allowed_business_ids=frozenset({page.business_id}),
        page_id=page.id,
    )
    return RequestContext(actor=actor, request_id=request_id, now=now)


async def public_page(s: AsyncSession, slug: str) -> BookingPage:
    page = await pages_repo.page_by_slug(s, slug) if SLUG.match(slug) else None
    if page is None or await repo.get_business(s, page.account_id, page.business_id) is None:
        raise NotFound("There is no booking page at this address.")
    return page


@dataclass(frozen=True, slots=True)
class PageView:
    page: BookingPage
    business_name: str
    title: str
    duration_minutes: int
    slots: SlotsResult


async def page_slots(s: AsyncSession, ctx: RequestContext, page: BookingPage) -> PageView:
    """The free slots of the page's window: exactly what `GET /v1/availability/slots` gives."""
    result = await get_slots(
        s,
        ctx,
        business_id=page.business_id,
        owner_email=None,
        meeting_class=page.meeting_class,
        duration_minutes=page.duration_minutes,
        start=ctx.now,
        end=ctx.now + dt.timedelta(days=page.days_ahead),
        buffer_minutes=0,
        slot_interval_minutes=None,
        limit=5000,
    )
    sched = result.scheduling
    return PageView(
        page=page,
        business_name=sched.business.name,
        title=page.title or sched.terms.display_name,
        duration_minutes=int(result.duration.total_seconds() // 60),
        slots=result,
    )


async def visitor_hold(
    s: AsyncSession, ctx: RequestContext, page: BookingPage, visitor: str
) -> Hold | None:
    """The visitor's live hold on this page, if any."""
    for row in await pages_repo.live_visitor_holds(s, page.id, visitor, ctx.now):
        hold = await repo.get_hold(s, ctx.account_id, row.hold_id)
        if hold is not None:
            return hold
    return None


async def hold_slot(
    s: AsyncSession,
    ctx: RequestContext,
    page: BookingPage,
    *,
    start: dt.datetime,
    visitor: str,
    client_addr: str,
    ttl_seconds: int,
    holds_per_address: int,
) -> Hold:
    """Hold the slot starting at `start` for this visitor (§3.2's `create_hold`).

    One live hold per visitor per page: picking another slot releases the previous one.
    Raises `NoSlotsAvailable` when that exact slot is not free, `TooManyHolds` over the
    per-address cap.
    """
    # The business row first, as every writer does: concurrent picks by one visitor then
    # run one after the other, so the one-hold rule cannot be raced.
    sched = await load_scheduling(
        s, ctx, business_id=page.business_id, meeting_class=page.meeting_class, lock=True
    )
    for row in await pages_repo.live_visitor_holds(s, page.id, visitor, ctx.now):
        await holds.release_hold(s, ctx, row.hold_id)
    if await pages_repo.count_live_address_holds(s, client_addr, ctx.now) >= holds_per_address:
        raise TooManyHolds(limit=holds_per_address)
    end = start + sched.duration(page.duration_minutes)
    if start < ctx.now:
        raise NoSlotsAvailable("That time has passed.")
    decision = await holds.create_hold(
        s,
        ctx,
        business_id=page.business_id,
        owner_email=None,
        meeting_class=page.meeting_class,
        duration_minutes=page.duration_minutes,
        window_start=start,
        window_end=end,
        ttl_seconds=ttl_seconds,
        max_slots=1,
        lookahead_hours=1,
    )
    hold = decision.hold
    s.add(
        PageHold(
            hold_id=hold.id,
            page_id=page.id,
            visitor=visitor,
            client_addr=client_addr,
            expires_at=hold.expires_at,
            created_at=ctx.now,
        )
    )
    return hold


async def visitors_hold(
    s: AsyncSession, ctx: RequestContext, page: BookingPage, hold_id: str, visitor: str
) -> Hold:
    """A hold this visitor took from this page; anyone else's is not found."""
    row = await pages_repo.get_page_hold(s, hold_id)
    if row is None or row.page_id != page.id or not secrets.compare_digest(row.visitor, visitor):
        raise HoldNotFound()
    return await holds.get_hold(s, ctx, hold_id)


async def release_visitor_hold(
    s: AsyncSession, ctx: RequestContext, page: BookingPage, hold_id: str, visitor: str
) -> None:
    await visitors_hold(s, ctx, page, hold_id, visitor)
    await holds.release_hold(s, ctx, hold_id)


@dataclass(frozen=True, slots=True)
class PageBooking:
    booking: Booking
    manage_token: str


async def confirm_slot(
    s: AsyncSession,
    ctx: RequestContext,
    page: BookingPage,
    *,
    hold_id: str,
    visitor: str,
    name: str,
    email: str,
    note: str | None,
    manage_url: str,
) -> PageBooking:
    """Book the visitor's held slot (§4.2's `confirm_hold`) and mint its manage link.

    `manage_url` is the link's base (`…/manage/`); the raw token is appended for the
    confirmation mail and returned once, only its hash is stored.
    """
    await visitors_hold(s, ctx, page, hold_id, visitor)
    raw = new_token()
    booking = await holds.confirm_hold(
        s,
        ctx,
        hold_id,
        start=None,
        details=BookingDetails(customer_name=name, customer_email=email, description=note or None),
        manage_url=manage_url + raw,
    )
    s.add(
        ManageToken(
            token_hash=token_hash(raw),
            account_id=booking.account_id,
            booking_id=booking.id,
            page_id=page.id,
            created_at=ctx.now,
        )
    )
    return PageBooking(booking=booking, manage_token=raw)


# -- manage links ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Managed:
    token: ManageToken
    booking: Booking
    page: BookingPage | None
    business_name: str
    business_timezone: str


async def managed_booking(s: AsyncSession, raw: str) -> Managed:
    """The booking a manage token names; an unknown token is simply not found."""
    row = await pages_repo.manage_token(s, token_hash(raw)) if 20 <= len(raw) <= 100 else None
    booking = await repo.get_booking(s, row.account_id, row.booking_id) if row else None
    if row is None or booking is None:
        raise NotFound("This link is not valid.")
    page = await pages_repo.get_page(s, row.account_id, row.page_id) if row.page_id else None
    business = await s.get(Business, booking.business_id)
    return Managed(
        token=row,
        booking=booking,
        page=page,
        business_name=business.name if business else "",
        business_timezone=business.timezone if business else "UTC",
    )


def manage_context(m: Managed, *, request_id: str | None, now: dt.datetime) -> RequestContext:
    """The invitee acts on their one booking only, with no preemption."""
    actor = Actor(
        account_id=m.booking.account_id,
        key_id=None,
        scopes=PAGE_SCOPES,
        allowed_business_ids=frozenset({m.booking.business_id}),
        page_id=m.token.page_id or "manage",
    )
    return RequestContext(actor=actor, request_id=request_id, now=now)


async def reschedule_slots(s: AsyncSession, ctx: RequestContext, m: Managed) -> SlotsResult:
    """Free slots of the booking's length and class, over the page's window."""
    booking = m.booking
    days = m.page.days_ahead if m.page else DEFAULT_DAYS_AHEAD
    minutes = int((booking.end_at - booking.start_at).total_seconds() // 60)
    return await get_slots(
        s,
        ctx,
        business_id=booking.business_id,
        owner_email=None,
        meeting_class=booking.meeting_class,
        duration_minutes=minutes,
        start=ctx.now,
        end=ctx.now + dt.timedelta(days=days),
        buffer_minutes=0,
        slot_interval_minutes=None,
        limit=5000,
    )


async def cancel_managed(
    s: AsyncSession, ctx: RequestContext, raw: str, *, reason: str | None
) -> Booking:
    m = await managed_booking(s, raw)
    return await bookings.cancel(s, ctx, m.booking.id, reason=reason, if_match=None)


async def reschedule_managed(
    s: AsyncSession, ctx: RequestContext, raw: str, *, start: dt.datetime, manage_url: str
) -> Booking:
    """Move the booking (§4.5's `reschedule`); the update mail repeats the manage link."""
    m = await managed_booking(s, raw)
    return await bookings.reschedule(
        s, ctx, m.booking.id, start=start, end=None, if_match=None, manage_url=manage_url
    )


# -- dashboard sign-in -------------------------------------------------------------------


async def create_login_link(s: AsyncSession, account_id: str, *, now: dt.datetime) -> str:
    """A one-time sign-in token, valid `LOGIN_LINK_TTL`; returned raw once, stored hashed."""
    if await repo.get_account(s, account_id) is None:
        raise NotFound("The account does not exist.")
    raw = new_token()
    s.add(
        DashboardToken(
            token_hash=token_hash(raw),
            kind="login",
            account_id=account_id,
            expires_at=now + LOGIN_LINK_TTL,
            used_at=None,
            created_at=now,
        )
    )
    return raw


async def sign_in(s: AsyncSession, raw: str, *, now: dt.datetime) -> str | None:
    """Spend a login link and open a session: the raw session token, or None."""
    account_id = await pages_repo.use_login_token(s, token_hash(raw), now)
    if account_id is None:
        return None
    session = new_token()
    s.add(
        DashboardToken(
            token_hash=token_hash(session),
            kind="session",
            account_id=account_id,
            expires_at=now + SESSION_TTL,
            used_at=None,
            created_at=now,
        )
    )
    return session


async def session_account(s: AsyncSession, raw: str, *, now: dt.datetime) -> str | None:
    row = await pages_repo.dashboard_token(s, token_hash(raw), "session")
    if row is None or row.used_at is not None or row.expires_at <= now:
        return None
    return row.account_id


async def sign_out(s: AsyncSession, raw: str, *, now: dt.datetime) -> None:
    await pages_repo.end_session(s, token_hash(raw), now)
