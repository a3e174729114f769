"""The agent-facing reads: the dry-run check (§3.4), the caller (§3.5), audit filters (§8)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tests.api.helpers import ALL_DAYS, book, future_day, iso, key, make_business
from tests.api.test_agents import agent_tenant
from tests.conftest import Tenant

H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)
NINE_TO_FIVE = {"working_hours": [{"days": ALL_DAYS, "start": "09:00", "end": "17:00"}]}


async def check(t: Tenant, **query: Any) -> dict[str, Any]:
    params = {k: iso(v) if isinstance(v, dt.datetime) else v for k, v in query.items()}
    r = await t.client.get("/v1/availability/check", params=params, headers=t.headers())
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


async def audit_count(t: Tenant) -> int:
    r = await t.client.get("/v1/audit-log", params={"limit": 200}, headers=t.headers())
    return len(r.json()["data"])


async def test_check_free_slot_is_available_and_writes_nothing(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    start = future_day() + 9 * H
    before = await audit_count(tenant)
    data = await check(tenant, business_id=biz["id"], start_time=start, end_time=start + H)
    assert data == {
        "available": True,
        "business_id": biz["id"],
        "meeting_class": "default",
        "start_time": iso(start),
        "end_time": iso(start + H),
    }
    assert await audit_count(tenant) == before
    # It was a dry run: the slot is still bookable.
    assert (await book(tenant, biz["id"], start, 60)).status_code == 201


async def test_check_taken_slot_gives_booking_reason_and_next_available(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    start = future_day() + 9 * H
    assert (await book(tenant, biz["id"], start, 60)).status_code == 201
    data = await check(tenant, business_id=biz["id"], start_time=start + 30 * M, end=start + 90 * M)
    assert data["available"] is False
    assert data["reason"] == "overlaps_booking"
    # The first slot of the same length after the asked start: right after the booking.
    assert data["next_available"] == {"start": iso(start + H), "end": iso(start + 2 * H)}
    # The booking itself refuses it for the same reason.
    r = await book(tenant, biz["id"], start + 30 * M, 60)
    assert r.status_code == 409 and r.json()["details"]["reason"] == data["reason"]


async def test_check_reasons_match_the_booking(tenant: Tenant) -> None:
    biz = await make_business(tenant, rules=NINE_TO_FIVE | {"max_advance_days": 30})
    day = future_day()
    cases = [
        (day + 7 * H, "outside_working_hours"),
        (day + 9 * H + 7 * M, "off_grid"),
        (future_day(40) + 10 * H, "too_far"),
    ]
    for start, reason in cases:
        data = await check(tenant, business_id=biz["id"], start_time=start, end_time=start + H)
        assert data["available"] is False and data["reason"] == reason, (start, data)
        r = await book(tenant, biz["id"], start, 60)
        assert r.status_code == 409 and r.json()["details"]["reason"] == reason
    # outside hours: the next slot is the opening at 09:00 the same day
    data = await check(tenant, business_id=biz["id"], start_time=day + 7 * H, end_time=day + 8 * H)
    assert data["next_available"] == {"start": iso(day + 9 * H), "end": iso(day + 10 * H)}


async def test_check_without_next_available_omits_the_field(tenant: Tenant) -> None:
    # Only one local day is open; after it, nothing within 72 h.
    day = future_day()
    rules = {
        "working_hours": [],
        "date_overrides": [
            {"date": day.date().isoformat(), "hours": [{"start": "09:00", "end": "10:00"}]}
        ],
    }
    biz = await make_business(tenant, rules=rules)
    assert (await book(tenant, biz["id"], day + 9 * H, 60)).status_code == 201
    data = await check(tenant, business_id=biz["id"], start_time=day + 9 * H)
    assert data["available"] is False and data["reason"] == "overlaps_booking"
    assert "next_available" not in data


async def test_check_held_slot_and_class_duration(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    start = future_day() + 9 * H
    r = await tenant.client.post(
        "/v1/availability",
        json={
            "business_id": biz["id"],
            "duration_minutes": 30,
            "window": {"start": iso(start), "end": iso(start + 30 * M)},
        },
        headers=tenant.headers(),
    )
    assert r.status_code == 200, r.text
    # No end_time: the class's (default 30 min) duration, as the booking does.
    data = await check(tenant, business_id=biz["id"], start_time=start)
    assert data["end_time"] == iso(start + 30 * M)
    assert data["available"] is False and data["reason"] == "overlaps_hold"


async def test_check_bad_input_is_422(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    h = tenant.headers()
    r = await tenant.client.get(
        "/v1/availability/check", params={"business_id": biz["id"]}, headers=h
    )
    assert r.status_code == 422 and r.json()["error"] == "validation_error"
    past = dt.datetime.now(dt.UTC) - H
    r = await tenant.client.get(
        "/v1/availability/check",
        params={"business_id": biz["id"], "start_time": iso(past)},
        headers=h,
    )
    assert r.status_code == 422
    r = await tenant.client.get(
        "/v1/availability/check",
        params={"business_id": biz["id"], "start_time": "2030-01-01T09:00:00"},
        headers=h,
    )
    assert r.status_code == 422
    r = await tenant.client.get(
        "/v1/availability/check",
        params={"business_id": "biz_nope", "start_time": iso(future_day())},
        headers=h,
    )
    assert r.status_code == 404


async def test_me_for_admin_and_agent_keys(tenant: Tenant) -> None:
    r = await tenant.client.get("/v1/me", headers=tenant.headers())
    assert r.status_code == 200
    me = r.json()["data"]
    assert me["account_id"] == tenant.account_id
    assert me["key_id"].startswith("key_")
    assert "agent_id" not in me
    assert "admin" in me["scopes"] and me["allowed_business_ids"] == "*"
    now = dt.datetime.fromisoformat(me["now"])
    assert abs(now - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)

    biz = await make_business(tenant)
    agent = await agent_tenant(
        tenant, scopes=["bookings:read", "availability:read"], allowed=[biz["id"]]
    )
    me = (await agent.client.get("/v1/me", headers=agent.headers())).json()["data"]
    assert me["agent_id"].startswith("agt_")
    assert me["scopes"] == ["availability:read", "bookings:read"]
    assert me["allowed_business_ids"] == [biz["id"]]
    r = await tenant.client.get("/v1/me", headers={"Authorization": "Bearer sg_live_nope"})
    assert r.status_code == 401


async def test_audit_filters_hold_id_and_request_id(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    start = future_day() + 9 * H
    r = await tenant.client.post(
        "/v1/availability",
        json={"business_id": biz["id"], "window": {"start": iso(start), "end": iso(start + H)}},
        headers=tenant.headers(),
    )
    hold_id = r.json()["data"]["hold_id"]
    b = await book(tenant, biz["id"], start + 2 * H, 30, idem=key())
    booking_request = b.headers["X-Request-Id"]

    rows = (
        await tenant.client.get(
            "/v1/audit-log", params={"hold_id": hold_id}, headers=tenant.headers()
        )
    ).json()["data"]
    assert [x["action"] for x in rows] == ["hold_created"]
    assert rows[0]["hold_id"] == hold_id

    rows = (
        await tenant.client.get(
            "/v1/audit-log", params={"request_id": booking_request}, headers=tenant.headers()
        )
    ).json()["data"]
    assert [x["action"] for x in rows] == ["booking_created"]
    assert rows[0]["request_id"] == booking_request

    r = await tenant.client.get(
        "/v1/audit-log/export", params={"request_id": booking_request}, headers=tenant.headers()
    )
    assert r.status_code == 200 and len(r.text.strip().splitlines()) == 1
    r = await tenant.client.get(
        "/v1/audit-log", params={"request_id": "req_unknown"}, headers=tenant.headers()
    )
    assert r.json()["data"] == []


async def test_new_reads_are_in_the_openapi_document(tenant: Tenant) -> None:
    doc = (await tenant.client.get("/openapi.json")).json()
    assert "/v1/availability/check" in doc["paths"]
    assert "/v1/me" in doc["paths"]
    names = {p["name"] for p in doc["paths"]["/v1/audit-log"]["get"]["parameters"]}
    assert {"hold_id", "request_id"} <= names
