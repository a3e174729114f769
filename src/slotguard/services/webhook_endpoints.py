"""Webhook endpoint use cases (§8): create, change, delete, rotate the secret, test, logs.

URL checks resolve host names, so they run *before* the write transaction opens
(`check_url`): no database lock is ever held across a DNS lookup.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.domain.errors import NotFound, ValidationFailed
from slotguard.effects.netguard import WebhookTargetError, make_webhook_client, validate_webhook_url
from slotguard.effects.outbox import WEBHOOK_TIMEOUT_S, delivery_row, signing_secrets
from slotguard.effects.webhooks import DeliveryResult, deliver, new_secret
from slotguard.ids import new_id
from slotguard.services import events
from slotguard.services.context import RequestContext
from slotguard.store import outbox_repo
from slotguard.store.models import WebhookDelivery, WebhookEndpoint

ENDPOINT_DELETED = "endpoint deleted"


async def check_url(url: str, *, allow_private: bool) -> None:
    """422 `validation_error` on `url` when the worker must never call it."""
    try:
        await validate_webhook_url(url, allow_private=allow_private)
    except WebhookTargetError as exc:
        raise ValidationFailed(
            "The webhook URL is not an allowed target.",
            fields=[{"field": "url", "message": str(exc)}],
        ) from None


def _check_events(event_types: Sequence[str]) -> list[str]:
    unknown = [e for e in event_types if e not in events.EVENT_TYPES]
    if unknown:
        raise ValidationFailed(
            "Unknown event types.",
            fields=[
                {
                    "field": "events",
                    "message": f"unknown: {', '.join(unknown)}; "
                    f"known: {', '.join(events.EVENT_TYPES)}",
                }
            ],
        )
    if not event_types:
        raise ValidationFailed(
            "Subscribe to at least one event type.",
            fields=[{"field": "events", "message": "must not be empty"}],
        )
    return list(dict.fromkeys(event_types))  # de-duplicated, order kept


async def get_endpoint(
    s: AsyncSession, ctx: RequestContext, endpoint_id: str, *, lock: bool = False
) -> WebhookEndpoint:
    endpoint = await outbox_repo.get_endpoint(s, ctx.account_id, endpoint_id, for_update=lock)
    if endpoint is None:
        raise NotFound("The webhook endpoint does not exist.")
    return endpoint


async def create_endpoint(
    s: AsyncSession,
    ctx: RequestContext,
    *,
    url: str,
    event_types: Sequence[str],
    description: str | None,
) -> WebhookEndpoint:
    """A new enabled endpoint with a fresh secret (the caller shows it once)."""
    endpoint = WebhookEndpoint(
        id=new_id("whe"),
        account_id=ctx.account_id,
        url=url,
        description=description,
        events=_check_events(event_types),
        secret=new_secret(),
        previous_secret=None,
        previous_secret_expires_at=None,
        enabled=True,
        disabled_reason=None,
        created_at=ctx.now,
        updated_at=ctx.now,
        deleted_at=None,
    )
    s.add(endpoint)
    await s.flush()
    return endpoint


async def update_endpoint(
    s: AsyncSession, ctx: RequestContext, endpoint_id: str, *, changes: dict[str, Any]
) -> WebhookEndpoint:
    """Change url, events, description, or enable/disable (enabling clears the reason)."""
    endpoint = await get_endpoint(s, ctx, endpoint_id, lock=True)
    if "url" in changes:
        endpoint.url = changes["url"]
    if "events" in changes:
        endpoint.events = _check_events(changes["events"])
    if "description" in changes:
        endpoint.description = changes["description"]
    if "enabled" in changes and changes["enabled"] != endpoint.enabled:
        endpoint.enabled = bool(changes["enabled"])
        endpoint.disabled_reason = None if endpoint.enabled else "disabled by an operator"
    endpoint.updated_at = ctx.now
    return endpoint


async def delete_endpoint(s: AsyncSession, ctx: RequestContext, endpoint_id: str) -> None:
    """Delete the endpoint; its undelivered messages are given up (dead)."""
    endpoint = await get_endpoint(s, ctx, endpoint_id, lock=True)
    endpoint.deleted_at = ctx.now
    endpoint.enabled = False
    endpoint.disabled_reason = ENDPOINT_DELETED
    endpoint.updated_at = ctx.now
    await outbox_repo.abandon_endpoint_messages(
        s, endpoint.id, reason=ENDPOINT_DELETED, now=ctx.now
    )


async def rotate_secret(
    s: AsyncSession, ctx: RequestContext, endpoint_id: str, *, grace_seconds: int
) -> WebhookEndpoint:
    """A new secret; the old one keeps signing (a second signature) for `grace_seconds`."""
    endpoint = await get_endpoint(s, ctx, endpoint_id, lock=True)
    if grace_seconds > 0:
        endpoint.previous_secret = endpoint.secret
        endpoint.previous_secret_expires_at = ctx.now + dt.timedelta(seconds=grace_seconds)
    else:
        endpoint.previous_secret = None
        endpoint.previous_secret_expires_at = None
    endpoint.secret = new_secret()
    endpoint.updated_at = ctx.now
    return endpoint


def test_event_body(endpoint: WebhookEndpoint, event_id: str, now: dt.datetime) -> dict[str, Any]:
    return events.event_body(
        events.TEST_EVENT,
        event_id,
        now,
        {"endpoint_id": endpoint.id, "message": "This is a test event from slotguard."},
    )


async def send_test(
    endpoint: WebhookEndpoint,
    *,
    allow_private: bool,
    now: dt.datetime,
    client: httpx.AsyncClient | None = None,
) -> tuple[str, DeliveryResult, WebhookDelivery]:
    """Send one `webhook.test` event now (no retries), through the same guarded client and
    signing as real deliveries; returns the event id, the result and its log row."""
    event_id = new_id("evt")
    payload = test_event_body(endpoint, event_id, now)

    async def attempt(http: httpx.AsyncClient) -> DeliveryResult:
        return await deliver(
            http,
            url=endpoint.url,
            secret=signing_secrets(endpoint, now),
            msg_id=event_id,
            payload=payload,
            now=now,
            total_timeout=WEBHOOK_TIMEOUT_S,
        )

    if client is not None:
        result = await attempt(client)
    else:
        async with make_webhook_client(
            allow_private=allow_private, timeout=WEBHOOK_TIMEOUT_S
        ) as http:
            result = await attempt(http)
    row = delivery_row(
        None,
        endpoint.id,
        result,
        attempted_at=now,
        account_id=endpoint.account_id,
        event_id=event_id,
        event_type=events.TEST_EVENT,
    )
    return event_id, result, row
