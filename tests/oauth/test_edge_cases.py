"""Starred edge cases of the calendar research note that other Google/Microsoft tests left
open: availability never sees a calendar empty during a 410 resync; incremental rounds that
span several pages; DST in recurring series; Outlook's all-day events (free by default,
Windows zone names with a suffix, unknown zones); the window moving forward with time."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from slotguard.calendars.base import BusyPeriod, remote_identity
from slotguard.calendars.microsoft import PREFER
from slotguard.calendars.sync import CalendarSync, SyncConfig
from tests.api.helpers import book, future_day, iso, key, make_business
from tests.conftest import Store, Tenant
from tests.fakes.google import GOOGLE_ERRORS, GoogleFake
from tests.fakes.graph import GraphFake
from tests.oauth.conftest import Served
from tests.oauth.engine import (
    H,
    booking_row,
    calendar_row,
    connect,
    deliver,
    reschedule,
    slot_starts,
    sync_once,
)
from tests.oauth.providers import NOW, WINDOW, google_provider, graph_provider
from tests.oauth.test_e2e import stored_refresh_token
from tests.oauth.test_faults import busy_of, google_calendar, graph_calendar

OWNER = "owner@example.com"
MS_OWNER = "owner@contoso.example"


async def busy_seen_during_sync(
    store: Store, served: Served, api: Tenant, biz_id: str, cal_id: str, day: dt.datetime
) -> tuple[str, list[list[str]]]:
    """One sync of the calendar, with its busy starts read through the API every 50 ms
    while it runs: the sync's outcome and every reading."""
    task = asyncio.create_task(sync_once(store.db, served.settings, cal_id))
    seen: list[list[str]] = []
    while not task.done():
        seen.append([b["start"] for b in await busy_of(api, biz_id, cal_id, day)])
        await asyncio.sleep(0.05)
    return await task, seen


# -- 1. a dead cursor: the old copy stays until the new one is complete -----------------------


async def test_google_410_resync_never_shows_the_calendar_empty(
    api: Tenant, served: Served, store: Store
) -> None:
    google = served.google
    biz, cal = await google_calendar(api, served, "resync@example.com")
    day = future_day()
    old = google.add_event("resync@example.com", start=day + 9 * H, end=day + 10 * H)
    assert await sync_once(store.db, served.settings, cal["id"]) == "synced"
    google.delete_event("resync@example.com", old["id"])
    for i in range(6):  # the full copy takes several slow pages
        google.add_event(
            "resync@example.com", start=day + (11 + i) * H, end=day + (11 + i) * H + H / 2
        )
    google.invalidate_sync_tokens("resync@example.com")
    google.max_page_size, google.latency_s = 2, 0.15

    outcome, seen = await busy_seen_during_sync(store, served, api, biz["id"], cal["id"], day)
    assert outcome == "synced"
    google.latency_s = 0.0
    final = [iso(day + (11 + i) * H) for i in range(6)]
    assert len(seen) >= 3
    # Every read in between saw the old copy whole, never an empty or half-loaded one.
    assert all(s in ([iso(day + 9 * H)], final) for s in seen), seen
    assert [b["start"] for b in await busy_of(api, biz["id"], cal["id"], day)] == final


# -- 3. pagination of incremental rounds ------------------------------------------------------


async def test_google_incremental_changes_over_several_pages(
    google: GoogleFake, http: httpx.AsyncClient
) -> None:
    token = google.add_user(OWNER)
    provider, _ = google_provider(http, token)
    full = await provider.pull(None, WINDOW)
    t = NOW + dt.timedelta(days=3)
    added = [
        google.add_event(OWNER, start=t + i * H, end=t + i * H + H / 2)["id"] for i in range(7)
    ]
    google.max_page_size, google.empty_page_first = 2, True
    before = len(google.calls("list"))
    delta = await provider.pull(full.cursor, WINDOW)
    assert not delta.full and sorted(i.external_id for i in delta.items) == sorted(added)
    pages = google.calls("list")[before:]
    assert len(pages) >= 5 and all("syncToken" in p.query for p in pages)
    assert all("pageToken" in p.query for p in pages[1:])


