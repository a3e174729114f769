"""The MCP server through the SDK's own client: tool list, schemas, results, errors (§11).

In memory (the server object, acting as one key) and over streamable HTTP to ``/mcp`` of the
app with a real bearer key, on both stores. Every structured result is validated against the
tool's declared output schema, every failure against the §11 failure shape.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import jsonschema
import pytest
from fastapi import FastAPI

from mcp import Client
from slotguard.mcp import models as m
from slotguard.mcp.server import INSTRUCTIONS
from tests.api.helpers import ALL_DAYS, book, future_day, iso, make_business
from tests.api.test_agents import agent_tenant
from tests.conftest import Tenant
from tests.mcp.conftest import structured

H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)

OpenClient = Callable[[str], AbstractAsyncContextManager[Client]]

TOOLS = {
    # name: (readOnly, destructive, idempotent, openWorld)
    "get_context": (True, False, True, False),
    "find_slots": (True, False, True, False),
    "check_slot": (True, False, True, False),
    "hold_slot": (False, False, True, False),
    "get_hold": (True, False, True, False),
    "release_hold": (False, True, True, False),
    "confirm_hold": (False, False, True, True),
    "book": (False, False, True, True),
    "list_bookings": (True, False, True, False),
    "get_booking": (True, False, True, False),
    "cancel_booking": (False, True, True, True),
    "reschedule_booking": (False, True, True, True),
    "explain_decision": (True, False, True, False),
}
WRITE_TOOLS = {n for n, (ro, *_rest) in TOOLS.items() if not ro}
FAILURE_SCHEMA = m.ToolFailure.model_json_schema()


class Session:
    """One MCP client plus the tool list it saw, validating every result it gets."""

    def __init__(self, client: Client, tools: dict[str, Any]) -> None:
        self.client = client
        self.tools = tools

    async def call(self, name: str, **arguments: Any) -> dict[str, Any]:
        """A successful call's structured content, validated against the output schema."""
        result = await self.client.call_tool(name, arguments)
        assert not result.is_error, (name, result.content)
        data = structured(result)
        jsonschema.validate(data, self.tools[name].output_schema)
        # The text channel carries the same JSON, compact, for models that read only text.
        assert result.content and result.content[0].type == "text"
        compact = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        assert result.content[0].text == compact, name
        return data

    async def fail(self, name: str, **arguments: Any) -> dict[str, Any]:
        """A failed call's structured content, validated against the §11 failure shape."""
        result = await self.client.call_tool(name, arguments)
        assert result.is_error, (name, result.structured_content)
        data = structured(result)
        jsonschema.validate(data, FAILURE_SCHEMA)
        for field in ("error", "message", "status", "details", "retryable", "next_step"):
            assert field in data, (field, data)
        assert data["next_step"].strip().endswith("."), data
        return data


async def open_session(client: Client) -> Session:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    return Session(client, tools)


async def open_day_business(t: Tenant, **kw: Any) -> dict[str, Any]:
    rules = {"working_hours": [{"days": ALL_DAYS, "start": "00:00", "end": "24:00"}]}
    return await make_business(t, rules=kw.pop("rules", rules), **kw)


async def count_bookings(t: Tenant, business_id: str) -> int:
    r = await t.client.get(
        "/v1/bookings", params={"business_id": business_id, "limit": 200}, headers=t.headers()
    )
    assert r.status_code == 200, r.text
    return len(r.json()["data"])


async def audit_rows(t: Tenant, **filters: str) -> list[dict[str, Any]]:
    r = await t.client.get("/v1/audit-log", params={"limit": 200, **filters}, headers=t.headers())
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = r.json()["data"]
    return rows


# --- listing ------------------------------------------------------------------------------


