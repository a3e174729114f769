"""The sync engine (§7.2) on both stores, against a real Radicale and a real local ICS server:
the lease, CalDAV sync-collection and its ctag/etag fallback, ICS conditional GET plus the
content hash, a dead cursor resynced into a new copy swapped in at once, the busy rule and
time-zone ids through the whole pipeline, and providers that hang or turn hostile."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import random
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from slotguard.calendars.sync import CalendarSync
from slotguard.store import calendar_repo
from slotguard.store.models import Calendar
from tests.api.helpers import future_day, iso, make_business
from tests.calendars.conftest import FeedServer, Gate, Radicale, sync_config
from tests.calendars.test_api import connect, ics, slots, sync
from tests.calendars.test_caldav import vevent
from tests.conftest import Tenant
from tests.effects.conftest import free_port

H = dt.timedelta(hours=1)
MIN = dt.timedelta(minutes=1)


def z(t: dt.datetime) -> str:
    return t.strftime("%Y%m%dT%H%M%SZ")


async def row(t: Tenant, calendar_id: str) -> Calendar:
    async with t.store.db.read() as s:
        cal = await s.get(Calendar, calendar_id, populate_existing=True)
    assert cal is not None
    return cal


async def busy(t: Tenant, biz_id: str, cal_id: str, day: dt.datetime) -> list[tuple[str, str]]:
    r = await t.client.get(
        f"/v1/businesses/{biz_id}/calendars/{cal_id}/busy",
        params={"start": iso(day - 2 * 24 * H), "end": iso(day + 5 * 24 * H)},
        headers=t.headers(),
    )
    assert r.status_code == 200, r.text
    return [(b["start"], b["end"]) for b in r.json()["data"]]


async def ics_calendar(t: Tenant, feed: FeedServer, **biz: Any) -> tuple[str, str]:
    b = await make_business(t, **biz)
    r = await connect(t, b["id"], provider="ics", url=feed.url)
    assert r.status_code == 201, r.text
    return b["id"], r.json()["data"]["id"]


async def caldav_calendar(t: Tenant, radicale: Radicale, url: str) -> tuple[str, str]:
    b = await make_business(t)
    r = await connect(
        t, b["id"], provider="caldav", url=url, username=radicale.user, password=radicale.password
    )
    assert r.status_code == 201, r.text
    return b["id"], r.json()["data"]["id"]


@contextlib.contextmanager
def other_feed() -> Iterator[FeedServer]:
    server = FeedServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- the packed copy ----------------------------------------------------------------------


def test_packed_periods_merge_and_never_free_a_moment() -> None:
    t0 = dt.datetime(2026, 3, 10, 9, tzinfo=dt.UTC)
    periods = [
        (t0 + 2 * H, t0 + 3 * H),
        (t0, t0 + H),
        (t0 + H, t0 + 90 * MIN),  # touches the first: one block
        (t0 + 10 * MIN, t0 + 20 * MIN),  # inside it
        (t0 + 5 * H + dt.timedelta(microseconds=500), t0 + 6 * H - dt.timedelta(microseconds=1)),
    ]
    packed = calendar_repo.pack_periods(periods)
    got = calendar_repo.unpack_periods(packed, start=t0 - H, end=t0 + 24 * H)
    assert got == [
        (t0, t0 + 90 * MIN),
        (t0 + 2 * H, t0 + 3 * H),
        (t0 + 5 * H, t0 + 6 * H),  # rounded outwards to whole seconds
    ]
    # Only what overlaps the asked range, half-open at both ends.
    assert calendar_repo.unpack_periods(packed, start=t0 + 90 * MIN, end=t0 + 2 * H) == []
    assert calendar_repo.unpack_periods(packed, start=t0 + 150 * MIN, end=t0 + 151 * MIN) == [
        (t0 + 2 * H, t0 + 3 * H)
    ]
    assert calendar_repo.unpack_periods(calendar_repo.pack_periods([]), start=t0, end=t0 + H) == []


# -- the lease ----------------------------------------------------------------------------


async def test_two_workers_never_sync_one_calendar_at_once(ct: Tenant, feed: FeedServer) -> None:
    day = future_day()
    feed.set(ics((day + 9 * H, day + 10 * H, "a")))
    biz_id, cal_id = await ics_calendar(ct, feed)
    feed.state.mode, feed.state.delay_s = "slow", 0.8
    asked = len(feed.state.requests)
    a = CalendarSync(ct.store.db, config=sync_config())
    b = CalendarSync(ct.store.db, config=sync_config())
    outcomes = await asyncio.gather(a.sync_one(cal_id), b.sync_one(cal_id))
    assert sorted(outcomes) == ["busy", "synced"]
    assert len(feed.state.requests) == asked + 1
    cal = await row(ct, cal_id)
    assert cal.lease_owner is None and cal.lease_until is None
    assert cal.copy_generation == 1 and cal.busy_count == 1
    # The next run is one interval later, with at most 10 % jitter either way.
    assert cal.last_synced_at is not None and cal.next_sync_at is not None
    gap = (cal.next_sync_at - cal.last_synced_at).total_seconds()
    assert 0.9 * 120 <= gap <= 1.1 * 120

    # A lease that ran out (its worker hung) is taken over; the late worker's result is
    # thrown away instead of overwriting the newer one.
    now = dt.datetime.now(dt.UTC)
    late = CalendarSync(ct.store.db, config=sync_config(), clock=lambda: now)
    later = CalendarSync(ct.store.db, config=sync_config(), clock=lambda: now + H)
    first = asyncio.create_task(late.sync_one(cal_id))
    await asyncio.sleep(0.3)
    assert (await row(ct, cal_id)).lease_owner == late.worker_id
    outcomes = [await later.sync_one(cal_id), await first]
    assert outcomes == ["synced", "missing"]
    assert (await row(ct, cal_id)).lease_owner is None
    assert await busy(ct, biz_id, cal_id, day) == [(iso(day + 9 * H), iso(day + 10 * H))]


# -- CalDAV -------------------------------------------------------------------------------


@pytest.mark.slow
async def test_caldav_incremental_sync_merges_changes(
    ct: Tenant, radicale: Radicale, gate: tuple[Gate, httpx.AsyncClient]
) -> None:
    g, http = gate
    day = future_day()
    url = radicale.new_calendar()
    radicale.put(url, "a.ics", vevent("a", z(day + 9 * H), z(day + 10 * H)))
    radicale.put(url, "b.ics", vevent("b", z(day + 11 * H), z(day + 12 * H)))
    daily = "RRULE:FREQ=DAILY;COUNT=3\n"
    radicale.put(url, "series.ics", vevent("s", z(day + 17 * H), z(day + 18 * H), daily))
    biz_id, cal_id = await caldav_calendar(ct, radicale, url)
    engine = CalendarSync(ct.store.db, config=sync_config(), http=http)
    assert await engine.sync_one(cal_id) == "synced"
    assert len(await busy(ct, biz_id, cal_id, day)) == 5
    first = await row(ct, cal_id)
    assert first.copy_generation == 1 and json.loads(first.cursor or "")["mode"] == "sync"

    radicale.put(url, "b.ics", vevent("b", z(day + 13 * H), z(day + 14 * H)))
    radicale.put(url, "c.ics", vevent("c", z(day + 15 * H), z(day + 16 * H)))
    radicale.delete(url + "a.ics")
    radicale.delete(url + "series.ics")  # the whole series
    g.reports.clear()
    assert await engine.sync_one(cal_id) == "synced"
    assert g.reports == ["sync-collection", "multiget"]
    second = await row(ct, cal_id)
    assert second.copy_generation == 1  # merged into the copy, not a new one
    assert second.cursor != first.cursor
    assert await busy(ct, biz_id, cal_id, day) == [
        (iso(day + 13 * H), iso(day + 14 * H)),
        (iso(day + 15 * H), iso(day + 16 * H)),
    ]
    # Availability (which reads the packed copy) agrees with the rows.
    r = await ct.client.get(
        "/v1/availability/slots",
        params={
            "business_id": biz_id,
            "start": iso(day + 8 * H),
            "end": iso(day + 17 * H),
            "duration_minutes": 60,
            "slot_interval_minutes": 60,
        },
        headers=ct.headers(),
    )
    starts = [s["start"] for s in r.json()["data"]["slots"]]
    assert iso(day + 9 * H) in starts and iso(day + 11 * H) in starts
    assert iso(day + 13 * H) not in starts and iso(day + 15 * H) not in starts
    # Nothing changed: one sync-collection, nothing fetched.
    g.reports.clear()
    assert await engine.sync_one(cal_id) == "synced"
    assert g.reports == ["sync-collection"]


@pytest.mark.slow
async def test_the_copy_window_follows_the_booking_horizon(
    ct: Tenant, radicale: Radicale, gate: tuple[Gate, httpx.AsyncClient]
) -> None:
    g, http = gate
    day = future_day()  # 10 days ahead
    url = radicale.new_calendar()
    radicale.put(url, "near.ics", vevent("near", z(day + 9 * H), z(day + 10 * H)))
    far = day + 20 * 24 * H
    radicale.put(url, "far.ics", vevent("far", z(far + 9 * H), z(far + 10 * H)))
    rules = {
        "working_hours": [
            {
                "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                "start": "00:00",
                "end": "24:00",
            }
        ],
        "max_advance_days": 15,
    }
    b = await make_business(ct, rules=rules)
    r = await connect(
        ct, b["id"], provider="caldav", url=url, username=radicale.user, password=radicale.password
    )
    cal_id = r.json()["data"]["id"]
    engine = CalendarSync(ct.store.db, config=sync_config(), http=http)
    assert await engine.sync_one(cal_id) == "synced"
    first = await row(ct, cal_id)
    assert first.window_end is not None
    assert first.window_end - dt.datetime.now(dt.UTC) < dt.timedelta(days=16, minutes=1)
    path = f"/v1/businesses/{b['id']}/calendars/{cal_id}/busy"
    span = {"start": iso(day), "end": iso(far + 24 * H)}
    got = await ct.client.get(path, params=span, headers=ct.headers())
    assert [x["start"] for x in got.json()["data"]] == [iso(day + 9 * H)]  # far is outside
    # The owner books further ahead now: the copy is read again over the longer window.
    r = await ct.client.patch(
        f"/v1/businesses/{b['id']}",
        json={"rules": {**rules, "max_advance_days": 40}},
        headers=ct.headers(**{"If-Match": "*"}),
    )
    assert r.status_code == 200, r.text
    g.reports.clear()
    assert await engine.sync_one(cal_id) == "synced"
    second = await row(ct, cal_id)
    assert second.copy_generation == first.copy_generation + 1  # a full copy
    got = await ct.client.get(path, params=span, headers=ct.headers())
    assert [x["start"] for x in got.json()["data"]] == [iso(day + 9 * H), iso(far + 9 * H)]


@pytest.mark.slow
async def test_caldav_without_sync_collection_diffs_ctag_and_etags(
    ct: Tenant, radicale: Radicale, gate: tuple[Gate, httpx.AsyncClient]
) -> None:
    g, http = gate
    g.hide_sync_collection = True
    day = future_day()
    url = radicale.new_calendar()
    radicale.put(url, "a.ics", vevent("a", z(day + 9 * H), z(day + 10 * H)))
    biz_id, cal_id = await caldav_calendar(ct, radicale, url)
    engine = CalendarSync(ct.store.db, config=sync_config(), http=http)
    assert await engine.sync_one(cal_id) == "synced"
    cursor = json.loads((await row(ct, cal_id)).cursor or "")
    assert cursor["mode"] == "ctag" and cursor["ctag"]
    assert "sync-collection" not in g.reports
    # Unchanged ctag: nothing is listed or fetched.
    g.reports.clear()
    assert await engine.sync_one(cal_id) == "synced"
    assert g.reports == []
    radicale.put(url, "b.ics", vevent("b", z(day + 11 * H), z(day + 12 * H)))
    radicale.delete(url + "a.ics")
    assert await engine.sync_one(cal_id) == "synced"
    assert g.reports == ["multiget"]  # only the changed member
    assert (await row(ct, cal_id)).copy_generation == 1
    assert await busy(ct, biz_id, cal_id, day) == [(iso(day + 11 * H), iso(day + 12 * H))]


@pytest.mark.slow
async def test_a_dead_sync_token_resyncs_into_a_new_copy_swapped_in_at_once(
    ct: Tenant, radicale: Radicale, gate: tuple[Gate, httpx.AsyncClient]
) -> None:
    g, http = gate
    day = future_day()
    url = radicale.new_calendar()
    radicale.put(url, "a.ics", vevent("a", z(day + 9 * H), z(day + 10 * H)))
    radicale.put(
        url,
        "series.ics",
        vevent("s", z(day + 11 * H), z(day + 12 * H), "RRULE:FREQ=DAILY;COUNT=3\n"),
    )
    biz_id, cal_id = await caldav_calendar(ct, radicale, url)
    engine = CalendarSync(ct.store.db, config=sync_config(), http=http)
    assert await engine.sync_one(cal_id) == "synced"
    old = await busy(ct, biz_id, cal_id, day)
    assert len(old) == 4
    # The server forgets the token (its history was pruned); meanwhile the single event
    # and the whole series are deleted and a new event is added.
    async with ct.store.db.write() as s:
        cal = await s.get(Calendar, cal_id)
        assert cal is not None
        cal.cursor = json.dumps({"mode": "sync", "token": "http://radicale.org/ns/sync/dead"})
    radicale.delete(url + "a.ics")
    radicale.delete(url + "series.ics")
    radicale.put(url, "n.ics", vevent("n", z(day + 14 * H), z(day + 15 * H)))

    g.hold = True
    task = asyncio.create_task(engine.sync_one(cal_id))
    await asyncio.wait_for(g.entered.wait(), 10)
    # Mid-resync: availability still sees the whole old copy, never an empty calendar.
    assert await busy(ct, biz_id, cal_id, day) == old
    starts = [s["start"] for s in (await slots(ct, biz_id, day))["slots"]]
    assert iso(day + 9 * H) not in starts and iso(day + 11 * H) not in starts
    assert (await row(ct, cal_id)).copy_generation == 1
    g.release.set()
    assert await task == "synced"
    cal = await row(ct, cal_id)
    assert cal.copy_generation == 2 and cal.status == "active"
    assert await busy(ct, biz_id, cal_id, day) == [(iso(day + 14 * H), iso(day + 15 * H))]
    assert cal.busy_count == 1


async def test_an_old_copy_is_stale_after_three_intervals_or_15_minutes(
    ct: Tenant, feed: FeedServer
) -> None:
    day = future_day()
    feed.set(ics((day + 9 * H, day + 10 * H, "a")))
    biz_id, cal_id = await ics_calendar(ct, feed)
    await sync(ct, biz_id, cal_id)
    stale = {"code": "calendar_stale", "calendar_id": cal_id}
    for age, warned in ((14 * MIN, False), (16 * MIN, True)):  # max(3 x 120 s, 15 min)
        async with ct.store.db.write() as s:
            cal = await s.get(Calendar, cal_id)
            assert cal is not None
            cal.last_synced_at = dt.datetime.now(dt.UTC) - age
        listed = await slots(ct, biz_id, day)
        assert (stale in listed["warnings"]) is warned, (age, listed["warnings"])
        # The old copy still blocks.
        assert iso(day + 9 * H) not in [s["start"] for s in listed["slots"]]
    await sync(ct, biz_id, cal_id)
    assert (await slots(ct, biz_id, day))["warnings"] == []


# -- ICS over HTTP --------------------------------------------------------------------------


async def test_ics_conditional_get_and_content_hash(ct: Tenant, feed: FeedServer) -> None:
    day = future_day()
    feed.set(ics((day + 9 * H, day + 10 * H, "a")), etag='"v1"')
    biz_id, cal_id = await ics_calendar(ct, feed)
    await sync(ct, biz_id, cal_id)
    assert (await row(ct, cal_id)).copy_generation == 1
    # Validators honoured: a 304, the copy stays as it is.
    await sync(ct, biz_id, cal_id)
    sent = feed.state.requests[-1]
    assert sent.get("If-None-Match") == '"v1"'
    assert sent.get("If-Modified-Since") == feed.state.last_modified
    cal = await row(ct, cal_id)
    assert cal.copy_generation == 1 and cal.status == "active"
    # A server that ignores validators and sends the same body: the hash says unchanged.
    feed.state.mode = "ignore"
    await sync(ct, biz_id, cal_id)
    assert (await row(ct, cal_id)).copy_generation == 1
    feed.set(ics((day + 11 * H, day + 12 * H, "b")), etag=None)
    await sync(ct, biz_id, cal_id)
    assert (await row(ct, cal_id)).copy_generation == 2
    assert await busy(ct, biz_id, cal_id, day) == [(iso(day + 11 * H), iso(day + 12 * H))]


async def test_a_server_that_always_answers_304_is_read_plainly_once_a_day(
    ct: Tenant, feed: FeedServer
) -> None:
    day = future_day()
    feed.set(ics((day + 9 * H, day + 10 * H, "a")))
    biz_id, cal_id = await ics_calendar(ct, feed)
    await sync(ct, biz_id, cal_id)
    feed.state.mode = "always_304"
    feed.set(ics((day + 11 * H, day + 12 * H, "b")))  # the change is never announced
    await sync(ct, biz_id, cal_id)
    assert await busy(ct, biz_id, cal_id, day) == [(iso(day + 9 * H), iso(day + 10 * H))]
    async with ct.store.db.write() as s:  # a day later
        cal = await s.get(Calendar, cal_id)
        assert cal is not None and cal.cursor is not None
        state = json.loads(cal.cursor)
        state["unconditional_at"] = (dt.datetime.now(dt.UTC) - 25 * H).isoformat()
        cal.cursor = json.dumps(state)
    await sync(ct, biz_id, cal_id)
    sent = feed.state.requests[-1]
    assert "If-None-Match" not in sent and "If-Modified-Since" not in sent
    assert await busy(ct, biz_id, cal_id, day) == [(iso(day + 11 * H), iso(day + 12 * H))]


@pytest.mark.parametrize("mode", ["gzip", "redirect"])
async def test_gzip_and_redirects_are_followed(ct: Tenant, feed: FeedServer, mode: str) -> None:
    day = future_day()
    feed.set(ics((day + 9 * H, day + 10 * H, "a")))
    feed.state.mode = mode
    biz_id, cal_id = await ics_calendar(ct, feed)
    done = await sync(ct, biz_id, cal_id)
    assert done["status"] == "active", done
    assert await busy(ct, biz_id, cal_id, day) == [(iso(day + 9 * H), iso(day + 10 * H))]


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ("404", "calendar_unreachable"),
        ("410", "calendar_unreachable"),
        ("oversize", "calendar_unreachable"),
        ("malformed", "calendar_unreachable"),
    ],
)
async def test_bad_data_keeps_the_last_good_copy(
    ct: Tenant, feed: FeedServer, fault: str, code: str
) -> None:
    day = future_day()
    good = ics((day + 9 * H, day + 10 * H, "a"))
    feed.set(good)
    biz_id, cal_id = await ics_calendar(ct, feed)
    await sync(ct, biz_id, cal_id)
    if fault in ("404", "410"):
        feed.state.mode, feed.state.status = "status", int(fault)
    elif fault == "oversize":
        feed.state.mode = "oversize"
    else:
        feed.set("BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:not a date\n", etag='"v2"')
    engine = CalendarSync(ct.store.db, config=sync_config(max_bytes=1024 * 1024))
    assert await engine.sync_one(cal_id) == "failed"
    cal = await row(ct, cal_id)
    assert cal.status == "error" and cal.last_error is not None
    assert cal.last_error["code"] == code
    if fault in ("404", "410"):
        assert cal.last_error["status"] == int(fault)
    assert cal.copy_generation == 1 and cal.busy_count == 1
    assert await busy(ct, biz_id, cal_id, day) == [(iso(day + 9 * H), iso(day + 10 * H))]
    listed = await slots(ct, biz_id, day)
    assert listed["warnings"] == [{"code": "calendar_stale", "calendar_id": cal_id}]
    assert iso(day + 9 * H) not in [s["start"] for s in listed["slots"]]
    # Fixed at the source: the next sync recovers and the warning goes.
    feed.state.mode = "honour"
    feed.set(good, etag='"v3"')
    assert (await sync(ct, biz_id, cal_id))["status"] == "active"
    assert (await slots(ct, biz_id, day))["warnings"] == []


# -- the busy rule and time zones, end to end ----------------------------------------------


async def test_the_busy_rule_through_sync(ct: Tenant, feed: FeedServer) -> None:
    day = future_day()
    owner = "owner@biz.example.com"

    def ev(uid: str, hour: int, extra: str = "") -> str:
        a, b = day + hour * H, day + hour * H + 30 * MIN
        return (
            f"BEGIN:VEVENT\nUID:{uid}\nDTSTAMP:20260101T000000Z\n"
            f"DTSTART:{z(a)}\nDTEND:{z(b)}\n{extra}END:VEVENT\n"
        )

    events = [
        ev("plain", 8),
        ev("cancelled", 9, "STATUS:CANCELLED\n"),
        ev("transparent", 10, "TRANSP:TRANSPARENT\n"),
        ev("declined-by-owner", 11, f"ATTENDEE;PARTSTAT=DECLINED:mailto:{owner.upper()}\n"),
        ev("declined-by-other", 12, "ATTENDEE;PARTSTAT=DECLINED:mailto:other@x.example\n"),
        ev("tentative", 13, "STATUS:TENTATIVE\n"),
        ev("needs-action", 14, f"ATTENDEE;PARTSTAT=NEEDS-ACTION:mailto:{owner}\n"),
        ev("outlook-free", 15, "X-MICROSOFT-CDO-BUSYSTATUS:FREE\n"),
        ev("unknown-status", 16, "STATUS:SOMETHING-NEW\n"),
        ev("ours", 17, "X-SLOTGUARD-BOOKING:bk_01written\n"),
        # All day, two days on: the whole local day of the business (UTC+14), not the UTC day.
        "BEGIN:VEVENT\nUID:all-day\nDTSTAMP:20260101T000000Z\n"
        f"DTSTART;VALUE=DATE:{(day + 48 * H).strftime('%Y%m%d')}\nEND:VEVENT\n",
        # A daily series of three with the second occurrence excluded.
        "BEGIN:VEVENT\nUID:series\nDTSTAMP:20260101T000000Z\n"
        f"DTSTART:{z(day + 20 * H)}\nDTEND:{z(day + 21 * H)}\nRRULE:FREQ=DAILY;COUNT=3\n"
        f"EXDATE:{z(day + 44 * H)}\nEND:VEVENT\n",
    ]
    feed.set(
        "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//t//EN\n" + "".join(events) + "END:VCALENDAR\n"
    )
    biz_id, cal_id = await ics_calendar(ct, feed, timezone="Pacific/Kiritimati", email=owner)
    await sync(ct, biz_id, cal_id)
    half = 30 * MIN
    expected = sorted(
        [(iso(day + h * H), iso(day + h * H + half)) for h in (8, 12, 13, 14, 16)]
        + [(iso(day + 20 * H), iso(day + 21 * H)), (iso(day + 68 * H), iso(day + 69 * H))]
        + [(iso(day + 24 * H + 10 * H), iso(day + 48 * H + 10 * H))]
    )
    assert await busy(ct, biz_id, cal_id, day) == expected


CUSTOM_TZ = """BEGIN:VTIMEZONE
TZID:Customized Time Zone
BEGIN:STANDARD
DTSTART:16010101T000000
TZOFFSETFROM:{off}
TZOFFSETTO:{off}
END:STANDARD
END:VTIMEZONE
"""


async def test_two_feeds_defining_one_tzid_differently_do_not_contaminate(
    ct: Tenant, feed: FeedServer
) -> None:
    day = future_day()
    local = (day + 9 * H).strftime("%Y%m%dT%H%M%S")
    local_end = (day + 10 * H).strftime("%Y%m%dT%H%M%S")

    def body(offset: str) -> str:
        return (
            "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//t//EN\n"
            + CUSTOM_TZ.format(off=offset)
            + f"BEGIN:VEVENT\nUID:x\nDTSTAMP:20260101T000000Z\n"
            f"DTSTART;TZID=Customized Time Zone:{local}\n"
            f"DTEND;TZID=Customized Time Zone:{local_end}\nEND:VEVENT\nEND:VCALENDAR\n"
        )

    with other_feed() as second:
        feed.set(body("+0100"))
        second.set(body("-0500"))
        biz_a, cal_a = await ics_calendar(ct, feed)
        biz_b = (await make_business(ct))["id"]
        r = await connect(ct, biz_b, provider="ics", url=second.url)
        assert r.status_code == 201, r.text
        cal_b = r.json()["data"]["id"]
        for biz_id, cal_id in ((biz_a, cal_a), (biz_b, cal_b), (biz_a, cal_a)):
            await sync(ct, biz_id, cal_id)
        assert await busy(ct, biz_a, cal_a, day) == [(iso(day + 8 * H), iso(day + 9 * H))]
        assert await busy(ct, biz_b, cal_b, day) == [(iso(day + 14 * H), iso(day + 15 * H))]


# -- providers that hang or turn hostile ---------------------------------------------------


class HangingServer:
    """Accepts connections and never answers."""

    def __init__(self) -> None:
        self.port = free_port()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> HangingServer:
        async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                await reader.read(-1)
            writer.close()

        self._server = await asyncio.start_server(hang, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/cal/"


async def test_a_hanging_provider_delays_neither_slots_nor_other_calendars(
    ct: Tenant, feed: FeedServer
) -> None:
    day = future_day()
    feed.set(ics((day + 9 * H, day + 10 * H, "a")))
    biz_id, good = await ics_calendar(ct, feed)
    with other_feed() as second:
        second.set(ics((day + 11 * H, day + 12 * H, "b")))
        r = await connect(ct, biz_id, provider="ics", url=second.url)
        assert r.status_code == 201, r.text
        hanging = r.json()["data"]["id"]
        async with HangingServer() as server:
            async with ct.store.db.write() as s:
                cal = await s.get(Calendar, hanging)
                assert cal is not None
                cal.url = server.url  # the provider stops answering
            engine = CalendarSync(ct.store.db, config=sync_config(request_timeout_s=3.0))
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            stuck = asyncio.create_task(engine.sync_one(hanging))
            fine = asyncio.create_task(engine.sync_one(good))
            assert await asyncio.wait_for(fine, 2.0) == "synced"
            listed = await slots(ct, biz_id, day)
            assert loop.time() - t0 < 2.0
            assert not stuck.done()
            starts = [s["start"] for s in listed["slots"]]
            assert iso(day + 9 * H) not in starts
            assert {"code": "calendar_stale", "calendar_id": hanging} in listed["warnings"]
            assert await stuck == "failed"
    cal = await row(ct, hanging)
    assert cal.status == "error" and cal.last_error is not None
    assert "did not answer" in cal.last_error["message"]


# -- a throttled source: left alone until its Retry-After, the others go on ------------------


class LowJitter(random.Random):
    """Every jitter at its lowest, so a wait that could come early does."""

    def uniform(self, a: float, b: float) -> float:
        del b
        return a


class Throttle(httpx.AsyncBaseTransport):
    """A real transport that answers 429 + Retry-After to every request under `prefix`."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.prefix: str | None = None
        self.retry_after = "600"
        self.refused = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.prefix is not None and str(request.url).startswith(self.prefix):
            self.refused += 1
            return httpx.Response(429, headers={"Retry-After": self.retry_after}, request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def due_ids(t: Tenant, at: dt.datetime) -> set[str]:
    async with t.store.db.read() as s:
        return set(await calendar_repo.due_calendar_ids(s, at, 100_000))


RETRY_AFTER = dt.timedelta(seconds=600)


async def assert_left_alone_until_retry_after(
    t: Tenant,
    engine: CalendarSync,
    biz_id: str,
    throttled: str,
    other: str,
    day: dt.datetime,
    kept: list[tuple[str, str]],
) -> None:
    """`throttled` now answers 429 + Retry-After 600: one sync fails and says so, the next
    is not due before the 600 s (whatever the jitter), its copy still blocks (stale), and
    `other`, synced at the same moment by the same engine, is not held up."""
    began = dt.datetime.now(dt.UTC)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    outcomes = await asyncio.gather(engine.sync_one(throttled), engine.sync_one(other))
    assert outcomes == ["failed", "synced"]
    assert loop.time() - t0 < 5  # the 600 s are not slept
    cal = await row(t, throttled)
    assert cal.status == "error" and cal.last_error is not None
    assert cal.last_error["code"] == "calendar_rate_limited"
    assert cal.last_error["status"] == 429 and "slow down" in cal.last_error["message"]
    assert cal.lease_owner is None and cal.next_sync_at is not None
    assert cal.next_sync_at >= began + RETRY_AFTER
    assert cal.next_sync_at <= began + RETRY_AFTER * 1.1 + dt.timedelta(seconds=5)
    assert throttled not in await due_ids(t, began + RETRY_AFTER - dt.timedelta(seconds=1))
    assert throttled in await due_ids(t, began + RETRY_AFTER * 1.1 + dt.timedelta(seconds=5))
    assert await busy(t, biz_id, throttled, day) == kept
    listed = await slots(t, biz_id, day)
    assert {"code": "calendar_stale", "calendar_id": throttled} in listed["warnings"]
    assert {"code": "calendar_stale", "calendar_id": other} not in listed["warnings"]
    good = await row(t, other)
    assert good.status == "active" and good.last_error is None
    assert good.next_sync_at is not None and good.next_sync_at < began + RETRY_AFTER / 2


async def test_an_ics_feed_answering_429_is_left_alone_until_its_retry_after(
    ct: Tenant, feed: FeedServer
) -> None:
    day = future_day()
    feed.set(ics((day + 9 * H, day + 10 * H, "a")))
    biz_id, throttled = await ics_calendar(ct, feed)
    engine = CalendarSync(ct.store.db, config=sync_config(), rng=LowJitter())
    assert await engine.sync_one(throttled) == "synced"
    with other_feed() as second:
        second.set(ics((day + 11 * H, day + 12 * H, "b")))
        r = await connect(ct, biz_id, provider="ics", url=second.url)
        assert r.status_code == 201, r.text
        other = r.json()["data"]["id"]
        feed.state.mode, feed.state.status = "status", 429
        feed.state.status_headers = {"Retry-After": "600"}
        asked = len(feed.state.requests)
        await assert_left_alone_until_retry_after(
            ct, engine, biz_id, throttled, other, day, [(iso(day + 9 * H), iso(day + 10 * H))]
        )
        assert len(feed.state.requests) == asked + 1


@pytest.mark.slow
async def test_a_caldav_server_answering_429_is_left_alone_until_its_retry_after(
    ct: Tenant, radicale: Radicale
) -> None:
    day = future_day()
    url = radicale.new_calendar()
    radicale.put(url, "a.ics", vevent("a", z(day + 9 * H), z(day + 10 * H)))
    biz_id, throttled = await caldav_calendar(ct, radicale, url)
    second = radicale.new_calendar()
    radicale.put(second, "b.ics", vevent("b", z(day + 11 * H), z(day + 12 * H)))
    r = await connect(
        ct, biz_id, provider="caldav", url=second, username=radicale.user,
        password=radicale.password,
    )  # fmt: skip
    assert r.status_code == 201, r.text
    other = r.json()["data"]["id"]
    throttle = Throttle()
    async with httpx.AsyncClient(transport=throttle, timeout=10) as http:
        engine = CalendarSync(ct.store.db, config=sync_config(), http=http, rng=LowJitter())
        assert await engine.sync_one(throttled) == "synced"
        throttle.prefix = url
        await assert_left_alone_until_retry_after(
            ct, engine, biz_id, throttled, other, day, [(iso(day + 9 * H), iso(day + 10 * H))]
        )
        assert throttle.refused == 1
    await throttle.aclose()


BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<d:multistatus xmlns:d="DAV:"><d:response><d:href>/cal/</d:href><d:propstat><d:prop>
<d:displayname>&lol9;</d:displayname></d:prop><d:status>HTTP/1.1 200 OK</d:status>
</d:propstat></d:response></d:multistatus>"""


@contextlib.contextmanager
def hostile_caldav() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            del format, args

        def _bomb(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            self.send_response(207)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(BOMB)))
            self.end_headers()
            self.wfile.write(BOMB)

        do_PROPFIND = do_REPORT = _bomb

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/cal/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
async def test_an_xml_bomb_sets_error_and_keeps_the_copy(ct: Tenant, radicale: Radicale) -> None:
    day = future_day()
    url = radicale.new_calendar()
    radicale.put(url, "a.ics", vevent("a", z(day + 9 * H), z(day + 10 * H)))
    biz_id, cal_id = await caldav_calendar(ct, radicale, url)
    await sync(ct, biz_id, cal_id)
    with hostile_caldav() as hostile:
        r = await connect(ct, biz_id, provider="caldav", url=hostile)
        assert r.status_code == 422 and r.json()["error"] == "calendar_unreachable"
        async with ct.store.db.write() as s:
            cal = await s.get(Calendar, cal_id)
            assert cal is not None
            cal.url = hostile  # the server turns hostile
        engine = CalendarSync(ct.store.db, config=sync_config())
        assert await engine.sync_one(cal_id) == "failed"
    cal = await row(ct, cal_id)
    assert cal.status == "error" and cal.last_error is not None
    assert "XML" in cal.last_error["message"]
    assert await busy(ct, biz_id, cal_id, day) == [(iso(day + 9 * H), iso(day + 10 * H))]
