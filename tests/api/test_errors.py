"""Bad input gets the §9 code and changes nothing; every error has the §1.1 body."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest

from tests.api.helpers import book, future_day, iso, key, make_business
from tests.conftest import Tenant

H = dt.timedelta(hours=1)


def assert_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert body["error"] == code
    assert body["code"] == status
    assert isinstance(body["message"], str) and body["message"]
    assert body["request_id"].startswith("req_")
    assert r.headers["X-Request-Id"] == body["request_id"]
    assert isinstance(body["details"], dict)
    assert "data" not in body
    return body


async def count_bookings(t: Tenant) -> int:
    r = await t.client.get("/v1/bookings", params={"limit": 200}, headers=t.headers())
    return len(r.json()["data"])


async def test_missing_unknown_and_revoked_keys_are_401(tenant: Tenant) -> None:
    c = tenant.client
    assert_error(await c.get("/v1/businesses"), 401, "unauthorized")
    assert_error(
        await c.get("/v1/businesses", headers={"Authorization": "Bearer sg_live_nope"}),
        401,
        "unauthorized",
    )
    assert_error(
        await c.get("/v1/businesses", headers={"Authorization": "Basic abc"}), 401, "unauthorized"
    )
    assert_error(
        await c.get("/v1/businesses", headers={"Authorization": "Bearer "}), 401, "unauthorized"
    )


async def test_malformed_json_is_422_and_changes_nothing(tenant: Tenant) -> None:
    r = await tenant.client.post(
        "/v1/bookings",
        content=b'{"business_id": "x", "start_time": ',
        headers=tenant.headers(**{"Idempotency-Key": key(), "Content-Type": "application/json"}),
    )
    body = assert_error(r, 422, "validation_error")
    assert body["details"]["fields"][0]["type"] == "json_invalid"
    assert await count_bookings(tenant) == 0


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"start_time": "2030-01-01T09:00:00"}, "start_time"),  # no offset
        ({"start_time": "not a time"}, "start_time"),
        ({"start_time": 12345}, "start_time"),
        ({"end_time": "2030-01-01T09:00:00"}, "end_time"),
        ({"attendees": "bob"}, "attendees"),
        ({"attendees": [{"email": "not-an-email"}]}, "attendees.0.email"),
        ({"metadata": ["a"]}, "metadata"),
        ({"title": 5}, "title"),
        ({"surprise": 1}, "surprise"),
    ],
)
async def test_wrong_types_are_422(tenant: Tenant, override: dict[str, Any], field: str) -> None:
    biz = await make_business(tenant)
    start = future_day() + 9 * H
    body = {
        "business_id": biz["id"],
        "start_time": iso(start),
        "end_time": iso(start + H),
        **override,
    }
    r = await tenant.client.post(
        "/v1/bookings", json=body, headers=tenant.headers(**{"Idempotency-Key": key()})
    )
    err = assert_error(r, 422, "validation_error")
    assert field in [f["field"] for f in err["details"]["fields"]]
    assert await count_bookings(tenant) == 0


async def test_body_must_be_an_object(tenant: Tenant) -> None:
    r = await tenant.client.post(
        "/v1/bookings", json=[1, 2], headers=tenant.headers(**{"Idempotency-Key": key()})
    )
    assert_error(r, 422, "validation_error")


async def test_unknown_zone_is_422(tenant: Tenant) -> None:
    r = await tenant.client.post(
        "/v1/businesses", json={"name": "x", "timezone": "Mars/Olympus"}, headers=tenant.headers()
    )
    body = assert_error(r, 422, "validation_error")
    assert body["details"]["fields"][0]["field"] == "timezone"
    r = await tenant.client.post(
        "/v1/businesses", json={"name": "x", "timezone": "../etc/passwd"}, headers=tenant.headers()
    )
    assert_error(r, 422, "validation_error")
    biz = await make_business(tenant)
    r = await tenant.client.get(
        "/v1/availability/slots",
        params={"business_id": biz["id"], "timezone": "Nope/Nope"},
        headers=tenant.headers(),
    )
    assert_error(r, 422, "validation_error")
    r = await tenant.client.get("/v1/businesses", headers=tenant.headers())
    assert len(r.json()["data"]) == 1


async def test_huge_body_is_413(tenant: Tenant) -> None:
    big = b'{"name": "' + b"x" * (1024 * 1024 + 10) + b'", "timezone": "UTC"}'
    r = await tenant.client.post(
        "/v1/businesses",
        content=big,
        headers=tenant.headers(**{"Content-Type": "application/json"}),
    )
    assert_error(r, 413, "payload_too_large")

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(20):
            yield b"x" * 65536

    r = await tenant.client.post(
        "/v1/businesses",
        content=chunks(),
        headers=tenant.headers(**{"Content-Type": "application/json"}),
    )
    assert_error(r, 413, "payload_too_large")
    assert (await tenant.client.get("/v1/businesses", headers=tenant.headers())).json()[
        "data"
    ] == []


async def test_unknown_route_and_wrong_method(tenant: Tenant) -> None:
    assert_error(await tenant.client.get("/v1/nope", headers=tenant.headers()), 404, "not_found")
    assert_error(await tenant.client.get("/nothing"), 404, "not_found")
    r = await tenant.client.delete("/v1/bookings", headers=tenant.headers())
    assert_error(r, 405, "method_not_allowed")


async def test_unknown_ids_are_404(tenant: Tenant) -> None:
    c, h = tenant.client, tenant.headers()
    assert_error(await c.get("/v1/bookings/bk_nope", headers=h), 404, "not_found")
    assert_error(await c.get("/v1/businesses/biz_nope", headers=h), 404, "not_found")
    assert_error(await c.get("/v1/meeting-classes/nope", headers=h), 404, "not_found")
    assert_error(await c.get("/v1/businesses/biz_nope/rules", headers=h), 404, "not_found")
    r = await c.post(
        "/v1/bookings/bk_nope/cancel", headers=tenant.headers(**{"Idempotency-Key": key()})
    )
    assert_error(r, 404, "not_found")


async def test_window_limits(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    start = future_day()
    r = await tenant.client.get(
        "/v1/availability/slots",
        params={
            "business_id": biz["id"],
            "start": iso(start),
            "end": iso(start + dt.timedelta(days=91)),
        },
        headers=tenant.headers(),
    )
    assert_error(r, 422, "window_too_large")
    r = await tenant.client.get(
        "/v1/availability/slots",
        params={"business_id": biz["id"], "start": iso(start), "end": iso(start - H)},
        headers=tenant.headers(),
    )
    assert_error(r, 422, "validation_error")
    r = await tenant.client.get(
        "/v1/availability/slots",
        params={"business_id": biz["id"], "start": "2030-01-01T00:00:00"},
        headers=tenant.headers(),
    )
    assert_error(r, 422, "validation_error")
    r = await tenant.client.get(
        "/v1/availability/slots",
        params={"business_id": biz["id"], "duration_minutes": "abc"},
        headers=tenant.headers(),
    )
    assert_error(r, 422, "validation_error")


async def test_unknown_meeting_class_is_422(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    r = await book(tenant, biz["id"], future_day() + 9 * H, meeting_class="nope")
    body = assert_error(r, 422, "validation_error")
    assert body["details"]["fields"][0]["field"] == "meeting_class"


async def test_limits_are_clamped_and_validated(tenant: Tenant) -> None:
    r = await tenant.client.get("/v1/bookings", params={"limit": 100000}, headers=tenant.headers())
    assert r.status_code == 200
    r = await tenant.client.get("/v1/bookings", params={"limit": 0}, headers=tenant.headers())
    assert_error(r, 422, "validation_error")
