"""The outbox worker against a real HTTP receiver on 127.0.0.1, on both stores.

Retries are driven by a clock the test moves (the real schedule waits up to 10 hours);
everything else is real: the database, the claim and lease queries, the HTTP delivery,
Standard Webhooks signatures verified with the reference `standardwebhooks` library.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from typing import Any

import pytest
from sqlalchemy import update
from standardwebhooks import Webhook

from slotguard.config import Settings
from slotguard.effects import worker as worker_module
from slotguard.effects.email import MemoryMailSender
from slotguard.effects.webhooks import MAX_ATTEMPTS
from slotguard.store import outbox_repo
from slotguard.store.db import Database
from slotguard.store.models import Hold, Reservation
from tests.conftest import Tenant

from .conftest import (
    Clock,
    HttpReceiver,
    book,
    deliveries,
    future_day,
    iso,
    make_business,
    make_endpoint,
    make_worker,
    messages,
)

H = dt.timedelta(hours=1)


def verify(secret: str, request: Any) -> dict[str, Any]:
    """Verify like a receiver would; the library checks the timestamp against real time."""
    payload: dict[str, Any] = Webhook(secret).verify(request.body, request.headers)
    return payload


def verify_signature_only(secret: str, request: Any) -> None:
    """The signature check alone, for deliveries stamped by a test clock (future times)."""
    stamp = dt.datetime.fromtimestamp(int(request.headers["webhook-timestamp"]), dt.UTC)
    expected = Webhook(secret).sign(request.headers["webhook-id"], stamp, request.body.decode())
    assert expected in request.headers["webhook-signature"].split(" ")


async def _setup(
    t: Tenant, receiver: HttpReceiver, **endpoint: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    biz = await make_business(t, email=None)  # no owner mail: only what the test books
    ep = await make_endpoint(t, receiver.url(), **endpoint)
    return biz, ep


async def test_delivers_signed_event_once(otenant: Tenant, receiver: HttpReceiver) -> None:
    biz, ep = await _setup(otenant, receiver, events=["booking.created"])
    b = await book(otenant, biz["id"], future_day() + 9 * H)
    async with make_worker(otenant.store.db) as worker:
        assert await worker.run_once() == 2  # the webhook and the mail
        assert await worker.run_once() == 0
    assert len(receiver.requests) == 1
    req = receiver.requests[0]
    payload = verify(ep["secret"], req)
    assert payload["type"] == "booking.created" and payload["data"]["id"] == b["id"]
    assert req.headers["webhook-id"] == payload["id"]
    assert req.headers["content-type"] == "application/json"
    [row] = await messages(otenant.store.db, kind="webhook")
    assert row.status == "delivered" and row.attempts == 1 and row.locked_by is None
    assert row.delivered_at is not None
    [log] = await deliveries(otenant.store.db, ep["id"])
    assert log.succeeded and log.status_code == 200 and log.attempt == 1
    assert log.event_id == payload["id"] and log.outbox_id == row.id


async def test_failing_receiver_sees_retries_with_the_same_webhook_id(
    otenant: Tenant, receiver: HttpReceiver
) -> None:
    failures = 3
    receiver.behaviours[:] = [500, (503, b"busy"), 429]
    biz, ep = await _setup(otenant, receiver, events=["booking.created"])
    await book(otenant, biz["id"], future_day() + 9 * H)
    clock = Clock()
    async with make_worker(otenant.store.db, clock=clock) as worker:
        gaps = []
        for attempt in range(1, failures + 2):
            assert await worker.run_once() >= 1, f"attempt {attempt} not claimed"
            [row] = await messages(otenant.store.db, kind="webhook")
            assert row.attempts == attempt
            if row.status == "delivered":
                break
            assert row.status == "pending" and "receiver answered" in (row.last_error or "")
            # Not due before its time...
            assert await worker.run_once() == 0
            gaps.append((row.next_attempt_at - clock.now).total_seconds())
            clock.set(row.next_attempt_at + dt.timedelta(seconds=1))
    assert row.status == "delivered"
    # Roughly 5 s, 5 min, 30 min (±10 % jitter).
    for gap, base in zip(gaps, (5, 300, 1800), strict=True):
        assert 0.89 * base <= gap <= 1.11 * base, gaps
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    assert len(receiver.requests) == failures + 1 and len(ids) == 1
    bodies = {r.body for r in receiver.requests}
    assert len(bodies) == 1  # the same snapshot every time
    for r in receiver.requests:
        verify_signature_only(ep["secret"], r)
    log = await deliveries(otenant.store.db, ep["id"])
    assert [(d.attempt, d.succeeded, d.status_code) for d in log] == [
        (1, False, 500), (2, False, 503), (3, False, 429), (4, True, 200),
    ]  # fmt: skip
    r = await otenant.client.get(
        f"/v1/webhook-endpoints/{ep['id']}/deliveries", headers=otenant.headers()
    )
    listed = r.json()["data"]
    assert [d["attempt"] for d in listed] == [4, 3, 2, 1]  # newest first
    assert {d["event_id"] for d in listed} == ids
    assert listed[1]["response_snippet"] == "ok" and listed[2]["response_snippet"] == "busy"


async def test_dead_after_the_last_attempt_then_retry_dead(
    otenant: Tenant, receiver: HttpReceiver
) -> None:
    receiver.behaviours[:] = [500] * MAX_ATTEMPTS
    biz, _ep = await _setup(otenant, receiver, events=["booking.created"])
    await book(otenant, biz["id"], future_day() + 9 * H, customer_email=None)
    clock = Clock()
    async with make_worker(otenant.store.db, clock=clock) as worker:
        for _ in range(MAX_ATTEMPTS):
            assert await worker.run_once() == 1
            [row] = await messages(otenant.store.db, kind="webhook")
            clock.set(row.next_attempt_at + dt.timedelta(seconds=1))
        assert row.status == "dead" and row.attempts == MAX_ATTEMPTS
        assert await worker.run_once() == 0
        r = await otenant.client.get("/v1/outbox/stats", headers=otenant.headers())
        assert r.json()["data"]["webhook"]["dead"] == 1
        # An operator revives it: a fresh set of attempts, delivered at once.
        async with otenant.store.db.write() as s:
            assert await outbox_repo.retry_dead(s, now=clock(), account_id=otenant.account_id) == 1
        assert await worker.run_once() == 1
    [row] = await messages(otenant.store.db, kind="webhook")
    assert row.status == "delivered" and row.attempts == 1
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1
    assert len(receiver.requests) == MAX_ATTEMPTS + 1


async def test_gone_disables_the_endpoint(otenant: Tenant, receiver: HttpReceiver) -> None:
    receiver.behaviours[:] = [410]
    biz, ep = await _setup(otenant, receiver)
    b = await book(otenant, biz["id"], future_day() + 9 * H, customer_email=None)
    async with make_worker(otenant.store.db) as worker:
        assert await worker.run_once() == 1
    [row] = await messages(otenant.store.db, kind="webhook")
    assert row.status == "dead" and "410" in (row.last_error or "")
    r = await otenant.client.get(f"/v1/webhook-endpoints/{ep['id']}", headers=otenant.headers())
    data = r.json()["data"]
    assert data["enabled"] is False and "410" in data["disabled_reason"]
    # Later events are not queued for it; re-enabling resumes.
    await otenant.client.post(
        f"/v1/bookings/{b['id']}/cancel",
        json={},
        headers=otenant.headers(**{"Idempotency-Key": "c1"}),
    )
    assert len(await messages(otenant.store.db, kind="webhook")) == 1
    r = await otenant.client.patch(
        f"/v1/webhook-endpoints/{ep['id']}", json={"enabled": True}, headers=otenant.headers()
    )
    assert r.json()["data"]["enabled"] is True and r.json()["data"]["disabled_reason"] is None


async def test_lease_of_a_dead_worker_runs_out_then_another_delivers(
    otenant: Tenant, receiver: HttpReceiver
) -> None:
    biz, _ep = await _setup(otenant, receiver)
    await book(otenant, biz["id"], future_day() + 9 * H, customer_email=None)
    clock = Clock()
    db = otenant.store.db
    # Worker A claims and "dies" (its delivery never runs).
    async with db.write() as s:
        claimed = await outbox_repo.claim_due(
            s,
            now=clock(),
            limit=10,
            owner="wrk_dead",
            lease_until=clock() + dt.timedelta(seconds=60),
        )
    assert len(claimed) == 1
    async with make_worker(db, clock=clock, lease_seconds=60) as b:
        assert await b.run_once() == 0  # leased: invisible
        clock.advance(59)
        assert await b.run_once() == 0
        clock.advance(2)
        assert await b.run_once() == 1
    [row] = await messages(db, kind="webhook")
    assert row.status == "delivered" and row.attempts == 2 and row.locked_by is None
    assert len(receiver.requests) == 1
    # The dead worker's late write-back does nothing: it no longer holds the lease.
    async with db.write() as s:
        late = outbox_repo.Outcome(row.id, "pending", clock(), "late")
        assert not await outbox_repo.record_outcome(s, late, owner="wrk_dead", now=clock())
    assert (await messages(db, kind="webhook"))[0].status == "delivered"


async def test_concurrent_workers_never_claim_a_message_twice(
    otenant: Tenant, receiver: HttpReceiver
) -> None:
    biz, _ep = await _setup(otenant, receiver, events=["booking.created"])
    start = future_day() + 9 * H
    n = 40
    for i in range(n):
        await book(otenant, biz["id"], start + i * H, customer_email=None)
    # Each worker with its own engines, as separate processes would have.
    dbs = [Database.connect(otenant.store.url, pool_size=2) for _ in range(3)]
    async with (
        make_worker(dbs[0], batch_size=7) as w1,
        make_worker(dbs[1], batch_size=7) as w2,
        make_worker(dbs[2], batch_size=7) as w3,
    ):

        async def drain(w: Any) -> int:
            total = 0
            while (got := await w.run_once()) > 0:
                total += got
            return total

        try:
            counts = await asyncio.gather(drain(w1), drain(w2), drain(w3))
        finally:
            for db in dbs:
                await db.dispose()
    assert sum(counts) == n
    ids = [r.headers["webhook-id"] for r in receiver.requests]
    assert len(ids) == n and len(set(ids)) == n
    print("claims per worker:", counts)
    assert all(
        r.status == "delivered" and r.attempts == 1 for r in await messages(otenant.store.db)
    )


async def test_stop_releases_what_cannot_finish(otenant: Tenant, receiver: HttpReceiver) -> None:
    receiver.behaviours[:] = ["hang"]
    biz, ep = await _setup(otenant, receiver)
    await book(otenant, biz["id"], future_day() + 9 * H, customer_email=None)
    stop = asyncio.Event()
    async with make_worker(
        otenant.store.db, shutdown_grace_seconds=0.3, poll_interval_ms=20
    ) as worker:
        task = asyncio.create_task(worker.run(stop))
        for _ in range(200):
            if receiver.requests:
                break
            await asyncio.sleep(0.02)
        assert receiver.requests, "the delivery never started"
        [row] = await messages(otenant.store.db, kind="webhook")
        assert row.locked_by == worker.worker_id and row.attempts == 1
        t0 = time.monotonic()
        stop.set()
        await asyncio.wait_for(task, 5)
        assert time.monotonic() - t0 < 2
    [row] = await messages(otenant.store.db, kind="webhook")
    # Released unattempted: due now, attempt not counted, no log row.
    assert row.status == "pending" and row.locked_by is None and row.attempts == 0
    assert row.next_attempt_at <= dt.datetime.now(dt.UTC)
    assert await deliveries(otenant.store.db, ep["id"]) == []
    async with make_worker(otenant.store.db) as worker:
        assert await worker.run_once() == 1
    [row] = await messages(otenant.store.db, kind="webhook")
    assert row.status == "delivered"


async def test_stop_lets_a_quick_delivery_finish(otenant: Tenant, receiver: HttpReceiver) -> None:
    biz, _ep = await _setup(otenant, receiver)
    stop = asyncio.Event()
    async with make_worker(otenant.store.db, poll_interval_ms=20) as worker:
        task = asyncio.create_task(worker.run(stop))
        t0 = time.monotonic()
        await book(otenant, biz["id"], future_day() + 9 * H, customer_email=None)
        stop.set()
        await asyncio.wait_for(task, 5)
    rows = await messages(otenant.store.db, kind="webhook")
    # Either it was claimed (and then finished) before the stop, or it is still waiting.
    assert [r.status for r in rows] in (["delivered"], ["pending"])
    assert all(r.locked_by is None for r in rows)
    assert time.monotonic() - t0 < 5


async def test_private_target_refused_at_delivery_time(
    otenant: Tenant, receiver: HttpReceiver
) -> None:
    # The endpoint was accepted (say its name resolved to a public address then); at delivery
    # time it points at 127.0.0.1, and a worker without the development switch refuses it.
    biz, ep = await _setup(otenant, receiver)
    await book(otenant, biz["id"], future_day() + 9 * H, customer_email=None)
    async with make_worker(otenant.store.db, allow_private=False) as worker:
        assert await worker.run_once() == 1
    assert receiver.requests == []
    [row] = await messages(otenant.store.db, kind="webhook")
    assert row.status == "pending" and row.attempts == 1
    assert "refused target" in (row.last_error or "") and "loopback" in (row.last_error or "")
    [log] = await deliveries(otenant.store.db, ep["id"])
    assert not log.succeeded and log.status_code is None


async def test_rotation_signs_with_both_secrets_during_grace(
    otenant: Tenant, receiver: HttpReceiver
) -> None:
    biz, ep = await _setup(otenant, receiver)
    r = await otenant.client.post(
        f"/v1/webhook-endpoints/{ep['id']}/rotate-secret",
        json={"grace_period_seconds": 3600},
        headers=otenant.headers(),
    )
    assert r.status_code == 200, r.text
    new_secret = r.json()["data"]["secret"]
    assert new_secret != ep["secret"] and new_secret.startswith("whsec_")
    await book(otenant, biz["id"], future_day() + 9 * H, customer_email=None)
    async with make_worker(otenant.store.db) as worker:
        await worker.run_once()
    [req] = receiver.requests
    assert len(req.headers["webhook-signature"].split(" ")) == 2
    verify(new_secret, req)
    verify(ep["secret"], req)
    r = await otenant.client.post(
        f"/v1/webhook-endpoints/{ep['id']}/rotate-secret",
        json={"grace_period_seconds": 0},
        headers=otenant.headers(),
    )
    newest = r.json()["data"]["secret"]
    assert r.json()["data"]["previous_secret_expires_at"] is None
    b = await book(otenant, biz["id"], future_day(11) + 9 * H, customer_email=None)
    async with make_worker(otenant.store.db) as worker:
        await worker.run_once()
    last = receiver.requests[-1]
    assert json.loads(last.body)["data"]["id"] == b["id"]
    assert len(last.headers["webhook-signature"].split(" ")) == 1
    verify(newest, last)


async def test_running_worker_delivers_within_a_second(
    otenant: Tenant, receiver: HttpReceiver
) -> None:
    biz, _ep = await _setup(otenant, receiver, events=["booking.created"])
    stop = asyncio.Event()
    async with make_worker(otenant.store.db) as worker:
        task = asyncio.create_task(worker.run(stop))
        try:
            delays = []
            for i in range(5):
                t0 = time.monotonic()
                await book(otenant, biz["id"], future_day() + (9 + i) * H, customer_email=None)
                while len(receiver.requests) < i + 1:
                    assert time.monotonic() - t0 < 5, "webhook did not arrive"
                    await asyncio.sleep(0.005)
                delays.append(time.monotonic() - t0)
        finally:
            stop.set()
            await task
    assert max(delays) < 1.0, delays
    assert worker.delivered == 5


async def test_embedded_worker_delivers_and_reports_expired_holds(
    otenant: Tenant, receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`worker.run` as `serve` embeds it: outbox delivery and the hold sweeper together."""
    monkeypatch.setattr(worker_module, "SWEEP_HOLDS_EVERY_S", 0.2)
    biz, ep = await _setup(otenant, receiver, events=["booking.created", "hold.expired"])
    settings = Settings.model_validate(
        {"DATABASE_URL": otenant.store.url, "SLOTGUARD_ALLOW_PRIVATE_WEBHOOKS": True}
    )
    stop = asyncio.Event()
    task = asyncio.create_task(
        worker_module.run(otenant.store.db, stop, settings=settings, mailer=MemoryMailSender())
    )

    async def arrived(event_type: str) -> dict[str, Any]:
        for _ in range(250):
            for req in receiver.requests:
                body: dict[str, Any] = json.loads(req.body)
                if body["type"] == event_type:
                    verify(ep["secret"], req)
                    return body
            await asyncio.sleep(0.02)
        raise AssertionError(f"no {event_type} webhook arrived")

    try:
        start = future_day() + 9 * H
        b = await book(otenant, biz["id"], start, customer_email=None)
        assert (await arrived("booking.created"))["data"]["id"] == b["id"]
        r = await otenant.client.post(
            "/v1/availability",
            json={"business_id": biz["id"], "duration_minutes": 30, "ttl_seconds": 30,
                  "window": {"start": iso(start + H), "end": iso(start + 2 * H)}},
            headers=otenant.headers(),
        )  # fmt: skip
        assert r.status_code == 200, r.text
        hold_id = r.json()["data"]["hold_id"]
        past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        async with otenant.store.db.write() as s:
            await s.execute(update(Hold).where(Hold.id == hold_id).values(expires_at=past))
            await s.execute(
                update(Reservation).where(Reservation.hold_id == hold_id).values(expires_at=past)
            )
        expired = await arrived("hold.expired")
        assert expired["data"]["hold_id"] == hold_id and expired["data"]["status"] == "expired"
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