async def test_graph_next_links_after_a_delta_link_resume(
    graph: GraphFake, http: httpx.AsyncClient
) -> None:
    """Cal.com reads one page when resuming from a deltaLink; every nextLink is followed."""
    provider, _ = graph_provider(http, graph.add_user(MS_OWNER))
    provider.rest.default_headers["Prefer"] = PREFER.replace("200", "2")
    t = NOW + dt.timedelta(days=2)
    first = graph.add_event(MS_OWNER, start=t, end=t + H)["id"]
    full = await provider.pull(None, WINDOW)
    added = [
        graph.add_event(MS_OWNER, start=t + i * H, end=t + i * H + H / 2)["id"] for i in range(2, 9)
    ]
    graph.delete_event(first)
    before = len(graph.calls("delta"))
    delta = await provider.pull(full.cursor, WINDOW)
    assert sorted(i.external_id for i in delta.items) == sorted(added)
    assert delta.deleted == [first]
    calls = graph.calls("delta")[before:]
    assert len(calls) >= 4 and calls[0].url == full.cursor
    assert delta.cursor and delta.cursor != full.cursor


# -- 6. DST ----------------------------------------------------------------------------------


async def test_weekly_series_keeps_its_wall_clock_across_dst(
    google: GoogleFake, graph: GraphFake, http: httpx.AsyncClient
) -> None:
    """A weekly 09:00 series in Berlin and in New York across the spring transitions
    (different dates: the second Sunday of March in the US, the last one in the EU), and a
    timed event spanning the Berlin transition night; Graph sends UTC, Google offsets."""
    window = WINDOW
    year = NOW.year + 1
    token = google.add_user(OWNER)
    berlin, ny = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")
    series = {}
    for name, tz in (("berlin", berlin), ("ny", ny)):
        _, instances = google.add_series(
            OWNER,
            first_start=dt.datetime(year, 3, 2, 9, 0, tzinfo=tz),
            duration=H,
            count=6,
            time_zone=str(tz),
        )
        series[name] = [i["id"] for i in instances]
    last = dt.date(year, 3, 31)
    eu_switch = last - dt.timedelta(days=(last.weekday() - 6) % 7)  # the last Sunday
    eve = eu_switch - dt.timedelta(days=1)
    night = google.add_event(
        OWNER,
        start=dt.datetime(year, 3, eve.day, 22, 0, tzinfo=berlin),
        end=dt.datetime(year, 3, eu_switch.day, 6, 0, tzinfo=berlin),
        time_zone="Europe/Berlin",
    )["id"]
    window = type(WINDOW)(
        dt.datetime(year, 3, 1, tzinfo=dt.UTC), dt.datetime(year, 4, 30, tzinfo=dt.UTC)
    )
    provider, _ = google_provider(http, token)
    got = {i.external_id: i.busy for i in (await provider.pull(None, window)).items}
    for name, tz in (("berlin", berlin), ("ny", ny)):
        walls = [got[i][0].start.astimezone(tz).time() for i in series[name]]
        assert walls == [dt.time(9, 0)] * 6, name
        utc_hours = {got[i][0].start.hour for i in series[name]}
        assert len(utc_hours) == 2, name  # the UTC time moved by an hour at the transition
    (night_busy,) = got[night]
    assert night_busy.start == dt.datetime(year, 3, eve.day, 21, 0, tzinfo=dt.UTC)
    assert night_busy.end - night_busy.start == 7 * H  # 8 hours of wall clock, one skipped

    ms = graph_provider(http, graph.add_user(MS_OWNER))[0]
    occurrences = []
    for week in range(6):
        wall = dt.datetime(year, 3, 2, 9, 0) + dt.timedelta(days=7 * week)
        start = wall.replace(tzinfo=berlin)
        occurrences.append(
            graph.add_event(
                MS_OWNER,
                start=start,
                end=start + H,
                zone="Europe/Berlin",
                series_master_id="AAMkmaster",
            )["id"]
        )
    ms_got = {i.external_id: i for i in (await ms.pull(None, window)).items}
    assert [ms_got[o].busy[0].start.astimezone(berlin).time() for o in occurrences] == [
        dt.time(9, 0)
    ] * 6
    assert {ms_got[o].series_id for o in occurrences} == {"AAMkmaster"}


# -- 7 and 14. Outlook all-day events and zone names -----------------------------------------


