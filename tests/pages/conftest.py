"""Fixtures of the page tests: the app with public-page settings, a business and a page."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from slotguard.api.app import create_app
from slotguard.config import Settings
from tests.api.helpers import make_business
from tests.conftest import Store, Tenant, new_tenant

PUBLIC_URL = "https://book.example.test"


def page_settings(url: str, **extra: Any) -> Settings:
    return Settings(
        database_url=url,
        embedded_worker=False,
        public_url=PUBLIC_URL,
        public_hold_seconds=120,
        public_holds_per_address=3,
        **extra,
    )


@pytest.fixture(scope="session")
def pages_app(store: Store) -> Any:
    return create_app(page_settings(store.url), db=store.db)


_ADDRESSES = itertools.count(1)


def browser(app: Any, *, addr: str | None = None) -> httpx.AsyncClient:
    """A visitor: its own cookie jar, coming from `addr` (by default an address of its own,
    so the per-address hold cap of one test does not reach into another)."""
    if addr is None:
        n = next(_ADDRESSES)
        addr = f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"
    transport = httpx.ASGITransport(app=app, client=(addr, 40000))
    return httpx.AsyncClient(transport=transport, base_url="https://testserver")


@pytest.fixture
async def admin(store: Store, pages_app: Any) -> AsyncIterator[Tenant]:
    async with browser(pages_app) as client:
        yield await new_tenant(store, client)


@dataclass
class Site:
    tenant: Tenant
    business: dict[str, Any]
    page: dict[str, Any]


async def make_page(t: Tenant, *, timezone: str = "UTC", **fields: Any) -> Site:
    business = await make_business(t, timezone=timezone, email="owner@example.com")
    r = await t.client.post(
        "/v1/booking-pages",
        json={"business_id": business["id"], "title": "Intro call", **fields},
        headers=t.headers(),
    )
    assert r.status_code == 201, r.text
    return Site(t, business, r.json()["data"])


@pytest.fixture
async def site(admin: Tenant) -> Site:
    return await make_page(admin)