async def test_admin_sees_13_tools_each_with_four_annotations_and_output_schema(
    mtenant: Tenant, memory_client: OpenClient
) -> None:
    async with memory_client(mtenant.key) as c:
        assert c.instructions is not None and "get_context" in c.instructions
        assert c.instructions == INSTRUCTIONS
        # §11: context first, never guess a zone, only offered times, retry with the same key.
        for phrase in ("Call get_context first", "Never guess", "time zone", "find_slots"):
            assert phrase in INSTRUCTIONS, phrase
        assert "same idempotency_key" in INSTRUCTIONS
        tools = (await c.list_tools()).tools
    assert {t.name for t in tools} == set(TOOLS)
    for tool in tools:
        a = tool.annotations
        assert a is not None, tool.name
        got = (a.read_only_hint, a.destructive_hint, a.idempotent_hint, a.open_world_hint)
        assert all(isinstance(v, bool) for v in got), (tool.name, got)
        assert got == TOOLS[tool.name], tool.name
        assert tool.title, tool.name
        assert tool.description and len(tool.description) > 20, tool.name
        schema = tool.output_schema
        assert schema is not None and schema.get("type") == "object", tool.name
        assert schema.get("properties"), tool.name
        jsonschema.Draft202012Validator.check_schema(schema)
        # Self-contained, so a client checks a result without resolving references; the
        # same shape as the model's own schema.
        assert "$ref" not in json.dumps(schema) and "$defs" not in schema, tool.name
        if tool.name in WRITE_TOOLS - {"release_hold"}:
            assert "idempotency_key" in tool.input_schema["properties"], tool.name


# --- one agent's whole journey, every result validated ------------------------------------


@pytest.mark.parametrize("transport", ["memory", "http"])
async def test_every_tool_returns_schema_valid_structured_results(
    mtenant: Tenant, memory_client: OpenClient, http_client: OpenClient, transport: str
) -> None:
    biz = await open_day_business(mtenant, timezone="Europe/Berlin")
    day = future_day(7)
    open_client = memory_client if transport == "memory" else http_client
    async with open_client(mtenant.key) as c:
        s = await open_session(c)
        assert set(s.tools) == set(TOOLS)

        ctx = await s.call("get_context", business_id=biz["id"])
        assert ctx["businesses"][0]["timezone"] == "Europe/Berlin"
        assert ctx["businesses"][0]["rules"]["working_hours"]
        assert {mc["name"] for mc in ctx["meeting_classes"]} >= {"default"}
        assert set(ctx["tools"]) == set(TOOLS)
        server_now = dt.datetime.fromisoformat(ctx["now"]["utc"])
        assert abs((server_now - dt.datetime.now(dt.UTC)).total_seconds()) < 60

        slots = await s.call(
            "find_slots",
            business_id=biz["id"],
            start=iso(day + 9 * H),
            end=iso(day + 11 * H),
            duration_minutes=30,
            limit=3,
        )
        assert slots["timezone"] == "Europe/Berlin"
        assert len(slots["slots"]) == 3 and slots["limit_reached"] is True
        first = slots["slots"][0]["start"]
        assert first["utc"] == iso(day + 9 * H)
        assert dt.datetime.fromisoformat(first["local"]) == day + 9 * H
        assert first["local"].endswith(("+01:00", "+02:00"))

        check = await s.call(
            "check_slot", business_id=biz["id"], start=iso(day + 9 * H), duration_minutes=30
        )
        assert check["available"] is True and check["end"]["utc"] == iso(day + 9 * H + 30 * M)

        hold = await s.call(
            "hold_slot",
            business_id=biz["id"],
            window_start=iso(day + 9 * H),
            window_end=iso(day + 12 * H),
            duration_minutes=30,
            ttl_seconds=120,
        )
        assert hold["status"] == "active" and hold["replayed"] is False
        assert 100 <= hold["expires_in_seconds"] <= 120
        assert hold["slots"][0]["start"]["utc"] == iso(day + 9 * H)
        got = await s.call("get_hold", hold_id=hold["hold_id"])
        assert got["hold_id"] == hold["hold_id"] and got["status"] == "active"

        confirmed = await s.call(
            "confirm_hold", hold_id=hold["hold_id"], customer_email="ann@example.com"
        )
        assert confirmed["status"] == "confirmed" and confirmed["version"] == 1
        assert confirmed["hold_id"] == hold["hold_id"]
        assert confirmed["start"]["utc"] == iso(day + 9 * H)

        direct = await s.call(
            "book",
            business_id=biz["id"],
            start=iso(day + 10 * H),
            end=iso(day + 10 * H + 30 * M),
            customer_name="Bo",
        )
        assert direct["status"] == "confirmed"

        listed = await s.call("list_bookings", business_id=biz["id"], limit=1)
        assert len(listed["bookings"]) == 1 and listed["has_more"] is True
        rest = await s.call(
            "list_bookings", business_id=biz["id"], limit=1, cursor=listed["next_cursor"]
        )
        assert {listed["bookings"][0]["booking_id"], rest["bookings"][0]["booking_id"]} == {
            confirmed["booking_id"],
            direct["booking_id"],
        }
        assert rest["has_more"] is False and rest["next_cursor"] is None

        one = await s.call("get_booking", booking_id=direct["booking_id"])
        assert one["version"] == 1 and one["customer_name"] == "Bo"

        moved = await s.call(
            "reschedule_booking",
            booking_id=direct["booking_id"],
            start=iso(day + 14 * H),
            expected_version=1,
        )
        assert moved["version"] == 2 and moved["end"]["utc"] == iso(day + 14 * H + 30 * M)

        cancelled = await s.call(
            "cancel_booking", booking_id=direct["booking_id"], reason="moved away"
        )
        assert cancelled["status"] == "cancelled" and cancelled["version"] == 3

        hold2 = await s.call(
            "hold_slot",
            business_id=biz["id"],
            window_start=iso(day + 15 * H),
            window_end=iso(day + 16 * H),
            duration_minutes=30,
        )
        released = await s.call("release_hold", hold_id=hold2["hold_id"])
        assert released["status"] == "released" and released["expires_in_seconds"] == 0

        why = await s.call("explain_decision", booking_id=direct["booking_id"])
        actions = [r["action"] for r in why["rows"]]
        assert actions == ["booking_created", "booking_rescheduled", "booking_cancelled"]
        assert "moved away" in why["summary"]


