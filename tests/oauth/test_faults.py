"""Google and Microsoft under faults, through the real engine and outbox against the served
fakes: dead cursors (410 → full resync into a new copy), throttling (Retry-After, backoff,
≤4 requests in flight per mailbox, no starving), and bad answers (5xx storms, malformed
JSON, a hanging token endpoint): status and last_error set, the last good copy kept, the
pending write kept, the worker never stopped."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

from sqlalchemy import select, update

from slotguard.calendars.base import remote_identity
from slotguard.store import oauth_repo
from slotguard.store.models import OutboxMessage
from tests.api.helpers import book, future_day, iso, make_business
from tests.conftest import Store, Tenant
from tests.fakes.google import GOOGLE_ERRORS
from tests.oauth.conftest import Served
from tests.oauth.engine import (
    H,
    booking_row,
    calendar_row,
    connect,
    deliver,
    slot_starts,
    sync_once,
)


async def google_calendar(api: Tenant, served: Served, user: str, role: str = "both") -> Any:
    refresh = served.google.add_user(user)
    biz = await make_business(api)
    r = await connect(api, biz["id"], provider="google", role=role, refresh_token=refresh)
    assert r.status_code == 201, r.text
    return biz, r.json()["data"]


async def graph_calendar(api: Tenant, served: Served, user: str, role: str = "both") -> Any:
    refresh = served.graph.add_user(user)
    biz = await make_business(api)
    r = await connect(api, biz["id"], provider="microsoft", role=role, refresh_token=refresh)
    assert r.status_code == 201, r.text
    return biz, r.json()["data"]


async def busy_of(api: Tenant, biz_id: str, cal_id: str, day: dt.datetime) -> list[Any]:
    r = await api.client.get(
        f"/v1/businesses/{biz_id}/calendars/{cal_id}/busy",
        params={"start": iso(day), "end": iso(day + 24 * H)},
        headers=api.headers(),
    )
    assert r.status_code == 200, r.text
    data: list[Any] = r.json()["data"]
    return data


# -- dead cursors ---------------------------------------------------------------------------


async def test_google_410_full_resync_into_a_new_copy(
    api: Tenant, served: Served, store: Store
) -> None:
    google = served.google
    biz, cal = await google_calendar(api, served, "o@example.com")
    day = future_day()
    old = google.add_event("o@example.com", start=day + 9 * H, end=day + 10 * H)
    assert await sync_once(store.db, served.settings, cal["id"]) == "synced"
    generation = (await calendar_row(store.db, cal["id"])).copy_generation
    google.delete_event("o@example.com", old["id"])
    google.add_event("o@example.com", start=day + 11 * H, end=day + 12 * H)
    google.invalidate_sync_tokens("o@example.com")
    assert await sync_once(store.db, served.settings, cal["id"]) == "synced"
    lists = google.calls("list")
    assert "syncToken" in lists[-2].query  # refused with 410 fullSyncRequired
    assert "timeMin" in lists[-1].query and "syncToken" not in lists[-1].query
    row = await calendar_row(store.db, cal["id"])
    assert row.copy_generation == generation + 1 and row.status == "active"
    assert await busy_of(api, biz["id"], cal["id"], day) == [
        {"start": iso(day + 11 * H), "end": iso(day + 12 * H)}
    ]
    # The next sync is incremental again, on the new token.
    assert await sync_once(store.db, served.settings, cal["id"]) == "synced"
    assert "syncToken" in google.calls("list")[-1].query


async def test_graph_410_full_resync_into_a_new_copy(
    api: Tenant, served: Served, store: Store
) -> None:
    graph = served.graph
    biz, cal = await graph_calendar(api, served, "o@contoso.example")
    day = future_day()
    old = graph.add_event("o@contoso.example", start=day + 9 * H, end=day + 10 * H)
    assert await sync_once(store.db, served.settings, cal["id"]) == "synced"
    # Delta round: a cancelled event and a removed one.
    graph.delete_event(old["id"])
    kept = graph.add_event("o@contoso.example", start=day + 13 * H, end=day + 14 * H)
    assert await sync_once(store.db, served.settings, cal["id"]) == "synced"
    assert await busy_of(api, biz["id"], cal["id"], day) == [
        {"start": iso(day + 13 * H), "end": iso(day + 14 * H)}
    ]
    generation = (await calendar_row(store.db, cal["id"])).copy_generation
    graph.update_event(kept["id"], isCancelled=True)
    graph.add_event("o@contoso.example", start=day + 15 * H, end=day + 16 * H)
    graph.invalidate_delta_tokens()
    assert await sync_once(store.db, served.settings, cal["id"]) == "synced"
    row = await calendar_row(store.db, cal["id"])
    assert row.copy_generation == generation + 1
    assert await busy_of(api, biz["id"], cal["id"], day) == [
        {"start": iso(day + 15 * H), "end": iso(day + 16 * H)}
    ]


# -- throttling -----------------------------------------------------------------------------


async def test_short_retry_after_is_waited_and_rate_limit_403_retried(
    api: Tenant, served: Served, store: Store
) -> None:
    google = served.google
    _, cal = await google_calendar(api, served, "o@example.com")
    lists_before = len(google.calls("list"))  # the connect check's
    status, body = GOOGLE_ERRORS["rateLimitExceeded"]
    google.fail_next("list", status, body, headers={"Retry-After": "1"})
    status, body = GOOGLE_ERRORS["userRateLimitExceeded"]
    google.fail_next("list", status, body)
    began = time.monotonic()
    assert await sync_once(store.db, served.settings, cal["id"]) == "synced"
    # Retry-After 1 s (plus jitter), then a backoff for the 403, then success.
    assert time.monotonic() - began >= 1.0
    assert len(google.calls("list")) == lists_before + 3


async def test_a_long_throttle_reschedules_and_never_starves_other_calendars(
    api: Tenant, served: Served, store: Store
) -> None:
    _, throttled = await google_calendar(api, served, "busy@example.com")
    _, other = await graph_calendar(api, served, "free@contoso.example")
    status, body = GOOGLE_ERRORS["rateLimitExceeded"]
    served.google.fail_next("list", status, body, headers={"Retry-After": "300"}, times=50)
    began = time.monotonic()
    outcomes = await asyncio.gather(
        sync_once(store.db, served.settings, throttled["id"]),
        sync_once(store.db, served.settings, other["id"]),
    )
    # Not slept inside the request: handed back at once, the calendar rescheduled.
    assert time.monotonic() - began < 10
    assert outcomes == ["failed", "synced"]
    row = await calendar_row(store.db, throttled["id"])
    assert row.status == "error" and row.last_error is not None
    assert row.last_error["code"] == "calendar_rate_limited"
    assert row.next_sync_at is not None
    assert row.next_sync_at - dt.datetime.now(dt.UTC) > dt.timedelta(seconds=250)
    assert (await calendar_row(store.db, other["id"])).status == "active"


async def test_at_most_four_requests_in_flight_per_mailbox(
    api: Tenant, served: Served, store: Store
) -> None:
    graph = served.graph
    biz, _cal = await graph_calendar(api, served, "o@contoso.example", role="write")
    graph.mailbox_latency_s = 0.3
    day = future_day()
    bookings = [(await book(api, biz["id"], day + i * H, 30)).json()["data"] for i in range(10)]
    await deliver(store.db, served.settings, bookings[-1]["id"])
    for b in bookings:
        row = await booking_row(store.db, b["id"])
        assert row.calendar_sync_status == "synced", row.calendar_sync_status
    assert 1 < graph.max_in_flight["o@contoso.example"] <= 4
    assert graph.throttled == 0
    assert len(graph.live_events("o@contoso.example")) == 10


# -- bad answers ----------------------------------------------------------------------------


async def test_5xx_storm_keeps_the_copy_and_the_pending_write(
    api: Tenant, served: Served, store: Store
) -> None:
    google = served.google
    biz, cal = await google_calendar(api, served, "o@example.com")
    day = future_day()
    google.add_event("o@example.com", start=day + 9 * H, end=day + 10 * H)
    assert await sync_once(store.db, served.settings, cal["id"]) == "synced"
    status, body = GOOGLE_ERRORS["backendError503"]
    google.fail_next("*", status, body, times=1000)
    assert await sync_once(store.db, served.settings, cal["id"]) == "failed"
    row = await calendar_row(store.db, cal["id"])
    assert row.status == "error" and row.last_error is not None
    assert row.last_error["status"] == 503 and row.failures == 1
    assert row.next_sync_at is not None and row.next_sync_at > dt.datetime.now(dt.UTC)
    # The last good copy still blocks, with a warning saying it is stale.
    starts, warnings = await slot_starts(api, biz["id"], day)
    assert iso(day + 9 * H) not in starts
    assert {"code": "calendar_stale", "calendar_id": cal["id"]} in warnings

    booking = (await book(api, biz["id"], day + 11 * H, 30)).json()["data"]
    pending = await deliver(store.db, served.settings, booking["id"], rounds=1)
    assert pending.calendar_sync_status == "pending"
    async with store.db.read() as s:
        (msg,) = [
            m
            for m in (await s.scalars(_calendar_messages(booking["id"]))).all()
            if m.kind == "calendar"
        ]
    assert msg.status == "pending" and msg.attempts == 1 and "503" in (msg.last_error or "")

    # The storm ends: the next attempt writes it, and the next sync recovers.
    google.faults.clear()
    async with store.db.write() as s:
        await s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == msg.id)
            .values(next_attempt_at=dt.datetime.now(dt.UTC))
        )
    written = await deliver(store.db, served.settings, booking["id"])
    assert written.calendar_event_id == remote_identity(booking["id"], 1).hex
    assert await sync_once(store.db, served.settings, cal["id"]) == "synced"
    _, warnings = await slot_starts(api, biz["id"], day)
    assert warnings == []


def _calendar_messages(booking_id: str) -> Any:
    return select(OutboxMessage).where(OutboxMessage.booking_id == booking_id)


async def test_malformed_json_is_an_error_not_a_crash(
    api: Tenant, served: Served, store: Store
) -> None:
    _, cal = await graph_calendar(api, served, "o@contoso.example")
    served.graph.inject("delta", "malformed")
    assert await sync_once(store.db, served.settings, cal["id"]) == "failed"
    row = await calendar_row(store.db, cal["id"])
    assert row.status == "error" and row.last_error is not None
    assert "not JSON" in row.last_error["message"]
    assert await sync_once(store.db, served.settings, cal["id"]) == "synced"


async def test_a_hanging_token_endpoint_times_out_and_releases_the_lease(
    api: Tenant, served: Served, store: Store
) -> None:
    google = served.google
    _, cal = await google_calendar(api, served, "o@example.com")
    async with store.db.write() as s:
        await oauth_repo.forget_access_token(s, calendar_id=cal["id"], now=dt.datetime.now(dt.UTC))
    google.inject("token", "respond", status=500, delay_s=6.0)  # longer than the 3 s timeout
    began = time.monotonic()
    assert await sync_once(store.db, served.settings, cal["id"]) == "failed"
    assert time.monotonic() - began < 6.0
    row = await calendar_row(store.db, cal["id"])
    assert row.status == "error"  # down, not refused: retried later
    assert row.last_error is not None and "timed out" in row.last_error["message"]
    async with store.db.read() as s:
        token_row = await oauth_repo.get_token(s, cal["id"])
    assert token_row is not None and token_row.lease_owner is None
    assert await sync_once(store.db, served.settings, cal["id"]) == "synced"
