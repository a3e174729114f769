"""Booking pages, the admin side (§12): create, list, read, change, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.api import envelope
from slotguard.api.deps import context, get_db
from slotguard.api.docs import Deleted, many, one
from slotguard.api.idempotency import IdempotencyRequest, idempotency, run_write
from slotguard.api.page_schemas import BookingPageCreate, BookingPageRead, BookingPageUpdate
from slotguard.api.pagination import keyset_page
from slotguard.api.schemas import set_fields
from slotguard.config import Settings
from slotguard.services import booking_pages as svc
from slotguard.services.context import RequestContext
from slotguard.store import pages_repo
from slotguard.store.models import BookingPage

router = APIRouter(prefix="/v1")

Admin = Annotated[RequestContext, Depends(context("admin"))]
Idem = Annotated[IdempotencyRequest | None, Depends(idempotency(required=False))]


def public_base(request: Request) -> str:
    """`SLOTGUARD_PUBLIC_URL`, else the base URL this request came in on."""
    settings: Settings = request.app.state.settings
    return (settings.public_url or str(request.base_url)).rstrip("/")


def page_json(page: BookingPage, base: str) -> dict[str, Any]:
    return BookingPageRead(
        id=page.id,
        business_id=page.business_id,
        meeting_class=page.meeting_class,
        slug=page.slug,
        url=f"{base}/book/{page.slug}",
        title=page.title,
        description=page.description,
        duration_minutes=page.duration_minutes,
        days_ahead=page.days_ahead,
        created_at=page.created_at,
        updated_at=page.updated_at,
    ).model_dump(mode="json")


@router.post("/booking-pages", status_code=201, responses=one(BookingPageRead, 201))
async def create_booking_page(
    body: BookingPageCreate, request: Request, ctx: Admin, idem: Idem
) -> Response:
    """Create a public booking page for a business (served at `/book/{slug}`)."""
    base = public_base(request)

    async def work(s: AsyncSession) -> Response:
        page = await svc.create_page(
            s, ctx.actor, fields=body.model_dump(exclude_none=True), now=ctx.now
        )
        return envelope.ok(
            page_json(page, base), status=201, headers={"Location": f"/v1/booking-pages/{page.id}"}
        )

    return await run_write(request, ctx, idem, work)


@router.get("/booking-pages", responses=many(BookingPageRead))
async def list_booking_pages(
    request: Request, ctx: Admin, limit: int | None = None, cursor: str | None = None
) -> Response:
    """List booking pages, by id."""
    base = public_base(request)
    return await keyset_page(
        get_db(request),
        limit=limit,
        cursor=cursor,
        fetch=lambda s, after, n: pages_repo.list_pages(
            s, ctx.account_id, after=after, limit=n, business_ids=ctx.actor.allowed_business_ids
        ),
        render=lambda page: page_json(page, base),
    )


@router.get("/booking-pages/{page_id}", responses=one(BookingPageRead))
async def get_booking_page(page_id: str, request: Request, ctx: Admin) -> Response:
    """Get one booking page."""
    async with get_db(request).read() as s:
        page = await svc.get_page(s, ctx.actor, page_id)
    return envelope.ok(page_json(page, public_base(request)))


@router.patch("/booking-pages/{page_id}", responses=one(BookingPageRead))
async def update_booking_page(
    page_id: str, body: BookingPageUpdate, request: Request, ctx: Admin, idem: Idem
) -> Response:
    """Change a booking page; `meeting_class`, `title`, `description` and
    `duration_minutes` may be set to null (back to the defaults)."""
    base = public_base(request)
    changes = set_fields(
        body,
        nullable={"meeting_class", "title", "description", "duration_minutes", "days_ahead"},
    )

    async def work(s: AsyncSession) -> Response:
        page = await svc.update_page(s, ctx.actor, page_id, changes=changes, now=ctx.now)
        return envelope.ok(page_json(page, base))

    return await run_write(request, ctx, idem, work)


@router.delete("/booking-pages/{page_id}", responses=one(Deleted))
async def delete_booking_page(page_id: str, request: Request, ctx: Admin, idem: Idem) -> Response:
    """Delete a booking page; bookings made from it and their manage links stay valid."""

    async def work(s: AsyncSession) -> Response:
        await svc.delete_page(s, ctx.actor, page_id)
        return envelope.ok({"id": page_id, "deleted": True})

    return await run_write(request, ctx, idem, work)
