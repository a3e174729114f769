"""Businesses, rule layers, meeting classes and busy time (§2)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.api import convert, envelope
from slotguard.api.deps import context, get_db
from slotguard.api.docs import Deleted, many, one
from slotguard.api.idempotency import IdempotencyRequest, idempotency, run_write
from slotguard.api.pagination import (
    keyset_page,
)
from slotguard.api.schemas import (
    BusinessCreate,
    BusinessRead,
    BusinessUpdate,
    BusyCreate,
    BusyRead,
    EffectiveRulesRead,
    Instant,
    MeetingClassCreate,
    MeetingClassRead,
    MeetingClassUpdate,
    QueryInt,
    RulesDefaultsRead,
    set_fields,
)
from slotguard.domain.rules import RulesPatch
from slotguard.services import businesses as svc
from slotguard.services.context import RequestContext
from slotguard.store import repositories as repo

router = APIRouter(prefix="/v1")

Admin = Annotated[RequestContext, Depends(context("admin"))]
Reader = Annotated[RequestContext, Depends(context(None))]
Idem = Annotated[IdempotencyRequest | None, Depends(idempotency(required=False))]


def _deleted(object_id: str) -> Response:
    return envelope.ok({"id": object_id, "deleted": True})


@router.post("/businesses", status_code=201, responses=one(BusinessRead, 201))
async def create_business(
    body: BusinessCreate, request: Request, ctx: Admin, idem: Idem
) -> Response:
    """Create a business (a bookable calendar owner)."""

    async def work(s: AsyncSession) -> Response:
        biz = await svc.create_business(
            s,
            ctx.actor,
            name=body.name,
            email=body.email,
            timezone=body.timezone,
            rules=body.rules,
            now=ctx.now,
        )
        return envelope.ok(
            convert.business(biz), status=201, headers={"Location": f"/v1/businesses/{biz.id}"}
        )

    return await run_write(request, ctx, idem, work)


@router.get("/businesses", responses=many(BusinessRead))
async def list_businesses(
    request: Request, ctx: Reader, limit: QueryInt | None = None, cursor: str | None = None
) -> Response:
    """List businesses, by id."""
    return await keyset_page(
        get_db(request),
        limit=limit,
        cursor=cursor,
        fetch=lambda s, after, n: repo.list_businesses(
            s, ctx.account_id, after=after, limit=n, only_ids=ctx.actor.allowed_business_ids
        ),
        render=convert.business,
    )


@router.get("/businesses/{business_id}", responses=one(BusinessRead))
async def get_business(business_id: str, request: Request, ctx: Reader) -> Response:
    """Get one business."""
    async with get_db(request).read() as s:
        biz = await svc.resolve_business(s, ctx.actor, business_id=business_id)
    return envelope.ok(convert.business(biz))


@router.patch("/businesses/{business_id}", responses=one(BusinessRead))
async def update_business(
    business_id: str, body: BusinessUpdate, request: Request, ctx: Admin, idem: Idem
) -> Response:
    """Change a business; `rules` replaces the business's override layer."""

    async def work(s: AsyncSession) -> Response:
        biz = await svc.update_business(
            s,
            ctx.actor,
            business_id,
            changes=set_fields(body, nullable={"email", "rules"}),
            now=ctx.now,
        )
        return envelope.ok(convert.business(biz))

    return await run_write(request, ctx, idem, work)


@router.delete("/businesses/{business_id}", responses=one(Deleted))
async def delete_business(business_id: str, request: Request, ctx: Admin, idem: Idem) -> Response:
    """Delete a business (its bookings and audit rows remain readable)."""

    async def work(s: AsyncSession) -> Response:
        await svc.delete_business(s, ctx.actor, business_id, ctx.now)
        return _deleted(business_id)

    return await run_write(request, ctx, idem, work)


@router.get("/businesses/{business_id}/rules", responses=one(EffectiveRulesRead))
async def effective_rules(business_id: str, request: Request, ctx: Reader) -> Response:
    """The effective rules of a business, with the layer each value comes from."""
    async with get_db(request).read() as s:
        biz = await svc.resolve_business(s, ctx.actor, business_id=business_id)
        account = await svc.get_account(s, ctx.actor)
    rules, sources = svc.effective_rules(account, biz)
    return envelope.ok(EffectiveRulesRead(business_id=biz.id, rules=rules, sources=sources))


@router.get("/rules/defaults", responses=one(RulesDefaultsRead))
async def get_default_rules(request: Request, ctx: Reader) -> Response:
    """The account rule layer, and its merge with the built-in defaults."""
    async with get_db(request).read() as s:
        account = await svc.get_account(s, ctx.actor)
    rules, _ = svc.effective_rules(account, None)
    return envelope.ok(RulesDefaultsRead(rules=account.rules or {}, effective=rules))


