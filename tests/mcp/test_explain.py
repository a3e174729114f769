"""``explain_decision``: audit rows turned into a summary an agent can repeat (§11)."""

from __future__ import annotations

from typing import Any

from tests.api.helpers import book, future_day, iso
from tests.api.test_agents import agent_tenant
from tests.conftest import Tenant
from tests.mcp.test_tools import H, OpenClient, open_day_business, open_session


async def make_class(t: Tenant, name: str, priority: int) -> None:
    r = await t.client.post(
        "/v1/meeting-classes",
        json={"name": name, "display_name": name, "duration_minutes": 60, "priority": priority},
        headers=t.headers(),
    )
    assert r.status_code == 201, r.text


async def test_refusal_names_the_blocking_booking_and_priorities(
    mtenant: Tenant, memory_client: OpenClient
) -> None:
    biz = await open_day_business(mtenant)
    await make_class(mtenant, "board_meeting", 80)
    day = future_day(17)
    r = await book(mtenant, biz["id"], day + 10 * H, 60, meeting_class="board_meeting")
    assert r.status_code == 201, r.text
    blocker = r.json()["data"]["id"]
    agent = await agent_tenant(
        mtenant,
        scopes=["availability:read", "bookings:write", "bookings:read", "audit:read"],
    )
    async with memory_client(agent.key) as c:
        s = await open_session(c)
        refused = await s.fail(
            "book", business_id=biz["id"], start=iso(day + 10 * H), end=iso(day + 11 * H)
        )
        why = await s.call("explain_decision", request_id=refused["request_id"])
    assert [(r["action"], r["decision"], r["reason"]) for r in why["rows"]] == [
        ("booking_rejected", "reject", "overlaps_booking")
    ]
    row = why["rows"][0]
    assert row["agent_id"] and row["agent_id"].startswith("agt_")
    summary = why["summary"]
    assert "refused because it overlaps a confirmed booking" in summary
    assert f"booking {blocker} (board_meeting, priority 80 vs. yours 50)" in summary
    assert iso(day + 10 * H).replace("Z", "") in summary.replace("+00:00", "")


async def test_hold_story_and_unknown_ids(mtenant: Tenant, memory_client: OpenClient) -> None:
    biz = await open_day_business(mtenant)
    day = future_day(18)
    async with memory_client(mtenant.key) as c:
        s = await open_session(c)
        hold = await s.call(
            "hold_slot",
            business_id=biz["id"],
            window_start=iso(day + 9 * H),
            window_end=iso(day + 10 * H),
            duration_minutes=30,
        )
        await s.call("release_hold", hold_id=hold["hold_id"])
        why = await s.call("explain_decision", hold_id=hold["hold_id"])
        assert [r["action"] for r in why["rows"]] == ["hold_created", "hold_released"]
        assert "held" in why["summary"] and "released the hold" in why["summary"]
        assert hold["hold_id"] in why["summary"]

        # A refused hold: no slot in the window.
        r = await book(mtenant, biz["id"], day + 13 * H, 60)
        assert r.status_code == 201
        full = await s.fail(
            "hold_slot",
            business_id=biz["id"],
            window_start=iso(day + 13 * H),
            window_end=iso(day + 14 * H),
            duration_minutes=60,
        )
        refusal = await s.call("explain_decision", request_id=full["request_id"])
        assert [r["action"] for r in refusal["rows"]] == ["hold_rejected"]
        assert "no slot was free in the requested window" in refusal["summary"]

        nothing = await s.call("explain_decision", booking_id="bk_unknown")
        assert nothing["rows"] == []
        assert "No audit records match" in nothing["summary"]


async def test_without_audit_scope_the_tool_is_hidden_and_refused(
    mtenant: Tenant, memory_client: OpenClient
) -> None:
    agent = await agent_tenant(mtenant, scopes=["bookings:read"])
    async with memory_client(agent.key) as c:
        s = await open_session(c)
        assert "explain_decision" not in s.tools
        result = await c.call_tool("explain_decision", {"booking_id": "bk_x"})
    data: dict[str, Any] = result.structured_content or {}
    assert result.is_error and data["error"] == "forbidden"
    assert data["details"]["required_scope"] == "audit:read"
