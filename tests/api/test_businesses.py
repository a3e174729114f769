"""Businesses, rule layers, meeting classes, busy time and slot listing (§2, §3.1)."""

from __future__ import annotations

import datetime as dt

from tests.api.helpers import book, future_day, iso, make_business
from tests.api.test_errors import assert_error
from tests.conftest import Tenant

H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)


async def test_business_crud(tenant: Tenant) -> None:
    c, h = tenant.client, tenant.headers()
    r = await c.post(
        "/v1/businesses",
        json={"name": "Clinic", "email": "c@example.com", "timezone": "Europe/London"},
        headers=h,
    )
    assert r.status_code == 201
    biz = r.json()["data"]
    assert r.headers["Location"] == f"/v1/businesses/{biz['id']}" and biz["id"].startswith("biz_")
    dup = await c.post(
        "/v1/businesses",
        json={"name": "Other", "email": "c@example.com", "timezone": "UTC"},
        headers=h,
    )
    assert_error(dup, 409, "conflict")
    r = await c.patch(
        f"/v1/businesses/{biz['id']}",
        json={"name": "Clinic 2", "rules": {"buffer_minutes": 5}},
        headers=h,
    )
    assert r.status_code == 200 and r.json()["data"]["name"] == "Clinic 2"
    assert r.json()["data"]["rules"] == {"buffer_minutes": 5}
    assert_error(
        await c.patch(f"/v1/businesses/{biz['id']}", json={"name": None}, headers=h),
        422,
        "validation_error",
    )
    assert_error(
        await c.patch(f"/v1/businesses/{biz['id']}", json={"timezone": "X/Y"}, headers=h),
        422,
        "validation_error",
    )
    r = await c.delete(f"/v1/businesses/{biz['id']}", headers=h)
    assert r.status_code == 200 and r.json()["data"] == {"id": biz["id"], "deleted": True}
    assert_error(await c.get(f"/v1/businesses/{biz['id']}", headers=h), 404, "not_found")
    # The email is free again once the business is gone.
    again = await c.post(
        "/v1/businesses",
        json={"name": "New", "email": "c@example.com", "timezone": "UTC"},
        headers=h,
    )
    assert again.status_code == 201


