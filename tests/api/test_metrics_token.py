"""`/metrics` answers without a key unless SLOTGUARD_METRICS_TOKEN is set."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr

from slotguard.api.app import create_app
from slotguard.config import Settings
from tests.conftest import Store

TOKEN = "metrics-token-for-tests-7f3a"


@pytest.fixture
async def protected(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        database_url=store.url, embedded_worker=False, metrics_token=SecretStr(TOKEN)
    )
    app = create_app(settings, db=store.db)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def test_metrics_open_without_a_token_setting(app_client: httpx.AsyncClient) -> None:
    r = await app_client.get("/metrics")
    assert r.status_code == 200
    assert "slotguard_http_requests_total" in r.text


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", "Bearer \xe9"],
)
async def test_metrics_token_required(
    protected: httpx.AsyncClient, authorization: str | None
) -> None:
    # Sent as latin-1 bytes, as a client may: a non-ASCII guess is a 401 too, not a 500.
    headers = {} if authorization is None else {"Authorization": authorization.encode("latin-1")}
    r = await protected.get("/metrics", headers=headers)
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "unauthorized"
    assert r.headers["WWW-Authenticate"] == "Bearer"
    assert TOKEN not in r.text


async def test_metrics_with_the_token(protected: httpx.AsyncClient) -> None:
    r = await protected.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200
    assert "slotguard_http_requests_total" in r.text
    # Health checks stay open: a load balancer has no token.
    assert (await protected.get("/readyz")).status_code == 200


async def test_empty_token_setting_leaves_metrics_open(store: Store) -> None:
    # compose passes an unset variable as "": that must not mean "the empty token".
    settings = Settings(database_url=store.url, embedded_worker=False, metrics_token=SecretStr(""))
    app = create_app(settings, db=store.db)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.get("/metrics")).status_code == 200
        assert (
            await client.get("/metrics", headers={"Authorization": "Bearer"})
        ).status_code == 200


def test_token_is_not_in_the_settings_repr() -> None:
    settings = Settings(metrics_token=SecretStr(TOKEN))
    assert TOKEN not in repr(settings)
