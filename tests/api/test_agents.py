"""Agents and API keys (§6), on both stores."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from slotguard.services import accounts
from tests.api.helpers import key, make_business
from tests.conftest import Tenant, new_tenant


async def make_agent(
    t: Tenant,
    *,
    scopes: list[str],
    allowed: str | list[str] = "*",
    default_meeting_class: str | None = None,
    name: str = "bot",
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "scopes": scopes, "allowed_business_ids": allowed}
    if default_meeting_class is not None:
        body["default_meeting_class"] = default_meeting_class
    r = await t.client.post("/v1/agents", json=body, headers=t.headers())
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


async def make_key(t: Tenant, agent_id: str, name: str | None = None) -> dict[str, Any]:
    r = await t.client.post(
        f"/v1/agents/{agent_id}/keys",
        json={"name": name} if name else None,
        headers=t.headers(),
    )
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


def acting_as(t: Tenant, raw_key: str) -> Tenant:
    """The same account and client, calling with another key."""
    return dataclasses.replace(t, key=raw_key)


async def agent_tenant(t: Tenant, **agent: Any) -> Tenant:
    """A tenant view whose key belongs to a new agent made with `agent` settings."""
    a = await make_agent(t, **agent)
    return acting_as(t, (await make_key(t, a["id"]))["key"])


async def test_agent_crud(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    a = await make_agent(tenant, scopes=["bookings:read", "availability:read"], name="scheduler")
    assert a["id"].startswith("agt_")
    assert a["name"] == "scheduler"
    assert a["scopes"] == ["bookings:read", "availability:read"]
    assert a["allowed_business_ids"] == "*"
    assert a["default_meeting_class"] is None
    assert a["created_at"] == a["updated_at"]

    r = await tenant.client.get(f"/v1/agents/{a['id']}", headers=tenant.headers())
    assert r.status_code == 200 and r.json()["data"] == a

    r = await tenant.client.patch(
        f"/v1/agents/{a['id']}",
        json={
            "name": "renamed",
            "scopes": ["bookings:write"],
            "allowed_business_ids": [biz["id"]],
            "default_meeting_class": "default",
        },
        headers=tenant.headers(),
    )
    assert r.status_code == 200, r.text
    patched = r.json()["data"]
    assert patched["name"] == "renamed"
    assert patched["scopes"] == ["bookings:write"]
    assert patched["allowed_business_ids"] == [biz["id"]]
    assert patched["default_meeting_class"] == "default"
    assert patched["created_at"] == a["created_at"]

    r = await tenant.client.patch(
        f"/v1/agents/{a['id']}",
        json={"default_meeting_class": None, "allowed_business_ids": "*"},
        headers=tenant.headers(),
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["default_meeting_class"] is None
    assert r.json()["data"]["allowed_business_ids"] == "*"
    assert r.json()["data"]["name"] == "renamed"

    r = await tenant.client.get("/v1/agents", headers=tenant.headers())
    assert [x["id"] for x in r.json()["data"]] == [a["id"]]

    r = await tenant.client.delete(f"/v1/agents/{a['id']}", headers=tenant.headers())
    assert r.status_code == 200 and r.json()["data"] == {"id": a["id"], "deleted": True}
    r = await tenant.client.get(f"/v1/agents/{a['id']}", headers=tenant.headers())
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = await tenant.client.get("/v1/agents", headers=tenant.headers())
    assert r.json()["data"] == []
    for method in ("PATCH", "DELETE"):
        r = await tenant.client.request(
            method, f"/v1/agents/{a['id']}", json={"name": "x"}, headers=tenant.headers()
        )
        assert r.status_code == 404, (method, r.text)


async def test_create_returns_location_and_dedupes(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    r = await tenant.client.post(
        "/v1/agents",
        json={
            "name": "bot",
            "scopes": ["bookings:read", "bookings:read"],
            "allowed_business_ids": [biz["id"], biz["id"]],
        },
        headers=tenant.headers(),
    )
    assert r.status_code == 201, r.text
    data = r.json()["data"]
    assert r.headers["Location"] == f"/v1/agents/{data['id']}"
    assert data["scopes"] == ["bookings:read"]
    assert data["allowed_business_ids"] == [biz["id"]]


async def test_agents_are_paginated(tenant: Tenant) -> None:
    ids = [(await make_agent(tenant, scopes=[], name=f"a{i}"))["id"] for i in range(3)]
    r = await tenant.client.get("/v1/agents?limit=2", headers=tenant.headers())
    body = r.json()
    assert [a["id"] for a in body["data"]] == ids[:2]
    assert body["meta"]["has_more"] is True
    r = await tenant.client.get(
        f"/v1/agents?limit=2&cursor={body['meta']['next_cursor']}", headers=tenant.headers()
    )
    assert [a["id"] for a in r.json()["data"]] == ids[2:]
    assert r.json()["meta"]["has_more"] is False


async def test_key_is_shown_once_and_works_as_bearer(tenant: Tenant) -> None:
    a = await make_agent(tenant, scopes=["bookings:read"])
    r = await tenant.client.post(
        f"/v1/agents/{a['id']}/keys", json={"name": "prod"}, headers=tenant.headers()
    )
    assert r.status_code == 201, r.text
    k = r.json()["data"]
    assert r.headers["Location"] == f"/v1/keys/{k['id']}"
    assert k["id"].startswith("key_")
    assert k["key"].startswith("sg_live_")
    assert k["key"].startswith(k["prefix"]) and len(k["prefix"]) < len(k["key"])
    assert k["name"] == "prod" and k["agent_id"] == a["id"] and k["revoked_at"] is None

    agent = acting_as(tenant, k["key"])
    r = await agent.client.get("/v1/bookings", headers=agent.headers())
    assert r.status_code == 200, r.text

    listing = await tenant.client.get(f"/v1/agents/{a['id']}/keys", headers=tenant.headers())
    assert listing.status_code == 200
    assert k["key"] not in listing.text
    (item,) = listing.json()["data"]
    assert item == {
        "id": k["id"],
        "agent_id": a["id"],
        "name": "prod",
        "prefix": k["prefix"],
        "created_at": k["created_at"],
        "revoked_at": None,
    }
    one = await tenant.client.get(f"/v1/keys/{k['id']}", headers=tenant.headers())
    assert one.status_code == 200 and one.json()["data"] == item


async def test_key_body_is_optional(tenant: Tenant) -> None:
    a = await make_agent(tenant, scopes=[])
    k = await make_key(tenant, a["id"])
    assert k["name"] is None and k["key"].startswith("sg_live_")


async def test_idempotent_replay_of_key_creation_has_no_secret(tenant: Tenant) -> None:
    a = await make_agent(tenant, scopes=["bookings:read"])
    headers = tenant.headers(**{"Idempotency-Key": key()})
    first = await tenant.client.post(f"/v1/agents/{a['id']}/keys", json={}, headers=headers)
    again = await tenant.client.post(f"/v1/agents/{a['id']}/keys", json={}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["data"]["id"] == first.json()["data"]["id"]
    assert first.json()["data"]["key"].startswith("sg_live_")
    assert again.json()["data"]["key"] is None
    listing = await tenant.client.get(f"/v1/agents/{a['id']}/keys", headers=tenant.headers())
    assert len(listing.json()["data"]) == 1
    agent = acting_as(tenant, first.json()["data"]["key"])
    assert (await agent.client.get("/v1/bookings", headers=agent.headers())).status_code == 200


async def test_revocation_is_immediate_and_repeatable(tenant: Tenant) -> None:
    a = await make_agent(tenant, scopes=["bookings:read"])
    k = await make_key(tenant, a["id"])
    agent = acting_as(tenant, k["key"])
    assert (await agent.client.get("/v1/bookings", headers=agent.headers())).status_code == 200

    r = await tenant.client.delete(f"/v1/keys/{k['id']}", headers=tenant.headers())
    assert r.status_code == 200, r.text
    revoked = r.json()["data"]
    assert revoked["id"] == k["id"] and revoked["revoked_at"] is not None
    assert "key" not in revoked

    r = await agent.client.get("/v1/bookings", headers=agent.headers())
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"

    again = await tenant.client.delete(f"/v1/keys/{k['id']}", headers=tenant.headers())
    assert again.status_code == 200 and again.json()["data"] == revoked
    listing = await tenant.client.get(f"/v1/agents/{a['id']}/keys", headers=tenant.headers())
    assert listing.json()["data"][0]["revoked_at"] == revoked["revoked_at"]


async def test_deleting_an_agent_revokes_its_keys(tenant: Tenant) -> None:
    a = await make_agent(tenant, scopes=["bookings:read"])
    keys = [await make_key(tenant, a["id"]) for _ in range(2)]
    for k in keys:
        agent = acting_as(tenant, k["key"])
        assert (await agent.client.get("/v1/bookings", headers=agent.headers())).status_code == 200

    r = await tenant.client.delete(f"/v1/agents/{a['id']}", headers=tenant.headers())
    assert r.status_code == 200, r.text
    for k in keys:
        agent = acting_as(tenant, k["key"])
        r = await agent.client.get("/v1/bookings", headers=agent.headers())
        assert r.status_code == 401, r.text
        r = await tenant.client.get(f"/v1/keys/{k['id']}", headers=tenant.headers())
        assert r.json()["data"]["revoked_at"] is not None
    r = await tenant.client.post(f"/v1/agents/{a['id']}/keys", headers=tenant.headers())
    assert r.status_code == 404
    r = await tenant.client.get(f"/v1/agents/{a['id']}/keys", headers=tenant.headers())
    assert r.status_code == 404


async def test_changes_apply_on_the_next_request(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    a = await make_agent(tenant, scopes=["bookings:read"])
    agent = acting_as(tenant, (await make_key(tenant, a["id"]))["key"])
    r = await agent.client.get("/v1/audit-log", headers=agent.headers())
    assert r.status_code == 403 and r.json()["details"] == {"required_scope": "audit:read"}

    await tenant.client.patch(
        f"/v1/agents/{a['id']}",
        json={"scopes": ["bookings:read", "audit:read"], "allowed_business_ids": []},
        headers=tenant.headers(),
    )
    assert (await agent.client.get("/v1/audit-log", headers=agent.headers())).status_code == 200
    r = await agent.client.get(f"/v1/businesses/{biz['id']}", headers=agent.headers())
    assert r.status_code == 403 and r.json()["details"] == {"business_id": biz["id"]}


async def test_admin_keys_can_be_revoked_but_not_by_themselves(tenant: Tenant) -> None:
    async with tenant.store.db.write() as s:
        other, raw = await accounts.create_key(
            s, account_id=tenant.account_id, now=dt.datetime.now(dt.UTC), name="ci"
        )
    second = acting_as(tenant, raw)
    me = await tenant.client.get(f"/v1/keys/{other.id}", headers=tenant.headers())
    assert me.status_code == 200 and me.json()["data"]["agent_id"] is None

    r = await second.client.delete(f"/v1/keys/{other.id}", headers=second.headers())
    assert r.status_code == 409 and r.json()["error"] == "conflict"
    assert (await second.client.get("/v1/agents", headers=second.headers())).status_code == 200

    r = await tenant.client.delete(f"/v1/keys/{other.id}", headers=tenant.headers())
    assert r.status_code == 200 and r.json()["data"]["revoked_at"] is not None
    assert (await second.client.get("/v1/agents", headers=second.headers())).status_code == 401


async def test_other_accounts_agents_and_keys_are_404(tenant: Tenant) -> None:
    a = await make_agent(tenant, scopes=["bookings:read"])
    k = await make_key(tenant, a["id"])
    stranger = await new_tenant(tenant.store, tenant.client)
    h = stranger.headers()
    c = stranger.client
    responses = [
        await c.get(f"/v1/agents/{a['id']}", headers=h),
        await c.patch(f"/v1/agents/{a['id']}", json={"name": "mine"}, headers=h),
        await c.post(f"/v1/agents/{a['id']}/keys", headers=h),
        await c.get(f"/v1/agents/{a['id']}/keys", headers=h),
        await c.get(f"/v1/keys/{k['id']}", headers=h),
        await c.delete(f"/v1/keys/{k['id']}", headers=h),
        await c.delete(f"/v1/agents/{a['id']}", headers=h),
    ]
    for r in responses:
        assert r.status_code == 404 and r.json()["error"] == "not_found", r.text
    assert (await c.get("/v1/agents", headers=h)).json()["data"] == []
    agent = acting_as(tenant, k["key"])
    assert (await agent.client.get("/v1/bookings", headers=agent.headers())).status_code == 200
    r = await tenant.client.get(f"/v1/agents/{a['id']}", headers=tenant.headers())
    assert r.json()["data"]["name"] == "bot"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scopes": ["bookings:read", "bookings:delete"]}, "scopes.1"),
        ({"allowed_business_ids": ["biz_nope"]}, "allowed_business_ids.0"),
        ({"allowed_business_ids": "all"}, "allowed_business_ids"),
        ({"default_meeting_class": "nope"}, "default_meeting_class"),
        ({"name": ""}, "name"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_validation_errors(tenant: Tenant, body: dict[str, Any], field: str) -> None:
    base: dict[str, Any] = {"name": "bot", "scopes": [], "allowed_business_ids": "*"}
    r = await tenant.client.post("/v1/agents", json={**base, **body}, headers=tenant.headers())
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "validation_error"
    fields = [f["field"] for f in r.json()["details"]["fields"]]
    assert any(f == field or f.startswith(f"{field}.") for f in fields), fields

    a = await make_agent(tenant, scopes=["bookings:read"])
    r = await tenant.client.patch(f"/v1/agents/{a['id']}", json=body, headers=tenant.headers())
    assert r.status_code == 422, r.text
    r = await tenant.client.get(f"/v1/agents/{a['id']}", headers=tenant.headers())
    assert r.json()["data"] == a
    assert (await tenant.client.get("/v1/agents", headers=tenant.headers())).json()["data"] == [a]


async def test_another_accounts_business_is_unknown(tenant: Tenant) -> None:
    stranger = await new_tenant(tenant.store, tenant.client)
    theirs = await make_business(stranger)
    r = await tenant.client.post(
        "/v1/agents",
        json={"name": "bot", "scopes": [], "allowed_business_ids": [theirs["id"]]},
        headers=tenant.headers(),
    )
    assert r.status_code == 422
    assert r.json()["details"]["fields"][0]["field"] == "allowed_business_ids.0"


async def test_agent_endpoints_need_admin(tenant: Tenant) -> None:
    target = await make_agent(tenant, scopes=[])
    agent = await agent_tenant(tenant, scopes=["bookings:read", "bookings:write", "audit:read"])
    r = await agent.client.get(f"/v1/agents/{target['id']}", headers=agent.headers())
    assert r.status_code == 403
    assert r.json()["error"] == "forbidden"
    assert r.json()["details"] == {"required_scope": "admin"}
    admin_agent = await agent_tenant(tenant, scopes=["admin"])
    r = await admin_agent.client.get(f"/v1/agents/{target['id']}", headers=admin_agent.headers())
    assert r.status_code == 200


async def test_a_fenced_admin_cannot_widen_its_fence(tenant: Tenant) -> None:
    a = await make_business(tenant)
    b = await make_business(tenant)
    fenced = await agent_tenant(tenant, scopes=["admin"], allowed=[a["id"]])
    wide = await make_agent(tenant, scopes=["bookings:read"])

    async def create(allowed: Any) -> Any:
        return await fenced.client.post(
            "/v1/agents",
            json={"name": "child", "scopes": ["admin"], "allowed_business_ids": allowed},
            headers=fenced.headers(),
        )

    for allowed, denied in (("*", "*"), ([a["id"], b["id"]], b["id"])):
        r = await create(allowed)
        assert r.status_code == 403, r.text
        assert r.json()["details"] == {"business_id": denied}
    assert (await create([a["id"]])).status_code == 201

    r = await fenced.client.post(f"/v1/agents/{wide['id']}/keys", headers=fenced.headers())
    assert r.status_code == 403 and r.json()["details"] == {"business_id": "*"}
    r = await fenced.client.patch(
        f"/v1/agents/{wide['id']}", json={"name": "x"}, headers=fenced.headers()
    )
    assert r.status_code == 403
    r = await fenced.client.get(f"/v1/agents/{wide['id']}", headers=fenced.headers())
    assert r.status_code == 200