async def test_outlook_all_day_events(graph: GraphFake, http: httpx.AsyncClient) -> None:
    provider, _ = graph_provider(http, graph.add_user(MS_OWNER), business_tz="Europe/Paris")
    day = (NOW + dt.timedelta(days=4)).date()
    nxt = day + dt.timedelta(days=1)
    free = graph.add_event(MS_OWNER, start=day, end=nxt, show_as="free")["id"]  # Outlook's default
    suffixed = graph.add_event(
        MS_OWNER,
        start=day,
        end=nxt,
        zone="America/New_York",
        original_start_time_zone="Eastern Standard Time 1",
    )["id"]
    custom = graph.add_event(
        MS_OWNER,
        start=day,
        end=nxt,
        zone="Europe/Paris",
        original_start_time_zone="tzone://Microsoft/Custom",
    )["id"]
    pull = await provider.pull(None, WINDOW)
    got = {i.external_id: i.busy for i in pull.items}
    assert got[free] == ()
    ny, paris = ZoneInfo("America/New_York"), ZoneInfo("Europe/Paris")
    assert got[suffixed] == (
        BusyPeriod(
            dt.datetime.combine(day, dt.time(0), tzinfo=ny).astimezone(dt.UTC),
            dt.datetime.combine(nxt, dt.time(0), tzinfo=ny).astimezone(dt.UTC),
        ),
    )
    # Unknown zone: the business's local day, and the note says so.
    assert got[custom] == (
        BusyPeriod(
            dt.datetime.combine(day, dt.time(0), tzinfo=paris).astimezone(dt.UTC),
            dt.datetime.combine(nxt, dt.time(0), tzinfo=paris).astimezone(dt.UTC),
        ),
    )
    assert any("tzone://Microsoft/Custom" in n for n in pull.notes)


async def test_google_all_day_event_blocks_the_business_local_day(
    api: Tenant, served: Served, store: Store
) -> None:
    google = served.google
    refresh = google.add_user("allday@example.com", timezone="Asia/Tokyo")
    biz = await make_business(api)
    cal = (await connect(api, biz["id"], provider="google", refresh_token=refresh)).json()["data"]
    day = future_day(12)
    google.add_event("allday@example.com", start=day.date(), end=day.date() + dt.timedelta(days=1))
    assert await sync_once(store.db, served.settings, cal["id"]) == "synced"
    tokyo = ZoneInfo("Asia/Tokyo")
    start = dt.datetime.combine(day.date(), dt.time(0), tzinfo=tokyo).astimezone(dt.UTC)
    r = await api.client.get(
        f"/v1/businesses/{biz['id']}/calendars/{cal['id']}/busy",
        params={"start": iso(day - 24 * H), "end": iso(day + 48 * H)},
        headers=api.headers(),
    )
    # Tokyo's whole day (15:00 to 15:00 UTC), not the UTC day.
    assert r.json()["data"] == [{"start": iso(start), "end": iso(start + 24 * H)}]


# -- 13. window boundaries -------------------------------------------------------------------


async def test_events_entering_the_window_as_time_passes_are_picked_up(
    api: Tenant, served: Served, store: Store
) -> None:
    """The window is fixed by the first request of a round (Graph) and by the sync token's
    listing (Google): once it has moved a day, a new baseline is taken."""
    for provider in ("google", "microsoft"):
        user = f"window-{provider}@example.com"
        if provider == "google":
            biz, cal = await google_calendar(api, served, user)
        else:
            biz, cal = await graph_calendar(api, served, user)
        assert await sync_once(store.db, served.settings, cal["id"]) == "synced"
        row = await calendar_row(store.db, cal["id"])
        assert row.window_end is not None
        # An event just past today's window end: not in the copy yet.
        later = row.window_end.replace(minute=0, second=0, microsecond=0) + 24 * H
        if provider == "google":
            served.google.add_event(user, start=later, end=later + H)
        else:
            served.graph.add_event(user, start=later, end=later + H)
        config = SyncConfig.from_settings(served.settings)
        tomorrow = dt.datetime.now(dt.UTC) + dt.timedelta(days=2, hours=1)
        engine = CalendarSync(store.db, config=config, clock=lambda t=tomorrow: t)
        assert await engine.sync_one(cal["id"]) == "synced"
        moved = await calendar_row(store.db, cal["id"])
        assert moved.window_end is not None and moved.window_end > row.window_end
        assert moved.copy_generation == row.copy_generation + 1  # a new baseline
        listed = await busy_of(api, biz["id"], cal["id"], later)
        assert listed == [{"start": iso(later), "end": iso(later + H)}], provider


