"""Fixtures for the Google/Microsoft tests: the fakes, an HTTP client routed to them, and
calendar rows made directly in the store (plain factories)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from slotguard.calendars.credentials import SecretBox
from slotguard.ids import new_id
from slotguard.store.models import Account, Business, Calendar
from tests.conftest import Store
from tests.fakes.common import FakeTransport
from tests.fakes.google import GoogleFake
from tests.fakes.graph import GraphFake

SECRET_KEY = "test passphrase for calendar credentials, long enough"
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
