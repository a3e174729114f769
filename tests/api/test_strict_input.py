"""Strict types on every public field (a number is not a time, a boolean is not an integer)
and IANA zone names only: each a 422 `validation_error` that changes nothing."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.api.helpers import future_day, iso, key, make_business
from tests.api.test_errors import assert_error
from tests.conftest import Tenant

H = dt.timedelta(hours=1)


def fields_of(body: dict[str, Any]) -> list[str]:
    return [f["field"] for f in body["details"]["fields"]]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/bookings", {"updated_since": "0.5"}, "updated_since"),
        ("/v1/bookings", {"start": "1700000000"}, "start"),
        ("/v1/audit-log", {"since": "0"}, "since"),
        ("/v1/audit-log", {"until": "2026-04-01"}, "until"),  # a date is not an instant
    ],
)
async def test_a_number_as_a_time_in_a_query_is_422(
    tenant: Tenant, path: str, params: dict[str, str], field: str
) -> None:
    r = await tenant.client.get(path, params=params, headers=tenant.headers())
    assert field in fields_of(assert_error(r, 422, "validation_error"))


async def test_a_number_as_a_time_in_slot_queries_is_422(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    for name in ("start", "end"):
        r = await tenant.client.get(
            "/v1/availability/slots",
            params={"business_id": biz["id"], name: "1.5"},
            headers=tenant.headers(),
        )
        assert name in fields_of(assert_error(r, 422, "validation_error"))


async def test_a_number_as_a_busy_time_is_422_and_stores_nothing(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    start = future_day() + 9 * H
    for body in (
        {"start": 0, "end": iso(start)},
        {"start": iso(start), "end": 1.5e9},
        {"start": "0", "end": iso(start)},
    ):
        r = await tenant.client.post(
            f"/v1/businesses/{biz['id']}/busy", json=body, headers=tenant.headers()
        )
        assert_error(r, 422, "validation_error")
    r = await tenant.client.get(f"/v1/businesses/{biz['id']}/busy", headers=tenant.headers())
    assert r.json()["data"] == []


async def test_a_number_as_a_booking_time_is_422(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    body = {"business_id": biz["id"], "start_time": 1_900_000_000, "end_time": 1_900_003_600}
    r = await tenant.client.post(
        "/v1/bookings", json=body, headers=tenant.headers(**{"Idempotency-Key": key()})
    )
    assert {"start_time", "end_time"} <= set(fields_of(assert_error(r, 422, "validation_error")))
    r = await tenant.client.get("/v1/bookings", headers=tenant.headers())
    assert r.json()["data"] == []


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"priority": True}, "priority"),
        ({"duration_minutes": True}, "duration_minutes"),
        ({"buffer_before_minutes": 1.0}, "buffer_before_minutes"),
        ({"buffer_after_minutes": "5"}, "buffer_after_minutes"),
        ({"display_name": 7}, "display_name"),
    ],
)
async def test_wrong_scalar_types_in_a_meeting_class_are_422(
    tenant: Tenant, override: dict[str, Any], field: str
) -> None:
    body = {"name": "strict_check", "display_name": "Strict", **override}
    r = await tenant.client.post("/v1/meeting-classes", json=body, headers=tenant.headers())
    assert field in fields_of(assert_error(r, 422, "validation_error"))
    r = await tenant.client.get("/v1/meeting-classes/strict_check", headers=tenant.headers())
    assert r.status_code == 404


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"duration_minutes": True}, "duration_minutes"),
        ({"max_slots": True}, "max_slots"),
        ({"ttl_seconds": 60.0}, "ttl_seconds"),
        ({"window": {"start": 0, "end": 1}}, "window.start"),
    ],
)
async def test_wrong_scalar_types_in_a_hold_are_422(
    tenant: Tenant, override: dict[str, Any], field: str
) -> None:
    biz = await make_business(tenant)
    start = future_day() + 9 * H
    body = {
        "business_id": biz["id"],
        "window": {"start": iso(start), "end": iso(start + 3 * H)},
        **override,
    }
    r = await tenant.client.post("/v1/availability", json=body, headers=tenant.headers())
    assert field in fields_of(assert_error(r, 422, "validation_error"))
    # Nothing held: every 30-minute slot of the window (15-minute grid) is still listed.
    r = await tenant.client.get(
        "/v1/availability/slots",
        params={"business_id": biz["id"], "start": iso(start), "end": iso(start + 3 * H)},
        headers=tenant.headers(),
    )
    assert len(r.json()["data"]["slots"]) == 11


@pytest.mark.parametrize(
    ("rules", "field"),
    [
        ({"buffer_minutes": True}, "buffer_minutes"),
        ({"max_meetings_per_day": "3"}, "max_meetings_per_day"),
        ({"date_overrides": [{"date": 20261224, "hours": []}]}, "date_overrides.0.date"),
        ({"working_hours": [{"days": ["mon"], "start": 900, "end": "17:00"}]}, "start"),
    ],
)
async def test_wrong_scalar_types_in_rules_are_422_and_change_nothing(
    tenant: Tenant, rules: dict[str, Any], field: str
) -> None:
    h = tenant.headers()
    before = (await tenant.client.get("/v1/rules/defaults", headers=h)).json()["data"]
    r = await tenant.client.put("/v1/rules/defaults", json=rules, headers=h)
    assert any(f.endswith(field) for f in fields_of(assert_error(r, 422, "validation_error")))
    assert (await tenant.client.get("/v1/rules/defaults", headers=h)).json()["data"] == before
    r = await tenant.client.post(
        "/v1/businesses", json={"name": "x", "timezone": "UTC", "rules": rules}, headers=h
    )
    assert_error(r, 422, "validation_error")


async def test_text_dates_and_times_still_parse(tenant: Tenant) -> None:
    rules = {
        "date_overrides": [{"date": "2026-12-24", "hours": [{"start": "09:00", "end": "12:00"}]}],
        "buffer_minutes": 5,
    }
    r = await tenant.client.put("/v1/rules/defaults", json=rules, headers=tenant.headers())
    assert r.status_code == 200, r.text
    assert r.json()["data"]["rules"]["date_overrides"][0]["date"] == "2026-12-24"


async def test_a_number_as_a_name_or_a_boolean_field_is_422(tenant: Tenant) -> None:
    h = tenant.headers()
    r = await tenant.client.post("/v1/businesses", json={"name": 5, "timezone": "UTC"}, headers=h)
    assert "name" in fields_of(assert_error(r, 422, "validation_error"))
    r = await tenant.client.post(
        "/v1/webhook-endpoints",
        json={"url": "https://8.8.8.8/hook", "events": ["booking.created"]},
        headers=h,
    )
    assert r.status_code == 201, r.text
    endpoint = r.json()["data"]["id"]
    r = await tenant.client.patch(
        f"/v1/webhook-endpoints/{endpoint}", json={"enabled": 0}, headers=h
    )
    assert "enabled" in fields_of(assert_error(r, 422, "validation_error"))
    r = await tenant.client.get(f"/v1/webhook-endpoints/{endpoint}", headers=h)
    assert r.json()["data"]["enabled"] is True


@pytest.mark.parametrize("name", ["localtime", "posixrules", "posix/Europe/Paris", "right/UTC"])
async def test_non_iana_zone_names_are_422(tenant: Tenant, name: str) -> None:
    h = tenant.headers()
    r = await tenant.client.post("/v1/businesses", json={"name": "x", "timezone": name}, headers=h)
    assert "timezone" in fields_of(assert_error(r, 422, "validation_error"))
    biz = await make_business(tenant)
    r = await tenant.client.patch(f"/v1/businesses/{biz['id']}", json={"timezone": name}, headers=h)
    assert_error(r, 422, "validation_error")
    r = await tenant.client.get(
        "/v1/availability/slots", params={"business_id": biz["id"], "timezone": name}, headers=h
    )
    assert_error(r, 422, "validation_error")
    r = await tenant.client.get(f"/v1/businesses/{biz['id']}", headers=h)
    assert r.json()["data"]["timezone"] == "UTC"


@pytest.mark.parametrize("name", ["Asia/Calcutta", "US/Eastern", "Europe/Kiev", "Etc/GMT+5"])
async def test_official_aliases_are_accepted(tenant: Tenant, name: str) -> None:
    biz = await make_business(tenant, timezone=name)
    assert biz["timezone"] == name
    r = await tenant.client.get(
        "/v1/availability/slots",
        params={"business_id": biz["id"], "timezone": name},
        headers=tenant.headers(),
    )
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("value", ["1.0", "1_000", " 5", "5 ", "1e2", "true", "+5"])
async def test_query_integers_are_digits_only(tenant: Tenant, value: str) -> None:
    h = tenant.headers()
    r = await tenant.client.get("/v1/bookings", params={"limit": value}, headers=h)
    assert "limit" in fields_of(assert_error(r, 422, "validation_error"))
    biz = await make_business(tenant)
    r = await tenant.client.get(
        "/v1/availability/slots",
        params={"business_id": biz["id"], "duration_minutes": value},
        headers=h,
    )
    assert "duration_minutes" in fields_of(assert_error(r, 422, "validation_error"))


async def test_query_integers_and_booleans_in_their_own_form_still_work(tenant: Tenant) -> None:
    h = tenant.headers()
    r = await tenant.client.get("/v1/bookings", params={"limit": "5"}, headers=h)
    assert r.status_code == 200, r.text
    r = await tenant.client.post(
        "/v1/webhook-endpoints",
        json={"url": "https://8.8.8.8/hook", "events": ["booking.created"]},
        headers=h,
    )
    endpoint = r.json()["data"]["id"]
    for good in ("true", "false"):
        r = await tenant.client.get(
            f"/v1/webhook-endpoints/{endpoint}/deliveries", params={"succeeded": good}, headers=h
        )
        assert r.status_code == 200, r.text
    for bad in ("1", "yes", "on", "True"):
        r = await tenant.client.get(
            f"/v1/webhook-endpoints/{endpoint}/deliveries", params={"succeeded": bad}, headers=h
        )
        assert "succeeded" in fields_of(assert_error(r, 422, "validation_error"))
