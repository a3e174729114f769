"""Two-phase booking: holds, confirm, release, expiry (§3.2, §3.3, §4.2)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, select, update

from slotguard.services.holds import sweep_expired_holds
from slotguard.store.models import AuditEntry, Hold
from tests.api.helpers import book, future_day, iso, key, make_business
from tests.api.test_errors import assert_error
from tests.conftest import Tenant

H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)


async def hold(
    t: Tenant, business_id: str, start: dt.datetime, end: dt.datetime, **extra: Any
) -> Any:
    body = {
        "business_id": business_id,
        "duration_minutes": 30,
        "window": {"start": iso(start), "end": iso(end)},
        **extra,
    }
    return await t.client.post("/v1/availability", json=body, headers=t.headers())


async def confirm(t: Tenant, hold_id: str, **body: Any) -> Any:
    return await t.client.post(
        f"/v1/bookings/{hold_id}/confirm",
        json=body,
        headers=t.headers(**{"Idempotency-Key": key()}),
    )


async def test_hold_then_confirm(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    start = future_day() + 9 * H
    r = await hold(tenant, biz["id"], start, start + 3 * H, max_slots=3, ttl_seconds=120)
    assert r.status_code == 200, r.text
    h = r.json()["data"]
    assert h["hold_id"].startswith("hld_")
    assert [s["start"] for s in h["slots"]] == [iso(start), iso(start + 30 * M), iso(start + H)]
    assert h["decision"] == "accept" and h["preempted_holds"] == [] and h["warnings"] == []
    assert h["meeting_class"] == "default"
    # Held slots are invisible to others, for listing and direct booking.
    slots = await tenant.client.get(
        "/v1/availability/slots",
        params={
            "business_id": biz["id"],
            "start": iso(start),
            "end": iso(start + 3 * H),
            "duration_minutes": 30,
            "timezone": "UTC",
        },
        headers=tenant.headers(),
    )
    assert slots.json()["data"]["slots"][0]["start"] == iso(start + 90 * M).replace("Z", "Z")
    r = await book(tenant, biz["id"], start + 30 * M)
    assert r.status_code == 409 and r.json()["details"]["reason"] == "overlaps_hold"
    c = await confirm(
        tenant,
        h["hold_id"],
        start=iso(start + 30 * M),
        title="Chat",
        attendees=[{"email": "a@example.com", "display_name": "A"}],
    )
    assert c.status_code == 200, c.text
    d = c.json()["data"]
    assert d["booking_id"] == d["booking"]["id"] and d["correlation_id"].startswith("corr_")
    assert d["booking"]["start_time"] == iso(start + 30 * M)
    assert d["booking"]["hold_id"] == h["hold_id"] and d["booking"]["title"] == "Chat"
    # The other held slots are free again; the confirmed one is taken.
    assert (await book(tenant, biz["id"], start)).status_code == 201
    assert (await book(tenant, biz["id"], start + 30 * M)).status_code == 409
    g = await tenant.client.get(f"/v1/holds/{h['hold_id']}", headers=tenant.headers())
    assert g.json()["data"]["status"] == "confirmed"
    assert g.json()["data"]["booking_id"] == d["booking_id"]


async def test_confirm_errors(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    start = future_day() + 9 * H
    h = (await hold(tenant, biz["id"], start, start + H)).json()["data"]
    assert_error(await confirm(tenant, "hld_nope"), 404, "hold_not_found")
    assert_error(
        await confirm(tenant, h["hold_id"], start=iso(start + 5 * M)), 422, "slot_outside_hold"
    )
    c = await confirm(tenant, h["hold_id"])
    assert c.status_code == 200
    body = assert_error(await confirm(tenant, h["hold_id"]), 409, "hold_already_confirmed")
    assert body["details"]["booking_id"] == c.json()["data"]["booking_id"]
    h2 = (await hold(tenant, biz["id"], start, start + 2 * H)).json()["data"]
    r = await tenant.client.delete(f"/v1/holds/{h2['hold_id']}", headers=tenant.headers())
    assert r.status_code == 200 and r.json()["data"]["status"] == "released"
    r = await tenant.client.delete(f"/v1/holds/{h2['hold_id']}", headers=tenant.headers())
    assert r.status_code == 200 and r.json()["data"]["status"] == "released"
    assert_error(await confirm(tenant, h2["hold_id"]), 409, "hold_released")
    r = await tenant.client.post(
        f"/v1/bookings/{h2['hold_id']}/confirm", json={}, headers=tenant.headers()
    )
    assert_error(r, 400, "missing_idempotency_key")


async def test_title_defaults_to_class_display_name(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    await tenant.client.post(
        "/v1/meeting-classes",
        json={"name": "recruiting_interview", "display_name": "Interview", "duration_minutes": 45},
        headers=tenant.headers(),
    )
    start = future_day() + 9 * H
    r = await tenant.client.post(
        "/v1/availability",
        json={
            "business_id": biz["id"],
            "meeting_class": "recruiting_interview",
            "window": {"start": iso(start), "end": iso(start + 2 * H)},
        },
        headers=tenant.headers(),
    )
    h = r.json()["data"]
    assert h["slots"][0]["end"] == iso(start + 45 * M)
    b = (await confirm(tenant, h["hold_id"])).json()["data"]["booking"]
    assert b["title"] == "Interview" and b["meeting_class"] == "recruiting_interview"


async def test_expiry_without_sweeper_then_sweeper_records_once(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    start = future_day() + 9 * H
    h = (await hold(tenant, biz["id"], start, start + 30 * M, ttl_seconds=30)).json()["data"]
    assert_error(await hold(tenant, biz["id"], start, start + 30 * M), 409, "no_slots_available")
    # Move the expiry into the past instead of sleeping: no background job runs here.
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    async with tenant.store.db.write() as s:
        await s.execute(update(Hold).where(Hold.id == h["hold_id"]).values(expires_at=past))
        from slotguard.store.models import Reservation

        await s.execute(
            update(Reservation).where(Reservation.hold_id == h["hold_id"]).values(expires_at=past)
        )
    g = await tenant.client.get(f"/v1/holds/{h['hold_id']}", headers=tenant.headers())
    assert g.json()["data"]["status"] == "expired"
    slots = await tenant.client.get(
        "/v1/availability/slots",
        params={"business_id": biz["id"], "start": iso(start), "end": iso(start + 30 * M)},
        headers=tenant.headers(),
    )
    assert len(slots.json()["data"]["slots"]) == 1
    assert_error(await confirm(tenant, h["hold_id"]), 410, "hold_expired")
    other = await hold(tenant, biz["id"], start, start + 30 * M)
    assert other.status_code == 200, other.text
    # Release the new hold so a direct booking works too.
    await tenant.client.delete(
        f"/v1/holds/{other.json()['data']['hold_id']}", headers=tenant.headers()
    )
    assert (await book(tenant, biz["id"], start)).status_code == 201
    now = dt.datetime.now(dt.UTC)
    assert await sweep_expired_holds(tenant.store.db, now) >= 1
    await sweep_expired_holds(tenant.store.db, now)
    async with tenant.store.db.read() as s:
        n = await s.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.hold_id == h["hold_id"], AuditEntry.action == "hold_expired")
        )
    assert n == 1
    g = await tenant.client.get(f"/v1/holds/{h['hold_id']}", headers=tenant.headers())
    assert g.json()["data"]["status"] == "expired"


async def test_no_slots_with_and_without_next_available(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    start = future_day() + 9 * H
    assert (await book(tenant, biz["id"], start, 60)).status_code == 201
    r = await hold(tenant, biz["id"], start, start + H)
    body = assert_error(r, 409, "no_slots_available")
    assert body["next_available"] == {"start": iso(start + H), "end": iso(start + 90 * M)}
    closed = await make_business(
        tenant,
        rules={
            "working_hours": [{"days": ["mon"], "start": "09:00", "end": "09:30"}],
            "max_advance_days": 3,
        },
    )
    r = await hold(tenant, closed["id"], start, start + H, next_available_lookahead_hours=1)
    body = assert_error(r, 409, "no_slots_available")
    assert "next_available" not in body


@pytest.mark.parametrize(
    "bad",
    [
        {"max_slots": 0},
        {"max_slots": 11},
        {"ttl_seconds": 29},
        {"ttl_seconds": 3601},
        {"next_available_lookahead_hours": 0},
        {"next_available_lookahead_hours": 73},
        {"next_available_lookahead_hours": 1.5},
    ],
)
async def test_hold_validation(tenant: Tenant, bad: dict[str, Any]) -> None:
    biz = await make_business(tenant)
    start = future_day() + 9 * H
    assert_error(await hold(tenant, biz["id"], start, start + H, **bad), 422, "validation_error")


async def test_retried_hold_with_same_key_returns_same_hold(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    start = future_day() + 9 * H
    body = {"business_id": biz["id"], "window": {"start": iso(start), "end": iso(start + H)}}
    k = key()
    a = await tenant.client.post(
        "/v1/availability", json=body, headers=tenant.headers(**{"Idempotency-Key": k})
    )
    b = await tenant.client.post(
        "/v1/availability", json=body, headers=tenant.headers(**{"Idempotency-Key": k})
    )
    assert a.status_code == b.status_code == 200
    assert a.content == b.content and b.headers["Idempotent-Replayed"] == "true"


async def test_priority_takes_lower_hold(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    for name, prio in (("low", 10), ("high", 90)):
        await tenant.client.post(
            "/v1/meeting-classes",
            json={"name": name, "display_name": name, "priority": prio, "duration_minutes": 30},
            headers=tenant.headers(),
        )
    start = future_day() + 9 * H
    w = {"start": iso(start), "end": iso(start + 30 * M)}
    low = await tenant.client.post(
        "/v1/availability",
        json={"business_id": biz["id"], "meeting_class": "low", "window": w},
        headers=tenant.headers(),
    )
    assert low.status_code == 200
    same = await tenant.client.post(
        "/v1/availability",
        json={"business_id": biz["id"], "meeting_class": "low", "window": w},
        headers=tenant.headers(),
    )
    assert_error(same, 409, "no_slots_available")
    high = await tenant.client.post(
        "/v1/availability",
        json={"business_id": biz["id"], "meeting_class": "high", "window": w},
        headers=tenant.headers(),
    )
    assert high.status_code == 200, high.text
    assert high.json()["data"]["preempted_holds"] == [low.json()["data"]["hold_id"]]
    assert high.json()["data"]["decision"] == "accept"
    assert_error(await confirm(tenant, low.json()["data"]["hold_id"]), 409, "hold_preempted")
    g = await tenant.client.get(
        f"/v1/holds/{low.json()['data']['hold_id']}", headers=tenant.headers()
    )
    assert g.json()["data"]["status"] == "preempted"
