"""Scopes and the business fence of agent keys (§1.4, §6), on both stores.

The scope matrix is one row per endpoint: a new endpoint is one more `Row(...)` line.
Paths and bodies may name objects of the `World` built for each test: `{business_id}`,
`{booking_id}`, `{busy_id}`, `{class_name}`, `{agent_id}`, `{key_id}`, `{hold_id}` (an id
that does not exist yet: such rows say `succeeds=False`, as with the scope they get 404), and
the instants `{t_book}`, `{t_book_end}`, `{t_move}`, `{t_move_end}`, `{t_busy}`, `{t_busy_end}`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import pytest

from slotguard.domain.scopes import ALL_SCOPES
from tests.api.helpers import book, future_day, iso, key, make_business
from tests.api.test_agents import agent_tenant, make_agent, make_key
from tests.conftest import Tenant

H = dt.timedelta(hours=1)
ADMIN = "admin"


@dataclass(frozen=True)
class Row:
    method: str
    path: str
    # None: any valid key may call it
    scope: str | None
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # False when the world cannot make the object yet (a 404 then still shows the scope passed)
    succeeds: bool = True

    @property
    def id(self) -> str:
        return f"{self.method} {self.path.split('?')[0]}"


MATRIX: list[Row] = [
    # availability
    Row("GET", "/v1/availability/slots?business_id={business_id}", "availability:read"),
    Row(
        "GET",
        "/v1/availability/check?business_id={business_id}&start_time={t_book}",
        "availability:read",
    ),
    Row("GET", "/v1/me", None),
    # bookings
    Row("GET", "/v1/bookings", "bookings:read"),
    Row("GET", "/v1/bookings/{booking_id}", "bookings:read"),
    Row(
        "POST",
        "/v1/bookings",
        "bookings:write",
        {"business_id": "{business_id}", "start_time": "{t_book}", "end_time": "{t_book_end}"},
    ),
    Row("POST", "/v1/bookings/{booking_id}/cancel", "bookings:write", {"reason": "test"}),
    Row(
        "POST",
        "/v1/bookings/{booking_id}/reschedule",
        "bookings:write",
        {"start_time": "{t_move}", "end_time": "{t_move_end}"},
    ),
    Row(
        "PATCH", "/v1/bookings/{booking_id}", "bookings:write", {"title": "x"}, {"If-Match": '"1"'}
    ),
    # audit
    Row("GET", "/v1/audit-log", "audit:read"),
    Row("GET", "/v1/audit-log/export", "audit:read"),
    # businesses, rules, classes, busy time: reads need a valid key, writes need admin
    Row("GET", "/v1/businesses", None),
    Row("GET", "/v1/businesses/{business_id}", None),
    Row("GET", "/v1/businesses/{business_id}/rules", None),
    Row("GET", "/v1/businesses/{business_id}/busy", None),
    Row("GET", "/v1/rules/defaults", None),
    Row("GET", "/v1/meeting-classes", None),
    Row("GET", "/v1/meeting-classes/{class_name}", None),
    Row("POST", "/v1/businesses", ADMIN, {"name": "New", "timezone": "UTC"}),
    Row("PATCH", "/v1/businesses/{business_id}", ADMIN, {"name": "Renamed"}),
    Row("DELETE", "/v1/businesses/{business_id}", ADMIN),
    Row("PUT", "/v1/rules/defaults", ADMIN, {"buffer_minutes": 5}),
    Row("POST", "/v1/meeting-classes", ADMIN, {"name": "demo", "display_name": "Demo"}),
    Row("PATCH", "/v1/meeting-classes/{class_name}", ADMIN, {"display_name": "Extra!"}),
    Row("DELETE", "/v1/meeting-classes/{class_name}", ADMIN),
    Row(
        "POST",
        "/v1/businesses/{business_id}/busy",
        ADMIN,
        {"start": "{t_busy}", "end": "{t_busy_end}"},
    ),
    Row("DELETE", "/v1/businesses/{business_id}/busy/{busy_id}", ADMIN),
    # agents and keys
    Row("POST", "/v1/agents", ADMIN, {"name": "a", "scopes": [], "allowed_business_ids": "*"}),
    Row("GET", "/v1/agents", ADMIN),
    Row("GET", "/v1/agents/{agent_id}", ADMIN),
    Row("PATCH", "/v1/agents/{agent_id}", ADMIN, {"name": "b"}),
    Row("DELETE", "/v1/agents/{agent_id}", ADMIN),
    Row("POST", "/v1/agents/{agent_id}/keys", ADMIN, {"name": "k"}),
    Row("GET", "/v1/agents/{agent_id}/keys", ADMIN),
    Row("GET", "/v1/keys/{key_id}", ADMIN),
    Row("DELETE", "/v1/keys/{key_id}", ADMIN),
    # holds
    Row(
        "POST",
        "/v1/availability",
        "holds:write",
        {"business_id": "{business_id}", "window": {"start": "{t_hold}", "end": "{t_hold_end}"}},
    ),
    Row("GET", "/v1/holds/{hold_id}", "holds:write"),
    Row("DELETE", "/v1/holds/{hold_id}", "holds:write"),
    Row("POST", "/v1/bookings/{missing_hold_id}/confirm", "bookings:write", {}, succeeds=False),
]
SCOPED = [row for row in MATRIX if row.scope is not None]


async def build_world(t: Tenant) -> dict[str, str]:
    """One of each object the matrix names, made with the account's admin key."""
    day = future_day(10)
    biz = await make_business(t)
    booked = await book(t, biz["id"], day + 9 * H)
    assert booked.status_code == 201, booked.text
    busy = await t.client.post(
        f"/v1/businesses/{biz['id']}/busy",
        json={"start": iso(day + 20 * H), "end": iso(day + 21 * H)},
        headers=t.headers(),
    )
    assert busy.status_code == 201, busy.text
    mc = await t.client.post(
        "/v1/meeting-classes",
        json={"name": "extra", "display_name": "Extra"},
        headers=t.headers(),
    )
    assert mc.status_code == 201, mc.text
    held = await t.client.post(
        "/v1/availability",
        json={
            "business_id": biz["id"],
            "window": {"start": iso(day + 17 * H), "end": iso(day + 18 * H)},
        },
        headers=t.headers(),
    )
    assert held.status_code == 200, held.text
    target = await make_agent(t, scopes=["bookings:read"], name="target")
    target_key = await make_key(t, target["id"])
    return {
        "business_id": biz["id"],
        "booking_id": booked.json()["data"]["id"],
        "busy_id": busy.json()["data"]["id"],
        "class_name": "extra",
        "agent_id": target["id"],
        "key_id": target_key["id"],
        "hold_id": held.json()["data"]["hold_id"],
        "missing_hold_id": "hld_01aaaaaaaaaaaaaaaaaaaaaaaa",
        "t_hold": iso(day + 15 * H),
        "t_hold_end": iso(day + 16 * H),
        "t_book": iso(day + 11 * H),
        "t_book_end": iso(day + 11 * H + H / 2),
        "t_move": iso(day + 13 * H),
        "t_move_end": iso(day + 13 * H + H / 2),
        "t_busy": iso(day + 22 * H),
        "t_busy_end": iso(day + 23 * H),
    }


