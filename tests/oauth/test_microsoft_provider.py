"""The Microsoft provider against the Graph fake: delta rounds, @removed, 410, the busy
matrix, all-day events in originalStartTimeZone, idempotent writes, mailbox concurrency."""

from __future__ import annotations

import asyncio
import datetime as dt
from zoneinfo import ZoneInfo

import httpx
import pytest

from slotguard.calendars.base import BusyPeriod, CursorExpired, EventGone, ProviderUnavailable
from slotguard.calendars.microsoft import windows_zone
from tests.fakes.graph import GraphFake
from tests.oauth.providers import NOW, WINDOW, booking_event, graph_provider

OWNER = "owner@contoso.com"
H = dt.timedelta(hours=1)


def test_windows_zone_names() -> None:
    assert windows_zone("W. Europe Standard Time") == ZoneInfo("Europe/Berlin")
    assert windows_zone("Eastern Standard Time 1") == ZoneInfo("America/New_York")
    assert windows_zone("Europe/Zurich") == ZoneInfo("Europe/Zurich")
    assert windows_zone("tzone://Microsoft/Custom") is None


async def test_delta_full_then_incremental(graph: GraphFake, http: httpx.AsyncClient) -> None:
    provider, _ = graph_provider(http, graph.add_user(OWNER))
    t = NOW + dt.timedelta(days=2)
    kinds = {
        "busy": {},
        "free": {"show_as": "free"},
        "tentative": {"show_as": "tentative"},
        "oof": {"show_as": "oof"},
        "elsewhere": {"show_as": "workingElsewhere"},
        "unknown": {"show_as": "unknown"},
        "cancelled": {"is_cancelled": True},
        "declined": {"response": "declined"},
    }
    ids = {
        name: graph.add_event(OWNER, start=t + i * H, end=t + i * H + H / 2, **kw)["id"]
        for i, (name, kw) in enumerate(kinds.items())
    }
    day = (NOW + dt.timedelta(days=4)).date()
    ids["all_day"] = graph.add_event(
        OWNER, start=day, end=day + dt.timedelta(days=1), zone="Pacific/Auckland"
    )["id"]
    full = await provider.pull(None, WINDOW)
    assert full.full and full.cursor and full.cursor.startswith(graph.base_url)
    got = {i.external_id: i.busy for i in full.items}
    assert set(got) == set(ids.values())
    for name in ("busy", "tentative", "oof", "unknown", "all_day"):
        assert len(got[ids[name]]) == 1, name
    for name in ("free", "elsewhere", "cancelled", "declined"):
        assert got[ids[name]] == (), name
    nz = ZoneInfo("Pacific/Auckland")
    assert got[ids["all_day"]][0].start == dt.datetime.combine(day, dt.time(0), tzinfo=nz)
    assert len(graph.calls("delta")) >= 1
    assert all('outlook.timezone="UTC"' in c.headers["prefer"] for c in graph.calls("delta"))

    graph.delete_event(ids["busy"])
    graph.update_event(ids["free"], showAs="busy")
    delta = await provider.pull(full.cursor, WINDOW)
    assert not delta.full and delta.deleted == [ids["busy"]]
    assert [i.external_id for i in delta.items] == [ids["free"]]
    assert delta.items[0].busy == (BusyPeriod(t + H, t + H + H / 2),)
    # The delta link was followed exactly as given.
    assert graph.calls("delta")[-1].url == full.cursor
    graph.invalidate_delta_tokens()
    with pytest.raises(CursorExpired):
        await provider.pull(delta.cursor, WINDOW)


async def test_writes_are_idempotent_and_own_events_are_not_busy(
    graph: GraphFake, http: httpx.AsyncClient
) -> None:
    provider, _ = graph_provider(http, graph.add_user(OWNER))
    graph.transaction_dedupe = False  # even if Graph did not de-duplicate
    event = booking_event()
    graph.inject("create", "commit_then_drop", times=3)
    refs = []
    for _ in range(4):
        try:
            refs.append(await provider.upsert_event(event, None))
        except ProviderUnavailable:
            continue
    assert len(graph.live_events(OWNER)) == 1
    ref = refs[-1]
    pull = await provider.pull(None, WINDOW)
    (item,) = pull.items
    assert item.own_booking_id == event.booking_id and item.busy == ()
    moved = await provider.upsert_event(booking_event(start=NOW + dt.timedelta(days=5)), ref)
    assert moved.remote_id == ref.remote_id
    graph.delete_event(ref.remote_id)
    with pytest.raises(EventGone):
        await provider.upsert_event(event, moved)
    await provider.delete_event(moved)  # 404: done


async def test_at_most_four_requests_in_flight_per_mailbox(
    graph: GraphFake, http: httpx.AsyncClient
) -> None:
    provider, _ = graph_provider(http, graph.add_user(OWNER))
    await provider.check()
    graph.mailbox_latency_s = 0.05
    await asyncio.gather(
        *(
            provider.upsert_event(booking_event(booking_id=f"bk_01j{i:04d}"), None)
            for i in range(10)
        )
    )
    assert graph.max_in_flight[OWNER] <= 4 and graph.throttled == 0
    assert len(graph.live_events(OWNER)) == 10
