"""Small factories for API tests (plain functions, no global session)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx

from tests.conftest import Tenant

ALL_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
OPEN_ALL_DAY = {"working_hours": [{"days": ALL_DAYS, "start": "00:00", "end": "24:00"}]}


def future_day(days_ahead: int = 10) -> dt.datetime:
    """Midnight UTC some days ahead: inside the default 60-day advance window."""
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + dt.timedelta(days=days_ahead)


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def key() -> str:
    return uuid.uuid4().hex


async def make_business(
    t: Tenant,
    *,
    timezone: str = "UTC",
    rules: dict[str, Any] | None = None,
    email: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Dr. Test",
        "timezone": timezone,
        "rules": OPEN_ALL_DAY if rules is None else rules,
    }
    if email:
        body["email"] = email
    r = await t.client.post("/v1/businesses", json=body, headers=t.headers())
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


async def book(
    t: Tenant,
    business_id: str,
    start: dt.datetime,
    minutes: int = 30,
    *,
    idem: str | None = None,
    **extra: Any,
) -> httpx.Response:
    body = {
        "business_id": business_id,
        "start_time": iso(start),
        "end_time": iso(start + dt.timedelta(minutes=minutes)),
        **extra,
    }
    return await t.client.post(
        "/v1/bookings", json=body, headers=t.headers(**{"Idempotency-Key": idem or key()})
    )
