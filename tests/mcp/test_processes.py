"""The MCP server against real processes: `slotguard mcp` over stdio, and agents racing.

Two `slotguard serve` processes share one database per store (SQLite file, throwaway
PostgreSQL database), started by the helpers of tests/race/conftest.py. The stdio test runs
the real `slotguard mcp` process as a client of the first server; the race test sends 20
concurrent `hold_slot` calls for one slot from two MCP clients, one per server process, over
streamable HTTP, and counts the holds in the database afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import jsonschema
import pytest
from mcp.client.streamable_http import streamable_http_client

from mcp import Client, StdioServerParameters
from slotguard.mcp import models as m
from tests.race.conftest import STORE_PARAMS, Cluster, _serve_command, cluster_on, new_race_database

pytestmark = pytest.mark.slow

H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)
ALL_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
OPEN_ALL_DAY = {"working_hours": [{"days": ALL_DAYS, "start": "00:00", "end": "24:00"}]}


def day_ahead(days: int) -> dt.datetime:
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + dt.timedelta(days=days)


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module", params=STORE_PARAMS)
def two_servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    store: str = request.param
    workdir = tmp_path_factory.mktemp(f"mcp_{store}")
    with new_race_database(store, workdir) as db, cluster_on(db, workdir) as c:
        c.start(2)
        yield c


@pytest.fixture(autouse=True)
def _servers_stay_up(two_servers: Cluster) -> Iterator[None]:
    yield
    two_servers.check_alive()


def admin(c: Cluster, server: int = 0) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=c.servers[server].base_url,
        headers={"Authorization": f"Bearer {c.api_key}"},
        timeout=30.0,
    )


async def new_business(c: Cluster) -> str:
    async with admin(c) as h:
        r = await h.post(
            "/v1/businesses",
            json={"name": f"MCP {uuid.uuid4().hex[:6]}", "timezone": "UTC", "rules": OPEN_ALL_DAY},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["data"]["id"])


async def agent_key(c: Cluster, scopes: list[str]) -> str:
    async with admin(c) as h:
        r = await h.post(
            "/v1/agents", json={"name": "mcp", "scopes": scopes, "allowed_business_ids": "*"}
        )
        assert r.status_code == 201, r.text
        r = await h.post(f"/v1/agents/{r.json()['data']['id']}/keys")
        assert r.status_code == 201, r.text
        return str(r.json()["data"]["key"])


def stdio_params(c: Cluster, key: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=_serve_command()[0],
        args=[*_serve_command()[1:], "mcp"],
        env={"SLOTGUARD_URL": c.servers[0].base_url, "SLOTGUARD_API_KEY": key},
        cwd=str(c.workdir),
    )


async def test_stdio_process_serves_the_tools_of_its_key(two_servers: Cluster) -> None:
    c = two_servers
    biz = await new_business(c)
    day = day_ahead(5)
    async with Client(stdio_params(c, c.api_key), read_timeout_seconds=30) as mc:
        tools = {t.name: t for t in (await mc.list_tools()).tools}
        assert len(tools) == 13
        ctx = await mc.call_tool("get_context", {"business_id": biz})
        assert not ctx.is_error, ctx.content
        assert ctx.structured_content is not None
        jsonschema.validate(ctx.structured_content, tools["get_context"].output_schema)
        assert ctx.structured_content["businesses"][0]["business_id"] == biz

        hold = await mc.call_tool(
            "hold_slot",
            {
                "business_id": biz,
                "window_start": iso(day + 9 * H),
                "window_end": iso(day + 10 * H),
                "duration_minutes": 30,
            },
        )
        assert not hold.is_error, hold.content
        assert hold.structured_content is not None
        jsonschema.validate(hold.structured_content, tools["hold_slot"].output_schema)
        hold_id = hold.structured_content["hold_id"]
        booked = await mc.call_tool("confirm_hold", {"hold_id": hold_id})
        assert not booked.is_error, booked.content
        assert booked.structured_content is not None
        assert booked.structured_content["status"] == "confirmed"

        refused = await mc.call_tool(
            "book", {"business_id": biz, "start": iso(day + 9 * H), "end": iso(day + 10 * H)}
        )
        assert refused.is_error
        data = refused.structured_content
        assert data is not None
        jsonschema.validate(data, m.ToolFailure.model_json_schema())
        assert data["error"] == "conflict" and data["details"]["reason"] == "overlaps_booking"
        # The first free hour after the asked start: right after the 30-minute booking.
        assert data["next_available"]["start"]["utc"] == iso(day + 9 * H + 30 * M)

    # The booking is real: the other server process sees it.
    async with admin(c, 1) as h:
        r = await h.get("/v1/bookings", params={"business_id": biz})
        assert [b["hold_id"] for b in r.json()["data"]] == [hold_id]


async def test_stdio_process_with_a_scoped_or_bad_key(two_servers: Cluster) -> None:
    c = two_servers
    reader = await agent_key(c, ["availability:read"])
    async with Client(stdio_params(c, reader), read_timeout_seconds=30) as mc:
        names = {t.name for t in (await mc.list_tools()).tools}
        assert names == {"get_context", "find_slots", "check_slot"}
        forced = await mc.call_tool("cancel_booking", {"booking_id": "bk_x"})
        assert forced.is_error and forced.structured_content is not None
        assert forced.structured_content["error"] == "forbidden"
        assert forced.structured_content["details"]["required_scope"] == "bookings:write"

    async with Client(stdio_params(c, "sg_live_not_a_key"), read_timeout_seconds=30) as mc:
        # Only the tool that needs no scope, and it says what is wrong.
        assert [t.name for t in (await mc.list_tools()).tools] == ["get_context"]
        r = await mc.call_tool("get_context", {})
        assert r.is_error and r.structured_content is not None
        assert r.structured_content["error"] == "unauthorized"
        assert r.structured_content["status"] == 401


@contextlib.asynccontextmanager
async def http_mcp(c: Cluster, server: int, key: str) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {key}"}
    base = c.servers[server].base_url
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60.0) as h,
        Client(streamable_http_client(f"{base}/mcp", http_client=h)) as mc,
    ):
        yield mc


async def test_twenty_hold_calls_through_two_processes_make_one_hold(
    two_servers: Cluster,
) -> None:
    c = two_servers
    biz = await new_business(c)
    scopes = ["availability:read", "holds:write", "bookings:read"]
    keys = [await agent_key(c, scopes), await agent_key(c, scopes)]
    start = day_ahead(6) + 9 * H
    n = 20
    async with http_mcp(c, 0, keys[0]) as a, http_mcp(c, 1, keys[1]) as b:
        clients = [a, b]
        for mc in clients:  # both sessions work before the race starts
            assert "hold_slot" in {t.name for t in (await mc.list_tools()).tools}
        barrier = asyncio.Barrier(n)

        async def one(i: int) -> Any:
            await barrier.wait()
            return await clients[i % 2].call_tool(
                "hold_slot",
                {
                    "business_id": biz,
                    "window_start": iso(start),
                    "window_end": iso(start + 30 * M),
                    "duration_minutes": 30,
                    # Distinct requests: each call is its own agent decision.
                    "idempotency_key": f"race-{i}-{uuid.uuid4().hex}",
                },
            )

        results = await asyncio.gather(*(one(i) for i in range(n)))
    tally = Counter(
        "held" if not r.is_error else (r.structured_content or {}).get("error") for r in results
    )
    print(f"\n[{c.db.store}] 20 MCP hold_slot calls for one slot: {dict(tally)}")
    assert tally == {"held": 1, "no_slots_available": n - 1}, tally
    (winner,) = [r.structured_content for r in results if not r.is_error]
    assert winner is not None and winner["status"] == "active"
    assert winner["slots"][0]["start"]["utc"] == iso(start)
    for r in results:
        if r.is_error:
            data = r.structured_content or {}
            assert data["status"] == 409 and data["retryable"] is False
            assert data["next_available"]["start"]["utc"] == iso(start + 30 * M), data

    holds = await c.db.fetch("SELECT id, status FROM holds WHERE business_id = $1", biz)
    assert [(str(h[0]), str(h[1])) for h in holds] == [(winner["hold_id"], "active")]
    rows = await c.db.active_reservations(biz)
    assert [(r[0], r[1], r[2]) for r in rows] == [(start, start + 30 * M, "hold")]
    rejected = await c.db.fetch(
        "SELECT count(*) FROM audit_log WHERE business_id = $1 AND action = 'hold_rejected'", biz
    )
    assert int(str(rejected[0][0])) == n - 1


def test_serve_command_exists() -> None:
    assert Path(_serve_command()[0]).exists()
