"""What a tool call costs and whose clock it reads (§11).

- A tool call costs the key's rate limit exactly the API calls it stands for; the ``/mcp``
  request around them costs nothing of its own.
- ``expires_in_seconds`` is counted by the API's clock (the ``Date`` of its answer), not by
  the clock of the process the MCP server runs in.
- The ``/mcp`` endpoint remembers a checked key for a minute, but a revoked key can do
  nothing through the tools at once, and gets 401 once the minute is over.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import httpx2
from fastapi import FastAPI
from mcp.client.streamable_http import streamable_http_client

from mcp import Client
from slotguard.api.app import create_app
from slotguard.config import Settings
from slotguard.mcp import http as mcp_http
from slotguard.mcp.server import Backend, build_server, seconds_left
from tests.api.helpers import future_day, iso
from tests.api.test_agents import make_agent, make_key
from tests.conftest import Store, Tenant, new_tenant
from tests.mcp.conftest import BASE
from tests.mcp.test_tools import H, open_day_business, open_session

LIMIT = 1000


@asynccontextmanager
async def limited_app(store: Store) -> AsyncIterator[tuple[FastAPI, Tenant]]:
    """An app with a per-key rate limit and /mcp running, and a tenant on it."""
    app = create_app(
        Settings(database_url=store.url, embedded_worker=False, rate_limit=f"{LIMIT}/minute"),
        db=store.db,
    )
    async with (
        mcp_http.lifespan(app.state.mcp.endpoint()),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as h,
    ):
        yield app, await new_tenant(store, h)


@asynccontextmanager
async def over_http(app: FastAPI, key: str) -> AsyncIterator[Client]:
    transport = httpx2.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        httpx2.AsyncClient(transport=transport, base_url=BASE, headers=headers) as h,
        Client(streamable_http_client(f"{BASE}/mcp", http_client=h)) as c,
    ):
        yield c


async def key_id(t: Tenant) -> str:
    r = await t.client.get("/v1/me", headers=t.headers())
    assert r.status_code == 200, r.text
    return str(r.json()["data"]["key_id"])


async def spent(app: FastAPI, key: str) -> int:
    """Requests the key has made in the current window (read without making one)."""
    limiter = app.state.rate_limiter
    stats = await limiter.limiter.get_window_stats(limiter.item, key)
    return LIMIT - int(stats.remaining)


async def test_each_tool_call_costs_the_api_calls_it_stands_for(store: Store) -> None:
    async with limited_app(store) as (app, t):
        biz = await open_day_business(t)
        other = await open_day_business(t)
        kid = await key_id(t)
        day = future_day(12)
        async with over_http(app, t.key) as c:
            before = await spent(app, kid)
            s = await open_session(c)
            # Over /mcp the tool list comes from the endpoint's own key check.
            assert await spent(app, kid) == before

            async def cost(name: str, **arguments: Any) -> tuple[int, dict[str, Any]]:
                start = await spent(app, kid)
                data = await s.call(name, **arguments)
                return await spent(app, kid) - start, data

            # GET /v1/me, one page of businesses, each business's rules, one page of classes.
            n, _ = await cost("get_context")
            assert n == 1 + 1 + 2 + 1
            n, _ = await cost(
                "find_slots",
                business_id=biz["id"],
                start=iso(day),
                end=iso(day + 4 * H),
                duration_minutes=30,
            )
            assert n == 1
            window = {"window_start": iso(day + 9 * H), "window_end": iso(day + 10 * H)}
            n, hold = await cost("hold_slot", business_id=biz["id"], **window)
            assert n == 1
            # A replay is re-read once to report the hold's current state.
            n, again = await cost("hold_slot", business_id=biz["id"], **window)
            assert again["replayed"] is True and n == 2
            for name, args in [
                ("get_hold", {"hold_id": hold["hold_id"]}),
                ("check_slot", {"business_id": biz["id"], "start": iso(day + 11 * H)}),
                ("confirm_hold", {"hold_id": hold["hold_id"]}),
                ("list_bookings", {"business_id": biz["id"]}),
                ("book", {"business_id": other["id"], "start": iso(day + 12 * H)}),
            ]:
                n, data = await cost(name, **args)
                assert n == 1, (name, n)
            booking = data["booking_id"]
            for name, args in [
                ("get_booking", {"booking_id": booking}),
                ("reschedule_booking", {"booking_id": booking, "start": iso(day + 13 * H)}),
                ("cancel_booking", {"booking_id": booking}),
                ("explain_decision", {"booking_id": booking}),
            ]:
                n, _ = await cost(name, **args)
                assert n == 1, (name, n)


async def test_a_zone_no_answer_gave_costs_one_read_of_the_business(store: Store) -> None:
    async with limited_app(store) as (app, t):
        biz = await open_day_business(t, timezone="Europe/Berlin")
        kid = await key_id(t)
        day = future_day(13)
        async with over_http(app, t.key) as c:
            s = await open_session(c)
            start = await spent(app, kid)
            hold = await s.call(
                "hold_slot",
                business_id=biz["id"],
                window_start=iso(day + 9 * H),
                window_end=iso(day + 10 * H),
            )
            assert hold["timezone"] == "Europe/Berlin"
            assert await spent(app, kid) - start == 2  # the hold, and the business's zone
            await s.call("get_hold", hold_id=hold["hold_id"])
            assert await spent(app, kid) - start == 3  # the zone is remembered


class DatedTransport(httpx.AsyncBaseTransport):
    """The app in-process, with the ``Date`` header ``serve`` (uvicorn) adds to answers."""

    def __init__(self, app: FastAPI) -> None:
        self.inner = httpx.ASGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        response.headers["date"] = email.utils.formatdate(usegmt=True)
        return response


async def test_hold_time_left_is_counted_by_the_apis_clock(
    mtenant: Tenant, mcp_app: FastAPI
) -> None:
    """As ``slotguard mcp`` on an agent's machine whose clock is an hour off the server's."""
    biz = await open_day_business(mtenant)
    day = future_day(14)
    for skew in (3600.0, -3600.0):
        backend = Backend(
            base_url="http://slotguard.internal",
            api_key=mtenant.key,
            transport=lambda: DatedTransport(mcp_app),
            clock=lambda skew=skew: time.time() + skew,
        )
        server = build_server(backend)
        async with Client(server, raise_exceptions=True) as c:
            s = await open_session(c)
            hold = await s.call(
                "hold_slot",
                business_id=biz["id"],
                window_start=iso(day + 9 * H),
                window_end=iso(day + 18 * H),
                ttl_seconds=120,
            )
            assert 115 <= hold["expires_in_seconds"] <= 119, (skew, hold)
            got = await s.call("get_hold", hold_id=hold["hold_id"])
            assert 115 <= got["expires_in_seconds"] <= 119, (skew, got)
            released = await s.call("release_hold", hold_id=hold["hold_id"])
            assert released["expires_in_seconds"] == 0
        await backend.aclose()


def test_time_left_never_exceeds_what_the_server_has_left() -> None:
    class Answer(dict[str, Any]):
        server_time = dt.datetime(2026, 4, 1, 9, 0, 0, tzinfo=dt.UTC)

    # The server's clock was somewhere in 09:00:00-09:00:01: at most 59 s were left.
    assert seconds_left("2026-04-01T09:01:00Z", "active", Answer(), lambda: 0.0) == 59
    assert seconds_left("2026-04-01T09:00:00.500000Z", "active", Answer()) == 0
    assert seconds_left("2026-04-01T10:00:00Z", "confirmed", Answer()) == 0
    # No Date header: the API answered in this process, on this clock.
    now = dt.datetime(2026, 4, 1, 8, 59, 0, tzinfo=dt.UTC).timestamp()
    assert seconds_left("2026-04-01T09:00:00Z", "active", {}, lambda: now) == 60


async def test_a_revoked_key_can_do_nothing_through_mcp(store: Store) -> None:
    async with limited_app(store) as (app, t):
        biz = await open_day_business(t)
        agent = await make_agent(t, scopes=["availability:read", "holds:write"])
        key = await make_key(t, agent["id"])
        day = future_day(15)
        async with over_http(app, key["key"]) as c:
            s = await open_session(c)
            assert "hold_slot" in s.tools
            r = await t.client.delete(f"/v1/keys/{key['id']}", headers=t.headers())
            assert r.status_code == 200, r.text
            # Within the endpoint's minute the list still shows, but no call gets through.
            failed = await s.fail(
                "hold_slot",
                business_id=biz["id"],
                window_start=iso(day + 9 * H),
                window_end=iso(day + 10 * H),
            )
            assert failed["error"] == "unauthorized" and failed["status"] == 401
        assert await _hour_free(t, biz["id"], day + 9 * H)
        # After the minute, the endpoint itself answers 401.
        endpoint: mcp_http.McpEndpoint = app.state.mcp.endpoint()
        endpoint.clock = lambda: time.monotonic() + mcp_http.KEY_CHECK_SECONDS + 1
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as h:
            r = await h.post(
                "/mcp",
                json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}},
                headers={
                    "Authorization": f"Bearer {key['key']}",
                    "Accept": "application/json, text/event-stream",
                },
            )
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"


async def _hour_free(t: Tenant, business_id: str, start: dt.datetime) -> bool:
    r = await t.client.get(
        "/v1/availability/slots",
        params={
            "business_id": business_id,
            "start": iso(start),
            "end": iso(start + H),
            "duration_minutes": 60,
        },
        headers=t.headers(),
    )
    assert r.status_code == 200, r.text
    return [s["start"] for s in r.json()["data"]["slots"]] == [iso(start)]