async def test_graph_spurious_removed_outside_the_window_keeps_the_copy(
    api: Tenant, served: Served, store: Store
) -> None:
    graph = served.graph
    biz, cal = await graph_calendar(api, served, "spurious@contoso.example")
    day = future_day()
    graph.add_event("spurious@contoso.example", start=day + 9 * H, end=day + 10 * H)
    assert await sync_once(store.db, served.settings, cal["id"]) == "synced"
    far = dt.datetime.now(dt.UTC) + dt.timedelta(days=400)
    graph.add_event("spurious@contoso.example", start=far, end=far + H)  # outside: @removed
    assert await sync_once(store.db, served.settings, cal["id"]) == "synced"
    assert await busy_of(api, biz["id"], cal["id"], day) == [
        {"start": iso(day + 9 * H), "end": iso(day + 10 * H)}
    ]
    starts, warnings = await slot_starts(api, biz["id"], day)
    assert iso(day + 9 * H) not in starts and warnings == []


async def test_graph_event_ongoing_at_the_window_start_is_kept(
    graph: GraphFake, http: httpx.AsyncClient
) -> None:
    """Started before the window, still going on inside it (the Cal.com bug)."""
    provider, _ = graph_provider(http, graph.add_user(MS_OWNER))
    ongoing = graph.add_event(
        MS_OWNER, start=WINDOW.start - dt.timedelta(days=2), end=WINDOW.start + H
    )["id"]
    graph.add_event(MS_OWNER, start=WINDOW.start - 3 * H, end=WINDOW.start - H)  # over
    pull = await provider.pull(None, WINDOW)
    got = {i.external_id: i.busy for i in pull.items}
    assert set(got) == {ongoing}
    assert got[ongoing][0].end == WINDOW.start + H


# -- 8. event types Google adds over time: busy unless known to be free ----------------------


async def test_google_other_event_types_fail_closed(
    google: GoogleFake, http: httpx.AsyncClient
) -> None:
    token = google.add_user(OWNER)
    t = NOW + dt.timedelta(days=3)
    day = (NOW + dt.timedelta(days=6)).date()
    ids = {
        "focus": google.add_event(OWNER, start=t, end=t + H, event_type="focusTime")["id"],
        "gmail": google.add_event(OWNER, start=t + 2 * H, end=t + 3 * H, event_type="fromGmail")[
            "id"
        ],
        "birthday": google.add_event(
            OWNER, start=day, end=day + dt.timedelta(days=1), event_type="birthday"
        )["id"],
        "unknown": google.add_event(OWNER, start=t + 4 * H, end=t + 5 * H, event_type="newKind")[
            "id"
        ],
    }
    provider, _ = google_provider(http, token)
    got = {i.external_id: i.busy for i in (await provider.pull(None, WINDOW)).items}
    for name, event_id in ids.items():
        assert len(got[event_id]) == 1, name  # §7.2: only workingLocation is free by type


# -- more starred cases the tests above left open ----------------------------------------------


async def test_graph_410_resync_never_shows_the_calendar_empty(
    api: Tenant, served: Served, store: Store
) -> None:
    graph = served.graph
    user = "resync@contoso.example"
    biz, cal = await graph_calendar(api, served, user)
    day = future_day()
    old = graph.add_event(user, start=day + 9 * H, end=day + 10 * H)
    assert await sync_once(store.db, served.settings, cal["id"]) == "synced"
    graph.delete_event(old["id"])
    new = graph.add_event(user, start=day + 11 * H, end=day + 12 * H)
    assert new
    graph.invalidate_delta_tokens()
    graph.latency_s = 0.2  # every request of the resync is slow

    outcome, seen = await busy_seen_during_sync(store, served, api, biz["id"], cal["id"], day)
    assert outcome == "synced"
    graph.latency_s = 0.0
    assert len(seen) >= 3
    assert all(s in ([iso(day + 9 * H)], [iso(day + 11 * H)]) for s in seen), seen
    assert [b["start"] for b in await busy_of(api, biz["id"], cal["id"], day)] == [
        iso(day + 11 * H)
    ]


