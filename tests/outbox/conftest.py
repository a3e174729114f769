"""Fixtures for the outbox tests: own databases, an app that may call 127.0.0.1, receivers.

The outbox is global to a database (any worker claims any account's messages), so these
tests get their own database per store instead of the shared one, and each test starts
with an empty outbox. Real counterparts (HTTP receiver, aiosmtpd) come from tests/effects.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import delete, select

from slotguard.api.app import create_app
from slotguard.config import Settings
from slotguard.effects.email import MailSender, MemoryMailSender
from slotguard.effects.netguard import make_webhook_client
from slotguard.effects.outbox import OutboxSettings, OutboxWorker
from slotguard.store.db import Database
from slotguard.store.migrate import upgrade_to_head
from slotguard.store.models import OutboxMessage, WebhookDelivery
from tests.conftest import Store, Tenant, new_tenant
from tests.effects.conftest import Behaviour, CollectingHandler, HttpReceiver, free_port
from tests.pg import pg_admin_url, pg_available, pg_create_database, pg_drop_database

__all__ = ["Behaviour", "HttpReceiver"]

ALL_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
OPEN_ALL_DAY = {"working_hours": [{"days": ALL_DAYS, "start": "00:00", "end": "24:00"}]}


@pytest.fixture(
    scope="session", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def outbox_store_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """A fresh, migrated database of each store, only for these tests."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('outbox') / 'outbox.db'}"
        upgrade_to_head(url)
        yield "sqlite", url
        return
    if not pg_available():
        message = f"PostgreSQL outbox tests need a server at {pg_admin_url()}"
        import os

        if os.environ.get("SLOTGUARD_REQUIRE_PG") == "1":
            pytest.fail(message)
        pytest.skip(message)
    name = f"sg_outbox_{uuid.uuid4().hex[:10]}"
    url = pg_create_database(name)
    upgrade_to_head(url)
    yield "postgres", url
    pg_drop_database(name)


@pytest.fixture(scope="session")
async def ostore(outbox_store_url: tuple[str, str]) -> AsyncIterator[Store]:
    name, url = outbox_store_url
    db = Database.connect(url, pool_size=20)
    yield Store(name, url, db)
    await db.dispose()


@pytest.fixture(scope="session")
async def oclient(ostore: Store) -> AsyncIterator[httpx.AsyncClient]:
    """The API on the outbox database; webhook targets on 127.0.0.1 are allowed."""
    settings = Settings.model_validate(
        {
            "DATABASE_URL": ostore.url,
            "SLOTGUARD_EMBEDDED_WORKER": False,
            "SLOTGUARD_ALLOW_PRIVATE_WEBHOOKS": True,
        }
    )
    assert settings.allow_private_webhooks
    app = create_app(settings, db=ostore.db)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
async def otenant(ostore: Store, oclient: httpx.AsyncClient) -> Tenant:
    """A fresh account on the outbox database, with an empty outbox."""
    async with ostore.db.write() as s:
        await s.execute(delete(OutboxMessage))
        await s.execute(delete(WebhookDelivery))
    return await new_tenant(ostore, oclient)


@pytest.fixture
async def receiver() -> AsyncIterator[HttpReceiver]:
    """An HTTP receiver on 127.0.0.1; append to `.behaviours` to script its answers."""
    r = HttpReceiver()
    await r.start()
    yield r
    await r.stop()


@dataclass
class Smtp:
    handler: CollectingHandler
    port: int

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}?starttls=0&timeout=5"


@pytest.fixture
def smtp() -> Iterator[Smtp]:
    handler = CollectingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, ready_timeout=5.0)
    controller.start()
    try:
        yield Smtp(handler, port)
    finally:
        controller.stop()


# -- the worker, with a clock the test moves ------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)

    def set(self, when: dt.datetime) -> None:
        self.now = max(self.now, when)


@contextlib.asynccontextmanager
async def make_worker(
    db: Database,
    *,
    mailer: MailSender | None = None,
    allow_private: bool = True,
    clock: Callable[[], dt.datetime] | None = None,
    email_from: str = "Slotguard <bookings@slotguard.test>",
    **settings: Any,
) -> AsyncIterator[OutboxWorker]:
    async with make_webhook_client(allow_private=allow_private, timeout=15) as http:
        kwargs: dict[str, Any] = {}
        if clock is not None:
            kwargs["clock"] = clock
        yield OutboxWorker(
            db,
            http=http,
            mailer=mailer or MemoryMailSender(),
            email_from=email_from,
            settings=OutboxSettings(**settings),
            rng=random.Random(7),
            **kwargs,
        )


async def messages(db: Database, **filters: Any) -> list[OutboxMessage]:
    async with db.read() as s:
        q = select(OutboxMessage).order_by(OutboxMessage.id)
        for name, value in filters.items():
            q = q.where(getattr(OutboxMessage, name) == value)
        return list((await s.scalars(q)).all())


async def deliveries(db: Database, endpoint_id: str) -> list[WebhookDelivery]:
    async with db.read() as s:
        q = (
            select(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint_id)
            .order_by(WebhookDelivery.id)
        )
        return list((await s.scalars(q)).all())


# -- API factories ---------------------------------------------------------------------------


def future_day(days_ahead: int = 10) -> dt.datetime:
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + dt.timedelta(days=days_ahead)


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def idem() -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


async def make_business(
    t: Tenant, *, email: str | None = "owner@biz.example.com"
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "Dr. Outbox", "timezone": "Europe/Paris", "rules": OPEN_ALL_DAY}
    if email:
        body["email"] = email
    r = await t.client.post("/v1/businesses", json=body, headers=t.headers())
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


async def make_endpoint(
    t: Tenant, url: str, events: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    body = {
        "url": url,
        "events": events
        or [
            "booking.created",
            "booking.confirmed",
            "booking.cancelled",
            "booking.rescheduled",
            "booking.updated",
            "booking.preempted",
            "hold.expired",
        ],
        **extra,
    }
    r = await t.client.post("/v1/webhook-endpoints", json=body, headers=t.headers())
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


async def book(
    t: Tenant, business_id: str, start: dt.datetime, minutes: int = 30, **extra: Any
) -> dict[str, Any]:
    body = {
        "business_id": business_id,
        "start_time": iso(start),
        "end_time": iso(start + dt.timedelta(minutes=minutes)),
        "customer_email": "ada@customer.example.com",
        "customer_name": "Ada Lovelace",
        **extra,
    }
    r = await t.client.post("/v1/bookings", json=body, headers=t.headers(**idem()))
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()["data"]
    return data