# --- failures -----------------------------------------------------------------------------


async def test_conflict_is_an_error_result_with_reason_and_next_available(
    mtenant: Tenant, memory_client: OpenClient
) -> None:
    biz = await open_day_business(mtenant, timezone="America/New_York")
    day = future_day(8)
    assert (await book(mtenant, biz["id"], day + 15 * H, 60)).status_code == 201
    async with memory_client(mtenant.key) as c:
        s = await open_session(c)
        err = await s.fail(
            "book",
            business_id=biz["id"],
            start=iso(day + 15 * H + 30 * M),
            end=iso(day + 16 * H + 30 * M),
        )
        assert err["error"] == "conflict" and err["status"] == 409
        assert err["details"]["reason"] == "overlaps_booking"
        assert err["retryable"] is False
        assert "find_slots" in err["next_step"]
        # The first free hour after the asked start: right after the booking.
        nxt = err["next_available"]
        assert nxt["start"]["utc"] == iso(day + 16 * H)
        assert nxt["end"]["utc"] == iso(day + 17 * H)
        assert dt.datetime.fromisoformat(nxt["start"]["local"]).utcoffset() in {
            dt.timedelta(hours=-4),
            dt.timedelta(hours=-5),
        }
        assert err["request_id"].startswith("req_")

        # A hold over a full window: no_slots_available with next_available (§3.2).
        full = await s.fail(
            "hold_slot",
            business_id=biz["id"],
            window_start=iso(day + 15 * H),
            window_end=iso(day + 16 * H),
            duration_minutes=60,
        )
        assert full["error"] == "no_slots_available" and full["status"] == 409
        assert full["next_available"]["start"]["utc"] == iso(day + 16 * H)
        assert "next_available" in full["next_step"]

        # check_slot is a success result that says no, with the same alternative.
        check = await s.call(
            "check_slot", business_id=biz["id"], start=iso(day + 15 * H), duration_minutes=60
        )
        assert check["available"] is False and check["reason"] == "overlaps_booking"
        assert check["next_available"]["start"]["utc"] == iso(day + 16 * H)