async def test_weekly_series_keeps_its_wall_clock_across_the_autumn_transitions(
    google: GoogleFake, graph: GraphFake, http: httpx.AsyncClient
) -> None:
    """The EU falls back on the last Sunday of October, the US a week later; a timed event
    over the Berlin fall-back night lasts an hour longer than its wall clock says."""
    year = NOW.year + 1
    berlin, ny = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")
    window = type(WINDOW)(
        dt.datetime(year, 10, 1, tzinfo=dt.UTC), dt.datetime(year, 12, 1, tzinfo=dt.UTC)
    )
    last = dt.date(year, 10, 31)
    eu_switch = last - dt.timedelta(days=(last.weekday() - 6) % 7)
    eve = eu_switch - dt.timedelta(days=1)
    first_monday = eu_switch - dt.timedelta(days=13)  # two weeks before, a Monday

    token = google.add_user(OWNER)
    series = {}
    for name, tz in (("berlin", berlin), ("ny", ny)):
        _, instances = google.add_series(
            OWNER,
            first_start=dt.datetime.combine(first_monday, dt.time(9), tzinfo=tz),
            duration=H,
            count=5,
            time_zone=str(tz),
        )
        series[name] = [i["id"] for i in instances]
    night = google.add_event(
        OWNER,
        start=dt.datetime.combine(eve, dt.time(22), tzinfo=berlin),
        end=dt.datetime.combine(eu_switch, dt.time(6), tzinfo=berlin),
        time_zone="Europe/Berlin",
    )["id"]
    provider, _ = google_provider(http, token)
    got = {i.external_id: i.busy for i in (await provider.pull(None, window)).items}
    for name, tz in (("berlin", berlin), ("ny", ny)):
        assert [got[i][0].start.astimezone(tz).time() for i in series[name]] == [dt.time(9)] * 5
    utc = {n: [got[i][0].start.hour for i in series[n]] for n in series}
    assert utc["berlin"] == [7, 7, 8, 8, 8]  # after the last Sunday of October
    assert utc["ny"] == [13, 13, 13, 14, 14]  # after the first Sunday of November
    (night_busy,) = got[night]
    assert night_busy.end - night_busy.start == 9 * H

    ms = graph_provider(http, graph.add_user(MS_OWNER))[0]
    ids = []
    for week in range(5):
        start = dt.datetime.combine(first_monday + dt.timedelta(days=7 * week), dt.time(9))
        start = start.replace(tzinfo=ny)
        ids.append(
            graph.add_event(
                MS_OWNER, start=start, end=start + H, zone="America/New_York",
                series_master_id="AAMkfall",
            )["id"]
        )  # fmt: skip
    ms_night = graph.add_event(
        MS_OWNER,
        start=dt.datetime.combine(eve, dt.time(22), tzinfo=berlin),
        end=dt.datetime.combine(eu_switch, dt.time(6), tzinfo=berlin),
        zone="Europe/Berlin",
    )["id"]
    ms_got = {i.external_id: i.busy for i in (await ms.pull(None, window)).items}
    assert [ms_got[i][0].start.hour for i in ids] == [13, 13, 13, 14, 14]
    assert ms_got[ms_night][0].end - ms_got[ms_night][0].start == 9 * H


async def test_google_all_day_free_and_multi_day_end_is_exclusive(
    google: GoogleFake, http: httpx.AsyncClient
) -> None:
    token = google.add_user(OWNER, timezone="Europe/Paris")
    day = (NOW + dt.timedelta(days=4)).date()
    free = google.add_event(
        OWNER, start=day, end=day + dt.timedelta(days=1), transparency="transparent"
    )["id"]
    two = google.add_event(OWNER, start=day, end=day + dt.timedelta(days=2))["id"]
    provider, _ = google_provider(http, token)
    got = {i.external_id: i.busy for i in (await provider.pull(None, WINDOW)).items}
    assert got[free] == ()
    paris = ZoneInfo("Europe/Paris")
    assert got[two] == (
        BusyPeriod(
            dt.datetime.combine(day, dt.time(0), tzinfo=paris).astimezone(dt.UTC),
            dt.datetime.combine(day + dt.timedelta(days=2), dt.time(0), tzinfo=paris).astimezone(
                dt.UTC
            ),
        ),
    )


async def test_graph_unanswered_and_tentative_invitations_are_busy(
    graph: GraphFake, http: httpx.AsyncClient
) -> None:
    provider, _ = graph_provider(http, graph.add_user(MS_OWNER))
    t = NOW + dt.timedelta(days=2)
    ids = {
        response: graph.add_event(
            MS_OWNER, start=t + i * H, end=t + i * H + H / 2, response=response
        )["id"]
        for i, response in enumerate(["notResponded", "none", "tentativelyAccepted", "accepted"])
    }
    got = {i.external_id: i.busy for i in (await provider.pull(None, WINDOW)).items}
    for response, event_id in ids.items():
        assert len(got[event_id]) == 1, response


