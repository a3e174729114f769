"""Priority, preemption, sacred bookings and the preempt scope (§5), table-driven."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import update

from slotguard.ids import new_id
from slotguard.services import accounts
from slotguard.store.models import Agent, Booking
from tests.api.helpers import book, future_day, iso, key, make_business
from tests.conftest import Tenant

H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)


async def agent_key(t: Tenant, scopes: list[str]) -> str:
    now = dt.datetime.now(dt.UTC)
    async with t.store.db.write() as s:
        agent = Agent(
            id=new_id("agt"),
            account_id=t.account_id,
            name="bot",
            scopes=scopes,
            allowed_business_ids=["*"],
            default_meeting_class=None,
            created_at=now,
            updated_at=now,
            deleted_at=None,
        )
        s.add(agent)
        await s.flush()
        _, raw = await accounts.create_key(s, account_id=t.account_id, agent_id=agent.id, now=now)
    return raw


async def make_classes(t: Tenant) -> None:
    for name, prio in (("p10", 10), ("p50", 50), ("p90", 90)):
        r = await t.client.post(
            "/v1/meeting-classes",
            json={"name": name, "display_name": name, "priority": prio, "duration_minutes": 30},
            headers=t.headers(),
        )
        assert r.status_code == 201, r.text


@dataclass(frozen=True)
class Case:
    existing: str  # "hold" or "booking"
    existing_class: str
    age_hours: float  # for bookings: how long ago it was committed
    caller_class: str
    preempt_scope: bool
    outcome: str  # "take" (slot acquired, existing displaced) or "blocked"


CASES = [
    Case("hold", "p10", 0, "p90", False, "take"),
    Case("hold", "p10", 0, "p50", False, "take"),
    Case("hold", "p50", 0, "p50", False, "blocked"),
    Case("hold", "p90", 0, "p10", True, "blocked"),
    Case("booking", "p10", 1, "p90", True, "take"),
    Case("booking", "p10", 1, "p90", False, "blocked"),
    Case("booking", "p10", 25, "p90", True, "blocked"),  # sacred (default 24 h)
    Case("booking", "p10", 23, "p90", True, "take"),
    Case("booking", "p50", 1, "p50", True, "blocked"),
    Case("booking", "p90", 1, "p10", True, "blocked"),
]


@pytest.mark.parametrize(
    "case",
    CASES,
    ids=lambda c: (
        f"{c.existing}-{c.existing_class}-age{c.age_hours}-by-{c.caller_class}"
        f"-{'scope' if c.preempt_scope else 'noscope'}"
    ),
)
async def test_hold_arbitration_matrix(tenant: Tenant, case: Case) -> None:
    await make_classes(tenant)
    biz = await make_business(tenant)
    start = future_day() + 9 * H
    window = {"start": iso(start), "end": iso(start + 30 * M)}
    existing_id: str
    if case.existing == "hold":
        r = await tenant.client.post(
            "/v1/availability",
            json={"business_id": biz["id"], "meeting_class": case.existing_class, "window": window},
            headers=tenant.headers(),
        )
        assert r.status_code == 200, r.text
        existing_id = r.json()["data"]["hold_id"]
    else:
        r = await book(tenant, biz["id"], start, meeting_class=case.existing_class)
        assert r.status_code == 201, r.text
        existing_id = r.json()["data"]["id"]
        async with tenant.store.db.write() as s:
            await s.execute(
                update(Booking)
                .where(Booking.id == existing_id)
                .values(created_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=case.age_hours))
            )
    scopes = ["holds:write", "bookings:write", "bookings:read"]
    if case.preempt_scope:
        scopes.append("bookings:preempt")
    caller = await agent_key(tenant, scopes)
    r = await tenant.client.post(
        "/v1/availability",
        json={"business_id": biz["id"], "meeting_class": case.caller_class, "window": window},
        headers={"Authorization": f"Bearer {caller}"},
    )
    if case.outcome == "blocked":
        assert r.status_code == 409 and r.json()["error"] == "no_slots_available", r.text
        return
    assert r.status_code == 200, r.text
    d = r.json()["data"]
    if case.existing == "hold":
        assert d["preempted_holds"] == [existing_id] and d["preempted_bookings"] == []
        assert d["decision"] == "accept"
        g = await tenant.client.get(f"/v1/holds/{existing_id}", headers=tenant.headers())
        assert g.json()["data"]["status"] == "preempted"
    else:
        assert d["preempted_bookings"] == [existing_id] and d["decision"] == "preempt"
        g = await tenant.client.get(f"/v1/bookings/{existing_id}", headers=tenant.headers())
        assert g.json()["data"]["status"] == "preempted" and g.json()["data"]["version"] == 2
        log = await tenant.client.get(
            "/v1/audit-log",
            params={"booking_id": existing_id, "action": "booking_preempted"},
            headers=tenant.headers(),
        )
        assert len(log.json()["data"]) == 1


async def test_free_time_is_preferred_over_preemption(tenant: Tenant) -> None:
    await make_classes(tenant)
    biz = await make_business(tenant)
    start = future_day() + 9 * H
    low = await tenant.client.post(
        "/v1/availability",
        json={
            "business_id": biz["id"],
            "meeting_class": "p10",
            "window": {"start": iso(start), "end": iso(start + 30 * M)},
        },
        headers=tenant.headers(),
    )
    assert low.status_code == 200
    high = await tenant.client.post(
        "/v1/availability",
        json={
            "business_id": biz["id"],
            "meeting_class": "p90",
            "window": {"start": iso(start), "end": iso(start + H)},
        },
        headers=tenant.headers(),
    )
    assert high.json()["data"]["slots"][0]["start"] == iso(start + 30 * M)
    assert high.json()["data"]["preempted_holds"] == []


async def test_direct_booking_takes_lower_hold_but_not_equal(tenant: Tenant) -> None:
    await make_classes(tenant)
    biz = await make_business(tenant)
    start = future_day() + 9 * H
    w = {"start": iso(start), "end": iso(start + 30 * M)}
    low = (
        await tenant.client.post(
            "/v1/availability",
            json={"business_id": biz["id"], "meeting_class": "p10", "window": w},
            headers=tenant.headers(),
        )
    ).json()["data"]
    r = await book(tenant, biz["id"], start, meeting_class="p10")
    assert r.status_code == 409 and r.json()["details"]["reason"] == "overlaps_hold"
    r = await book(tenant, biz["id"], start, meeting_class="p90")
    assert r.status_code == 201, r.text
    g = await tenant.client.get(f"/v1/holds/{low['hold_id']}", headers=tenant.headers())
    assert g.json()["data"]["status"] == "preempted"


async def test_decisions_are_deterministic(tenant: Tenant) -> None:
    """The same request against the same state gives the same answer."""
    await make_classes(tenant)
    caller = await agent_key(tenant, ["holds:write", "bookings:write", "bookings:preempt"])
    outcomes: list[Any] = []
    for _ in range(2):
        biz = await make_business(tenant)
        start = future_day() + 9 * H
        for i, cls in enumerate(("p10", "p50", "p10")):
            await book(tenant, biz["id"], start + i * 30 * M, meeting_class=cls)
        await tenant.client.post(
            "/v1/availability",
            json={
                "business_id": biz["id"],
                "meeting_class": "p10",
                "window": {"start": iso(start + 90 * M), "end": iso(start + 2 * H)},
            },
            headers=tenant.headers(),
        )
        r = await tenant.client.post(
            "/v1/availability",
            json={
                "business_id": biz["id"],
                "meeting_class": "p90",
                "max_slots": 2,
                "window": {"start": iso(start), "end": iso(start + 2 * H)},
            },
            headers={"Authorization": f"Bearer {caller}", "Idempotency-Key": key()},
        )
        d = r.json()["data"]
        outcomes.append(
            (
                r.status_code,
                d["decision"],
                d["slots"],
                len(d["preempted_holds"]),
                len(d["preempted_bookings"]),
            )
        )
    assert outcomes[0] == outcomes[1]
    # Nothing is free; taking the lower hold is gentler than preempting a booking.
    assert outcomes[0][1:] == (
        "accept",
        [{"start": outcomes[0][2][0]["start"], "end": outcomes[0][2][0]["end"]}],
        1,
        0,
    )