def fill(value: Any, world: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**world)
    if isinstance(value, dict):
        return {k: fill(v, world) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, world) for v in value]
    return value


async def call(t: Tenant, row: Row, world: dict[str, str]) -> Any:
    # Every write may carry an Idempotency-Key, and some need one: send it always, so the
    # only thing a request can lack is the scope under test.
    headers = t.headers(**{"Idempotency-Key": key(), **row.headers})
    body = fill(row.body, world) if row.body is not None else None
    return await t.client.request(row.method, fill(row.path, world), json=body, headers=headers)


@pytest.mark.parametrize("row", SCOPED, ids=lambda r: r.id)
async def test_missing_scope_is_403(tenant: Tenant, row: Row) -> None:
    world = await build_world(tenant)
    # Every scope but the one under test; `admin` implies all of them, so it goes too.
    others = [s for s in ALL_SCOPES if s not in (row.scope, ADMIN)]
    agent = await agent_tenant(tenant, scopes=others)
    r = await call(agent, row, world)
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "forbidden"
    assert r.json()["details"]["required_scope"] == row.scope


@pytest.mark.parametrize("row", MATRIX, ids=lambda r: r.id)
async def test_the_scope_alone_is_enough(tenant: Tenant, row: Row) -> None:
    world = await build_world(tenant)
    agent = await agent_tenant(tenant, scopes=[row.scope] if row.scope else [])
    r = await call(agent, row, world)
    assert r.status_code not in (401, 403), r.text
    assert r.status_code < 500, r.text
    if row.succeeds:
        assert 200 <= r.status_code < 300, r.text