async def test_graph_event_deleted_by_the_owner_is_written_again_once(
    api: Tenant, served: Served, store: Store
) -> None:
    graph = served.graph
    user = "deleted@contoso.example"
    biz, _ = await graph_calendar(api, served, user, role="write")
    booking = (await book(api, biz["id"], future_day() + 9 * H, 30)).json()["data"]
    first = await deliver(store.db, served.settings, booking["id"])
    assert first.calendar_sync_status == "synced" and first.calendar_event_id
    graph.delete_event(first.calendar_event_id)
    moved = await reschedule(api, booking, future_day() + 10 * H)
    graph.transaction_dedupe = False
    graph.inject("create", "commit_then_drop")
    second = await deliver(store.db, served.settings, moved["id"])
    assert second.calendar_sync_status == "synced"
    live = graph.live_events(user)
    assert [e["id"] for e in live] == [second.calendar_event_id]
    assert second.calendar_event_id != first.calendar_event_id
    assert live[0]["transactionId"] == str(remote_identity(booking["id"], 2))


async def test_microsoft_expired_token_refreshes_once_and_invalid_grant_is_auth_failed(
    api: Tenant, served: Served, store: Store
) -> None:
    graph = served.graph
    user = "auth@contoso.example"
    biz, cal = await graph_calendar(api, served, user)
    assert await sync_once(store.db, served.settings, cal["id"]) == "synced"
    before = await stored_refresh_token(store, cal["id"])
    asked = len(graph.calls("token"))
    graph.expire_access_tokens()  # the cached access token is refused: 401
    assert await sync_once(store.db, served.settings, cal["id"]) == "synced"
    assert len(graph.calls("token")) == asked + 1
    rotated = await stored_refresh_token(store, cal["id"])
    assert rotated != before and rotated in graph.refresh_tokens  # the rotation was saved

    graph.revoke(rotated)
    graph.expire_access_tokens()
    assert await sync_once(store.db, served.settings, cal["id"]) == "failed"
    row = await calendar_row(store.db, cal["id"])
    assert row.status == "auth_failed" and row.last_error is not None
    assert row.last_error["code"] == "calendar_auth_failed"
    asked = len(graph.calls("token"))
    assert await sync_once(store.db, served.settings, cal["id"]) == "failed"
    assert len(graph.calls("token")) == asked  # no retry loop against the token endpoint
    stale = {"code": "calendar_stale", "calendar_id": cal["id"]}
    _, warnings = await slot_starts(api, biz["id"], future_day())
    assert stale in warnings
    assert stale in await hold_warnings(api, biz["id"], future_day())


async def hold_warnings(api: Tenant, biz_id: str, day: dt.datetime) -> list[Any]:
    r = await api.client.post(
        "/v1/availability",
        json={
            "business_id": biz_id,
            "duration_minutes": 60,
            "window": {"start": iso(day + 8 * H), "end": iso(day + 13 * H)},
        },
        headers=api.headers(**{"Idempotency-Key": key()}),
    )
    assert r.status_code == 200, r.text
    warnings: list[Any] = r.json()["data"]["warnings"]
    return warnings