async def test_bad_arguments_are_error_results_not_crashes(
    mtenant: Tenant, memory_client: OpenClient
) -> None:
    biz = await open_day_business(mtenant)
    async with memory_client(mtenant.key) as c:
        s = await open_session(c)
        naive = await s.fail("book", business_id=biz["id"], start="2026-04-01T09:00:00")
        assert naive["error"] == "validation_error" and naive["status"] == 422
        assert naive["retryable"] is False
        missing = await s.fail("get_booking", booking_id="bk_doesnotexist")
        assert missing["error"] == "not_found" and missing["status"] == 404
        gone = await s.fail("get_hold", hold_id="hld_doesnotexist")
        assert gone["error"] in {"hold_not_found", "not_found"} and gone["status"] == 404
        both = await s.fail("explain_decision", booking_id="bk_x", hold_id="hld_y")
        assert both["error"] == "validation_error"
        # Out of the declared range: the SDK refuses before the tool runs, as an error.
        r = await c.call_tool(
            "hold_slot",
            {
                "business_id": biz["id"],
                "window_start": iso(future_day(3)),
                "window_end": iso(future_day(4)),
                "ttl_seconds": 5,
            },
        )
        assert r.is_error


# --- scopes and fences over HTTP with real keys ------------------------------------------


async def test_read_only_key_over_http_sees_no_write_tools_and_gets_forbidden(
    mtenant: Tenant, http_client: OpenClient
) -> None:
    biz = await open_day_business(mtenant)
    reader = await agent_tenant(mtenant, scopes=["availability:read", "bookings:read"])
    day = future_day(9)
    async with http_client(reader.key) as c:
        s = await open_session(c)
        assert set(s.tools) == {
            "get_context",
            "find_slots",
            "check_slot",
            "list_bookings",
            "get_booking",
        }
        ctx = await s.call("get_context")
        assert sorted(ctx["scopes"]) == ["availability:read", "bookings:read"]
        assert ctx["agent_id"] and ctx["agent_id"].startswith("agt_")
        # Forcing a write tool that was not listed: the API's own 403, as a §11 failure.
        err = await s.fail(
            "hold_slot",
            business_id=biz["id"],
            window_start=iso(day + 9 * H),
            window_end=iso(day + 10 * H),
        )
        assert err["error"] == "forbidden" and err["status"] == 403
        assert err["details"]["required_scope"] == "holds:write"
        assert err["retryable"] is False and "scope" in err["next_step"]
        err = await s.fail("book", business_id=biz["id"], start=iso(day + 9 * H))
        assert err["error"] == "forbidden"
        assert err["details"]["required_scope"] == "bookings:write"
    # Nothing was written by the refused calls.
    assert await count_bookings(mtenant, biz["id"]) == 0
    rows = await audit_rows(mtenant, business_id=biz["id"])
    assert [r for r in rows if r["action"] == "hold_created"] == []


async def test_business_fence_applies_to_tools(mtenant: Tenant, http_client: OpenClient) -> None:
    mine = await open_day_business(mtenant)
    other = await open_day_business(mtenant)
    agent = await agent_tenant(
        mtenant, scopes=["availability:read", "holds:write"], allowed=[mine["id"]]
    )
    day = future_day(9)
    async with http_client(agent.key) as c:
        s = await open_session(c)
        ok = await s.call(
            "find_slots", business_id=mine["id"], start=iso(day), end=iso(day + H), limit=1
        )
        assert ok["slots"]
        err = await s.fail("find_slots", business_id=other["id"], start=iso(day), end=iso(day + H))
        assert err["error"] == "forbidden" and err["details"]["business_id"] == other["id"]
        ctx = await s.call("get_context")
        assert [b["business_id"] for b in ctx["businesses"]] == [mine["id"]]


