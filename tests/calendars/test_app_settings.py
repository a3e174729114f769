"""Calendar behaviour that follows the serving app's own settings, not the process's."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from slotguard.api.app import create_app
from slotguard.calendars.sync import SyncConfig
from slotguard.config import Settings, get_settings
from slotguard.store.models import Calendar
from tests.api.helpers import future_day, iso, key, make_business
from tests.calendars.conftest import SECRET_KEY, FeedServer
from tests.calendars.test_api import connect, ics, slots, sync
from tests.conftest import Store, Tenant, new_tenant

H = dt.timedelta(hours=1)
SLOW_SYNC_S = 3600.0  # a copy is stale after 3 x this: 3 hours


def _settings(store: Store, **extra: Any) -> Settings:
    return Settings(
        database_url=store.url,
        embedded_worker=False,
        allow_private_calendars=True,
        secret_key=SECRET_KEY,
        **extra,
    )


@pytest.fixture
async def slow_sync(store: Store) -> AsyncIterator[Tenant]:
    """A tenant on an app that syncs calendars hourly."""
    app = create_app(_settings(store, calendar_sync_seconds=SLOW_SYNC_S), db=store.db)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        yield await new_tenant(store, client)


async def test_staleness_uses_the_apps_sync_interval(
    slow_sync: Tenant, ct: Tenant, feed: FeedServer
) -> None:
    # The process-wide settings sync every 2 minutes (stale after 15 minutes), this app hourly.
    assert get_settings().calendar_sync_seconds * 3 < dt.timedelta(hours=1).total_seconds()
    t = slow_sync
    biz = await make_business(t)
    day = future_day()
    feed.set(ics((day + 9 * H, day + 10 * H, "a")))
    cal = (await connect(t, biz["id"], provider="ics", url=feed.url)).json()["data"]
    await sync(t, biz["id"], cal["id"])
    async with t.store.db.write() as s:  # the last good copy is an hour old
        await s.execute(
            update(Calendar)
            .where(Calendar.id == cal["id"])
            .values(last_synced_at=dt.datetime.now(dt.UTC) - H)
        )
    listed = await slots(t, biz["id"], day)
    assert listed["warnings"] == []
    assert iso(day + 9 * H) not in [s["start"] for s in listed["slots"]]
    r = await t.client.post(
        "/v1/availability",
        json={
            "business_id": biz["id"],
            "duration_minutes": 60,
            "window": {"start": iso(day + 10 * H), "end": iso(day + 12 * H)},
        },
        headers=t.headers(**{"Idempotency-Key": key()}),
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["warnings"] == []

    # The same calendar through an app on the default interval: an hour is stale there.
    other = Tenant(t.account_id, t.key, ct.client, t.store)
    assert (await slots(other, biz["id"], day))["warnings"] == [
        {"code": "calendar_stale", "calendar_id": cal["id"]}
    ]


async def test_sync_now_uses_the_apps_client(
    store: Store, feed: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(_settings(store), db=store.db)
    async with app.router.lifespan_context(app):
        made: list[object] = []
        real = SyncConfig.client

        def counting(self: SyncConfig) -> httpx.AsyncClient:
            made.append(self)
            return real(self)

        monkeypatch.setattr(SyncConfig, "client", counting)
        assert isinstance(app.state.calendar_http, httpx.AsyncClient)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as client:
            t = await new_tenant(store, client)
            biz = await make_business(t)
            feed.set(ics((future_day() + 9 * H, future_day() + 10 * H, "a")))
            r = await connect(t, biz["id"], provider="ics", url=feed.url)
            assert r.status_code == 201, r.text
            made.clear()  # connecting checks the feed with a client of its own
            for _ in range(2):
                assert (await sync(t, biz["id"], r.json()["data"]["id"]))["status"] == "active"
        assert made == []
    assert app.state.calendar_http is None
