"""Outbox rows are written in the transaction of the change, with stable ids and snapshots."""

from __future__ import annotations

import datetime as dt
from typing import Any

from slotguard.api import convert
from slotguard.services import render
from slotguard.services.holds import sweep_expired_holds
from slotguard.store.models import Booking
from tests.conftest import Tenant

from .conftest import (
    book,
    future_day,
    idem,
    iso,
    make_business,
    make_endpoint,
    messages,
)

H = dt.timedelta(hours=1)


async def _get_booking(t: Tenant, booking_id: str) -> dict[str, Any]:
    r = await t.client.get(f"/v1/bookings/{booking_id}", headers=t.headers())
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


async def test_created_booking_enqueues_webhook_and_email_in_one_event(otenant: Tenant) -> None:
    t = otenant
    biz = await make_business(t)
    ep = await make_endpoint(t, "http://127.0.0.1:9/hook")
    other = await make_endpoint(t, "http://127.0.0.1:9/other", ["booking.created"])
    b = await book(
        t,
        biz["id"],
        future_day() + 9 * H,
        attendees=[{"email": "bob@team.example.com"}],
        title="Intro",
    )
    rows = await messages(t.store.db, booking_id=b["id"])
    webhooks = [r for r in rows if r.kind == "webhook"]
    emails = [r for r in rows if r.kind == "email"]
    assert sorted(r.endpoint_id for r in webhooks) == sorted([ep["id"], other["id"]])
    assert len(emails) == 1
    event_ids = {r.event_id for r in rows}
    assert len(event_ids) == 1 and event_ids.pop().startswith("evt_")
    for r in rows:
        assert r.status == "pending" and r.attempts == 0 and r.account_id == t.account_id
        assert r.event_type == "booking.created"
    body = webhooks[0].payload
    assert set(body) == {"type", "id", "created_at", "data"}
    assert body["type"] == "booking.created" and body["id"] == webhooks[0].event_id
    # The snapshot is the booking exactly as the API renders it.
    assert body["data"] == await _get_booking(t, b["id"])
    mail = emails[0].payload
    assert mail["kind"] == "confirmation"
    assert (
        mail["mail"]["version"] == 1 and mail["mail"]["business_email"] == "owner@biz.example.com"
    )
    assert mail["mail"]["attendees"] == [["bob@team.example.com", None]]
    assert mail["mail"]["business_timezone"] == "Europe/Paris"


async def test_changes_enqueue_their_events_with_versions(otenant: Tenant) -> None:
    t = otenant
    biz = await make_business(t)
    await make_endpoint(t, "http://127.0.0.1:9/hook")
    start = future_day() + 9 * H
    b = await book(t, biz["id"], start)
    r = await t.client.post(
        f"/v1/bookings/{b['id']}/reschedule",
        json={"start_time": iso(start + H)},
        headers=t.headers(**idem()),
    )
    assert r.status_code == 200, r.text
    r = await t.client.patch(
        f"/v1/bookings/{b['id']}",
        json={"title": "Renamed"},
        headers=t.headers(**idem(), **{"If-Match": '"2"'}),
    )
    assert r.status_code == 200, r.text
    r = await t.client.post(
        f"/v1/bookings/{b['id']}/cancel", json={"reason": "ill"}, headers=t.headers(**idem())
    )
    assert r.status_code == 200, r.text
    rows = await messages(t.store.db, booking_id=b["id"])
    by_event: dict[str, list[Any]] = {}
    for row in rows:
        by_event.setdefault(row.event_id, []).append(row)
    seen = []
    for group in sorted(by_event.values(), key=lambda g: g[0].id):
        kinds = {row.kind: row for row in group}
        assert set(kinds) == {"webhook", "email"}
        hook, mail = kinds["webhook"].payload, kinds["email"].payload
        seen.append((hook["type"], hook["data"]["version"], mail["kind"], mail["mail"]["version"]))
    assert seen == [
        ("booking.created", 1, "confirmation", 1),
        ("booking.rescheduled", 2, "update", 2),
        ("booking.updated", 3, "update", 3),
        ("booking.cancelled", 4, "cancellation", 4),
    ]
    cancelled = [r for r in rows if r.event_type == "booking.cancelled" and r.kind == "webhook"]
    assert cancelled[0].payload["data"]["status"] == "cancelled"
    assert cancelled[0].payload["data"]["cancellation_reason"] == "ill"


