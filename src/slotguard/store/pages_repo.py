"""Queries of the booking pages (§12): pages, visitors' holds, manage tokens, dashboard."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import ColumnElement, and_, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.store.models import (
    Account,
    BookingPage,
    DashboardToken,
    Hold,
    ManageToken,
    PageHold,
)


async def get_page(s: AsyncSession, account_id: str, page_id: str) -> BookingPage | None:
    found: BookingPage | None = await s.scalar(
        select(BookingPage).where(BookingPage.id == page_id, BookingPage.account_id == account_id)
    )
    return found


async def page_by_slug(s: AsyncSession, slug: str) -> BookingPage | None:
    found: BookingPage | None = await s.scalar(select(BookingPage).where(BookingPage.slug == slug))
    return found


async def slug_taken(s: AsyncSession, slug: str, *, except_id: str | None = None) -> bool:
    q = select(BookingPage.id).where(BookingPage.slug == slug)
    if except_id is not None:
        q = q.where(BookingPage.id != except_id)
    return (await s.scalar(q)) is not None


async def list_pages(
    s: AsyncSession,
    account_id: str,
    *,
    after: str | None,
    limit: int,
    business_ids: frozenset[str] | None = None,
) -> Sequence[BookingPage]:
    q = select(BookingPage).where(BookingPage.account_id == account_id)
    if business_ids is not None:
        q = q.where(BookingPage.business_id.in_(business_ids))
    if after:
        q = q.where(BookingPage.id > after)
    return (await s.scalars(q.order_by(BookingPage.id).limit(limit + 1))).all()


async def delete_page(s: AsyncSession, page_id: str) -> None:
    await s.execute(delete(BookingPage).where(BookingPage.id == page_id))


# -- visitors' holds ---------------------------------------------------------------------


def _live(now: dt.datetime) -> list[ColumnElement[bool]]:
    # A page hold is live while its hold is active and unexpired; the hold row decides.
    return [
        PageHold.expires_at > now,
        Hold.id == PageHold.hold_id,
        Hold.status == "active",
        Hold.expires_at > now,
    ]


async def live_visitor_holds(
    s: AsyncSession, page_id: str, visitor: str, now: dt.datetime
) -> Sequence[PageHold]:
    q = select(PageHold).where(
        PageHold.page_id == page_id, PageHold.visitor == visitor, *_live(now)
    )
    return (await s.scalars(q)).all()


async def count_live_address_holds(s: AsyncSession, client_addr: str, now: dt.datetime) -> int:
    q = (
        select(func.count())
        .select_from(PageHold)
        .where(PageHold.client_addr == client_addr, *_live(now))
    )
    return int(await s.scalar(q) or 0)


async def get_page_hold(s: AsyncSession, hold_id: str) -> PageHold | None:
    found: PageHold | None = await s.get(PageHold, hold_id)
    return found


async def purge_page_state(s: AsyncSession, *, now: dt.datetime) -> int:
    """Forget visitors' holds that ended an hour ago and spent or expired sign-in tokens."""
    held = await s.execute(
        delete(PageHold).where(PageHold.expires_at < now - dt.timedelta(hours=1))
    )
    tokens = await s.execute(delete(DashboardToken).where(DashboardToken.expires_at < now))
    return sum(int(getattr(r, "rowcount", 0) or 0) for r in (held, tokens))


# -- manage tokens -----------------------------------------------------------------------


async def manage_token(s: AsyncSession, token_hash: str) -> ManageToken | None:
    found: ManageToken | None = await s.get(ManageToken, token_hash)
    return found


# -- dashboard ---------------------------------------------------------------------------


async def dashboard_token(
    s: AsyncSession, token_hash: str, kind: str, *, for_update: bool = False
) -> DashboardToken | None:
    q = select(DashboardToken).where(
        DashboardToken.token_hash == token_hash, DashboardToken.kind == kind
    )
    if for_update:
        q = q.with_for_update()
    found: DashboardToken | None = await s.scalar(q)
    return found


async def use_login_token(s: AsyncSession, token_hash: str, now: dt.datetime) -> str | None:
    """Mark an unused, unexpired login link used; its account, or None. One winner only:
    the update's WHERE clause is the check, so two clicks cannot both sign in."""
    row = await dashboard_token(s, token_hash, "login")
    if row is None:
        return None
    result = await s.execute(
        update(DashboardToken)
        .where(
            and_(
                DashboardToken.token_hash == token_hash,
                DashboardToken.kind == "login",
                DashboardToken.used_at.is_(None),
                DashboardToken.expires_at > now,
            )
        )
        .values(used_at=now)
    )
    if int(getattr(result, "rowcount", 0) or 0) != 1:
        return None
    return row.account_id


async def end_session(s: AsyncSession, token_hash: str, now: dt.datetime) -> None:
    await s.execute(
        update(DashboardToken)
        .where(DashboardToken.token_hash == token_hash, DashboardToken.kind == "session")
        .values(used_at=now, expires_at=now)
    )


async def live_holds(
    s: AsyncSession, account_id: str, now: dt.datetime, limit: int
) -> Sequence[Hold]:
    q = (
        select(Hold)
        .where(Hold.account_id == account_id, Hold.status == "active", Hold.expires_at > now)
        .order_by(Hold.expires_at, Hold.id)
        .limit(limit)
    )
    return (await s.scalars(q)).all()


async def account_ids(s: AsyncSession, limit: int) -> Sequence[str]:
    return (await s.scalars(select(Account.id).order_by(Account.id).limit(limit))).all()