@router.put("/rules/defaults", responses=one(RulesDefaultsRead))
async def put_default_rules(body: RulesPatch, request: Request, ctx: Admin, idem: Idem) -> Response:
    """Replace the account rule layer; unset fields fall back to the built-in defaults."""

    async def work(s: AsyncSession) -> Response:
        account = await svc.put_default_rules(s, ctx.actor, body)
        rules, _ = svc.effective_rules(account, None)
        return envelope.ok(RulesDefaultsRead(rules=account.rules, effective=rules))

    return await run_write(request, ctx, idem, work)


# -- meeting classes ---------------------------------------------------------------------


@router.post("/meeting-classes", status_code=201, responses=one(MeetingClassRead, 201))
async def create_meeting_class(
    body: MeetingClassCreate, request: Request, ctx: Admin, idem: Idem
) -> Response:
    """Create a meeting class."""

    async def work(s: AsyncSession) -> Response:
        mc = await svc.create_meeting_class(s, ctx.actor, fields=body.model_dump(), now=ctx.now)
        return envelope.ok(
            convert.meeting_class(mc),
            status=201,
            headers={"Location": f"/v1/meeting-classes/{mc.name}"},
        )

    return await run_write(request, ctx, idem, work)


@router.get("/meeting-classes", responses=many(MeetingClassRead))
async def list_meeting_classes(
    request: Request, ctx: Reader, limit: QueryInt | None = None, cursor: str | None = None
) -> Response:
    """List meeting classes, by name."""
    return await keyset_page(
        get_db(request),
        limit=limit,
        cursor=cursor,
        fetch=lambda s, after, n: repo.list_meeting_classes(
            s, ctx.account_id, after=after, limit=n
        ),
        render=convert.meeting_class,
        key=lambda m: m.name,
    )


@router.get("/meeting-classes/{name}", responses=one(MeetingClassRead))
async def get_meeting_class(name: str, request: Request, ctx: Reader) -> Response:
    """Get one meeting class by name."""
    async with get_db(request).read() as s:
        mc = await svc.get_meeting_class(s, ctx.actor, name)
    return envelope.ok(convert.meeting_class(mc))


@router.patch("/meeting-classes/{name}", responses=one(MeetingClassRead))
async def update_meeting_class(
    name: str, body: MeetingClassUpdate, request: Request, ctx: Admin, idem: Idem
) -> Response:
    """Change a meeting class. Existing bookings keep the priority and buffers they had."""

    async def work(s: AsyncSession) -> Response:
        changes = set_fields(body, nullable={"duration_minutes"})
        mc = await svc.update_meeting_class(s, ctx.actor, name, changes=changes, now=ctx.now)
        return envelope.ok(convert.meeting_class(mc))

    return await run_write(request, ctx, idem, work)


@router.delete("/meeting-classes/{name}", responses=one(Deleted))
async def delete_meeting_class(name: str, request: Request, ctx: Admin, idem: Idem) -> Response:
    """Delete a meeting class (not `default`)."""

    async def work(s: AsyncSession) -> Response:
        await svc.delete_meeting_class(s, ctx.actor, name)
        return _deleted(name)

    return await run_write(request, ctx, idem, work)


# -- busy time ---------------------------------------------------------------------------


@router.post("/businesses/{business_id}/busy", status_code=201, responses=one(BusyRead, 201))
async def add_busy(
    business_id: str, body: BusyCreate, request: Request, ctx: Admin, idem: Idem
) -> Response:
    """Add busy time for a calendar the server cannot reach."""

    async def work(s: AsyncSession) -> Response:
        busy = await svc.add_busy(
            s,
            ctx.actor,
            business_id,
            start=body.start,
            end=body.end,
            title=body.title,
            external_id=body.external_id,
            now=ctx.now,
        )
        return envelope.ok(
            convert.busy(busy),
            status=201,
            headers={"Location": f"/v1/businesses/{business_id}/busy/{busy.id}"},
        )

    return await run_write(request, ctx, idem, work)


@router.get("/businesses/{business_id}/busy", responses=many(BusyRead))
async def list_busy(
    business_id: str,
    request: Request,
    ctx: Reader,
    start: Instant | None = None,
    end: Instant | None = None,
    limit: QueryInt | None = None,
    cursor: str | None = None,
) -> Response:
    """List busy time of a business, optionally overlapping [start, end)."""
    return await keyset_page(
        get_db(request),
        limit=limit,
        cursor=cursor,
        fetch=lambda s, after, n: svc.list_busy(
            s, ctx.actor, business_id, start=start, end=end, after=after, limit=n
        ),
        render=convert.busy,
    )


@router.delete("/businesses/{business_id}/busy/{busy_id}", responses=one(Deleted))
async def delete_busy(
    business_id: str, busy_id: str, request: Request, ctx: Admin, idem: Idem
) -> Response:
    """Remove a busy interval."""

    async def work(s: AsyncSession) -> Response:
        await svc.delete_busy(s, ctx.actor, business_id, busy_id)
        return _deleted(busy_id)

    return await run_write(request, ctx, idem, work)