@pytest.mark.parametrize("row", SCOPED, ids=lambda r: r.id)
async def test_admin_scope_implies_every_scope(tenant: Tenant, row: Row) -> None:
    world = await build_world(tenant)
    agent = await agent_tenant(tenant, scopes=[ADMIN])
    r = await call(agent, row, world)
    assert r.status_code not in (401, 403), r.text


# -- the business fence ------------------------------------------------------------------


async def test_fenced_agent_is_kept_to_its_businesses(tenant: Tenant) -> None:
    a = await make_business(tenant)
    b = await make_business(tenant)
    day = future_day(10)
    on_a = (await book(tenant, a["id"], day + 9 * H)).json()["data"]
    on_b = (await book(tenant, b["id"], day + 9 * H)).json()["data"]
    agent = await agent_tenant(
        tenant,
        scopes=["availability:read", "bookings:read", "bookings:write"],
        allowed=[a["id"]],
    )
    h = agent.headers()

    def fenced_off(r: Any) -> None:
        assert r.status_code == 403, r.text
        assert r.json()["error"] == "forbidden"
        assert r.json()["details"] == {"business_id": b["id"]}

    fenced_off(await agent.client.get(f"/v1/availability/slots?business_id={b['id']}", headers=h))
    fenced_off(await book(agent, b["id"], day + 11 * H))
    fenced_off(await agent.client.get(f"/v1/bookings/{on_b['id']}", headers=h))
    fenced_off(await agent.client.get(f"/v1/bookings?business_id={b['id']}", headers=h))
    fenced_off(await agent.client.get(f"/v1/businesses/{b['id']}", headers=h))
    fenced_off(
        await agent.client.post(
            f"/v1/bookings/{on_b['id']}/cancel",
            json={},
            headers=agent.headers(**{"Idempotency-Key": key()}),
        )
    )

    r = await agent.client.get(f"/v1/availability/slots?business_id={a['id']}", headers=h)
    assert r.status_code == 200, r.text
    mine = await book(agent, a["id"], day + 11 * H)
    assert mine.status_code == 201, mine.text

    r = await agent.client.get("/v1/bookings", headers=h)
    assert r.status_code == 200
    assert {x["id"] for x in r.json()["data"]} == {on_a["id"], mine.json()["data"]["id"]}
    assert {x["business_id"] for x in r.json()["data"]} == {a["id"]}
    r = await agent.client.get("/v1/businesses", headers=h)
    assert [x["id"] for x in r.json()["data"]] == [a["id"]]

    r = await tenant.client.get("/v1/bookings", headers=tenant.headers())
    assert len(r.json()["data"]) == 3


async def test_agent_default_meeting_class_applies_when_omitted(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    r = await tenant.client.post(
        "/v1/meeting-classes",
        json={"name": "consult", "display_name": "Consultation", "duration_minutes": 20},
        headers=tenant.headers(),
    )
    assert r.status_code == 201, r.text
    agent = await agent_tenant(tenant, scopes=["bookings:write"], default_meeting_class="consult")
    start = future_day(10) + 9 * H

    async def book_without_end(t: Tenant, at: dt.datetime, **extra: Any) -> Any:
        return await t.client.post(
            "/v1/bookings",
            json={"business_id": biz["id"], "start_time": iso(at), **extra},
            headers=t.headers(**{"Idempotency-Key": key()}),
        )

    r = await book_without_end(agent, start)
    assert r.status_code == 201, r.text
    assert r.json()["data"]["meeting_class"] == "consult"
    assert r.json()["data"]["end_time"] == iso(start + dt.timedelta(minutes=20))
    assert r.json()["data"]["title"] == "Consultation"

    r = await book(agent, biz["id"], start + 2 * H, meeting_class="default")
    assert r.status_code == 201, r.text
    assert r.json()["data"]["meeting_class"] == "default"

    r = await book(tenant, biz["id"], start + 4 * H)
    assert r.json()["data"]["meeting_class"] == "default"
