"""Idempotency keys exactly as §1.5."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import update

from slotguard.store.models import IdempotencyKey
from tests.api.helpers import future_day, iso, key, make_business
from tests.api.test_errors import assert_error
from tests.conftest import Tenant

H = dt.timedelta(hours=1)


def booking_body(business_id: str, start: dt.datetime) -> dict[str, str]:
    return {"business_id": business_id, "start_time": iso(start), "end_time": iso(start + H)}


async def test_replay_is_byte_identical(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    body = booking_body(biz["id"], future_day() + 9 * H)
    k = key()
    first = await tenant.client.post(
        "/v1/bookings", json=body, headers=tenant.headers(**{"Idempotency-Key": k})
    )
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    # Same JSON value, different key order and whitespace.
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=3).encode()
    again = await tenant.client.post(
        "/v1/bookings",
        content=reordered,
        headers=tenant.headers(**{"Idempotency-Key": k, "Content-Type": "application/json"}),
    )
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert again.headers["ETag"] == first.headers["ETag"]
    assert again.headers["Location"] == first.headers["Location"]
    r = await tenant.client.get("/v1/bookings", headers=tenant.headers())
    assert len(r.json()["data"]) == 1


async def test_same_key_other_body_is_conflict(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    k = key()
    start = future_day() + 9 * H
    r = await tenant.client.post(
        "/v1/bookings",
        json=booking_body(biz["id"], start),
        headers=tenant.headers(**{"Idempotency-Key": k}),
    )
    assert r.status_code == 201
    r = await tenant.client.post(
        "/v1/bookings",
        json=booking_body(biz["id"], start + 2 * H),
        headers=tenant.headers(**{"Idempotency-Key": k}),
    )
    assert_error(r, 409, "idempotency_key_conflict")
    # The same key on another path is another request too.
    bid = (await tenant.client.get("/v1/bookings", headers=tenant.headers())).json()["data"][0][
        "id"
    ]
    r = await tenant.client.post(
        f"/v1/bookings/{bid}/cancel",
        json={"reason": "x"},
        headers=tenant.headers(**{"Idempotency-Key": k}),
    )
    assert_error(r, 409, "idempotency_key_conflict")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/v1/bookings"),
        ("post", "/v1/bookings/bk_x/cancel"),
        ("post", "/v1/bookings/bk_x/reschedule"),
        ("patch", "/v1/bookings/bk_x"),
    ],
)
async def test_key_required(tenant: Tenant, method: str, path: str) -> None:
    r = await tenant.client.request(method, path, json={}, headers=tenant.headers())
    assert_error(r, 400, "missing_idempotency_key")


@pytest.mark.parametrize("bad", ["", "x" * 256, "caf\u00e9", "tab\there"])
async def test_invalid_keys(tenant: Tenant, bad: str) -> None:
    biz = await make_business(tenant)
    r = await tenant.client.post(
        "/v1/bookings",
        json=booking_body(biz["id"], future_day() + 9 * H),
        headers=[
            ("Authorization", f"Bearer {tenant.key}"),
            ("Idempotency-Key", bad.encode("utf-8")),
        ],  # type: ignore[list-item]
    )
    assert_error(r, 400, "invalid_idempotency_key")
    assert (await tenant.client.get("/v1/bookings", headers=tenant.headers())).json()["data"] == []


async def test_failure_releases_key(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    start = future_day() + 9 * H
    blocker = await tenant.client.post(
        "/v1/bookings",
        json=booking_body(biz["id"], start),
        headers=tenant.headers(**{"Idempotency-Key": key()}),
    )
    k = key()
    r = await tenant.client.post(
        "/v1/bookings",
        json=booking_body(biz["id"], start),
        headers=tenant.headers(**{"Idempotency-Key": k}),
    )
    assert_error(r, 409, "conflict")
    await tenant.client.post(
        f"/v1/bookings/{blocker.json()['data']['id']}/cancel",
        headers=tenant.headers(**{"Idempotency-Key": key()}),
    )
    r = await tenant.client.post(
        "/v1/bookings",
        json=booking_body(biz["id"], start),
        headers=tenant.headers(**{"Idempotency-Key": k}),
    )
    assert r.status_code == 201
    assert "Idempotent-Replayed" not in r.headers


async def test_in_progress_then_stale_takeover(tenant: Tenant) -> None:
    """A key left in progress (a crashed process) blocks for 60 s, then is reclaimable."""
    biz = await make_business(tenant)
    body = booking_body(biz["id"], future_day() + 9 * H)
    k = key()
    from slotguard.api.idempotency import fingerprint

    now = dt.datetime.now(dt.UTC)
    async with tenant.store.db.write() as s:
        s.add(
            IdempotencyKey(
                account_id=tenant.account_id,
                key=k,
                fingerprint=fingerprint("POST", "/v1/bookings", json.dumps(body).encode()),
                state="in_progress",
                owner_token="dead",
                locked_at=now,
                created_at=now,
            )
        )
    r = await tenant.client.post(
        "/v1/bookings", json=body, headers=tenant.headers(**{"Idempotency-Key": k})
    )
    assert_error(r, 409, "idempotency_in_progress")
    assert r.headers["Retry-After"] == "1"
    async with tenant.store.db.write() as s:
        await s.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.account_id == tenant.account_id, IdempotencyKey.key == k)
            .values(locked_at=now - dt.timedelta(seconds=61))
        )
    r = await tenant.client.post(
        "/v1/bookings", json=body, headers=tenant.headers(**{"Idempotency-Key": k})
    )
    assert r.status_code == 201, r.text


async def test_expired_key_executes_again_and_purge(tenant: Tenant) -> None:
    from slotguard.effects.worker import purge_idempotency_keys

    biz = await make_business(tenant)
    k = key()
    start = future_day() + 9 * H
    r = await tenant.client.post(
        "/v1/bookings",
        json=booking_body(biz["id"], start),
        headers=tenant.headers(**{"Idempotency-Key": k}),
    )
    assert r.status_code == 201
    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=25)
    async with tenant.store.db.write() as s:
        await s.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.account_id == tenant.account_id, IdempotencyKey.key == k)
            .values(completed_at=old)
        )
    # Past retention, the same key is a new request: here, a different slot.
    r = await tenant.client.post(
        "/v1/bookings",
        json=booking_body(biz["id"], start + 2 * H),
        headers=tenant.headers(**{"Idempotency-Key": k}),
    )
    assert r.status_code == 201 and "Idempotent-Replayed" not in r.headers
    async with tenant.store.db.write() as s:
        await s.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.account_id == tenant.account_id, IdempotencyKey.key == k)
            .values(completed_at=old)
        )
    assert await purge_idempotency_keys(tenant.store.db, dt.datetime.now(dt.UTC)) >= 1
    async with tenant.store.db.read() as s:
        assert await s.get(IdempotencyKey, (tenant.account_id, k)) is None


async def test_keys_are_scoped_per_account(tenant: Tenant, store, app_client) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import new_tenant

    other = await new_tenant(store, app_client)
    k = key()
    for t in (tenant, other):
        biz = await make_business(t)
        r = await t.client.post(
            "/v1/bookings",
            json=booking_body(biz["id"], future_day() + 9 * H),
            headers=t.headers(**{"Idempotency-Key": k}),
        )
        assert r.status_code == 201 and "Idempotent-Replayed" not in r.headers


async def test_optional_key_on_other_posts(tenant: Tenant) -> None:
    k = key()
    body = {"name": "Shop", "timezone": "Europe/Paris"}
    a = await tenant.client.post(
        "/v1/businesses", json=body, headers=tenant.headers(**{"Idempotency-Key": k})
    )
    b = await tenant.client.post(
        "/v1/businesses", json=body, headers=tenant.headers(**{"Idempotency-Key": k})
    )
    assert a.status_code == b.status_code == 201
    assert b.headers["Idempotent-Replayed"] == "true" and a.content == b.content
    r = await tenant.client.get("/v1/businesses", headers=tenant.headers())
    assert len(r.json()["data"]) == 1
