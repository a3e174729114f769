"""Starred edge cases of the calendar research note (§5.3) that the other CalDAV and ICS
tests left open, through the real engine against Radicale and the local feed server: a
delta that names one change keeps everything else (2), a truncated sync-collection (507)
is continued (3), moved and excluded occurrences, all-day days and a TZID on a date as a
provider delivers them (5, 7, 14), recurring events entering the window as time passes
(13), and a failing CalDAV calendar shown as stale with its last copy kept (15)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from slotguard.calendars.sync import CalendarSync
from slotguard.store.models import Calendar
from tests.api.helpers import future_day, iso, key, make_business
from tests.calendars.conftest import FeedServer, Gate, Radicale, sync_config
from tests.calendars.test_api import connect, slots, sync
from tests.calendars.test_caldav import vevent
from tests.calendars.test_sync import caldav_calendar, row, z
from tests.conftest import Tenant
from tests.effects.conftest import free_port

H = dt.timedelta(hours=1)
UTC = dt.UTC


async def busy_between(
    t: Tenant, biz_id: str, cal_id: str, start: dt.datetime, end: dt.datetime
) -> list[tuple[str, str]]:
    r = await t.client.get(
        f"/v1/businesses/{biz_id}/calendars/{cal_id}/busy",
        params={"start": iso(start), "end": iso(end)},
        headers=t.headers(),
    )
    assert r.status_code == 200, r.text
    return [(b["start"], b["end"]) for b in r.json()["data"]]


# -- 2. a delta merges into the copy ------------------------------------------------------


@pytest.mark.slow
async def test_caldav_delta_with_one_change_keeps_the_other_events(
    ct: Tenant, radicale: Radicale, gate: tuple[Gate, httpx.AsyncClient]
) -> None:
    g, http = gate
    day = future_day()
    url = radicale.new_calendar()
    for n, hour in enumerate((9, 11, 13)):
        radicale.put(url, f"e{n}.ics", vevent(f"e{n}", z(day + hour * H), z(day + (hour + 1) * H)))
    biz_id, cal_id = await caldav_calendar(ct, radicale, url)
    engine = CalendarSync(ct.store.db, config=sync_config(), http=http)
    assert await engine.sync_one(cal_id) == "synced"
    # One event moves; the delta names only it.
    radicale.put(url, "e1.ics", vevent("e1", z(day + 15 * H), z(day + 16 * H)))
    g.reports.clear()
    assert await engine.sync_one(cal_id) == "synced"
    assert g.reports == ["sync-collection", "multiget"]
    cal = await row(ct, cal_id)
    assert cal.copy_generation == 1 and cal.busy_count == 3
    assert await busy_between(ct, biz_id, cal_id, day, day + 24 * H) == [
        (iso(day + 9 * H), iso(day + 10 * H)),
        (iso(day + 13 * H), iso(day + 14 * H)),
        (iso(day + 15 * H), iso(day + 16 * H)),
    ]


# -- 3. a truncated sync-collection is continued --------------------------------------------


class Truncating(httpx.AsyncBaseTransport):
    """Radicale behind a server that truncates the first sync-collection answer after
    `first` members (507 on the collection, RFC 6578 §3.6) with a continuation token."""

    TOKEN = "urn:slotguard-test:continue"

    def __init__(self, first: int) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.first = first
        self.given: list[str] = []
        self.sync_tokens_sent: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = request.content
        if request.method != "REPORT" or b"sync-collection" not in body:
            return await self.inner.handle_async_request(request)
        sent = re.search(rb"<d:sync-token>(.*?)</d:sync-token>", body)
        token = sent.group(1).decode() if sent else ""
        self.sync_tokens_sent.append(token)
        if token not in ("", self.TOKEN):
            return await self.inner.handle_async_request(request)
        # Both the first request and its continuation read everything from Radicale.
        forward = httpx.Request(
            "REPORT",
            request.url,
            headers={k: v for k, v in request.headers.items() if k.lower() != "content-length"},
            content=body.replace(self.TOKEN.encode(), b""),
        )
        response = await self.inner.handle_async_request(forward)
        text = (await response.aread()).decode()
        await response.aclose()
        parts = re.findall(r"<(?:\w+:)?response>.*?</(?:\w+:)?response>", text, re.S)
        assert len(parts) > self.first, text
        head = text[: text.index(parts[0])]
        tail = text[text.index(parts[-1]) + len(parts[-1]) :]
        if token == "":
            keep = parts[: self.first]
            self.given = [re.search(r"href>(.*?)<", p).group(1) for p in keep]  # type: ignore[union-attr]
            collection = request.url.path
            keep.append(
                f"<response><href>{collection}</href>"
                "<status>HTTP/1.1 507 Insufficient Storage</status></response>"
            )
            head, tail = (
                re.sub(
                    r"<(\w+:)?sync-token>.*?</(\w+:)?sync-token>",
                    f"<sync-token>{self.TOKEN}</sync-token>",
                    part,
                    flags=re.S,
                )
                for part in (head, tail)
            )
        else:
            keep = [p for p in parts if not any(h in p for h in self.given)]
        return httpx.Response(
            207,
            headers={"Content-Type": "application/xml; charset=utf-8"},
            content=(head + "".join(keep) + tail).encode(),
            request=request,
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.slow
async def test_caldav_507_truncation_is_continued_from_the_returned_token(
    ct: Tenant, radicale: Radicale
) -> None:
    day = future_day()
    url = radicale.new_calendar()
    hours = (8, 10, 12, 14, 16)
    for n, hour in enumerate(hours):
        radicale.put(url, f"t{n}.ics", vevent(f"t{n}", z(day + hour * H), z(day + (hour + 1) * H)))
    biz_id, cal_id = await caldav_calendar(ct, radicale, url)
    transport = Truncating(first=2)
    async with httpx.AsyncClient(transport=transport, timeout=10) as http:
        engine = CalendarSync(ct.store.db, config=sync_config(), http=http)
        assert await engine.sync_one(cal_id) == "synced"
    assert transport.sync_tokens_sent == ["", Truncating.TOKEN]
    assert await busy_between(ct, biz_id, cal_id, day, day + 24 * H) == [
        (iso(day + h * H), iso(day + (h + 1) * H)) for h in hours
    ]
    cursor = (await row(ct, cal_id)).cursor or ""
    assert Truncating.TOKEN not in cursor  # the final token, not the continuation


# -- 5, 7 and 14 as each iCalendar provider delivers them ----------------------------------

BERLIN, NY = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")
KERIO_NAME = "Amsterdam, Belgrade, Berlin, Brussels, Rome, Stockholm, Vienna"
KERIO = f'"{KERIO_NAME}"'


def local(d: dt.date, tz: ZoneInfo, hour: int = 0) -> dt.datetime:
    return dt.datetime.combine(d, dt.time(hour), tzinfo=tz).astimezone(UTC)


def resources(day: dt.date) -> dict[str, str]:
    """One VCALENDAR per UID (as CalDAV stores them); an ICS feed has them all in one."""

    def d(n: int) -> str:
        return (day + dt.timedelta(days=n)).strftime("%Y%m%d")

    return {
        # Daily 09:00 Berlin, the second day excluded, the third moved to 13:00 New York.
        "series": f"""BEGIN:VEVENT