async def test_http_without_a_valid_key_is_401_in_the_api_shape(mcp_app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=mcp_app)
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as h:
        for headers in ({}, {"Authorization": "Bearer sg_live_nope"}, {"Authorization": "Basic x"}):
            r = await h.post("/mcp", json=body, headers=headers)
            assert r.status_code == 401, r.text
            assert r.json()["error"] == "unauthorized"
            assert r.headers["x-request-id"].startswith("req_")


# --- same code path as HTTP: audit rows, actor, rate limits -------------------------------


async def test_tool_calls_write_the_same_audit_rows_as_the_api(
    mtenant: Tenant, http_client: OpenClient
) -> None:
    biz = await open_day_business(mtenant)
    agent = await agent_tenant(
        mtenant, scopes=["availability:read", "holds:write", "bookings:write", "audit:read"]
    )
    me = (await agent.client.get("/v1/me", headers=agent.headers())).json()["data"]
    day = future_day(11)
    async with http_client(agent.key) as c:
        s = await open_session(c)
        hold = await s.call(
            "hold_slot",
            business_id=biz["id"],
            window_start=iso(day + 9 * H),
            window_end=iso(day + 10 * H),
            duration_minutes=30,
        )
        booking = await s.call("confirm_hold", hold_id=hold["hold_id"])
        refused = await s.fail("book", business_id=biz["id"], start=iso(day + 9 * H))
    rows = await audit_rows(mtenant, hold_id=hold["hold_id"])
    assert [r["action"] for r in rows] == ["hold_created", "booking_confirmed"]
    for r in rows:
        assert r["actor"] == {"agent_id": me["agent_id"], "key_id": me["key_id"]}
    assert rows[1]["booking_id"] == booking["booking_id"]
    # The refusal is on record under the failed call's request id.
    refusal = await audit_rows(mtenant, request_id=refused["request_id"])
    assert [(r["action"], r["reason"]) for r in refusal] == [
        ("booking_rejected", "overlaps_booking")
    ]


async def test_rate_limit_of_the_key_applies_to_tool_calls(store: Any) -> None:
    from slotguard.api.app import create_app
    from slotguard.config import Settings
    from slotguard.mcp.http import lifespan
    from tests.conftest import new_tenant
    from tests.mcp.conftest import in_memory_server

    app = create_app(
        Settings(database_url=store.url, embedded_worker=False, rate_limit="4/minute"),
        db=store.db,
    )
    async with (
        lifespan(app.state.mcp.endpoint()),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as h,
    ):
        t = await new_tenant(store, h)
        server = in_memory_server(app, t.key)
        # The limit is per key: the tools' API calls count against it like any other call.
        async with Client(server, raise_exceptions=True) as c:
            s = await open_session(c)
            results = [await c.call_tool("get_booking", {"booking_id": "bk_x"}) for _ in range(6)]
        await server.backend.aclose()
    codes = [structured(r)["error"] for r in results]
    assert "rate_limited" in codes, codes
    limited = structured(results[codes.index("rate_limited")])
    jsonschema.validate(limited, FAILURE_SCHEMA)
    assert limited["status"] == 429 and limited["retryable"] is True
    assert int(limited["details"]["retry_after_seconds"]) >= 1
    assert s.tools  # listing worked before the limit was reached


