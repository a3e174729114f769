"""Fixtures for the Google/Microsoft tests: the fakes, an HTTP client routed to them, and
calendar rows made directly in the store (plain factories)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from slotguard.api.app import create_app
from slotguard.calendars.credentials import SecretBox
from slotguard.config import Settings
from slotguard.ids import new_id
from slotguard.store.models import Account, Business, Calendar
from tests.conftest import Store, Tenant, new_tenant
from tests.fakes.common import FakeTransport, serve
from tests.fakes.google import GoogleFake
from tests.fakes.graph import GraphFake
from tests.leaks import secret

SECRET_KEY = secret("test passphrase for calendar credentials, long enough")
GOOGLE = "http://google.test"
GRAPH = "http://graph.test"
LOGIN = "http://login.test"


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(SECRET_KEY)


@pytest.fixture
def google() -> GoogleFake:
    return GoogleFake()


@pytest.fixture
def graph() -> GraphFake:
    fake = GraphFake()
    fake.base_url = GRAPH
    return fake


@pytest.fixture
async def http(google: GoogleFake, graph: GraphFake) -> AsyncIterator[httpx.AsyncClient]:
    """One client for everything, as the worker has: each fake on its own host."""
    mounts = {
        f"{GOOGLE}": FakeTransport(google.app),
        f"{GRAPH}": FakeTransport(graph.app),
        f"{LOGIN}": FakeTransport(graph.app),
    }
    async with httpx.AsyncClient(mounts=mounts, timeout=5) as client:
        yield client


@dataclass
class CalendarRow:
    id: str
    account_id: str
    business_id: str


async def make_calendar(
    store: Store,
    box: SecretBox,
    *,
    provider: str,
    refresh_token: str,
    provider_calendar_id: str | None = None,
    role: str = "busy",
    timezone: str = "UTC",
) -> CalendarRow:
    now = dt.datetime.now(dt.UTC)
    account_id, business_id, calendar_id = new_id("acct"), new_id("biz"), new_id("cal")
    async with store.db.write() as s:
        s.add(Account(id=account_id, name="t", rules={}, created_at=now))
        await s.flush()
        s.add(
            Business(
                id=business_id,
                account_id=account_id,
                name="b",
                email=None,
                timezone=timezone,
                rules={},
                created_at=now,
                updated_at=now,
            )
        )
        await s.flush()
        s.add(
            Calendar(
                id=calendar_id,
                account_id=account_id,
                business_id=business_id,
                provider=provider,
                role=role,
                name=None,
                url=None,
                provider_calendar_id=provider_calendar_id,
                settings={},
                credentials=box.seal(calendar_id, {"refresh_token": refresh_token}),
                credentials_version=1,
                timezone=None,
                status="pending",
                last_synced_at=None,
                last_error=None,
                busy_count=0,
                copy_generation=0,
                cursor=None,
                failures=0,
                next_sync_at=now,
                created_at=now,
                updated_at=now,
            )
        )
    return CalendarRow(calendar_id, account_id, business_id)


# -- the fakes as real servers on 127.0.0.1, and the API configured for them ---------------


@dataclass
class Served:
    """Both fakes listening on 127.0.0.1, and slotguard's settings pointing at them."""

    google: GoogleFake
    graph: GraphFake
    google_url: str
    graph_url: str
    settings: Settings


def served_settings(google_url: str, graph_url: str, database_url: str, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "embedded_worker": False,
        "secret_key": SECRET_KEY,
        "public_url": "http://testserver",
        "google_client_id": "google-client",
        "google_client_secret": "google-secret",
        "google_api_url": f"{google_url}/calendar/v3",
        "google_auth_url": f"{google_url}/auth",
        "google_token_url": f"{google_url}/token",
        "microsoft_client_id": "ms-client",
        "microsoft_client_secret": "ms-secret",
        "microsoft_graph_url": f"{graph_url}/v1.0",
        "microsoft_login_url": graph_url,
        "calendar_timeout_seconds": 3.0,
        # The address guard stays on: the operator's provider URLs pass it, nothing else.
        "allow_private_calendars": False,
    }
    values.update(extra)
    return Settings(**values)


@pytest.fixture
def served(store: Store) -> Iterator[Served]:
    google, graph = GoogleFake(), GraphFake()
    with serve(google.app) as google_url, serve(graph.app) as graph_url:
        graph.base_url = graph_url
        yield Served(
            google, graph, google_url, graph_url, served_settings(google_url, graph_url, store.url)
        )


@pytest.fixture
async def api(store: Store, served: Served) -> AsyncIterator[Tenant]:
    """A fresh account on an app configured for the served fakes."""
    app = create_app(served.settings, db=store.db)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield await new_tenant(store, client)