async def test_only_subscribed_enabled_endpoints_get_rows(otenant: Tenant) -> None:
    t = otenant
    biz = await make_business(t)
    cancels = await make_endpoint(t, "http://127.0.0.1:9/c", ["booking.cancelled"])
    paused = await make_endpoint(t, "http://127.0.0.1:9/p")
    gone = await make_endpoint(t, "http://127.0.0.1:9/g")
    r = await t.client.patch(
        f"/v1/webhook-endpoints/{paused['id']}", json={"enabled": False}, headers=t.headers()
    )
    assert r.status_code == 200 and r.json()["data"]["enabled"] is False
    r = await t.client.delete(f"/v1/webhook-endpoints/{gone['id']}", headers=t.headers())
    assert r.status_code == 200
    b = await book(t, biz["id"], future_day() + 9 * H)
    assert [r.kind for r in await messages(t.store.db, booking_id=b["id"])] == ["email"]
    r = await t.client.post(f"/v1/bookings/{b['id']}/cancel", json={}, headers=t.headers(**idem()))
    hooks = await messages(t.store.db, booking_id=b["id"], kind="webhook")
    assert [(h.endpoint_id, h.event_type) for h in hooks] == [(cancels["id"], "booking.cancelled")]


async def test_rejected_change_writes_nothing(otenant: Tenant) -> None:
    t = otenant
    biz = await make_business(t)
    await make_endpoint(t, "http://127.0.0.1:9/hook")
    start = future_day() + 9 * H
    await book(t, biz["id"], start)
    before = len(await messages(t.store.db))
    r = await t.client.post(
        "/v1/bookings",
        json={"business_id": biz["id"], "start_time": iso(start), "end_time": iso(start + H)},
        headers=t.headers(**idem()),
    )
    assert r.status_code == 409
    assert len(await messages(t.store.db)) == before


async def test_no_email_row_without_any_recipient(otenant: Tenant) -> None:
    t = otenant
    biz = await make_business(t, email=None)
    b = await book(t, biz["id"], future_day() + 9 * H, customer_email=None)
    assert await messages(t.store.db, booking_id=b["id"]) == []


async def test_confirmed_hold_and_expired_hold_events(otenant: Tenant) -> None:
    t = otenant
    biz = await make_business(t)
    await make_endpoint(t, "http://127.0.0.1:9/hook", ["booking.confirmed", "hold.expired"])
    start = future_day() + 9 * H
    window = {"start": iso(start), "end": iso(start + 2 * H)}
    r = await t.client.post(
        "/v1/availability",
        json={"business_id": biz["id"], "duration_minutes": 30, "window": window},
        headers=t.headers(),
    )
    assert r.status_code == 200, r.text
    hold_id = r.json()["data"]["hold_id"]
    r = await t.client.post(
        f"/v1/bookings/{hold_id}/confirm",
        json={"customer_email": "ada@customer.example.com"},
        headers=t.headers(**idem()),
    )
    assert r.status_code == 200, r.text
    booking_id = r.json()["data"]["booking_id"]
    rows = await messages(t.store.db, booking_id=booking_id)
    assert sorted((r.kind, r.event_type) for r in rows) == [
        ("email", "booking.confirmed"),
        ("webhook", "booking.confirmed"),
    ]
    assert next(r for r in rows if r.kind == "email").payload["kind"] == "confirmation"

    r = await t.client.post(
        "/v1/availability",
        json={"business_id": biz["id"], "duration_minutes": 30, "window": window,
              "ttl_seconds": 30},
        headers=t.headers(),
    )  # fmt: skip
    assert r.status_code == 200, r.text
    expiring = r.json()["data"]["hold_id"]
    swept = await sweep_expired_holds(t.store.db, dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2))
    assert swept >= 1
    rows = await messages(t.store.db, hold_id=expiring)
    assert [(r.kind, r.event_type) for r in rows] == [("webhook", "hold.expired")]
    data = rows[0].payload["data"]
    assert data["hold_id"] == expiring and data["status"] == "expired"
    assert data["business_id"] == biz["id"] and len(data["slots"]) == 1


def test_render_matches_the_api_rendering() -> None:
    now = dt.datetime(2026, 3, 29, 0, 59, 59, 123456, tzinfo=dt.UTC)
    b = Booking(
        id="bk_1", account_id="acct_1", business_id="biz_1", meeting_class="default",
        priority=50, status="cancelled", start_at=now, end_at=now + H, title="T",
        description=None, customer_email="a@b.example.com", customer_name=None,
        attendees=[{"email": "x@y.example.com", "display_name": "X"}], metadata_={"k": "v"},
        hold_id="hld_1", correlation_id="corr_1", version=3, calendar_sync_status="pending",
        calendar_event_id=None, created_at=now, updated_at=now, cancelled_at=now,
        cancellation_reason="r",
    )  # fmt: skip
    assert render.booking_json(b) == convert.booking(b).model_dump(mode="json")
