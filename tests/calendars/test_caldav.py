"""The CalDAV provider against a real Radicale server."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from zoneinfo import ZoneInfo

import httpx
import pytest

from slotguard.calendars.base import (
    BookingEvent,
    CursorExpired,
    EventGone,
    EventRef,
    ProviderAuthError,
    ProviderContext,
    ProviderDataError,
    Window,
)
from slotguard.calendars.caldav import CalDavProvider
from slotguard.calendars.http import make_calendar_client
from tests.calendars.conftest import Radicale

pytestmark = pytest.mark.slow
UTC = dt.UTC
WINDOW = Window(dt.datetime(2026, 3, 1, tzinfo=UTC), dt.datetime(2026, 5, 1, tzinfo=UTC))


def vevent(uid: str, start: str, end: str, extra: str = "") -> str:
    return (
        "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//t//EN\nBEGIN:VEVENT\n"
        f"UID:{uid}\nDTSTAMP:20260101T000000Z\nDTSTART:{start}\nDTEND:{end}\n{extra}"
        "END:VEVENT\nEND:VCALENDAR\n"
    ).replace("\n\n", "\n")


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with make_calendar_client(allow_private=True, timeout=10) as client:
        yield client


def provider(
    http: httpx.AsyncClient, url: str, password: str = "s3cret-pw-for-tests"
) -> CalDavProvider:
    return CalDavProvider(
        ProviderContext(
            calendar_id="cal_t",
            provider="caldav",
            url=url,
            settings={},
            credentials={"username": "alice", "password": password},
            http=http,
            business_tz=ZoneInfo("Europe/Berlin"),
        )
    )


async def test_check_accepts_a_calendar_and_refuses_bad_credentials(
    radicale: Radicale, http: httpx.AsyncClient
) -> None:
    url = radicale.new_calendar()
    got = await provider(http, url).check()
    assert got.name == "Work"
    with pytest.raises(ProviderAuthError):
        await provider(http, url, password="wrong").check()
    with pytest.raises(ProviderDataError):  # the principal, not a calendar
        await provider(http, f"{radicale.base}/alice/").check()


async def test_full_then_incremental_sync_with_changes_and_deletions(
    radicale: Radicale, http: httpx.AsyncClient
) -> None:
    url = radicale.new_calendar()
    a = radicale.put(url, "a.ics", vevent("a", "20260310T090000Z", "20260310T100000Z"))
    radicale.put(url, "b.ics", vevent("b", "20260311T090000Z", "20260311T100000Z"))
    radicale.put(
        url,
        "r.ics",
        vevent("r", "20260302T090000Z", "20260302T100000Z", "RRULE:FREQ=WEEKLY;COUNT=3\n"),
    )
    p = provider(http, url)
    full = await p.pull(None, WINDOW)
    assert full.full
    by = {i.external_id.rsplit("/", 1)[-1]: i for i in full.items}
    assert sorted(by) == ["a.ics", "b.ics", "r.ics"]
    assert len(by["r.ics"].busy) == 3
    assert json.loads(full.cursor or "{}")["mode"] == "sync"

    # Nothing changed: an empty delta.
    same = await p.pull(full.cursor, WINDOW)
    assert not same.full and same.items == [] and same.deleted == []

    # One change and one deletion: the delta names exactly those.
    radicale.put(url, "b.ics", vevent("b", "20260312T090000Z", "20260312T100000Z"))
    radicale.delete(a)
    delta = await p.pull(same.cursor, WINDOW)
    assert not delta.full
    assert [i.external_id.rsplit("/", 1)[-1] for i in delta.items] == ["b.ics"]
    assert delta.items[0].busy[0].start == dt.datetime(2026, 3, 12, 9, tzinfo=UTC)
    assert [d.rsplit("/", 1)[-1] for d in delta.deleted] == ["a.ics"]


async def test_dead_sync_token_is_cursor_expired(
    radicale: Radicale, http: httpx.AsyncClient
) -> None:
    url = radicale.new_calendar()
    bogus = json.dumps({"mode": "sync", "token": "http://radicale.org/ns/sync/deadbeef"})
    with pytest.raises(CursorExpired):
        await provider(http, url).pull(bogus, WINDOW)


async def test_ctag_fallback_diffs_etags(radicale: Radicale, http: httpx.AsyncClient) -> None:
    url = radicale.new_calendar()
    radicale.put(url, "a.ics", vevent("a", "20260310T090000Z", "20260310T100000Z"))
    p = provider(http, url)
    # A cursor as made for a server without sync-collection: diffing etags.
    cursor = json.dumps({"mode": "ctag", "ctag": "old", "etags": {}})
    first = await p.pull(cursor, WINDOW)
    assert [i.external_id.rsplit("/", 1)[-1] for i in first.items] == ["a.ics"]
    unchanged = await p.pull(first.cursor, WINDOW)
    assert unchanged.items == [] and unchanged.deleted == []
    radicale.put(url, "b.ics", vevent("b", "20260311T090000Z", "20260311T100000Z"))
    radicale.delete(url + "a.ics")
    second = await p.pull(unchanged.cursor, WINDOW)
    assert [i.external_id.rsplit("/", 1)[-1] for i in second.items] == ["b.ics"]
    assert [d.rsplit("/", 1)[-1] for d in second.deleted] == ["a.ics"]


def booking_event(generation: int = 1, title: str = "Intro call") -> BookingEvent:
    return BookingEvent(
        booking_id="bk_01test",
        generation=generation,
        title=title,
        description="Line one\nline two; with, commas",
        start=dt.datetime(2026, 3, 29, 0, 30, tzinfo=UTC),  # across the EU DST switch
        end=dt.datetime(2026, 3, 29, 2, 30, tzinfo=UTC),
        timezone="Europe/Berlin",
    )


async def test_retried_creates_make_one_event_and_own_events_are_not_busy(
    radicale: Radicale, http: httpx.AsyncClient
) -> None:
    url = radicale.new_calendar()
    p = provider(http, url)
    # Five creates, as if every response had been lost: one remote event.
    refs = [await p.upsert_event(booking_event(), None) for _ in range(5)]
    assert len({r.remote_id for r in refs}) == 1
    events = radicale.list_events(url)
    assert len(events) == 1
    (text,) = events.values()
    assert "X-SLOTGUARD-BOOKING:bk_01test" in text
    assert "DTSTART:20260329T003000Z" in text and "DTEND:20260329T023000Z" in text
    # Reading it back: an own event, never busy time.
    full = await p.pull(None, WINDOW)
    (item,) = full.items
    assert item.own_booking_id == "bk_01test" and item.busy == ()


async def test_update_delete_and_gone(radicale: Radicale, http: httpx.AsyncClient) -> None:
    url = radicale.new_calendar()
    p = provider(http, url)
    ref = await p.upsert_event(booking_event(), None)
    ref2 = await p.upsert_event(booking_event(title="Renamed"), ref)
    assert ref2.remote_id == ref.remote_id and ref2.etag != ref.etag
    (text,) = radicale.list_events(url).values()
    assert "SUMMARY:Renamed" in text
    # A stale etag: re-read and still update (the booking is authoritative).
    ref3 = await p.upsert_event(booking_event(title="Third"), ref)
    assert "SUMMARY:Third" in next(iter(radicale.list_events(url).values()))
    await p.delete_event(ref3)
    assert radicale.list_events(url) == {}
    await p.delete_event(ref3)  # 404: already done
    with pytest.raises(EventGone):
        await p.upsert_event(booking_event(), EventRef(ref3.remote_id, 1, ref3.etag))


async def test_foreign_resource_with_our_name_is_not_adopted(
    radicale: Radicale, http: httpx.AsyncClient
) -> None:
    url = radicale.new_calendar()
    radicale.put(url, "bk_01test-1.ics", vevent("x", "20260310T090000Z", "20260310T100000Z"))
    with pytest.raises(ProviderDataError):
        await provider(http, url).upsert_event(booking_event(), None)
