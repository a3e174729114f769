"""Settings of Google/Microsoft calendars through the API: Google's default calendar is
reported as `primary` (§7.1); a PATCH that changes no credential re-checks with the stored
grant through the refresh lease, so it never races a worker's refresh of a rotating
Microsoft refresh token; the mailbox is learnt at connect."""

from __future__ import annotations

import asyncio
import datetime as dt

from sqlalchemy import update

from slotguard.calendars.credentials import SecretBox
from slotguard.calendars.permits import mailbox_key
from slotguard.calendars.sync import CalendarSync, SyncConfig
from slotguard.store import oauth_repo
from slotguard.store.models import Calendar
from tests.api.helpers import make_business
from tests.conftest import Store, Tenant
from tests.oauth.conftest import Served, make_calendar
from tests.oauth.engine import calendar_row, connect, sync_once
from tests.oauth.test_e2e import stored_refresh_token

OWNER = "owner@contoso.example"


async def test_google_without_calendar_id_reports_primary(
    api: Tenant, served: Served, store: Store
) -> None:
    refresh = served.google.add_user("o@example.com")
    biz = await make_business(api)
    r = await connect(api, biz["id"], provider="google", refresh_token=refresh)
    assert r.status_code == 201, r.text
    cal = r.json()["data"]
    assert cal["calendar_id"] == "primary"
    row = await calendar_row(store.db, cal["id"])
    assert row.provider_calendar_id == "primary" and row.settings == {"calendar_id": "primary"}
    # A calendar stored before the default was kept reads the same.
    async with store.db.write() as s:
        await s.execute(
            update(Calendar)
            .where(Calendar.id == cal["id"])
            .values(provider_calendar_id=None, settings={})
        )
    url = f"/v1/businesses/{biz['id']}/calendars/{cal['id']}"
    assert (await api.client.get(url, headers=api.headers())).json()["data"]["calendar_id"] == (
        "primary"
    )
    assert await sync_once(store.db, served.settings, cal["id"]) == "synced"
    assert served.google.calls("list")[-1].path.endswith("/calendars/primary/events")

    # Microsoft's default calendar has no name of its own: null, as before.
    ms = served.graph.add_user(OWNER)
    r = await connect(api, biz["id"], provider="microsoft", refresh_token=ms)
    assert r.status_code == 201, r.text
    assert r.json()["data"]["calendar_id"] is None


async def test_microsoft_connect_learns_the_mailbox(
    api: Tenant, served: Served, store: Store
) -> None:
    refresh = served.graph.add_user(OWNER)
    biz = await make_business(api)
    cal = (await connect(api, biz["id"], provider="microsoft", refresh_token=refresh)).json()[
        "data"
    ]
    row = await calendar_row(store.db, cal["id"])
    assert row.settings == {"mailbox": OWNER}
    assert "mailbox" not in cal  # not a setting of the API
    # PATCHing stored settings back in is not refused for the learnt one.
    r = await api.client.patch(
        f"/v1/businesses/{biz['id']}/calendars/{cal['id']}",
        json={"timezone": "Europe/Berlin"},
        headers=api.headers(),
    )
    assert r.status_code == 200, r.text
    assert (await calendar_row(store.db, cal["id"])).settings == {"mailbox": OWNER}
    assert mailbox_key("microsoft", OWNER.upper()) == mailbox_key("microsoft", OWNER)


async def test_timezone_patch_uses_the_cached_token_and_keeps_the_credentials(
    api: Tenant, served: Served, store: Store
) -> None:
    graph = served.graph
    refresh = graph.add_user(OWNER)
    biz = await make_business(api)
    cal = (await connect(api, biz["id"], provider="microsoft", refresh_token=refresh)).json()[
        "data"
    ]
    assert await sync_once(store.db, served.settings, cal["id"]) == "synced"
    before = await calendar_row(store.db, cal["id"])
    stored = await stored_refresh_token(store, cal["id"])
    tokens_asked = len(graph.calls("token"))

    r = await api.client.patch(
        f"/v1/businesses/{biz['id']}/calendars/{cal['id']}",
        json={"timezone": "Europe/Berlin"},
        headers=api.headers(),
    )
    assert r.status_code == 200, r.text
    after = await calendar_row(store.db, cal["id"])
    assert after.timezone == "Europe/Berlin"
    # Checked with the cached access token: no refresh, no rotation, nothing re-sealed.
    assert len(graph.calls("token")) == tokens_asked
    assert after.credentials_version == before.credentials_version
    assert await stored_refresh_token(store, cal["id"]) == stored
    assert after.status == "active"


async def test_timezone_patch_racing_a_worker_refresh_refreshes_once(
    api: Tenant, served: Served, store: Store
) -> None:
    """Both need a new access token at once: one refresh under the lease serves both, and
    the rotated refresh token stored is the one Microsoft still accepts."""
    graph = served.graph
    refresh = graph.add_user(OWNER)
    graph.mailbox_latency_s = 0.05
    biz = await make_business(api)
    cal = (await connect(api, biz["id"], provider="microsoft", refresh_token=refresh)).json()[
        "data"
    ]
    assert await sync_once(store.db, served.settings, cal["id"]) == "synced"
    for _ in range(3):
        graph.expire_access_tokens()
        async with store.db.write() as s:
            await oauth_repo.forget_access_token(
                s, calendar_id=cal["id"], now=dt.datetime.now(dt.UTC)
            )
        tokens_asked = len(graph.calls("token"))
        engine = CalendarSync(store.db, config=SyncConfig.from_settings(served.settings))
        patched, synced = await asyncio.gather(
            api.client.patch(
                f"/v1/businesses/{biz['id']}/calendars/{cal['id']}",
                json={"timezone": "Europe/Berlin"},
                headers=api.headers(),
            ),
            engine.sync_one(cal["id"]),
        )
        assert patched.status_code == 200, patched.text
        assert synced in ("synced", "busy")
        assert len(graph.calls("token")) == tokens_asked + 1
        stored = await stored_refresh_token(store, cal["id"])
        assert stored in graph.refresh_tokens  # still good at Microsoft
    assert await sync_once(store.db, served.settings, cal["id"]) == "synced"
    row = await calendar_row(store.db, cal["id"])
    assert row.status == "active" and row.timezone == "Europe/Berlin"


async def test_a_calendar_stored_without_its_mailbox_learns_it_once(
    served: Served, store: Store, box: SecretBox
) -> None:
    graph = served.graph
    refresh = graph.add_user(OWNER)
    row = await make_calendar(store, box, provider="microsoft", refresh_token=refresh)
    assert (await calendar_row(store.db, row.id)).settings == {}
    assert await sync_once(store.db, served.settings, row.id) == "synced"
    assert (await calendar_row(store.db, row.id)).settings == {"mailbox": OWNER}
    assert len(graph.calls("calendar")) == 1
    assert await sync_once(store.db, served.settings, row.id) == "synced"
    assert len(graph.calls("calendar")) == 1  # asked once, not on every sync
