"""The calendar routes (§7.1), busy time from calendars in availability, holds and bookings
(§7.2), on both stores, against a local ICS server and a real Radicale."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest

from slotguard.calendars.sync import CalendarSync
from slotguard.store.models import Calendar
from tests.api.helpers import book, future_day, iso, key, make_business
from tests.calendars.conftest import FeedServer, Radicale, sync_config
from tests.conftest import Tenant

H = dt.timedelta(hours=1)


def ics(*events: tuple[dt.datetime, dt.datetime, str]) -> str:
    body = "".join(
        f"BEGIN:VEVENT\nUID:{uid}\nDTSTAMP:20260101T000000Z\n"
        f"DTSTART:{a.strftime('%Y%m%dT%H%M%SZ')}\nDTEND:{b.strftime('%Y%m%dT%H%M%SZ')}\n"
        "SUMMARY:Private dentist appointment\nEND:VEVENT\n"
        for a, b, uid in events
    )
    return f"BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//t//EN\n{body}END:VCALENDAR\n"


async def connect(t: Tenant, biz_id: str, **body: Any) -> httpx.Response:
    return await t.client.post(f"/v1/businesses/{biz_id}/calendars", json=body, headers=t.headers())


async def sync(t: Tenant, biz_id: str, cal_id: str) -> dict[str, Any]:
    r = await t.client.post(f"/v1/businesses/{biz_id}/calendars/{cal_id}/sync", headers=t.headers())
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


async def slots(t: Tenant, biz_id: str, day: dt.datetime) -> dict[str, Any]:
    r = await t.client.get(
        "/v1/availability/slots",
        params={
            "business_id": biz_id,
            "start": iso(day + 8 * H),
            "end": iso(day + 12 * H),
            "duration_minutes": 60,
            "slot_interval_minutes": 60,
        },
        headers=t.headers(),
    )
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


async def test_ics_calendar_blocks_slots_holds_and_bookings(ct: Tenant, feed: FeedServer) -> None:
    biz = await make_business(ct)
    day = future_day()
    feed.set(ics((day + 9 * H, day + 10 * H, "dentist")))
    r = await connect(ct, biz["id"], provider="ics", url=feed.url, name="Personal")
    assert r.status_code == 201, r.text
    cal = r.json()["data"]
    assert r.headers["Location"] == f"/v1/businesses/{biz['id']}/calendars/{cal['id']}"
    assert set(cal) == {
        "id",
        "business_id",
        "provider",
        "role",
        "name",
        "url",
        "calendar_id",
        "status",
        "last_synced_at",
        "last_error",
        "busy_intervals",
        "created_at",
        "updated_at",
    }
    assert cal["id"].startswith("cal_") and cal["status"] == "pending"
    assert cal["role"] == "busy" and cal["busy_intervals"] == 0 and cal["last_synced_at"] is None

    # Never synced: stale, said on slot listings.
    before = await slots(ct, biz["id"], day)
    assert {"code": "calendar_stale", "calendar_id": cal["id"]} in before["warnings"]

    done = await sync(ct, biz["id"], cal["id"])
    assert done["status"] == "active" and done["busy_intervals"] == 1
    assert done["last_synced_at"] is not None and done["last_error"] is None

    listed = await slots(ct, biz["id"], day)
    assert listed["warnings"] == []
    starts = [s["start"] for s in listed["slots"]]
    assert iso(day + 9 * H) not in starts and iso(day + 8 * H) in starts

    r = await book(ct, biz["id"], day + 9 * H + dt.timedelta(minutes=30), 30)
    assert r.status_code == 409 and r.json()["details"] == {"reason": "overlaps_busy_time"}
    assert (await book(ct, biz["id"], day + 10 * H, 30)).status_code == 201

    r = await ct.client.post(
        "/v1/availability",
        json={
            "business_id": biz["id"],
            "duration_minutes": 60,
            "window": {"start": iso(day + 9 * H), "end": iso(day + 10 * H)},
        },
        headers=ct.headers(**{"Idempotency-Key": key()}),
    )
    assert r.status_code == 409 and r.json()["error"] == "no_slots_available"

    busy = await ct.client.get(
        f"/v1/businesses/{biz['id']}/calendars/{cal['id']}/busy",
        params={"start": iso(day), "end": iso(day + 24 * H)},
        headers=ct.headers(),
    )
    assert busy.status_code == 200
    assert busy.json()["data"] == [{"start": iso(day + 9 * H), "end": iso(day + 10 * H)}]
    assert "dentist" not in busy.text.lower()

    # Listing and reading.
    lst = await ct.client.get(f"/v1/businesses/{biz['id']}/calendars", headers=ct.headers())
    assert [c["id"] for c in lst.json()["data"]] == [cal["id"]]
    one = await ct.client.get(
        f"/v1/businesses/{biz['id']}/calendars/{cal['id']}", headers=ct.headers()
    )
    assert one.json()["data"]["busy_intervals"] == 1

    # Delete: the busy time goes in the same transaction.
    d = await ct.client.delete(
        f"/v1/businesses/{biz['id']}/calendars/{cal['id']}", headers=ct.headers()
    )
    assert d.status_code == 200
    assert (await book(ct, biz["id"], day + 9 * H, 30)).status_code == 201
    gone = await ct.client.get(
        f"/v1/businesses/{biz['id']}/calendars/{cal['id']}", headers=ct.headers()
    )
    assert gone.status_code == 404


async def test_feed_changes_apply_and_vanished_events_free_time(
    ct: Tenant, feed: FeedServer
) -> None:
    biz = await make_business(ct)
    day = future_day()
    feed.set(ics((day + 9 * H, day + 10 * H, "a"), (day + 11 * H, day + 12 * H, "b")))
    cal = (await connect(ct, biz["id"], provider="ics", url=feed.url)).json()["data"]
    assert (await sync(ct, biz["id"], cal["id"]))["busy_intervals"] == 2
    # Same validators: the server answers 304 and nothing changes.
    await sync(ct, biz["id"], cal["id"])
    assert feed.state.requests[-1].get("If-None-Match") == '"v1"'
    feed.set(ics((day + 11 * H, day + 12 * H, "b")), etag='"v2"')
    assert (await sync(ct, biz["id"], cal["id"]))["busy_intervals"] == 1
    assert (await book(ct, biz["id"], day + 9 * H, 30)).status_code == 201


async def test_ics_must_be_read_only(ct: Tenant, feed: FeedServer) -> None:
    biz = await make_business(ct)
    feed.set(ics())
    r = await connect(ct, biz["id"], provider="ics", url=feed.url, role="write")
    assert r.status_code == 422 and r.json()["error"] == "validation_error"
    r = await connect(ct, biz["id"], provider="nope", url=feed.url)
    assert r.status_code == 422 and r.json()["error"] == "validation_error"


async def test_unreachable_and_malformed_sources_are_422(ct: Tenant, feed: FeedServer) -> None:
    biz = await make_business(ct)
    feed.state.mode, feed.state.status = "status", 404
    r = await connect(ct, biz["id"], provider="ics", url=feed.url)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "calendar_unreachable"
    assert r.json()["details"] == {"status": 404}
    feed.state.mode = "honour"
    feed.set("this is not a calendar")
    r = await connect(ct, biz["id"], provider="ics", url=feed.url)
    assert r.status_code == 422 and r.json()["error"] == "calendar_unreachable"
    from tests.effects.conftest import free_port

    r = await connect(ct, biz["id"], provider="ics", url=f"http://127.0.0.1:{free_port()}/x.ics")
    assert r.status_code == 422 and r.json()["error"] == "calendar_unreachable"
    lst = await ct.client.get(f"/v1/businesses/{biz['id']}/calendars", headers=ct.headers())
    assert lst.json()["data"] == []


async def test_private_addresses_are_refused_by_default(tenant: Tenant, feed: FeedServer) -> None:
    # `tenant` uses the app without SLOTGUARD_ALLOW_PRIVATE_CALENDARS.
    biz = await make_business(tenant)
    feed.set(ics())
    r = await tenant.client.post(
        f"/v1/businesses/{biz['id']}/calendars",
        json={"provider": "ics", "url": feed.url},
        headers=tenant.headers(),
    )
    assert r.status_code == 422 and r.json()["error"] == "validation_error"
    r = await tenant.client.post(
        f"/v1/businesses/{biz['id']}/calendars",
        json={"provider": "caldav", "url": "ftp://example.com/cal/"},
        headers=tenant.headers(),
    )
    assert r.status_code == 422 and r.json()["error"] == "validation_error"


async def test_credentials_need_the_secret_key(tenant: Tenant, feed: FeedServer) -> None:
    # The default test app has no SLOTGUARD_SECRET_KEY: credentials cannot be stored.
    biz = await make_business(tenant)
    r = await tenant.client.post(
        f"/v1/businesses/{biz['id']}/calendars",
        json={
            "provider": "caldav",
            "url": "https://example.com/cal/",
            "username": "a",
            "password": "b",
        },
        headers=tenant.headers(),
    )
    assert r.status_code == 422 and r.json()["error"] == "secret_key_required"


@pytest.mark.slow
async def test_caldav_connect_checks_credentials_and_never_returns_them(
    ct: Tenant, radicale: Radicale, caplog: pytest.LogCaptureFixture
) -> None:
    biz = await make_business(ct)
    url = radicale.new_calendar()
    r = await connect(
        ct, biz["id"], provider="caldav", url=url, username="alice", password="wrong-password"
    )
    assert r.status_code == 422 and r.json()["error"] == "calendar_auth_failed"
    # Credentials in the URL's user-info: moved into the encrypted store.
    with_userinfo = url.replace("http://", f"http://{radicale.user}:{radicale.password}@")
    r = await connect(ct, biz["id"], provider="caldav", url=with_userinfo, role="both")
    assert r.status_code == 201, r.text
    cal = r.json()["data"]
    assert cal["url"] == url and cal["name"] == "Work"
    assert radicale.password not in r.text
    done = await sync(ct, biz["id"], cal["id"])
    assert done["status"] == "active"
    async with ct.store.db.read() as s:
        row = await s.get(Calendar, cal["id"])
        assert row is not None and row.credentials is not None
        assert radicale.password not in row.credentials and row.url == url
    everything = (
        await ct.client.get(f"/v1/businesses/{biz['id']}/calendars", headers=ct.headers())
    ).text
    assert radicale.password not in everything
    assert radicale.password not in caplog.text

    # One write calendar per business.
    other = radicale.new_calendar()
    r = await connect(
        ct,
        biz["id"],
        provider="caldav",
        url=other,
        username="alice",
        password=radicale.password,
        role="write",
    )
    assert r.status_code == 409, r.text
    assert r.json()["error"] == "conflict"
    assert r.json()["details"] == {"reason": "write_calendar_exists"}
    r = await connect(
        ct, biz["id"], provider="caldav", url=other, username="alice", password=radicale.password
    )
    assert r.status_code == 201
    p = await ct.client.patch(
        f"/v1/businesses/{biz['id']}/calendars/{r.json()['data']['id']}",
        json={"role": "write"},
        headers=ct.headers(),
    )
    assert p.status_code == 409 and p.json()["details"] == {"reason": "write_calendar_exists"}
    # A password change is checked first.
    p = await ct.client.patch(
        f"/v1/businesses/{biz['id']}/calendars/{cal['id']}",
        json={"password": "wrong"},
        headers=ct.headers(),
    )
    assert p.status_code == 422 and p.json()["error"] == "calendar_auth_failed"
    p = await ct.client.patch(
        f"/v1/businesses/{biz['id']}/calendars/{cal['id']}",
        json={"name": "Renamed"},
        headers=ct.headers(),
    )
    assert p.status_code == 200 and p.json()["data"]["name"] == "Renamed"


async def test_a_calendar_going_down_keeps_its_busy_time_and_warns(
    ct: Tenant, feed: FeedServer
) -> None:
    biz = await make_business(ct)
    day = future_day()
    feed.set(ics((day + 9 * H, day + 10 * H, "a")))
    cal = (await connect(ct, biz["id"], provider="ics", url=feed.url)).json()["data"]
    await sync(ct, biz["id"], cal["id"])
    feed.state.mode, feed.state.status = "status", 503
    down = await sync(ct, biz["id"], cal["id"])
    assert down["status"] == "error"
    assert down["last_error"]["code"] == "calendar_unreachable"
    assert down["busy_intervals"] == 1
    listed = await slots(ct, biz["id"], day)
    assert listed["warnings"] == [{"code": "calendar_stale", "calendar_id": cal["id"]}]
    assert iso(day + 9 * H) not in [s["start"] for s in listed["slots"]]
    r = await ct.client.post(
        "/v1/availability",
        json={
            "business_id": biz["id"],
            "duration_minutes": 60,
            "window": {"start": iso(day + 8 * H), "end": iso(day + 12 * H)},
        },
        headers=ct.headers(**{"Idempotency-Key": key()}),
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["warnings"] == [{"code": "calendar_stale", "calendar_id": cal["id"]}]
    assert r.json()["data"]["slots"][0]["start"] == iso(day + 8 * H)
    # Back up: the warning clears.
    feed.state.mode = "honour"
    up = await sync(ct, biz["id"], cal["id"])
    assert up["status"] == "active" and up["last_error"] is None
    assert (await slots(ct, biz["id"], day))["warnings"] == []


async def test_provider_down_or_hanging_never_delays_availability(
    ct: Tenant, feed: FeedServer
) -> None:
    biz = await make_business(ct)
    day = future_day()
    feed.set(ics((day + 9 * H, day + 10 * H, "a")))
    cal = (await connect(ct, biz["id"], provider="ics", url=feed.url)).json()["data"]
    await sync(ct, biz["id"], cal["id"])
    feed.state.mode, feed.state.delay_s = "slow", 3.0
    engine = CalendarSync(ct.store.db, config=sync_config(request_timeout_s=2.5))
    import asyncio

    task = asyncio.create_task(engine.sync_one(cal["id"]))
    await asyncio.sleep(0.3)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    listed = await slots(ct, biz["id"], day)
    r = await book(ct, biz["id"], day + 10 * H, 30)
    elapsed = loop.time() - t0
    assert r.status_code == 201
    assert iso(day + 9 * H) not in [s["start"] for s in listed["slots"]]
    assert not task.done(), "the sync should still be waiting on the slow feed"
    assert elapsed < 2.0
    assert await task == "failed"


async def test_calendar_busy_needs_a_valid_range(ct: Tenant, feed: FeedServer) -> None:
    biz = await make_business(ct)
    feed.set(ics())
    cal = (await connect(ct, biz["id"], provider="ics", url=feed.url)).json()["data"]
    base = f"/v1/businesses/{biz['id']}/calendars/{cal['id']}/busy"
    r = await ct.client.get(base, headers=ct.headers())
    assert r.status_code == 422
    r = await ct.client.get(
        base,
        params={"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
        headers=ct.headers(),
    )
    assert r.status_code == 422
    other = await ct.client.get(
        f"/v1/businesses/{biz['id']}/calendars/cal_nope", headers=ct.headers()
    )
    assert other.status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"provider": "ics", "url": "http://[::1"},
        {"provider": "ics", "url": "not a url at all"},
        {"provider": "ics", "url": "javascript:alert(1)"},
        {"provider": "ics", "url": "file:///etc/passwd"},
        {"provider": "ics"},
        {"provider": "ics", "url": "https://example.com/" + "x" * 3000},
        {"provider": "caldav", "url": "https://example.com/cal/", "role": "owner"},
        {"provider": "caldav", "url": "https://example.com/cal/", "timezone": "Mars/Olympus"},
        {"provider": "caldav", "url": "https://example.com/cal/", "refresh_token": "t"},
        {"provider": "ics", "url": "https://example.com/a.ics", "unknown": 1},
        {"provider": "ICS", "url": "https://example.com/a.ics"},
        {"provider": "", "url": "https://example.com/a.ics"},
        {"url": "https://example.com/a.ics"},
    ],
)
async def test_bad_connect_bodies_are_4xx(ct: Tenant, body: dict[str, Any]) -> None:
    biz = await make_business(ct)
    r = await connect(ct, biz["id"], **body)
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["error"] in ("validation_error", "calendar_unreachable"), r.text


async def test_bad_patches_are_4xx(ct: Tenant, feed: FeedServer) -> None:
    biz = await make_business(ct)
    feed.set(ics())
    cal = (await connect(ct, biz["id"], provider="ics", url=feed.url)).json()["data"]
    path = f"/v1/businesses/{biz['id']}/calendars/{cal['id']}"
    for body in (
        {"role": "write"},  # an ICS feed is read only
        {"role": "nope"},
        {"url": "ftp://example.com/a.ics"},
        {"timezone": "Nowhere/Land"},
        {"provider": "caldav"},
        {"name": "x" * 500},
    ):
        r = await ct.client.patch(path, json=body, headers=ct.headers())
        assert 400 <= r.status_code < 500, (body, r.text)
    r = await ct.client.post(
        f"/v1/businesses/{biz['id']}/calendars/cal_nope/sync", headers=ct.headers()
    )
    assert r.status_code == 404
    r = await ct.client.get(
        f"{path}/busy", params={"start": "yesterday", "end": "today"}, headers=ct.headers()
    )
    assert r.status_code == 422
