"""Google Calendar and Microsoft 365 end to end, through the real API, sync engine and
outbox worker, against the fakes served on 127.0.0.1 (the address guard on: only the
operator's provider URLs pass it), on both stores."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from slotguard.calendars.base import remote_identity
from slotguard.calendars.credentials import SecretBox
from slotguard.calendars.google import MARKER_KEY
from slotguard.calendars.microsoft import MARKER_PROPERTY_ID
from slotguard.store import oauth_repo
from slotguard.store.models import Calendar, CalendarItem
from tests.api.helpers import book, future_day, iso, make_business
from tests.conftest import Store, Tenant
from tests.oauth.conftest import SECRET_KEY, Served
from tests.oauth.engine import (
    H,
    calendar_row,
    cancel,
    connect,
    deliver,
    reschedule,
    slot_starts,
    sync_once,
)


async def stored_refresh_token(store: Store, calendar_id: str) -> str:
    async with store.db.read() as s:
        creds = await oauth_repo.calendar_credentials(s, calendar_id)
    assert creds is not None and creds[0] is not None
    token = SecretBox(SECRET_KEY).open(calendar_id, creds[0])["refresh_token"]
    assert isinstance(token, str)
    return token


async def test_google_connect_sync_and_write_back(
    api: Tenant, served: Served, store: Store
) -> None:
    google = served.google
    refresh = google.add_user("owner@example.com", timezone="Europe/Paris")
    day = future_day()
    google.add_event("owner@example.com", start=day + 9 * H, end=day + 10 * H)
    google.add_event(
        "owner@example.com", start=day + 10 * H, end=day + 11 * H, transparency="transparent"
    )
    biz = await make_business(api)

    r = await connect(api, biz["id"], provider="google", role="both", refresh_token=refresh)
    assert r.status_code == 201, r.text
    cal = r.json()["data"]
    assert cal["provider"] == "google" and cal["status"] == "pending"
    assert refresh not in r.text and "refresh_token" not in r.text
    assert len(google.calls("token")) == 1  # the connect check refreshed once
    assert (await stored_refresh_token(store, cal["id"])) == refresh

    # The worker's engine syncs it into availability, with the token the check cached.
    assert await sync_once(store.db, served.settings, cal["id"]) == "synced"
    assert len(google.calls("token")) == 1
    row = await calendar_row(store.db, cal["id"])
    assert row.status == "active" and row.busy_count == 1 and row.timezone == "Europe/Paris"
    listing = google.calls("list")[-1]
    assert listing.query["singleEvents"] == "true" and "timeMin" in listing.query
    starts, warnings = await slot_starts(api, biz["id"], day)
    assert iso(day + 9 * H) not in starts  # the Google event blocks
    assert iso(day + 10 * H) in starts  # transparent: free
    assert warnings == []
    clash = await book(api, biz["id"], day + 9 * H + dt.timedelta(minutes=15), 30)
    assert clash.status_code == 409 and clash.json()["details"] == {"reason": "overlaps_busy_time"}

    # A booking is written by the outbox: the id derives from the booking, the marker names
    # it, nobody is notified.
    r = await book(api, biz["id"], day + 11 * H, 60, title="Consultation")
    assert r.status_code == 201, r.text
    booking = r.json()["data"]
    written = await deliver(store.db, served.settings, booking["id"])
    expected_id = remote_identity(booking["id"], 1).hex
    assert written.calendar_sync_status == "synced"
    assert written.calendar_event_id == expected_id
    inserts = google.calls("insert")
    assert len(inserts) == 1 and inserts[0].query["sendUpdates"] == "none"
    events = {e["id"]: e for e in google.live_events("owner@example.com")}
    assert events[expected_id]["extendedProperties"]["private"][MARKER_KEY] == booking["id"]
    assert "attendees" not in events[expected_id]

    # Incremental sync: only the sync token; our own event is not busy time.
    assert await sync_once(store.db, served.settings, cal["id"]) == "synced"
    assert set(google.calls("list")[-1].query) == {"singleEvents", "maxResults", "syncToken"}
    busy = await api.client.get(
        f"/v1/businesses/{biz['id']}/calendars/{cal['id']}/busy",
        params={"start": iso(day), "end": iso(day + 24 * H)},
        headers=api.headers(),
    )
    assert busy.json()["data"] == [{"start": iso(day + 9 * H), "end": iso(day + 10 * H)}]

    # Reschedule: a PATCH with If-Match on the same event.
    moved = await reschedule(api, booking, day + 12 * H)
    assert (await deliver(store.db, served.settings, moved["id"])).calendar_sync_status == "synced"
    patch = google.calls("patch")[-1]
    assert patch.headers.get("if-match") and patch.query["sendUpdates"] == "none"
    event = {e["id"]: e for e in google.live_events("owner@example.com")}[expected_id]
    assert event["start"]["dateTime"].startswith(iso(day + 12 * H)[:16])

    # Cancel: the event is deleted (a repeat delete's 410 is done as well).
    await cancel(api, booking["id"])
    done = await deliver(store.db, served.settings, booking["id"])
    assert done.calendar_sync_status == "synced"
    assert expected_id not in {e["id"] for e in google.live_events("owner@example.com")}
    assert google.calls("delete")[-1].query["sendUpdates"] == "none"


async def test_google_insert_whose_answer_was_lost_is_adopted(
    api: Tenant, served: Served, store: Store
) -> None:
    google = served.google
    refresh = google.add_user("o@example.com")
    biz = await make_business(api)
    cal = (
        await connect(api, biz["id"], provider="google", role="write", refresh_token=refresh)
    ).json()["data"]
    google.inject("insert", "commit_then_drop")
    booking = (await book(api, biz["id"], future_day() + 9 * H, 30)).json()["data"]
    written = await deliver(store.db, served.settings, booking["id"])
    assert written.calendar_sync_status == "synced", cal
    # The retry met 409 duplicate, checked the marker and adopted: one event, ours.
    assert [c.route for c in google.requests if c.route in ("insert", "get")][:3] == [
        "insert",
        "insert",
        "get",
    ]
    mine = [
        e
        for e in google.live_events("o@example.com")
        if e.get("extendedProperties", {}).get("private", {}).get(MARKER_KEY) == booking["id"]
    ]
    assert len(mine) == 1 and mine[0]["id"] == written.calendar_event_id


async def test_google_event_deleted_by_the_owner_is_written_again_under_a_new_id(
    api: Tenant, served: Served, store: Store
) -> None:
    google = served.google
    refresh = google.add_user("o@example.com")
    biz = await make_business(api)
    await connect(api, biz["id"], provider="google", role="write", refresh_token=refresh)
    booking = (await book(api, biz["id"], future_day() + 9 * H, 30)).json()["data"]
    first = await deliver(store.db, served.settings, booking["id"])
    assert first.calendar_event_id == remote_identity(booking["id"], 1).hex
    google.delete_event("o@example.com", first.calendar_event_id)  # a tombstone now
    moved = await reschedule(api, booking, future_day() + 10 * H)
    second = await deliver(store.db, served.settings, moved["id"])
    assert second.calendar_sync_status == "synced"
    assert second.calendar_event_id == remote_identity(booking["id"], 2).hex
    live = [e["id"] for e in google.live_events("o@example.com")]
    assert live == [second.calendar_event_id]


async def test_microsoft_connect_rotates_syncs_and_writes_with_transaction_id(
    api: Tenant, served: Served, store: Store
) -> None:
    graph = served.graph
    refresh = graph.add_user("owner@contoso.example")
    day = future_day()
    graph.add_event("owner@contoso.example", start=day + 9 * H, end=day + 10 * H)
    graph.add_event("owner@contoso.example", start=day + 10 * H, end=day + 11 * H, show_as="free")
    biz = await make_business(api)
    r = await connect(api, biz["id"], provider="microsoft", role="both", refresh_token=refresh)
    assert r.status_code == 201, r.text
    cal = r.json()["data"]
    # Microsoft rotated the refresh token during the check: the new one is what is stored,
    # and the one given no longer works at Microsoft.
    rotated = await stored_refresh_token(store, cal["id"])
    assert rotated != refresh and refresh not in graph.refresh_tokens
    assert rotated in graph.refresh_tokens

    assert await sync_once(store.db, served.settings, cal["id"]) == "synced"
    delta = graph.calls("delta")[-1]
    assert 'outlook.timezone="UTC"' in delta.headers["prefer"]
    starts, _ = await slot_starts(api, biz["id"], day)
    assert iso(day + 9 * H) not in starts and iso(day + 10 * H) in starts

    # A create whose answer was lost: the marker is looked up before anything is re-created.
    graph.transaction_dedupe = False  # the worst case: Graph would make a second event
    graph.inject("create", "commit_then_drop")
    booking = (await book(api, biz["id"], day + 11 * H, 60)).json()["data"]
    written = await deliver(store.db, served.settings, booking["id"])
    assert written.calendar_sync_status == "synced"
    ours = [
        e
        for e in graph.live_events("owner@contoso.example")
        if e.get("transactionId") == str(remote_identity(booking["id"], 1))
    ]
    assert len(ours) == 1 and ours[0]["id"] == written.calendar_event_id
    assert graph.events[ours[0]["id"]]["_props"][MARKER_PROPERTY_ID] == booking["id"]
    assert len(graph.calls("create")) == 1 and len(graph.calls("find")) >= 2

    # Our own event is not busy time after the next (delta) sync.
    assert await sync_once(store.db, served.settings, cal["id"]) == "synced"
    assert "$deltatoken" in graph.calls("delta")[-1].url or "deltatoken" in str(
        graph.calls("delta")[-1].query
    )
    row = await calendar_row(store.db, cal["id"])
    assert row.busy_count == 1

    # Cancel: deleted at Microsoft; a second delete's 404 is done.
    await cancel(api, booking["id"])
    assert (await deliver(store.db, served.settings, booking["id"])).calendar_sync_status == (
        "synced"
    )
    assert ours[0]["id"] not in {e["id"] for e in graph.live_events("owner@contoso.example")}


async def test_revoked_grant_is_auth_failed_without_a_retry_loop(
    api: Tenant, served: Served, store: Store
) -> None:
    google = served.google
    refresh = google.add_user("o@example.com")
    biz = await make_business(api)
    cal = (await connect(api, biz["id"], provider="google", refresh_token=refresh)).json()["data"]
    assert await sync_once(store.db, served.settings, cal["id"]) == "synced"
    google.revoke(refresh)
    google.expire_access_tokens()
    assert await sync_once(store.db, served.settings, cal["id"]) == "failed"
    row = await calendar_row(store.db, cal["id"])
    assert row.status == "auth_failed" and row.last_error is not None
    assert row.last_error["code"] == "calendar_auth_failed"
    assert refresh not in str(row.last_error)
    tokens_asked = len(google.calls("token"))
    # Asked again (sync now, write-back): refused at once, the provider is not asked again.
    assert await sync_once(store.db, served.settings, cal["id"]) == "failed"
    assert len(google.calls("token")) == tokens_asked
    _, warnings = await slot_starts(api, biz["id"], future_day())
    assert {"code": "calendar_stale", "calendar_id": cal["id"]} in warnings
    shown = await api.client.get(
        f"/v1/businesses/{biz['id']}/calendars/{cal['id']}", headers=api.headers()
    )
    assert shown.json()["data"]["status"] == "auth_failed"

    # Reconnecting with a new refresh token clears it.
    fresh = google.issue_refresh_token("o@example.com")
    r = await api.client.patch(
        f"/v1/businesses/{biz['id']}/calendars/{cal['id']}",
        json={"refresh_token": fresh},
        headers=api.headers(),
    )
    assert r.status_code == 200, r.text
    assert await sync_once(store.db, served.settings, cal["id"]) == "synced"
    _, warnings = await slot_starts(api, biz["id"], future_day())
    assert warnings == []


async def test_a_second_write_calendar_is_refused_before_the_token_is_used(
    api: Tenant, served: Served, store: Store
) -> None:
    graph = served.graph
    biz = await make_business(api)
    first = await connect(
        api,
        biz["id"],
        provider="microsoft",
        role="write",
        refresh_token=graph.add_user("a@x.example"),
    )
    assert first.status_code == 201, first.text
    second_token = graph.add_user("b@x.example")
    tokens_before = len(graph.calls("token"))
    r = await connect(api, biz["id"], provider="microsoft", role="both", refresh_token=second_token)
    assert r.status_code == 409 and r.json()["details"]["reason"] == "write_calendar_exists"
    # Not refreshed, so not rotated: the owner's refresh token still works.
    assert len(graph.calls("token")) == tokens_before and second_token in graph.refresh_tokens


async def test_connect_refusals_are_clear_4xx(api: Tenant, served: Served) -> None:
    biz = await make_business(api)
    r = await connect(api, biz["id"], provider="google", refresh_token="1//not-a-real-token")
    assert r.status_code == 422 and r.json()["error"] == "calendar_auth_failed"
    assert "not-a-real-token" not in r.text
    r = await connect(api, biz["id"], provider="microsoft")
    assert r.status_code == 422 and r.json()["error"] == "validation_error"
    r = await connect(api, biz["id"], provider="google", refresh_token="x", url="http://127.0.0.1/")
    assert r.status_code == 422 and r.json()["error"] == "validation_error"
    served.google.add_user("o@example.com")
    refresh = served.google.issue_refresh_token("o@example.com")
    r = await connect(
        api, biz["id"], provider="google", refresh_token=refresh, calendar_id="nope@example.com"
    )
    assert r.status_code == 422 and r.json()["error"] == "calendar_unreachable"
    assert r.json()["details"]["status"] == 404


async def test_user_supplied_urls_stay_behind_the_address_guard(
    api: Tenant, served: Served
) -> None:
    """The fakes' origins are trusted because the operator configured them; an ICS URL an
    API user gives on the very same origin is still refused."""
    biz = await make_business(api)
    r = await connect(api, biz["id"], provider="ics", url=f"{served.google_url}/feed.ics")
    assert r.status_code == 422 and r.json()["error"] == "validation_error"
    assert "loopback" in r.text


async def test_providers_not_configured_are_422(store: Store, served: Served) -> None:
    from slotguard.api.app import create_app
    from tests.conftest import new_tenant

    settings = served.settings.model_copy(
        update={"google_client_id": None, "microsoft_client_secret": None}
    )
    app = create_app(settings, db=store.db)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        t = await new_tenant(store, client)
        biz = await make_business(t)
        for provider in ("google", "microsoft"):
            r = await connect(t, biz["id"], provider=provider, refresh_token="x")
            assert r.status_code == 422, r.text
            body: dict[str, Any] = r.json()
            assert body["error"] == "validation_error"
            assert "not configured" in body["message"] or "not configured" in str(body)


async def own_items(store: Store, calendar_id: str) -> dict[str, str | None]:
    """external id -> own_booking_id of the calendar's current local copy."""
    async with store.db.read() as s:
        cal = await s.get(Calendar, calendar_id, populate_existing=True)
        assert cal is not None
        rows = await s.scalars(
            select(CalendarItem).where(
                CalendarItem.calendar_id == calendar_id,
                CalendarItem.generation == cal.copy_generation,
            )
        )
        return {r.external_id: r.own_booking_id for r in rows}


