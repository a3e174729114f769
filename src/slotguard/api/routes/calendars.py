"""Connected calendars (§7.1)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.api import envelope
from slotguard.api.calendar_schemas import (
    CalendarBusyRead,
    CalendarCreate,
    CalendarRead,
    CalendarUpdate,
    calendar_read,
)
from slotguard.api.deps import context, get_db
from slotguard.api.docs import Deleted, many, one
from slotguard.api.idempotency import IdempotencyRequest, idempotency, run_write
from slotguard.api.pagination import keyset_page
from slotguard.api.schemas import Instant, QueryInt, set_fields
from slotguard.calendars.registry import get_spec
from slotguard.calendars.sync import CalendarSync, SyncConfig
from slotguard.config import Settings, get_settings
from slotguard.domain.errors import ValidationFailed
from slotguard.ids import new_id
from slotguard.services import calendars as svc
from slotguard.services.context import RequestContext

router = APIRouter(prefix="/v1")

Admin = Annotated[RequestContext, Depends(context("admin"))]
Reader = Annotated[RequestContext, Depends(context(None))]
Idem = Annotated[IdempotencyRequest | None, Depends(idempotency(required=False))]

SYNC_WAIT_S = 30.0
MAX_BUSY_LIST = 5000


def _config(request: Request) -> SyncConfig:
    settings: Settings = getattr(request.app.state, "settings", None) or get_settings()
    return SyncConfig.from_settings(settings)


def _path(business_id: str, calendar_id: str) -> str:
    return f"/v1/businesses/{business_id}/calendars/{calendar_id}"


@router.post(
    "/businesses/{business_id}/calendars",
    status_code=201,
    responses=one(CalendarRead, 201),
)
async def connect_calendar(
    business_id: str, body: CalendarCreate, request: Request, ctx: Admin, idem: Idem
) -> Response:
    """Connect a calendar: its settings are checked with one request to the provider."""
    config = _config(request)
    async with get_db(request).read() as s:
        business = await svc.business_for(s, ctx.actor, business_id)
        # Before the provider check: Microsoft rotates the refresh token it is given.
        await svc.refuse_second_write_calendar(s, business.id, body.role)
    calendar_id = new_id("cal")
    conn = await svc.prepare_connection(
        business=business,
        provider=body.provider,
        role=body.role,
        name=body.name,
        fields=body.provider_fields(),
        config=config,
        calendar_id=calendar_id,
    )

    async def work(s: AsyncSession) -> Response:
        cal = await svc.create_calendar(
            s,
            ctx.actor,
            business_id,
            calendar_id=calendar_id,
            conn=conn,
            config=config,
            now=ctx.now,
        )
        return envelope.ok(
            calendar_read(cal), status=201, headers={"Location": _path(business_id, cal.id)}
        )

    response = await run_write(request, ctx, idem, work)
    if response.status_code == 201:
        await svc.cache_checked_token(get_db(request), conn, calendar_id=calendar_id, config=config)
    return response


@router.get("/businesses/{business_id}/calendars", responses=many(CalendarRead))
async def list_calendars(
    business_id: str,
    request: Request,
    ctx: Reader,
    limit: QueryInt | None = None,
    cursor: str | None = None,
) -> Response:
    """List the calendars connected to a business."""
    return await keyset_page(
        get_db(request),
        limit=limit,
        cursor=cursor,
        fetch=lambda s, after, n: svc.list_calendars(
            s, ctx.actor, business_id, after=after, limit=n
        ),
        render=calendar_read,
    )


@router.get("/businesses/{business_id}/calendars/{calendar_id}", responses=one(CalendarRead))
async def get_calendar(
    business_id: str, calendar_id: str, request: Request, ctx: Reader
) -> Response:
    """One calendar: sync status, last error and the size of its local copy."""
    async with get_db(request).read() as s:
        cal = await svc.get_calendar(s, ctx.actor, business_id, calendar_id)
    return envelope.ok(calendar_read(cal))


@router.patch("/businesses/{business_id}/calendars/{calendar_id}", responses=one(CalendarRead))
async def update_calendar(
    business_id: str,
    calendar_id: str,
    body: CalendarUpdate,
    request: Request,
    ctx: Admin,
    idem: Idem,
) -> Response:
    """Rename a calendar, change its role, or replace its credentials (checked first)."""
    config = _config(request)
    changes = set_fields(body)
    provider_keys = {"url", "username", "password", "refresh_token", "timezone"}
    conn = None
    if provider_keys & changes.keys():
        async with get_db(request).read() as s:
            business = await svc.business_for(s, ctx.actor, business_id)
            cal = await svc.get_calendar(s, ctx.actor, business_id, calendar_id)
        try:
            fields = svc.connection_fields_of(cal, config.secret_key)
        except Exception:
            fields = {"url": cal.url, **(cal.settings or {})}
        fields.update({k: v for k, v in changes.items() if k in provider_keys})
        spec = get_spec(cal.provider)
        # A URL may carry credentials in its user-info part.
        new_secrets = "url" in changes or (
            spec is not None and bool(set(spec.secret_fields) & changes.keys())
        )
        conn = await svc.prepare_connection(
            business=business,
            provider=cal.provider,
            role=changes.get("role", cal.role),
            name=cal.name,
            fields=fields,
            config=config,
            calendar_id=cal.id,
            db=get_db(request),
            # No credential in the PATCH: the check uses the stored grant, under the
            # refresh lease like every other token use, and leaves it as it is.
            stored_credentials=not new_secrets,
        )

    async def work(s: AsyncSession) -> Response:
        cal = await svc.update_calendar(
            s,
            ctx.actor,
            business_id,
            calendar_id,
            changes=changes,
            conn=conn,
            config=config,
            now=ctx.now,
        )
        return envelope.ok(calendar_read(cal))

    return await run_write(request, ctx, idem, work)


@router.delete("/businesses/{business_id}/calendars/{calendar_id}", responses=one(Deleted))
async def delete_calendar(
    business_id: str, calendar_id: str, request: Request, ctx: Admin, idem: Idem
) -> Response:
    """Disconnect a calendar: its busy time goes at once; events written to it stay."""

    async def work(s: AsyncSession) -> Response:
        await svc.delete_calendar(s, ctx.actor, business_id, calendar_id)
        return envelope.ok({"id": calendar_id, "deleted": True})

    return await run_write(request, ctx, idem, work)


@router.post(
    "/businesses/{business_id}/calendars/{calendar_id}/sync",
    responses={**one(CalendarRead), 202: {"description": "Still syncing after 30 s"}},
)
async def sync_calendar(
    business_id: str, calendar_id: str, request: Request, ctx: Admin
) -> Response:
    """Sync now: 200 with the calendar when done, 202 if it takes longer than 30 s."""
    db = get_db(request)
    async with db.read() as s:
        await svc.get_calendar(s, ctx.actor, business_id, calendar_id)
    # The app's client when it runs one (connections reused); else the engine makes its own.
    http = getattr(request.app.state, "calendar_http", None)
    engine = CalendarSync(db, config=_config(request), http=http)
    tasks: set[asyncio.Task[object]] = request.app.state.__dict__.setdefault(
        "calendar_sync_tasks", set()
    )

    async def run() -> object:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SYNC_WAIT_S * 10
        # Another worker syncing it right now: wait for that run instead of starting one.
        while (outcome := await engine.sync_one(calendar_id)) == "busy":
            if loop.time() > deadline:
                break
            await asyncio.sleep(0.2)
        return outcome

    task: asyncio.Task[object] = asyncio.create_task(run())
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    done, _ = await asyncio.wait({task}, timeout=SYNC_WAIT_S)
    async with db.read() as s:
        cal = await svc.get_calendar(s, ctx.actor, business_id, calendar_id)
    if not done:
        return envelope.ok(calendar_read(cal), status=202)
    return envelope.ok(calendar_read(cal))


@router.get(
    "/businesses/{business_id}/calendars/{calendar_id}/busy",
    responses=one(list[CalendarBusyRead]),
)
async def calendar_busy(
    business_id: str,
    calendar_id: str,
    request: Request,
    ctx: Reader,
    start: Instant,
    end: Instant,
) -> Response:
    """Busy intervals of the calendar's local copy in [start, end), UTC, without titles."""
    if end <= start:
        raise ValidationFailed(
            "end must be after start.", fields=[{"field": "end", "message": "must be after start"}]
        )
    async with get_db(request).read() as s:
        rows = await svc.busy_of(
            s, ctx.actor, business_id, calendar_id, start=start, end=end, limit=MAX_BUSY_LIST
        )
    return envelope.ok([CalendarBusyRead(start=a, end=b) for a, b in rows])
