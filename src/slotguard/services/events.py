"""Side effects of state changes, recorded in the caller's transaction (the outbox).

Services call these after changing a booking or a hold; the rows commit (or vanish) with
the change itself, and the worker (`effects/outbox.py`) delivers them at least once.

Each event gets one id (`evt_…`): it is the webhook payload's `id` and the Standard Webhooks
`webhook-id` header, the same for every endpoint and every retry, so receivers de-duplicate
on it. Payloads are snapshots taken here, in the transaction: a webhook describes the booking
as this change left it, even if the booking changes again before the worker runs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.ids import new_id
from slotguard.services import render
from slotguard.services.context import RequestContext
from slotguard.store import calendar_repo, outbox_repo
from slotguard.store.models import Booking, Business, Hold, OutboxMessage

BOOKING_EVENTS = (
    "booking.created",
    "booking.confirmed",
    "booking.cancelled",
    "booking.rescheduled",
    "booking.updated",
    "booking.preempted",
)
HOLD_EVENTS = ("hold.expired",)
EVENT_TYPES = BOOKING_EVENTS + HOLD_EVENTS
TEST_EVENT = "webhook.test"
# Outbox kind of the calendar write-back (`calendars.writeback`).
CALENDAR_KIND = "calendar"

# Which mail a booking event sends (effects.email.EmailKind).
EMAIL_KIND: Final[dict[str, str]] = {
    "booking.created": "confirmation",
    "booking.confirmed": "confirmation",
    "booking.rescheduled": "update",
    "booking.updated": "update",
    "booking.cancelled": "cancellation",
    "booking.preempted": "preemption",
}


def event_body(
    event_type: str, event_id: str, created_at: dt.datetime, data: dict[str, Any]
) -> dict[str, Any]:
    """The webhook payload `{type, id, created_at, data}` (§8)."""
    return {
        "type": event_type,
        "id": event_id,
        "created_at": render.instant(created_at),
        "data": data,
    }


def _now(ctx: RequestContext | None) -> dt.datetime:
    return ctx.now if ctx is not None else dt.datetime.now(dt.UTC)


def _message(
    *,
    account_id: str,
    kind: str,
    event_type: str,
    event_id: str,
    payload: dict[str, Any],
    now: dt.datetime,
    endpoint_id: str | None = None,
    booking_id: str | None = None,
    hold_id: str | None = None,
) -> OutboxMessage:
    return OutboxMessage(
        id=new_id("obx"),
        account_id=account_id,
        kind=kind,
        event_type=event_type,
        event_id=event_id,
        endpoint_id=endpoint_id,
        booking_id=booking_id,
        hold_id=hold_id,
        payload=payload,
        progress={},
        status=outbox_repo.PENDING,
        attempts=0,
        next_attempt_at=now,
        locked_by=None,
        locked_until=None,
        last_error=None,
        created_at=now,
        updated_at=now,
        delivered_at=None,
    )


async def _webhooks(
    s: AsyncSession,
    *,
    account_id: str,
    event_type: str,
    event_id: str,
    data: Callable[[], dict[str, Any]],
    now: dt.datetime,
    booking_id: str | None = None,
    hold_id: str | None = None,
) -> list[OutboxMessage]:
    endpoints = await outbox_repo.subscribed_endpoints(s, account_id, event_type)
    if not endpoints:
        return []
    # Rendered only when someone subscribed: most writes have no endpoint to tell.
    body = event_body(event_type, event_id, now, data())
    return [
        _message(
            account_id=account_id,
            kind="webhook",
            event_type=event_type,
            event_id=event_id,
            payload=body,
            now=now,
            endpoint_id=endpoint.id,
            booking_id=booking_id,
            hold_id=hold_id,
        )
        for endpoint in endpoints
    ]


def mail_snapshot(booking: Booking, business: Business | None) -> dict[str, Any]:
    """What `effects.email.BookingMail` needs, as JSON: the booking as this change left it.

    The invite's SEQUENCE is the booking's version, so calendars apply the latest change.
    """
    return {
        "booking_id": booking.id,
        "title": booking.title or "Meeting",
        "start": render.instant(booking.start_at),
        "end": render.instant(booking.end_at),
        "business_name": business.name if business is not None else "",
        "business_email": (business.email or "") if business is not None else "",
        "business_timezone": business.timezone if business is not None else "UTC",
        "version": booking.version,
        "status": booking.status,
        "customer_email": booking.customer_email,
        "customer_name": booking.customer_name,
        "description": booking.description,
        "attendees": [
            [a.get("email", ""), a.get("display_name")] for a in (booking.attendees or [])
        ],
    }


def _has_recipient(snapshot: dict[str, Any]) -> bool:
    return bool(
        snapshot["customer_email"]
        or snapshot["business_email"]
        or any(email for email, _name in snapshot["attendees"])
    )


async def _calendar_write(
    s: AsyncSession, booking: Booking, event_type: str, event_id: str, now: dt.datetime
) -> OutboxMessage | None:
    """The write-back message (§7.3) when the business has a write calendar, or when the
    booking was written to one and its event must now go. Sets `calendar_sync_status`."""
    if booking.status == "confirmed":
        if await calendar_repo.write_calendar_id(s, booking.business_id) is None:
            return None
    elif booking.calendar_sync_status == "not_applicable":
        return None
    booking.calendar_sync_status = "pending"
    return _message(
        account_id=booking.account_id,
        kind=CALENDAR_KIND,
        event_type=event_type,
        event_id=event_id,
        payload={"booking_id": booking.id},
        now=now,
        booking_id=booking.id,
    )


async def booking_event(
    s: AsyncSession,
    ctx: RequestContext | None,
    event_type: str,
    booking: Booking,
    *,
    manage_url: str | None = None,
) -> None:
    """Enqueue the webhooks and the email that `event_type` causes, in the caller's
    transaction: one message per subscribed endpoint, one mail message per event.

    `manage_url` is a booking page's manage link (§12): it goes to the customer's mail only
    (the outbox row carries it until the row is purged after delivery)."""
    if event_type not in BOOKING_EVENTS:
        raise ValueError(f"unknown booking event {event_type!r}")
    now = _now(ctx)
    event_id = new_id("evt")
    calendar_row = await _calendar_write(s, booking, event_type, event_id, now)
    rows = await _webhooks(
        s,
        account_id=booking.account_id,
        event_type=event_type,
        event_id=event_id,
        data=lambda: render.booking_json(booking),
        now=now,
        booking_id=booking.id,
    )
    if calendar_row is not None:
        rows.append(calendar_row)
    kind = EMAIL_KIND.get(event_type)
    if kind is not None:
        business = await s.get(Business, booking.business_id)
        mail = mail_snapshot(booking, business)
        if manage_url is not None:
            mail["manage_url"] = manage_url
        if _has_recipient(mail):
            rows.append(
                _message(
                    account_id=booking.account_id,
                    kind="email",
                    event_type=event_type,
                    event_id=event_id,
                    payload={"kind": kind, "mail": mail},
                    now=now,
                    booking_id=booking.id,
                )
            )
    outbox_repo.add_messages(s, rows)


async def hold_event(
    s: AsyncSession, ctx: RequestContext | None, event_type: str, hold: Hold
) -> None:
    """Enqueue the webhooks a hold event causes (only `hold.expired` today; no mail)."""
    if event_type not in HOLD_EVENTS:
        raise ValueError(f"unknown hold event {event_type!r}")
    now = _now(ctx)
    rows = await _webhooks(
        s,
        account_id=hold.account_id,
        event_type=event_type,
        event_id=new_id("evt"),
        data=lambda: render.hold_json(hold),
        now=now,
        hold_id=hold.id,
    )
    outbox_repo.add_messages(s, rows)