@pytest.mark.parametrize("provider", ["google", "microsoft"])
async def test_a_reschedule_over_the_old_time_of_the_same_booking_succeeds(
    api: Tenant, served: Served, store: Store, provider: str
) -> None:
    """Own events are not busy (§7.2): the booking's event, written back and then synced
    into the local copy, never blocks the booking itself, so it can move over its own old
    time; the event is then updated in place, not duplicated."""
    user = f"own-{provider}@example.com"
    fake: Any = served.google if provider == "google" else served.graph
    refresh = fake.add_user(user)
    biz = await make_business(api)
    r = await connect(api, biz["id"], provider=provider, role="both", refresh_token=refresh)
    assert r.status_code == 201, r.text
    cal = r.json()["data"]
    day = future_day()
    booking = (await book(api, biz["id"], day + 9 * H, 60)).json()["data"]
    written = await deliver(store.db, served.settings, booking["id"])
    assert written.calendar_sync_status == "synced" and written.calendar_event_id
    event_id = written.calendar_event_id

    # The event is in the local copy, known as the booking's own: no busy time.
    assert await sync_once(store.db, served.settings, cal["id"]) == "synced"
    assert (await own_items(store, cal["id"])) == {event_id: booking["id"]}
    assert (await calendar_row(store.db, cal["id"])).busy_count == 0

    # Over its own old time (09:30-10:30 over 09:00-10:00): fine, and the event follows.
    moved = await reschedule(api, booking, day + 9 * H + 30 * dt.timedelta(minutes=1))
    assert moved["start_time"] == iso(day + 9 * H + 30 * dt.timedelta(minutes=1))
    again = await deliver(store.db, served.settings, moved["id"])
    assert again.calendar_sync_status == "synced" and again.calendar_event_id == event_id
    live = fake.live_events(user)
    assert [e["id"] for e in live] == [event_id]
    start = live[0]["start"]["dateTime"]
    assert start.startswith((day + 9 * H + 30 * dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M"))
    creates = fake.calls("insert" if provider == "google" else "create")
    assert len(creates) == 1
    assert await sync_once(store.db, served.settings, cal["id"]) == "synced"
    assert (await own_items(store, cal["id"])) == {event_id: booking["id"]}
    assert (await calendar_row(store.db, cal["id"])).busy_count == 0
