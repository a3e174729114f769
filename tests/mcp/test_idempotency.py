"""Retry safety for agents (§11): derived keys, reported replays, no dead hold handed back.

An agent whose tool result was lost calls the same tool again with the same arguments. The
derived idempotency key makes that a replay of the API call: one hold, one booking. Counted
through the API's own reads (the database behind it), on both stores.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

import httpx
from fastapi import FastAPI

from mcp import Client
from slotguard.mcp.server import IDEMPOTENCY_WINDOW_SECONDS, Backend, build_server
from tests.api.helpers import future_day, iso
from tests.api.test_agents import agent_tenant
from tests.conftest import Tenant
from tests.mcp.test_tools import (
    H,
    M,
    OpenClient,
    audit_rows,
    count_bookings,
    open_day_business,
    open_session,
)


async def hold_args(biz: dict[str, Any], day: dt.datetime) -> dict[str, Any]:
    return {
        "business_id": biz["id"],
        "window_start": iso(day + 9 * H),
        "window_end": iso(day + 12 * H),
        "duration_minutes": 30,
    }


async def test_identical_hold_is_replayed_and_a_dead_replay_is_not_handed_back(
    mtenant: Tenant, memory_client: OpenClient
) -> None:
    biz = await open_day_business(mtenant)
    day = future_day(12)
    args = await hold_args(biz, day)
    async with memory_client(mtenant.key) as c:
        s = await open_session(c)
        first = await s.call("hold_slot", **args)
        again = await s.call("hold_slot", **args)  # the first result was "lost"
        assert again["hold_id"] == first["hold_id"]
        assert (first["replayed"], again["replayed"]) == (False, True)
        assert again["status"] == "active" and again["expires_in_seconds"] > 0
        created = await audit_rows(mtenant, business_id=biz["id"], action="hold_created")
        assert len(created) == 1

        # The hold is released meanwhile: replaying it must not report a live hold.
        await s.call("release_hold", hold_id=first["hold_id"])
        fresh = await s.call("hold_slot", **args)
        assert fresh["hold_id"] != first["hold_id"]
        assert fresh["status"] == "active" and fresh["expires_in_seconds"] > 0
        assert fresh["slots"][0]["start"]["utc"] == iso(day + 9 * H)
        # ... and retrying that call again gives that same new hold, not a third one.
        retried = await s.call("hold_slot", **args)
        assert retried["hold_id"] == fresh["hold_id"] and retried["status"] == "active"
        old = await s.call("get_hold", hold_id=first["hold_id"])
        assert old["status"] == "released"
        # The replacement dies too: the next retry again gets a live hold, not a dead one.
        await s.call("release_hold", hold_id=fresh["hold_id"])
        third = await s.call("hold_slot", **args)
        assert third["hold_id"] not in {first["hold_id"], fresh["hold_id"]}
        assert third["status"] == "active" and third["replayed"] is False
        assert (await s.call("hold_slot", **args))["hold_id"] == third["hold_id"]
    created = await audit_rows(mtenant, business_id=biz["id"], action="hold_created")
    assert len(created) == 3


async def test_lost_book_result_retried_makes_one_booking(
    mtenant: Tenant, memory_client: OpenClient
) -> None:
    biz = await open_day_business(mtenant)
    day = future_day(13)
    args = {"business_id": biz["id"], "start": iso(day + 9 * H), "end": iso(day + 10 * H)}
    async with memory_client(mtenant.key) as c:
        s = await open_session(c)
        first = await s.call("book", **args)
        again = await s.call("book", **args)
        assert again["booking_id"] == first["booking_id"]
        assert (first["replayed"], again["replayed"]) == (False, True)
        assert await count_bookings(mtenant, biz["id"]) == 1

        # Cancelled meanwhile: the replay says so instead of claiming a live booking.
        await s.call("cancel_booking", booking_id=first["booking_id"])
        after = await s.call("book", **args)
        assert after["booking_id"] == first["booking_id"] and after["replayed"] is True
        assert after["status"] == "cancelled"
        assert await count_bookings(mtenant, biz["id"]) == 1


async def test_concurrent_identical_book_calls_execute_once(
    mtenant: Tenant, memory_client: OpenClient
) -> None:
    biz = await open_day_business(mtenant)
    day = future_day(14)
    args = {"business_id": biz["id"], "start": iso(day + 9 * H), "end": iso(day + 10 * H)}
    async with memory_client(mtenant.key) as c:
        s = await open_session(c)
        results = await asyncio.gather(*(s.call("book", **args) for _ in range(6)))
    assert len({r["booking_id"] for r in results}) == 1
    assert sorted(r["replayed"] for r in results) == [False] + [True] * 5
    assert await count_bookings(mtenant, biz["id"]) == 1


async def test_explicit_key_and_confirm_twice(mtenant: Tenant, memory_client: OpenClient) -> None:
    biz = await open_day_business(mtenant)
    day = future_day(15)
    async with memory_client(mtenant.key) as c:
        s = await open_session(c)
        hold = await s.call("hold_slot", **await hold_args(biz, day))
        one = await s.call("confirm_hold", hold_id=hold["hold_id"], idempotency_key="conf-1")
        two = await s.call("confirm_hold", hold_id=hold["hold_id"], idempotency_key="conf-1")
        assert two["booking_id"] == one["booking_id"] and two["replayed"] is True
        # Another key (or none): the API says hold_already_confirmed; the tool hands back
        # the booking it made.
        three = await s.call("confirm_hold", hold_id=hold["hold_id"], idempotency_key="conf-2")
        assert three["booking_id"] == one["booking_id"]
        assert three["already_confirmed"] is True and one["already_confirmed"] is False
        assert await count_bookings(mtenant, biz["id"]) == 1

        # The same explicit key for a different request is refused, nothing executed.
        err = await s.fail(
            "book",
            business_id=biz["id"],
            start=iso(day + 15 * H),
            end=iso(day + 15 * H + 30 * M),
            idempotency_key="conf-1",
        )
        assert err["error"] == "idempotency_key_conflict" and err["status"] == 409
        assert err["retryable"] is False
        assert await count_bookings(mtenant, biz["id"]) == 1


async def test_derived_keys_are_per_caller(mtenant: Tenant, memory_client: OpenClient) -> None:
    biz = await open_day_business(mtenant)
    scopes = ["availability:read", "bookings:write", "bookings:read"]
    a = await agent_tenant(mtenant, scopes=scopes, name="a")
    b = await agent_tenant(mtenant, scopes=scopes, name="b")
    day = future_day(16)
    args = {"business_id": biz["id"], "start": iso(day + 9 * H), "end": iso(day + 10 * H)}
    async with memory_client(a.key) as ca, memory_client(b.key) as cb:
        sa, sb = await open_session(ca), await open_session(cb)
        won = await sa.call("book", **args)
        # Agent b's identical call is its own request: refused, not a replay of a's booking.
        lost = await sb.fail("book", **args)
    assert won["status"] == "confirmed"
    assert lost["error"] == "conflict" and lost["details"]["reason"] == "overlaps_booking"
    assert lost["next_available"]["start"]["utc"] == iso(day + 10 * H)
    assert await count_bookings(mtenant, biz["id"]) == 1


async def test_a_retry_across_the_ten_minute_bucket_still_replays(
    mtenant: Tenant, mcp_app: FastAPI
) -> None:
    biz = await open_day_business(mtenant)
    day = future_day(19)
    # One second before a bucket boundary of the derived key.
    clock = [(time.time() // IDEMPOTENCY_WINDOW_SECONDS + 1) * IDEMPOTENCY_WINDOW_SECONDS - 1]
    backend = Backend(
        base_url="http://slotguard.internal",
        api_key=mtenant.key,
        transport=lambda: httpx.ASGITransport(app=mcp_app),
        clock=lambda: clock[0],
    )
    args = {"business_id": biz["id"], "start": iso(day + 9 * H), "end": iso(day + 10 * H)}
    async with Client(build_server(backend), raise_exceptions=True) as c:
        s = await open_session(c)
        first = await s.call("book", **args)
        clock[0] += 2  # the "lost" result is retried two seconds later, in the next bucket
        again = await s.call("book", **args)
        assert again["booking_id"] == first["booking_id"] and again["replayed"] is True
        clock[0] += IDEMPOTENCY_WINDOW_SECONDS  # much later: a new request, refused as taken
        later = await s.fail("book", **args)
        assert later["error"] == "conflict"
    await backend.aclose()
    assert await count_bookings(mtenant, biz["id"]) == 1