@pytest.mark.parametrize("provider", ["google", "microsoft"])
async def test_staleness_is_visible_on_slots_holds_and_the_calendar(
    api: Tenant, served: Served, store: Store, provider: str
) -> None:
    user = f"stale-{provider}@example.com"
    make = google_calendar if provider == "google" else graph_calendar
    biz, cal = await make(api, served, user)
    fake: Any = served.google if provider == "google" else served.graph
    day = future_day()
    fake.add_event(user, start=day + 9 * H, end=day + 10 * H)
    stale = {"code": "calendar_stale", "calendar_id": cal["id"]}
    path = f"/v1/businesses/{biz['id']}/calendars/{cal['id']}"

    async def shown() -> dict[str, Any]:
        r = await api.client.get(path, headers=api.headers())
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()["data"]
        return data

    # Never synced.
    assert stale in (await slot_starts(api, biz["id"], day))[1]
    assert stale in await hold_warnings(api, biz["id"], day)
    assert (await shown())["last_synced_at"] is None
    assert await sync_once(store.db, served.settings, cal["id"]) == "synced"
    good = await shown()
    assert good["busy_intervals"] == 1 and good["last_error"] is None
    assert (await slot_starts(api, biz["id"], day))[1] == []

    # Failing: warned everywhere, the cached busy time still blocks.
    fake.fail_next("*", 503, {"error": {"code": 503, "message": "down"}}, times=1000)
    assert await sync_once(store.db, served.settings, cal["id"]) == "failed"
    down = await shown()
    assert down["status"] == "error" and down["last_error"]["code"] == "calendar_unreachable"
    assert down["busy_intervals"] == 1 and down["last_synced_at"] == good["last_synced_at"]
    starts, warnings = await slot_starts(api, biz["id"], day)
    assert warnings == [stale] and iso(day + 9 * H) not in starts
    assert await hold_warnings(api, biz["id"], day) == [stale]

    # Recovered: the warning goes.
    fake.faults.clear()
    assert await sync_once(store.db, served.settings, cal["id"]) == "synced"
    assert (await shown())["last_error"] is None
    assert (await slot_starts(api, biz["id"], day))[1] == []
    assert await hold_warnings(api, biz["id"], day) == []


async def test_a_throttled_write_calendar_does_not_hold_up_another_in_the_outbox(
    api: Tenant, served: Served, store: Store
) -> None:
    g_biz, _ = await google_calendar(api, served, "throttled@example.com", role="write")
    m_biz, _ = await graph_calendar(api, served, "fine@contoso.example", role="write")
    status, body = GOOGLE_ERRORS["rateLimitExceeded"]
    served.google.fail_next("insert", status, body, headers={"Retry-After": "300"}, times=50)
    day = future_day()
    throttled = (await book(api, g_biz["id"], day + 9 * H, 30)).json()["data"]
    fine = (await book(api, m_biz["id"], day + 9 * H, 30)).json()["data"]
    began = time.monotonic()
    done = await deliver(store.db, served.settings, fine["id"], rounds=1)
    assert time.monotonic() - began < 10  # the 300 s are not slept inside the round
    assert done.calendar_sync_status == "synced"
    assert (await booking_row(store.db, throttled["id"])).calendar_sync_status == "pending"


# -- 4. a deleted Graph recurring series ---------------------------------------------------------


async def test_graph_deleted_recurring_series_blocks_none_of_its_occurrences(
    api: Tenant, served: Served, store: Store
) -> None:
    """The owner deletes a daily series: calendarView/delta reports the master and each
    instance as @removed; after the next (incremental) sync, no occurrence blocks, and
    an unrelated event the same days still does."""
    graph = served.graph
    user = "series@contoso.example"
    biz, cal = await graph_calendar(api, served, user)
    days = [future_day(10 + i) for i in range(4)]
    master, occurrences = graph.add_series(
        user,
        first_start=days[0] + 9 * H,
        duration=H,
        count=4,
        every=dt.timedelta(days=1),
    )
    graph.add_event(user, start=days[1] + 11 * H, end=days[1] + 12 * H)  # not in the series
    assert await sync_once(store.db, served.settings, cal["id"]) == "synced"
    for day in days:
        assert {"start": iso(day + 9 * H), "end": iso(day + 10 * H)} in await busy_of(
            api, biz["id"], cal["id"], day
        )
        assert iso(day + 9 * H) not in (await slot_starts(api, biz["id"], day))[0]
    before = await calendar_row(store.db, cal["id"])
    assert before.busy_count == 5

    graph.delete_event(master)
    assert await sync_once(store.db, served.settings, cal["id"]) == "synced"
    delta = graph.calls("delta")[-1]
    assert "$deltatoken" in str(delta.query)  # a delta round, not a full copy
    after = await calendar_row(store.db, cal["id"])
    assert after.copy_generation == before.copy_generation and after.status == "active"
    assert after.busy_count == 1
    for day in days:
        busy = await busy_of(api, biz["id"], cal["id"], day)
        remaining = [{"start": iso(days[1] + 11 * H), "end": iso(days[1] + 12 * H)}]
        assert busy == (remaining if day == days[1] else [])
        starts, warnings = await slot_starts(api, biz["id"], day)
        assert iso(day + 9 * H) in starts and warnings == []
    assert {o["id"] for o in occurrences}.isdisjoint(e["id"] for e in graph.live_events(user))
