"""Webhook endpoints and their delivery log (§8). Scope `admin`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.api import envelope
from slotguard.api.deps import context, get_db
from slotguard.api.docs import Deleted, many, one
from slotguard.api.idempotency import IdempotencyRequest, idempotency, run_write
from slotguard.api.pagination import (
    clamp_limit,
    decode_cursor,
    encode_cursor,
    keyset_page,
    split_page,
)
from slotguard.api.schemas import QueryBool, QueryInt
from slotguard.api.webhook_schemas import (
    RotateSecret,
    WebhookDeliveryRead,
    WebhookEndpointCreate,
    WebhookEndpointRead,
    WebhookEndpointUpdate,
    WebhookEndpointWithSecret,
    WebhookTestRead,
)
from slotguard.config import Settings
from slotguard.domain.errors import ValidationFailed
from slotguard.services import webhook_endpoints as svc
from slotguard.services.context import RequestContext
from slotguard.store import outbox_repo
from slotguard.store.models import WebhookDelivery, WebhookEndpoint

router = APIRouter(prefix="/v1")

Admin = Annotated[RequestContext, Depends(context("admin"))]
Idem = Annotated[IdempotencyRequest | None, Depends(idempotency(required=False))]


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def endpoint_read(e: WebhookEndpoint) -> WebhookEndpointRead:
    return WebhookEndpointRead(
        id=e.id,
        url=e.url,
        events=list(e.events or []),
        description=e.description,
        enabled=e.enabled,
        disabled_reason=e.disabled_reason,
        previous_secret_expires_at=e.previous_secret_expires_at if e.previous_secret else None,
        created_at=e.created_at,
        updated_at=e.updated_at,
    )


def endpoint_with_secret(e: WebhookEndpoint) -> WebhookEndpointWithSecret:
    return WebhookEndpointWithSecret(**endpoint_read(e).model_dump(), secret=e.secret)


def delivery_read(d: WebhookDelivery) -> WebhookDeliveryRead:
    return WebhookDeliveryRead(
        id=d.id,
        endpoint_id=d.endpoint_id,
        event_id=d.event_id,
        event_type=d.event_type,
        outbox_id=d.outbox_id,
        attempt=d.attempt,
        succeeded=d.succeeded,
        status_code=d.status_code,
        error=d.error,
        duration_ms=d.duration_ms,
        response_snippet=d.response_snippet,
        attempted_at=d.attempted_at,
    )


@router.post("/webhook-endpoints", status_code=201, responses=one(WebhookEndpointWithSecret, 201))
async def create_webhook_endpoint(
    body: WebhookEndpointCreate, request: Request, ctx: Admin, idem: Idem
) -> Response:
    """Create a webhook endpoint; the response carries its signing secret, shown only once."""
    await svc.check_url(body.url, allow_private=_settings(request).allow_private_webhooks)

    async def work(s: AsyncSession) -> Response:
        endpoint = await svc.create_endpoint(
            s, ctx, url=body.url, event_types=body.events, description=body.description
        )
        return envelope.ok(
            endpoint_with_secret(endpoint),
            status=201,
            headers={"Location": f"/v1/webhook-endpoints/{endpoint.id}"},
        )

    return await run_write(request, ctx, idem, work)


@router.get("/webhook-endpoints", responses=many(WebhookEndpointRead))
async def list_webhook_endpoints(
    request: Request, ctx: Admin, limit: QueryInt | None = None, cursor: str | None = None
) -> Response:
    """List webhook endpoints, by id (secrets are never listed)."""
    return await keyset_page(
        get_db(request),
        limit=limit,
        cursor=cursor,
        fetch=lambda s, after, n: outbox_repo.list_endpoints(
            s, ctx.account_id, after=after, limit=n
        ),
        render=endpoint_read,
    )


@router.get("/webhook-endpoints/{endpoint_id}", responses=one(WebhookEndpointRead))
async def get_webhook_endpoint(endpoint_id: str, request: Request, ctx: Admin) -> Response:
    """Get one webhook endpoint (without its secret)."""
    async with get_db(request).read() as s:
        endpoint = await svc.get_endpoint(s, ctx, endpoint_id)
    return envelope.ok(endpoint_read(endpoint))


@router.patch("/webhook-endpoints/{endpoint_id}", responses=one(WebhookEndpointRead))
async def update_webhook_endpoint(
    endpoint_id: str, body: WebhookEndpointUpdate, request: Request, ctx: Admin, idem: Idem
) -> Response:
    """Change the URL, the event types, the description, or pause/resume deliveries."""
    changes = {k: getattr(body, k) for k in body.model_fields_set}
    nulls = [k for k, v in changes.items() if v is None and k != "description"]
    if nulls:
        raise ValidationFailed(
            "These fields may not be null.",
            fields=[{"field": k, "message": "may not be null"} for k in nulls],
        )
    if "url" in changes:
        await svc.check_url(changes["url"], allow_private=_settings(request).allow_private_webhooks)

    async def work(s: AsyncSession) -> Response:
        endpoint = await svc.update_endpoint(s, ctx, endpoint_id, changes=changes)
        return envelope.ok(endpoint_read(endpoint))

    return await run_write(request, ctx, idem, work)


@router.delete("/webhook-endpoints/{endpoint_id}", responses=one(Deleted))
async def delete_webhook_endpoint(
    endpoint_id: str, request: Request, ctx: Admin, idem: Idem
) -> Response:
    """Delete an endpoint; messages still waiting for it are given up."""

    async def work(s: AsyncSession) -> Response:
        await svc.delete_endpoint(s, ctx, endpoint_id)
        return envelope.ok({"id": endpoint_id, "deleted": True})

    return await run_write(request, ctx, idem, work)


@router.post(
    "/webhook-endpoints/{endpoint_id}/rotate-secret", responses=one(WebhookEndpointWithSecret)
)
async def rotate_webhook_secret(
    endpoint_id: str,
    request: Request,
    ctx: Admin,
    idem: Idem,
    body: Annotated[RotateSecret | None, Body()] = None,
) -> Response:
    """Replace the signing secret (shown once); the old one co-signs during the grace period."""
    grace = (body or RotateSecret()).grace_period_seconds

    async def work(s: AsyncSession) -> Response:
        endpoint = await svc.rotate_secret(s, ctx, endpoint_id, grace_seconds=grace)
        return envelope.ok(endpoint_with_secret(endpoint))

    return await run_write(request, ctx, idem, work)


@router.post("/webhook-endpoints/{endpoint_id}/test", responses=one(WebhookTestRead))
async def test_webhook_endpoint(
    endpoint_id: str, request: Request, ctx: Admin, idem: Idem
) -> Response:
    """Send a signed `webhook.test` event now, once, and report what the receiver answered."""
    async with get_db(request).read() as s:
        endpoint = await svc.get_endpoint(s, ctx, endpoint_id)
    # The network call happens outside any transaction; only its log row is written after.
    event_id, result, row = await svc.send_test(
        endpoint, allow_private=_settings(request).allow_private_webhooks, now=ctx.now
    )

    async def work(s: AsyncSession) -> Response:
        outbox_repo.add_delivery(s, row)
        await s.flush()
        return envelope.ok(
            WebhookTestRead(
                event_id=event_id,
                succeeded=result.ok,
                status_code=result.status_code,
                error=result.error,
                duration_ms=result.duration_ms,
                delivery=delivery_read(row),
            )
        )

    return await run_write(request, ctx, idem, work)


@router.get("/webhook-endpoints/{endpoint_id}/deliveries", responses=many(WebhookDeliveryRead))
async def list_webhook_deliveries(
    endpoint_id: str,
    request: Request,
    ctx: Admin,
    limit: QueryInt | None = None,
    cursor: str | None = None,
    event_id: str | None = None,
    succeeded: QueryBool | None = None,
) -> Response:
    """The endpoint's delivery attempts, newest first (kept 30 days)."""
    n = clamp_limit(limit)
    before = decode_cursor(cursor, 1)
    try:
        before_id = int(before[0]) if before else None
    except ValueError:
        raise ValidationFailed(
            "The cursor is not valid.", fields=[{"field": "cursor", "message": "invalid cursor"}]
        ) from None
    async with get_db(request).read() as s:
        await svc.get_endpoint(s, ctx, endpoint_id)
        rows, more = split_page(
            list(
                await outbox_repo.list_deliveries(
                    s,
                    ctx.account_id,
                    endpoint_id,
                    before=before_id,
                    limit=n,
                    event_id=event_id,
                    succeeded=succeeded,
                )
            ),
            n,
        )
    return envelope.page(
        [delivery_read(d) for d in rows],
        next_cursor=encode_cursor(str(rows[-1].id)) if more else None,
    )
