"""Bookings and holds as the API renders them, for snapshots the services take (webhooks).

The API's response models live in `api/`, which services must not import; this module
produces the same JSON (tests/outbox compare the two), so a webhook's `data` is exactly
what `GET /v1/bookings/{id}` returned at that moment.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import TypeAdapter

from slotguard.store.models import Booking, Hold

_INSTANT: TypeAdapter[dt.datetime] = TypeAdapter(dt.datetime)


def instant(value: dt.datetime | None) -> str | None:
    """An instant as the API writes it (pydantic's JSON form: UTC with `Z`)."""
    if value is None:
        return None
    rendered: str = _INSTANT.dump_python(value.astimezone(dt.UTC), mode="json")
    return rendered


def booking_json(b: Booking) -> dict[str, Any]:
    """The booking object of §4.1, field for field as `BookingRead` renders it."""
    return {
        "id": b.id,
        "business_id": b.business_id,
        "meeting_class": b.meeting_class,
        "status": b.status,
        "start_time": instant(b.start_at),
        "end_time": instant(b.end_at),
        "title": b.title,
        "description": b.description,
        "customer_email": b.customer_email,
        "customer_name": b.customer_name,
        "attendees": [dict(a) for a in (b.attendees or [])],
        "metadata": dict(b.metadata_ or {}),
        "hold_id": b.hold_id,
        "correlation_id": b.correlation_id,
        "version": b.version,
        "calendar_sync_status": b.calendar_sync_status,
        "calendar_event_id": b.calendar_event_id,
        "created_at": instant(b.created_at),
        "updated_at": instant(b.updated_at),
        "cancelled_at": instant(b.cancelled_at),
        "cancellation_reason": b.cancellation_reason,
    }


def hold_json(h: Hold) -> dict[str, Any]:
    """The hold object of §3.3; `booking_id` only when the hold was confirmed."""
    data: dict[str, Any] = {
        "hold_id": h.id,
        "status": h.status,
        "slots": [dict(slot) for slot in (h.slots or [])],
        "expires_at": instant(h.expires_at),
        "meeting_class": h.meeting_class,
        "business_id": h.business_id,
    }
    if h.booking_id:
        data["booking_id"] = h.booking_id
    return data
