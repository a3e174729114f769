"""Hostile input: every malformed request is a clear 4xx that changes nothing (§9).

Instants outside the accepted range, bodies nested too deep, huge numbers, NUL characters,
forged cursors and sub-minute meetings, on both stores.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import pytest

from tests.api.helpers import book, future_day, iso, key, make_business
from tests.api.test_errors import assert_error, count_bookings
from tests.conftest import Tenant

H = dt.timedelta(hours=1)

# The ends of the datetime range, and the ends of the accepted range (years 1900-2999).
EXTREME_INSTANTS = [
    "9999-12-31T22:00:00-05:00",
    "9999-12-31T23:00:00Z",
    "0001-01-01T00:30:00+01:00",
    "0001-01-01T00:00:00Z",
    "0999-06-01T00:00:00Z",
    "1899-12-31T23:59:59Z",
    "1900-01-01T00:30:00+01:00",
    "3000-01-01T00:00:00Z",
    "2999-12-31T23:00:00-05:00",
]


def fields_of(r: Any) -> list[dict[str, Any]]:
    fields: list[dict[str, Any]] = r.json()["details"]["fields"]
    return fields


# -- 1. instants: one accepted range, in the one instant type --------------------------


@pytest.mark.parametrize("instant", EXTREME_INSTANTS)
async def test_instant_outside_range_is_422_in_query_parameters(
    tenant: Tenant, instant: str
) -> None:
    biz = await make_business(tenant)
    bid = biz["id"]
    probes = [
        ("/v1/availability/slots", {"business_id": bid, "start": instant}),
        ("/v1/availability/slots", {"business_id": bid, "end": instant}),
        ("/v1/availability/check", {"business_id": bid, "start_time": instant}),
        ("/v1/bookings", {"start": instant}),
        ("/v1/bookings", {"updated_since": instant}),
        (f"/v1/businesses/{bid}/busy", {"start": instant}),
        ("/v1/audit-log", {"since": instant}),
        ("/v1/audit-log", {"until": instant}),
    ]
    for path, params in probes:
        r = await tenant.client.get(path, params=params, headers=tenant.headers())
        assert_error(r, 422, "validation_error")
        assert fields_of(r)[0]["location"] == "query", (path, r.text)


@pytest.mark.parametrize("instant", EXTREME_INSTANTS)
async def test_instant_outside_range_is_422_in_bodies(tenant: Tenant, instant: str) -> None:
    biz = await make_business(tenant)
    bid = biz["id"]
    ok = iso(future_day() + 9 * H)
    bodies: list[tuple[str, dict[str, Any]]] = [
        ("/v1/bookings", {"business_id": bid, "start_time": instant}),
        ("/v1/bookings", {"business_id": bid, "start_time": ok, "end_time": instant}),
        (f"/v1/businesses/{bid}/busy", {"start": instant, "end": ok}),
        (f"/v1/businesses/{bid}/busy", {"start": ok, "end": instant}),
        ("/v1/availability", {"business_id": bid, "window": {"start": instant, "end": ok}}),
        ("/v1/availability", {"business_id": bid, "window": {"start": ok, "end": instant}}),
    ]
    for path, body in bodies:
        r = await tenant.client.post(
            path, json=body, headers=tenant.headers(**{"Idempotency-Key": key()})
        )
        assert_error(r, 422, "validation_error")
    created = await book(tenant, bid, future_day() + 9 * H)
    assert created.status_code == 201, created.text
    booking_id = created.json()["data"]["id"]
    r = await tenant.client.post(
        f"/v1/bookings/{booking_id}/reschedule",
        json={"start_time": instant},
        headers=tenant.headers(**{"Idempotency-Key": key()}),
    )
    assert_error(r, 422, "validation_error")
    assert await count_bookings(tenant) == 1


@pytest.mark.parametrize(
    "start", ["2999-12-31T23:00:00Z", "2999-12-31T23:59:00+00:00", "1900-01-01T00:00:00Z"]
)
async def test_windows_at_the_ends_of_the_range_do_not_overflow(tenant: Tenant, start: str) -> None:
    """Accepted instants near the bounds: slot window, occupancy, holds and reschedule."""
    biz = await make_business(tenant)
    bid = biz["id"]
    r = await tenant.client.get(
        "/v1/availability/slots",
        params={"business_id": bid, "start": start},
        headers=tenant.headers(),
    )
    assert r.status_code in (200, 422), r.text
    r = await tenant.client.get(
        "/v1/availability/check",
        params={"business_id": bid, "start_time": start},
        headers=tenant.headers(),
    )
    assert r.status_code in (200, 422), r.text
    r = await tenant.client.post(
        "/v1/availability",
        json={
            "business_id": bid,
            "window": {"start": start, "end": "2999-12-31T23:59:59Z"}
            if start.startswith("2999")
            else {"start": start, "end": "1900-01-02T00:00:00Z"},
        },
        headers=tenant.headers(),
    )
    assert r.status_code in (409, 422), r.text
    r = await tenant.client.post(
        "/v1/bookings",
        json={"business_id": bid, "start_time": start},
        headers=tenant.headers(**{"Idempotency-Key": key()}),
    )
    assert r.status_code in (409, 422), r.text
    created = await book(tenant, bid, future_day() + 9 * H)
    booking_id = created.json()["data"]["id"]
    r = await tenant.client.post(
        f"/v1/bookings/{booking_id}/reschedule",
        json={"start_time": start},
        headers=tenant.headers(**{"Idempotency-Key": key()}),
    )
    assert r.status_code in (409, 422), r.text
    r = await tenant.client.post(
        f"/v1/businesses/{bid}/busy",
        json={"start": start, "end": "2999-12-31T23:59:59Z"}
        if start.startswith("2999")
        else {"start": start, "end": "1900-01-01T01:00:00Z"},
        headers=tenant.headers(),
    )
    assert r.status_code == 201, r.text
    # The business stays readable with busy time at the ends of the range.
    r = await tenant.client.get(f"/v1/businesses/{bid}/busy", headers=tenant.headers())
    assert r.status_code == 200, r.text
    r = await tenant.client.get(
        "/v1/availability/slots", params={"business_id": bid}, headers=tenant.headers()
    )
    assert r.status_code == 200, r.text


# -- 3 and 12. nesting depth and huge numbers -------------------------------------------


def nested(depth: int) -> bytes:
    return ("[" * depth + "]" * depth).encode()


def nested_metadata(depth: int) -> bytes:
    return b'{"metadata": {"k": ' + nested(depth) + b"}}"


@pytest.mark.parametrize("depth", [100, 500, 999, 1001, 5000, 100_000])
async def test_deeply_nested_bodies_are_422_with_or_without_idempotency_key(
    tenant: Tenant, depth: int
) -> None:
    biz = await make_business(tenant)
    created = await book(tenant, biz["id"], future_day() + 9 * H)
    booking = created.json()["data"]
    for headers in ({}, {"Idempotency-Key": key()}):
        for method, path, body in [
            ("POST", "/v1/bookings", nested(depth)),
            ("POST", "/v1/businesses", b'{"name": ' + nested(depth) + b"}"),
            ("PATCH", f"/v1/bookings/{booking['id']}", nested_metadata(depth)),
            ("POST", "/v1/availability", nested(depth)),
        ]:
            r = await tenant.client.request(
                method,
                path,
                content=body,
                headers=tenant.headers(
                    **headers,
                    **{"Content-Type": "application/json", "If-Match": '"1"'},
                ),
            )
            assert_error(r, 422, "validation_error")
            assert fields_of(r)[0]["type"] == "json_too_deep", r.text
    again = await tenant.client.get(f"/v1/bookings/{booking['id']}", headers=tenant.headers())
    assert again.json()["data"]["version"] == 1
    assert await count_bookings(tenant) == 1


async def test_nesting_the_schemas_need_is_accepted(tenant: Tenant) -> None:
    rules = {
        "working_hours": [{"days": ["mon"], "start": "09:00", "end": "17:00"}],
    }
    r = await tenant.client.post(
        "/v1/businesses",
        json={"name": "Nested", "timezone": "UTC", "rules": rules},
        headers=tenant.headers(**{"Idempotency-Key": key()}),
    )
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("digits", [4300, 4301, 10_000, 500_000])
async def test_huge_numbers_are_422(tenant: Tenant, digits: int) -> None:
    number = b"1" * digits
    for headers in ({}, {"Idempotency-Key": key()}):
        r = await tenant.client.post(
            "/v1/availability",
            content=b'{"business_id": "biz_x", "max_slots": ' + number + b"}",
            headers=tenant.headers(**headers, **{"Content-Type": "application/json"}),
        )
        assert_error(r, 422, "validation_error")
        assert fields_of(r)[0]["type"] == "json_number_too_long", r.text
        assert fields_of(r)[0]["field"] == "max_slots"


# -- 4. cursors -------------------------------------------------------------------------


def cursor_of(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


LIST_PATHS = [
    "/v1/businesses",
    "/v1/bookings",
    "/v1/meeting-classes",
    "/v1/agents",
    "/v1/audit-log",
    "/v1/webhook-endpoints",
]


@pytest.mark.parametrize("path", LIST_PATHS)
@pytest.mark.parametrize("depth", [50, 999, 1001, 5000])
async def test_cursor_nested_deep_is_422(tenant: Tenant, path: str, depth: int) -> None:
    r = await tenant.client.get(
        path, params={"cursor": cursor_of(nested(depth))}, headers=tenant.headers()
    )
    assert_error(r, 422, "validation_error")
    assert fields_of(r)[0]["field"] == "cursor"


@pytest.mark.parametrize(
    "parts",
    [
        ["2030-01-01T09:00:00", "bk_x"],  # no offset
        ["9999-12-31T23:59:59+00:00", "bk_x"],
        ["not a time", "bk_x"],
        ["2030-01-01T09:00:00+00:00", 5],
    ],
)
async def test_bookings_cursor_with_a_bad_time_is_422(tenant: Tenant, parts: list[Any]) -> None:
    biz = await make_business(tenant)
    await book(tenant, biz["id"], future_day() + 9 * H)
    for sort in ("start_time", "updated_at"):
        r = await tenant.client.get(
            "/v1/bookings",
            params={"cursor": cursor_of(json.dumps(parts).encode()), "sort": sort},
            headers=tenant.headers(),
        )
        assert_error(r, 422, "validation_error")
        assert fields_of(r)[0]["field"] == "cursor"


# -- 5. NUL characters ------------------------------------------------------------------


async def test_nul_in_any_string_of_a_body_is_422(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    bid = biz["id"]
    start = future_day() + 9 * H
    booking = {"business_id": bid, "start_time": iso(start), "end_time": iso(start + H)}
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("POST", "/v1/businesses", {"name": "a\x00b", "timezone": "UTC"}, "name"),
        ("POST", "/v1/bookings", {**booking, "title": "x\x00"}, "title"),
        ("POST", "/v1/bookings", {**booking, "metadata": {"k\x00": "v"}}, "metadata"),
        ("POST", "/v1/bookings", {**booking, "metadata": {"k": "\x00"}}, "metadata.k"),
        ("POST", "/v1/bookings", {**booking, "business_id": "biz_\x00"}, "business_id"),
        (
            "POST",
            "/v1/agents",
            {"name": "a", "scopes": [], "allowed_business_ids": [f"{bid}\x00"]},
            "allowed_business_ids.0",
        ),
        (
            "POST",
            f"/v1/businesses/{bid}/busy",
            {"start": iso(start), "end": iso(start + H), "title": "\x00"},
            "title",
        ),
    ]
    for method, path, body, field in cases:
        r = await tenant.client.request(
            method, path, json=body, headers=tenant.headers(**{"Idempotency-Key": key()})
        )
        assert_error(r, 422, "validation_error")
        assert fields_of(r)[0]["field"] == field, r.text
        assert fields_of(r)[0]["type"] == "string_nul", r.text
    assert await count_bookings(tenant) == 0
    agents = await tenant.client.get("/v1/agents", headers=tenant.headers())
    assert agents.json()["data"] == []


async def test_nul_in_path_ids_is_404_and_in_query_is_422(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    for path in [
        "/v1/bookings/bk_x%00",
        f"/v1/businesses/{biz['id']}%00",
        "/v1/agents/agt_%00x",
        "/v1/holds/hld_%00",
        f"/v1/businesses/{biz['id']}/busy/bsy_%00",
    ]:
        r = await tenant.client.get(path, headers=tenant.headers())
        assert_error(r, 404, "not_found")
    r = await tenant.client.delete(f"/v1/businesses/{biz['id']}%00", headers=tenant.headers())
    assert_error(r, 404, "not_found")
    for params in [
        {"business_id": "biz_\x00"},
        {"customer_email": "a\x00@example.com"},
        {"status": "confirmed\x00"},
    ]:
        r = await tenant.client.get("/v1/bookings", params=params, headers=tenant.headers())
        assert_error(r, 422, "validation_error")
        assert fields_of(r)[0]["location"] == "query"
    r = await tenant.client.get(f"/v1/businesses/{biz['id']}", headers=tenant.headers())
    assert r.status_code == 200


async def test_nul_in_a_form_field_is_422(tenant: Tenant) -> None:
    r = await tenant.client.post(
        "/v1/businesses",
        content=b"name=a%00b&timezone=UTC",
        headers=tenant.headers(**{"Content-Type": "application/x-www-form-urlencoded"}),
    )
    assert_error(r, 422, "validation_error")
    assert fields_of(r)[0] == {
        "field": "name",
        "location": "body",
        "type": "string_nul",
        "message": "must not contain NUL characters",
    }


# -- 7. minimum duration ----------------------------------------------------------------


@pytest.mark.parametrize("seconds", [1, 30, 59])
async def test_meetings_shorter_than_a_minute_are_422(tenant: Tenant, seconds: int) -> None:
    biz = await make_business(tenant)
    start = future_day() + 9 * H
    end = start + dt.timedelta(seconds=seconds)
    r = await tenant.client.post(
        "/v1/bookings",
        json={"business_id": biz["id"], "start_time": iso(start), "end_time": iso(end)},
        headers=tenant.headers(**{"Idempotency-Key": key()}),
    )
    assert_error(r, 422, "validation_error")
    r = await tenant.client.get(
        "/v1/availability/check",
        params={"business_id": biz["id"], "start_time": iso(start), "end_time": iso(end)},
        headers=tenant.headers(),
    )
    assert_error(r, 422, "validation_error")
    created = await book(tenant, biz["id"], start + 2 * H)
    booking_id = created.json()["data"]["id"]
    r = await tenant.client.post(
        f"/v1/bookings/{booking_id}/reschedule",
        json={"start_time": iso(start), "end_time": iso(end)},
        headers=tenant.headers(**{"Idempotency-Key": key()}),
    )
    assert_error(r, 422, "validation_error")
    assert await count_bookings(tenant) == 1
    again = await tenant.client.get(f"/v1/bookings/{booking_id}", headers=tenant.headers())
    assert again.json()["data"]["version"] == 1


async def test_a_one_minute_meeting_is_bookable(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    r = await book(tenant, biz["id"], future_day() + 9 * H, minutes=1)
    assert r.status_code == 201, r.text


# -- 6. limits fit their columns --------------------------------------------------------


async def test_a_cancel_reason_of_the_full_length_is_stored(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    created = await book(tenant, biz["id"], future_day() + 9 * H)
    booking_id = created.json()["data"]["id"]
    reason = "r" * 1000
    r = await tenant.client.post(
        f"/v1/bookings/{booking_id}/cancel",
        json={"reason": reason},
        headers=tenant.headers(**{"Idempotency-Key": key()}),
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["cancellation_reason"] == reason
    audit = await tenant.client.get(
        "/v1/audit-log",
        params={"booking_id": booking_id, "action": "booking_cancelled"},
        headers=tenant.headers(),
    )
    assert [row["reason"] for row in audit.json()["data"]] == [reason]
    r = await tenant.client.post(
        f"/v1/bookings/{booking_id}/cancel",
        json={"reason": reason + "r"},
        headers=tenant.headers(**{"Idempotency-Key": key()}),
    )
    assert_error(r, 422, "validation_error")