async def test_refused_changes_leave_the_booking_and_say_what_to_do(
    mtenant: Tenant, memory_client: OpenClient
) -> None:
    biz = await open_day_business(mtenant, timezone="Asia/Kolkata")
    day = future_day(20)
    assert (await book(mtenant, biz["id"], day + 11 * H, 60)).status_code == 201
    async with memory_client(mtenant.key) as c:
        s = await open_session(c)
        mine = await s.call(
            "book", business_id=biz["id"], start=iso(day + 9 * H), end=iso(day + 10 * H)
        )
        # Moving onto the other booking: conflict, the next free hour, booking untouched.
        moved = await s.fail(
            "reschedule_booking", booking_id=mine["booking_id"], start=iso(day + 11 * H)
        )
        assert moved["error"] == "conflict" and moved["details"]["reason"] == "overlaps_booking"
        assert moved["next_available"]["start"]["utc"] == iso(day + 12 * H)
        assert moved["next_available"]["start"]["local"].endswith("+05:30")
        same = await s.call("get_booking", booking_id=mine["booking_id"])
        assert same["version"] == 1 and same["start"]["utc"] == iso(day + 9 * H)
        # A stale expected_version: version_conflict, retry after get_booking.
        stale = await s.fail("cancel_booking", booking_id=mine["booking_id"], expected_version=7)
        assert stale["error"] == "version_conflict" and stale["status"] == 412
        assert "get_booking" in stale["next_step"]
        assert (await s.call("get_booking", booking_id=mine["booking_id"]))["status"] == (
            "confirmed"
        )
        # Confirming a released hold: hold_released, take a new hold.
        hold = await s.call(
            "hold_slot",
            business_id=biz["id"],
            window_start=iso(day + 14 * H),
            window_end=iso(day + 15 * H),
            duration_minutes=30,
        )
        await s.call("release_hold", hold_id=hold["hold_id"])
        dead = await s.fail("confirm_hold", hold_id=hold["hold_id"])
        assert dead["error"] == "hold_released" and "hold_slot" in dead["next_step"]
    assert await count_bookings(mtenant, biz["id"]) == 2


async def test_unreachable_server_is_a_retryable_failure_not_an_empty_tool_list() -> None:
    import socket

    from slotguard.mcp.server import Backend, build_server

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = Backend(base_url=f"http://127.0.0.1:{port}", api_key="sg_live_x")
    async with Client(build_server(backend), raise_exceptions=True) as c:
        assert [t.name for t in (await c.list_tools()).tools] == ["get_context"]
        r = await c.call_tool("get_context", {})
    await backend.aclose()
    data = structured(r)
    jsonschema.validate(data, FAILURE_SCHEMA)
    assert r.is_error and data["error"] == "connection_error"
    assert data["status"] is None and data["retryable"] is True
    assert "retry" in data["next_step"]


def test_inlined_schema_accepts_and_refuses_what_the_models_schema_does() -> None:
    from slotguard.mcp.server import inline_refs

    schema = m.HoldResult.model_json_schema()
    flat = inline_refs(schema)
    inst = {"utc": "2026-04-01T09:00:00Z", "local": "2026-04-01T11:00:00+02:00"}
    good = {
        "hold_id": "hld_1",
        "business_id": "biz_1",
        "status": "active",
        "slots": [{"start": inst, "end": inst}],
        "timezone": "Europe/Berlin",
        "expires_at": inst,
        "expires_in_seconds": 30,
        "meeting_class": "default",
    }
    bad = {**good, "slots": [{"start": {"utc": "x"}, "end": inst}]}
    for s in (schema, flat):
        jsonschema.validate(good, s)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, s)
    # A recursive definition cannot be inlined: the schema is kept as it is.
    node = {"properties": {"next": {"$ref": "#/$defs/N"}}}
    recursive = {"$defs": {"N": node}, "$ref": "#/$defs/N"}
    assert inline_refs(recursive) == recursive


async def test_results_built_as_data_are_what_their_models_dump(
    mtenant: Tenant, memory_client: OpenClient
) -> None:
    biz = await open_day_business(mtenant, timezone="America/New_York")
    day = future_day(21)
    async with memory_client(mtenant.key) as c:
        s = await open_session(c)
        slots = await s.call(
            "find_slots", business_id=biz["id"], start=iso(day), end=iso(day + 3 * H), limit=4
        )
        hold = await s.call(
            "hold_slot",
            business_id=biz["id"],
            window_start=iso(day + 9 * H),
            window_end=iso(day + 10 * H),
            duration_minutes=30,
        )
    assert slots["slots"] and slots["slots"][0]["start"]["local"].endswith(("-05:00", "-04:00"))
    assert m.Slots.model_validate(slots).model_dump(mode="json") == slots
    assert m.HoldResult.model_validate(hold).model_dump(mode="json") == hold
    assert list(hold) == list(m.HoldResult.model_fields)
    assert list(slots) == list(m.Slots.model_fields)
