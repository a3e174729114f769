"""Webhook endpoint management (§8), the outbox stats, and `slotguard outbox retry-dead`."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from standardwebhooks import Webhook

from slotguard.api.app import create_app
from slotguard.config import Settings
from slotguard.store.models import OutboxMessage
from tests.api.test_agents import agent_tenant
from tests.conftest import Store, Tenant, new_tenant

from .conftest import (
    HttpReceiver,
    book,
    future_day,
    make_business,
    make_endpoint,
    messages,
)

H = dt.timedelta(hours=1)


def assert_422_on(r: httpx.Response, field: str) -> None:
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "validation_error"
    assert field in [f["field"] for f in body["details"]["fields"]], body


@pytest.fixture(scope="session")
async def strict_client(ostore: Store) -> AsyncIterator[httpx.AsyncClient]:
    """The API as deployed: private webhook targets refused."""
    settings = Settings.model_validate(
        {"DATABASE_URL": ostore.url, "SLOTGUARD_ALLOW_PRIVATE_WEBHOOKS": False}
    )
    app = create_app(settings, db=ostore.db)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def test_endpoint_crud_and_secret_shown_once(otenant: Tenant) -> None:
    t = otenant
    r = await t.client.post(
        "/v1/webhook-endpoints",
        json={"url": "http://127.0.0.1:9/hook", "events": ["booking.created"],
              "description": "CRM"},
        headers=t.headers(),
    )  # fmt: skip
    assert r.status_code == 201, r.text
    created = r.json()["data"]
    assert created["id"].startswith("whe_")
    assert r.headers["location"] == f"/v1/webhook-endpoints/{created['id']}"
    assert created["secret"].startswith("whsec_")
    Webhook(created["secret"])  # usable by the reference library
    assert created["enabled"] is True and created["disabled_reason"] is None
    assert created["events"] == ["booking.created"] and created["description"] == "CRM"

    r = await t.client.get(f"/v1/webhook-endpoints/{created['id']}", headers=t.headers())
    got = r.json()["data"]
    assert "secret" not in got
    assert got == {k: v for k, v in created.items() if k != "secret"}
    r = await t.client.get("/v1/webhook-endpoints", headers=t.headers())
    assert [e["id"] for e in r.json()["data"]] == [created["id"]]
    assert "secret" not in r.json()["data"][0]

    r = await t.client.patch(
        f"/v1/webhook-endpoints/{created['id']}",
        json={"events": ["booking.cancelled", "hold.expired", "hold.expired"],
              "description": None},
        headers=t.headers(),
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["data"]["events"] == ["booking.cancelled", "hold.expired"]
    assert r.json()["data"]["description"] is None
    assert_422_on(
        await t.client.patch(
            f"/v1/webhook-endpoints/{created['id']}", json={"url": None}, headers=t.headers()
        ),
        "url",
    )

    r = await t.client.delete(f"/v1/webhook-endpoints/{created['id']}", headers=t.headers())
    assert r.status_code == 200 and r.json()["data"] == {"id": created["id"], "deleted": True}
    r = await t.client.get(f"/v1/webhook-endpoints/{created['id']}", headers=t.headers())
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = await t.client.get("/v1/webhook-endpoints", headers=t.headers())
    assert r.json()["data"] == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "https://localhost/hook",
        "http://192.168.0.10/x",
        "ftp://93.184.215.14/hook",
        "not a url",
    ],
)
async def test_private_and_malformed_targets_are_refused(
    ostore: Store, strict_client: httpx.AsyncClient, url: str
) -> None:
    t = await new_tenant(ostore, strict_client)
    r = await t.client.post(
        "/v1/webhook-endpoints",
        json={"url": url, "events": ["booking.created"]},
        headers=t.headers(),
    )
    assert_422_on(r, "url")


async def test_public_target_accepted_and_private_update_refused(
    ostore: Store, strict_client: httpx.AsyncClient
) -> None:
    t = await new_tenant(ostore, strict_client)
    # An IP literal needs no DNS, so the test runs offline.
    ep = await make_endpoint(t, "https://93.184.215.14/hook")
    r = await t.client.patch(
        f"/v1/webhook-endpoints/{ep['id']}",
        json={"url": "http://127.0.0.1/hook"},
        headers=t.headers(),
    )
    assert_422_on(r, "url")
    r = await t.client.get(f"/v1/webhook-endpoints/{ep['id']}", headers=t.headers())
    assert r.json()["data"]["url"] == "https://93.184.215.14/hook"


@pytest.mark.parametrize(
    "body",
    [
        {"url": "http://127.0.0.1/h", "events": ["booking.exploded"]},
        {"url": "http://127.0.0.1/h", "events": []},
        {"url": "http://127.0.0.1/h"},
        {"url": "http://127.0.0.1/h", "events": ["booking.created"], "secret": "whsec_x"},
    ],
)
async def test_invalid_bodies(otenant: Tenant, body: dict[str, Any]) -> None:
    r = await otenant.client.post("/v1/webhook-endpoints", json=body, headers=otenant.headers())
    assert r.status_code == 422 and r.json()["error"] == "validation_error", r.text


async def test_other_accounts_endpoints_are_404(otenant: Tenant, ostore: Store) -> None:
    ep = await make_endpoint(otenant, "http://127.0.0.1:9/hook")
    other = await new_tenant(ostore, otenant.client)
    base = f"/v1/webhook-endpoints/{ep['id']}"
    for method, path in [
        ("GET", base),
        ("PATCH", base),
        ("DELETE", base),
        ("POST", f"{base}/rotate-secret"),
        ("POST", f"{base}/test"),
        ("GET", f"{base}/deliveries"),
    ]:
        r = await other.client.request(
            method, path, json={} if method in ("PATCH", "POST") else None, headers=other.headers()
        )
        assert r.status_code == 404, (method, path, r.text)


async def test_admin_scope_required(otenant: Tenant) -> None:
    agent = await agent_tenant(otenant, scopes=["bookings:write", "bookings:read"])
    for method, path in [
        ("GET", "/v1/webhook-endpoints"),
        ("POST", "/v1/webhook-endpoints"),
        ("GET", "/v1/outbox/stats"),
    ]:
        r = await agent.client.request(
            method,
            path,
            json={"url": "http://127.0.0.1/h", "events": ["booking.created"]}
            if method == "POST"
            else None,
            headers=agent.headers(),
        )
        assert r.status_code == 403, r.text
        assert r.json()["details"]["required_scope"] == "admin"


async def test_test_send_and_delivery_log(otenant: Tenant, receiver: HttpReceiver) -> None:
    t = otenant
    receiver.behaviours[:] = [200, (500, b"nope")]
    ep = await make_endpoint(t, receiver.url())
    r = await t.client.post(f"/v1/webhook-endpoints/{ep['id']}/test", headers=t.headers())
    assert r.status_code == 200, r.text
    result = r.json()["data"]
    assert result["succeeded"] is True and result["status_code"] == 200
    [req] = receiver.requests
    payload = Webhook(ep["secret"]).verify(req.body, req.headers)
    assert payload["type"] == "webhook.test" and payload["id"] == result["event_id"]
    assert payload["data"]["endpoint_id"] == ep["id"]

    r = await t.client.post(f"/v1/webhook-endpoints/{ep['id']}/test", headers=t.headers())
    failed = r.json()["data"]
    assert failed["succeeded"] is False and failed["status_code"] == 500
    assert failed["delivery"]["response_snippet"] == "nope"

    r = await t.client.get(
        f"/v1/webhook-endpoints/{ep['id']}/deliveries", params={"limit": 1}, headers=t.headers()
    )
    page = r.json()
    assert [d["event_id"] for d in page["data"]] == [failed["event_id"]]
    assert page["meta"]["has_more"] is True
    r = await t.client.get(
        f"/v1/webhook-endpoints/{ep['id']}/deliveries",
        params={"limit": 1, "cursor": page["meta"]["next_cursor"]},
        headers=t.headers(),
    )
    assert [d["event_id"] for d in r.json()["data"]] == [result["event_id"]]
    assert r.json()["meta"]["has_more"] is False
    r = await t.client.get(
        f"/v1/webhook-endpoints/{ep['id']}/deliveries",
        params={"succeeded": "false"},
        headers=t.headers(),
    )
    assert [d["event_type"] for d in r.json()["data"]] == ["webhook.test"]
    assert r.json()["data"][0]["outbox_id"] is None


async def _set(db: Any, message_id: str, **values: Any) -> None:
    async with db.write() as s:
        await s.execute(
            update(OutboxMessage).where(OutboxMessage.id == message_id).values(**values)
        )


async def test_stats_and_cli_retry_dead(otenant: Tenant, tmp_path: Path) -> None:
    t = otenant
    biz = await make_business(t)
    await make_endpoint(t, "http://127.0.0.1:9/hook", ["booking.created"])
    for i in range(4):
        await book(t, biz["id"], future_day() + (9 + i) * H)
    hooks = await messages(t.store.db, kind="webhook")
    mails = await messages(t.store.db, kind="email")
    assert len(hooks) == 4 and len(mails) == 4
    now = dt.datetime.now(dt.UTC)
    later = now + dt.timedelta(minutes=5)
    await _set(t.store.db, hooks[0].id, status="dead", attempts=8, last_error="x")
    await _set(t.store.db, hooks[1].id, attempts=2, next_attempt_at=later)
    await _set(t.store.db, hooks[2].id, attempts=1, locked_by="wrk_x", locked_until=later,
               next_attempt_at=later)  # fmt: skip
    await _set(t.store.db, mails[0].id, status="dead", attempts=8)
    await _set(t.store.db, mails[1].id, status="delivered", attempts=1, delivered_at=now)

    r = await t.client.get("/v1/outbox/stats", headers=t.headers())
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    webhook = {k: v for k, v in data["webhook"].items() if k != "oldest_due_at"}
    assert webhook == {"pending": 2, "retrying": 1, "dead": 1, "in_flight": 1}
    assert data["webhook"]["oldest_due_at"] is not None
    email = {k: v for k, v in data["email"].items() if k != "oldest_due_at"}
    assert email == {"pending": 2, "retrying": 0, "dead": 1, "in_flight": 0}

    env = {**os.environ, "DATABASE_URL": t.store.url, "SLOTGUARD_LOG_LEVEL": "WARNING"}
    script = Path(sys.executable).with_name("slotguard")
    proc = await asyncio.create_subprocess_exec(
        str(script), "outbox", "retry-dead", "--kind", "webhook", "--account", t.account_id,
        env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out.decode()
    assert "1 dead message(s) scheduled" in out.decode()
    [revived] = await messages(t.store.db, id=hooks[0].id)
    assert revived.status == "pending" and revived.attempts == 0
    r = await t.client.get("/v1/outbox/stats", headers=t.headers())
    assert r.json()["data"]["webhook"]["dead"] == 0
    assert r.json()["data"]["email"]["dead"] == 1