async def test_effective_rules_and_sources(tenant: Tenant) -> None:
    c, h = tenant.client, tenant.headers()
    r = await c.put(
        "/v1/rules/defaults", json={"buffer_minutes": 10, "hold_ttl_seconds": 120}, headers=h
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["rules"] == {"buffer_minutes": 10, "hold_ttl_seconds": 120}
    biz = await make_business(tenant, rules={"buffer_minutes": 20, "max_meetings_per_day": 4})
    r = await c.get(f"/v1/businesses/{biz['id']}/rules", headers=h)
    d = r.json()["data"]
    assert d["rules"]["buffer_minutes"] == 20 and d["sources"]["buffer_minutes"] == "business"
    assert d["rules"]["hold_ttl_seconds"] == 120 and d["sources"]["hold_ttl_seconds"] == "account"
    assert d["rules"]["max_advance_days"] == 60 and d["sources"]["max_advance_days"] == "account"
    assert d["rules"]["working_hours"][0]["start"] == "09:00"
    assert d["sources"]["working_hours"] == "account"
    assert d["rules"]["max_meetings_per_day"] == 4
    bad = await c.put(
        "/v1/rules/defaults",
        json={"working_hours": [{"days": ["mon"], "start": "10:00", "end": "09:00"}]},
        headers=h,
    )
    assert_error(bad, 422, "validation_error")
    bad = await c.put(
        "/v1/rules/defaults",
        json={"working_hours": [{"days": ["moon"], "start": "09:00", "end": "10:00"}]},
        headers=h,
    )
    assert_error(bad, 422, "validation_error")
    bad = await c.put("/v1/rules/defaults", json={"hold_ttl_seconds": 5}, headers=h)
    assert_error(bad, 422, "validation_error")
    r = await c.get("/v1/rules/defaults", headers=h)
    assert r.json()["data"]["rules"] == {"buffer_minutes": 10, "hold_ttl_seconds": 120}


async def test_meeting_class_crud(tenant: Tenant) -> None:
    c, h = tenant.client, tenant.headers()
    r = await c.get("/v1/meeting-classes/default", headers=h)
    assert r.status_code == 200 and r.json()["data"]["priority"] == 50
    r = await c.post(
        "/v1/meeting-classes",
        json={"name": "demo", "display_name": "Demo", "priority": 70, "buffer_after_minutes": 10},
        headers=h,
    )
    assert r.status_code == 201 and r.headers["Location"] == "/v1/meeting-classes/demo"
    assert_error(
        await c.post("/v1/meeting-classes", json={"name": "demo", "display_name": "x"}, headers=h),
        409,
        "conflict",
    )
    assert_error(
        await c.post(
            "/v1/meeting-classes", json={"name": "Bad Name!", "display_name": "x"}, headers=h
        ),
        422,
        "validation_error",
    )
    assert_error(
        await c.post(
            "/v1/meeting-classes",
            json={"name": "p", "display_name": "x", "priority": 101},
            headers=h,
        ),
        422,
        "validation_error",
    )
    r = await c.patch(
        "/v1/meeting-classes/demo", json={"priority": 80, "duration_minutes": None}, headers=h
    )
    assert r.status_code == 200 and r.json()["data"]["priority"] == 80
    r = await c.get("/v1/meeting-classes", headers=h)
    assert [m["name"] for m in r.json()["data"]] == ["default", "demo"]
    assert_error(await c.delete("/v1/meeting-classes/default", headers=h), 409, "conflict")
    assert (await c.delete("/v1/meeting-classes/demo", headers=h)).status_code == 200
    assert_error(await c.get("/v1/meeting-classes/demo", headers=h), 404, "not_found")


async def test_busy_time_crud_and_blocking(tenant: Tenant) -> None:
    c, h = tenant.client, tenant.headers()
    biz = await make_business(tenant)
    start = future_day() + 9 * H
    r = await c.post(
        f"/v1/businesses/{biz['id']}/busy",
        json={
            "start": iso(start),
            "end": iso(start + H),
            "title": "Dentist",
            "external_id": "ext-1",
        },
        headers=h,
    )
    assert r.status_code == 201, r.text
    busy = r.json()["data"]
    assert busy["source"] == "api"
    assert_error(
        await c.post(
            f"/v1/businesses/{biz['id']}/busy",
            json={"start": iso(start), "end": iso(start)},
            headers=h,
        ),
        422,
        "validation_error",
    )
    r = await c.get(f"/v1/businesses/{biz['id']}/busy", headers=h)
    assert [b["id"] for b in r.json()["data"]] == [busy["id"]]
    assert (await book(tenant, biz["id"], start + 30 * M)).json()["details"][
        "reason"
    ] == "overlaps_busy_time"
    assert (
        await c.delete(f"/v1/businesses/{biz['id']}/busy/{busy['id']}", headers=h)
    ).status_code == 200
    assert (await book(tenant, biz["id"], start + 30 * M)).status_code == 201


async def test_slots_hide_busy_bookings_and_buffers(tenant: Tenant) -> None:
    c, h = tenant.client, tenant.headers()
    biz = await make_business(
        tenant,
        timezone="Europe/Paris",
        rules={
            "working_hours": [
                {
                    "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                    "start": "09:00",
                    "end": "12:00",
                },
                {
                    "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                    "start": "14:00",
                    "end": "16:00",
                },
            ],
            "slot_interval_minutes": 30,
        },
    )
    day = future_day(9)
    paris = dt.timezone(dt.timedelta(hours=1))  # November to March: CET
    local = day.astimezone(paris).replace(hour=0)
    nine = local.replace(hour=9)
    params = {
        "business_id": biz["id"],
        "start": iso(local),
        "end": iso(local + 24 * H),
        "duration_minutes": 60,
    }
    r = await c.get("/v1/availability/slots", params=params, headers=h)
    assert r.status_code == 200, r.text
    d = r.json()["data"]
    assert d["timezone"] == "Europe/Paris" and d["duration_minutes"] == 60
    starts = [s["start"] for s in d["slots"]]
    assert starts == [
        f"{nine.date()}T{t}:00+01:00"
        for t in ("09:00", "09:30", "10:00", "10:30", "11:00", "14:00", "14:30", "15:00")
    ]
    # A booking 10:00-11:00 and busy 14:30-15:00; 15 extra minutes of gap for this query.
    assert (await book(tenant, biz["id"], nine + H, 60)).status_code == 201
    await c.post(
        f"/v1/businesses/{biz['id']}/busy",
        json={"start": iso(nine + 330 * M), "end": iso(nine + 6 * H)},
        headers=h,
    )
    r = await c.get("/v1/availability/slots", params={**params, "buffer_minutes": 15}, headers=h)
    starts = [s["start"][11:16] for s in r.json()["data"]["slots"]]
    # 09:00 and 11:00 touch the booking and 15:00 touches the busy time: none keeps 15 min.
    assert starts == []
    r = await c.get("/v1/availability/slots", params=params, headers=h)
    starts = [s["start"][11:16] for s in r.json()["data"]["slots"]]
    assert starts == ["09:00", "11:00", "15:00"]
    r = await c.get(
        "/v1/availability/slots", params={**params, "timezone": "UTC", "limit": 2}, headers=h
    )
    assert [s["start"] for s in r.json()["data"]["slots"]] == [iso(nine), iso(nine + 2 * H)]


async def test_slots_by_owner_email_and_default_window(tenant: Tenant) -> None:
    await make_business(tenant, email="owner@example.com")
    r = await tenant.client.get(
        "/v1/availability/slots",
        params={"owner_email": "owner@example.com", "limit": 5},
        headers=tenant.headers(),
    )
    assert r.status_code == 200, r.text
    slots = r.json()["data"]["slots"]
    assert len(slots) == 5
    now = dt.datetime.now(dt.UTC)
    assert all(dt.datetime.fromisoformat(s["start"]) >= now for s in slots)
    assert_error(
        await tenant.client.get("/v1/availability/slots", headers=tenant.headers()),
        422,
        "validation_error",
    )


async def test_list_businesses_paginates(tenant: Tenant) -> None:
    ids = [(await make_business(tenant))["id"] for _ in range(3)]
    r = await tenant.client.get("/v1/businesses", params={"limit": 2}, headers=tenant.headers())
    first = r.json()
    assert [b["id"] for b in first["data"]] == ids[:2] and first["meta"]["has_more"] is True
    r = await tenant.client.get(
        "/v1/businesses", params={"cursor": first["meta"]["next_cursor"]}, headers=tenant.headers()
    )
    assert [b["id"] for b in r.json()["data"]] == ids[2:]