UID:series
DTSTAMP:20260101T000000Z
DTSTART;TZID=Europe/Berlin:{d(0)}T090000
DTEND;TZID=Europe/Berlin:{d(0)}T100000
RRULE:FREQ=DAILY;COUNT=3
EXDATE;TZID=Europe/Berlin:{d(1)}T090000
END:VEVENT
BEGIN:VEVENT
UID:series
DTSTAMP:20260101T000000Z
RECURRENCE-ID;TZID=Europe/Berlin:{d(2)}T090000
DTSTART;TZID=America/New_York:{d(2)}T130000
DTEND;TZID=America/New_York:{d(2)}T140000
END:VEVENT
""",
        "all-day": f"BEGIN:VEVENT\nUID:all-day\nDTSTAMP:20260101T000000Z\n"
        f"DTSTART;VALUE=DATE:{d(4)}\nEND:VEVENT\n",
        "all-day-free": f"BEGIN:VEVENT\nUID:all-day-free\nDTSTAMP:20260101T000000Z\n"
        f"DTSTART;VALUE=DATE:{d(5)}\nDTEND;VALUE=DATE:{d(6)}\nTRANSP:TRANSPARENT\nEND:VEVENT\n",
        # Kerio defines its zone (with a display name for TZID) and puts it on dates.
        "kerio": f"BEGIN:VTIMEZONE\nTZID:{KERIO_NAME}\nBEGIN:STANDARD\n"
        "DTSTART:16010101T000000\nTZOFFSETFROM:+0100\nTZOFFSETTO:+0100\nEND:STANDARD\n"
        "END:VTIMEZONE\n"
        f"BEGIN:VEVENT\nUID:kerio\nDTSTAMP:20260101T000000Z\n"
        f"DTSTART;TZID={KERIO};VALUE=DATE:{d(6)}\nEND:VEVENT\n",
    }


def wrap(*events: str) -> str:
    return "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//t//EN\n" + "".join(events) + "END:VCALENDAR\n"


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["caldav", "ics"])
async def test_moved_and_excluded_occurrences_and_all_day_days_through_each_provider(
    ct: Tenant, radicale: Radicale, feed: FeedServer, provider: str
) -> None:
    start = future_day(5)
    day = start.date()
    biz = await make_business(ct, timezone="America/New_York")
    if provider == "caldav":
        url = radicale.new_calendar()
        for name, body in resources(day).items():
            radicale.put(url, f"{name}.ics", wrap(body))
        r = await connect(
            ct,
            biz["id"],
            provider="caldav",
            url=url,
            username=radicale.user,
            password=radicale.password,
        )
    else:
        feed.set(wrap(*resources(day).values()))
        r = await connect(ct, biz["id"], provider="ics", url=feed.url)
    assert r.status_code == 201, r.text
    cal_id = r.json()["data"]["id"]
    done = await sync(ct, biz["id"], cal_id)
    assert done["status"] == "active", done
    assert done["last_error"] is None, done  # no zone warning for the TZID on a date

    def n(k: int) -> dt.date:
        return day + dt.timedelta(days=k)

    expected = sorted(
        [
            (local(n(0), BERLIN, 9), local(n(0), BERLIN, 10)),
            # n(1) excluded; n(2) 09:00 Berlin freed, 13:00 New York busy instead.
            (local(n(2), NY, 13), local(n(2), NY, 14)),
            # All day without DTEND, and with a TZID on the date: the business's local day.
            (local(n(4), NY), local(n(5), NY)),
            (local(n(6), NY), local(n(7), NY)),
        ]
    )
    got = await busy_between(ct, biz["id"], cal_id, start - 24 * H, start + 9 * 24 * H)
    assert got == [(iso(a), iso(b)) for a, b in expected]


# -- 13. recurring events entering the window as time passes --------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["caldav", "ics"])
async def test_occurrences_entering_the_window_as_time_passes(
    ct: Tenant, radicale: Radicale, feed: FeedServer, provider: str
) -> None:
    """An endless daily series never changes at the source, so no delta (sync-collection,
    304, same hash) ever names it: the engine must take a new baseline once the window
    has moved on, or the later occurrences would never block."""
    today = future_day(0)
    series = vevent("daily", z(today + 9 * H), z(today + 10 * H), "RRULE:FREQ=DAILY\n")
    biz = await make_business(ct, rules={"max_advance_days": 5})
    if provider == "caldav":
        url = radicale.new_calendar()
        radicale.put(url, "daily.ics", series)
        r = await connect(
            ct,
            biz["id"],
            provider="caldav",
            url=url,
            username=radicale.user,
            password=radicale.password,
        )
    else:
        feed.set(series)
        r = await connect(ct, biz["id"], provider="ics", url=feed.url)
    assert r.status_code == 201, r.text
    cal_id = r.json()["data"]["id"]
    assert await CalendarSync(ct.store.db, config=sync_config()).sync_one(cal_id) == "synced"
    first = await row(ct, cal_id)
    assert first.window_end is not None
    later = (first.window_end + 24 * H).replace(hour=9, minute=0, second=0, microsecond=0)
    span = (later - 2 * H, later + 2 * H)
    assert await busy_between(ct, biz["id"], cal_id, *span) == []  # outside the window yet

    then = dt.datetime.now(UTC) + dt.timedelta(days=3)
    engine = CalendarSync(ct.store.db, config=sync_config(), clock=lambda: then)
    assert await engine.sync_one(cal_id) == "synced"
    moved = await row(ct, cal_id)
    assert moved.window_end is not None and moved.window_end > later + H
    assert await busy_between(ct, biz["id"], cal_id, *span) == [(iso(later), iso(later + H))]


# -- 15. a failing CalDAV calendar is visibly stale, its copy still used --------------------


@pytest.mark.slow
async def test_a_failing_caldav_calendar_is_stale_everywhere_and_recovers(
    ct: Tenant, radicale: Radicale
) -> None:
    day = future_day()
    url = radicale.new_calendar()
    radicale.put(url, "a.ics", vevent("a", z(day + 9 * H), z(day + 10 * H)))
    biz_id, cal_id = await caldav_calendar(ct, radicale, url)
    stale = {"code": "calendar_stale", "calendar_id": cal_id}

    async def hold_warnings() -> list[Any]:
        r = await ct.client.post(
            "/v1/availability",
            json={
                "business_id": biz_id,
                "duration_minutes": 60,
                "window": {"start": iso(day + 8 * H), "end": iso(day + 12 * H)},
            },
            headers=ct.headers(**{"Idempotency-Key": key()}),
        )
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        assert data["slots"][0]["start"] != iso(day + 9 * H)
        warnings: list[Any] = data["warnings"]
        return warnings

    async def shown() -> dict[str, Any]:
        r = await ct.client.get(f"/v1/businesses/{biz_id}/calendars/{cal_id}", headers=ct.headers())
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()["data"]
        return data

    # Never synced.
    assert stale in (await slots(ct, biz_id, day))["warnings"]
    assert stale in await hold_warnings()
    assert (await shown())["last_synced_at"] is None
    await sync(ct, biz_id, cal_id)
    good = await shown()
    assert good["busy_intervals"] == 1 and good["last_error"] is None
    assert (await slots(ct, biz_id, day))["warnings"] == []

    # The server goes away.
    async with ct.store.db.write() as s:
        cal = await s.get(Calendar, cal_id)
        assert cal is not None
        cal.url = f"http://127.0.0.1:{free_port()}/alice/gone/"
    down = await sync(ct, biz_id, cal_id)
    assert down["status"] == "error" and down["last_error"]["code"] == "calendar_unreachable"
    assert down["busy_intervals"] == 1 and down["last_synced_at"] == good["last_synced_at"]
    listed = await slots(ct, biz_id, day)
    assert listed["warnings"] == [stale]
    assert iso(day + 9 * H) not in [s["start"] for s in listed["slots"]]
    assert await hold_warnings() == [stale]

    # Back: the warning goes.
    async with ct.store.db.write() as s:
        cal = await s.get(Calendar, cal_id)
        assert cal is not None
        cal.url = url
    up = await sync(ct, biz_id, cal_id)
    assert up["status"] == "active" and up["last_error"] is None
    assert (await slots(ct, biz_id, day))["warnings"] == []
    assert await hold_warnings() == []
