"""Google and Microsoft calendars: the browser connect flow (§7.5)."""

from __future__ import annotations

import datetime as dt
import html
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field, StringConstraints

from slotguard.api import envelope
from slotguard.api.calendar_schemas import Role
from slotguard.api.deps import context, get_db
from slotguard.api.docs import one
from slotguard.api.routes.calendars import _config
from slotguard.api.schemas import Strict, Text200
from slotguard.calendars import oauth
from slotguard.calendars.base import ProviderAuthError, ProviderError
from slotguard.domain.errors import DomainError
from slotguard.ids import new_id
from slotguard.services import calendar_oauth as flow
from slotguard.services import calendars as svc
from slotguard.services.context import Actor, RequestContext
from slotguard.store import oauth_repo
from slotguard.store.models import Business

log = structlog.get_logger("slotguard.calendars")

router = APIRouter(prefix="/v1")

Admin = Annotated[RequestContext, Depends(context("admin"))]


class CalendarOAuthStart(Strict):
    role: Role = Field(
        default="busy",
        description="busy: its events block availability; write: bookings are written to it; both",
    )
    calendar_id: Annotated[str, StringConstraints(min_length=1, max_length=500)] | None = Field(
        default=None,
        description="Google: a calendar id (default primary); Microsoft: a calendar id "
        "(default: the user's default calendar)",
    )
    name: Text200 | None = None


class CalendarOAuthStartRead(BaseModel):
    authorization_url: str = Field(description="Send the owner's browser here")
    expires_at: dt.datetime = Field(description="The state in the URL is valid until then")


@router.post(
    "/businesses/{business_id}/calendars/oauth/{provider}",
    responses=one(CalendarOAuthStartRead),
)
async def start_calendar_oauth(
    business_id: str, provider: str, body: CalendarOAuthStart, request: Request, ctx: Admin
) -> Response:
    """Start connecting a Google or Microsoft calendar in the owner's browser."""
    config = _config(request)
    async with get_db(request).write() as s:
        start = await flow.begin_connect(
            s,
            ctx.actor,
            business_id,
            provider=provider,
            role=body.role,
            provider_calendar_id=body.calendar_id,
            name=body.name,
            config=config,
            now=ctx.now,
            request_base=str(request.base_url),
        )
    return envelope.ok(
        CalendarOAuthStartRead(
            authorization_url=start.authorization_url, expires_at=start.expires_at
        ),
        headers={"Cache-Control": "no-store"},
    )


# -- the callback --------------------------------------------------------------------------

PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
REFUSED = {
    "unknown": (400, "This sign-in link is not valid", "Start again from slotguard."),
    "used": (
        409,
        "This sign-in link was already used",
        "Each link works once. If the calendar is not connected yet, start again.",
    ),
    "expired": (
        410,
        "This sign-in link has expired",
        "Links are valid for 10 minutes. Start again from slotguard.",
    ),
}


def page(status: int, title: str, message: str) -> Response:
    """A small self-contained page: no script, no outside resource, nothing cached, and
    the address (it carried the code) never sent on as a referrer."""
    body = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)} · slotguard</title>"
        "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;"
        "padding:0 1rem;color:#1f2328}h1{font-size:1.4rem}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p></body></html>"
    )
    return Response(
        body,
        status_code=status,
        media_type="text/html; charset=utf-8",
        headers={
            "Content-Security-Policy": PAGE_CSP,
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get(
    "/oauth/{provider}/callback",
    response_class=Response,
    responses={200: {"content": {"text/html": {}}, "description": "The calendar is connected"}},
)
async def calendar_oauth_callback(
    provider: str,
    request: Request,
    state: str | None = None,
    code: str | None = None,
    error: str | None = None,
) -> Response:
    """Where the provider sends the owner back: exchanges the code, connects the calendar."""
    label = svc.OAUTH_LABELS.get(provider)
    if label is None:
        return page(404, "Unknown calendar provider", "slotguard connects google or microsoft.")
    if not state or len(state) > 200:
        return page(400, "This sign-in link is not valid", "The address carries no state.")
    config = _config(request)
    db = get_db(request)
    now = dt.datetime.now(dt.UTC)
    try:
        async with db.write() as s:
            st = await flow.claim_state(s, provider=provider, raw_state=state, now=now)
            business = await s.get(Business, st.business_id)
    except flow.StateRefused as refused:
        status, title, message = REFUSED[refused.reason]
        return page(status, title, message)
    if error:
        return page(
            400,
            f"{label} was not connected",
            f"{label} did not grant access ({error[:80]}). Start again to retry.",
        )
    if not code or len(code) > 4000:
        return page(400, f"{label} was not connected", "The address carries no code.")
    if business is None:
        return page(404, f"{label} was not connected", "The business no longer exists.")
    client = config.oauth.clients.get(provider) if config.oauth else None
    if client is None:
        return page(
            422,
            f"{label} was not connected",
            f"{label} is not configured on this server any more.",
        )
    try:
        verifier = flow.open_verifier(st, config)
        async with config.client() as http:
            grant = await oauth.exchange_code(
                http, client, code=code, verifier=verifier, redirect_uri=st.redirect_uri, now=now
            )
    except DomainError as exc:
        return page(exc.status, f"{label} was not connected", exc.message)
    except ProviderAuthError as exc:
        return page(400, f"{label} was not connected", exc.message)
    except ProviderError as exc:
        return page(502, f"{label} was not connected", exc.message + ". Try again later.")
    calendar_id = new_id("cal")
    actor = Actor(account_id=st.account_id, key_id=st.key_id)
    try:
        conn = await svc.prepare_connection(
            business=business,
            provider=provider,
            role=st.role,
            name=st.name,
            fields={"refresh_token": grant.refresh_token, "calendar_id": st.provider_calendar_id},
            config=config,
            calendar_id=calendar_id,
            grant=grant,
        )
        async with db.write() as s:
            cal = await svc.create_calendar(
                s,
                actor,
                business.id,
                calendar_id=calendar_id,
                conn=conn,
                config=config,
                now=dt.datetime.now(dt.UTC),
            )
            await oauth_repo.set_state_calendar(s, state_id=st.id, calendar_id=cal.id)
            shown = cal.name or label
    except DomainError as exc:
        return page(exc.status, f"{label} was not connected", exc.message)
    await svc.cache_checked_token(db, conn, calendar_id=calendar_id, config=config)
    log.info("calendar_connected", calendar_id=calendar_id, provider=provider, flow="oauth")
    return page(
        200,
        f"{label} connected",
        f"The calendar “{shown}” is now connected to {business.name}. "
        "slotguard is syncing it; you can close this window.",
    )
