"""Bookings written to the write calendar (§7.3), checked by reading a real Radicale back.

Deliveries go through `CalendarWriter.deliver`, the function the outbox worker calls for a
`calendar` message, so each test decides when a message is delivered and whether it is the
last attempt. A lost response is a real one: the request reaches Radicale and is committed
there, and the connection drops before the answer is read.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from slotguard.calendars.writeback import CalendarWriter, WriteOutcome
from slotguard.effects.email import MemoryMailSender
from slotguard.effects.netguard import make_webhook_client
from slotguard.effects.outbox import OutboxSettings, OutboxWorker
from slotguard.store.models import Booking, OutboxMessage
from tests.api.helpers import book, future_day, iso, make_business
from tests.api.test_priority import agent_key, make_classes
from tests.calendars.conftest import Radicale, sync_config
from tests.calendars.test_api import connect, slots, sync
from tests.calendars.test_caldav import vevent
from tests.conftest import Tenant

pytestmark = pytest.mark.slow
H = dt.timedelta(hours=1)


class DropResponses(httpx.AsyncBaseTransport):
    """Sends each request for real, but loses the answer of the next `drops` PUTs; with
    `refuse` (status, Retry-After), PUTs are answered that way instead, never sent."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.drops = 0
        self.refuse: tuple[int, str] | None = None
        self.puts: list[dict[str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT" and self.refuse is not None:
            self.puts.append(dict(request.headers))
            status, retry_after = self.refuse
            return httpx.Response(status, headers={"Retry-After": retry_after}, request=request)
        response = await self.inner.handle_async_request(request)
        if request.method == "PUT":
            self.puts.append(dict(request.headers))
            if self.drops > 0:
                self.drops -= 1
                await response.aread()
                await response.aclose()
                raise httpx.ReadError("connection lost after the request", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
async def transport() -> AsyncIterator[DropResponses]:
    t = DropResponses()
    yield t
    await t.aclose()


@pytest.fixture
async def writer(ct: Tenant, transport: DropResponses) -> AsyncIterator[CalendarWriter]:
    async with httpx.AsyncClient(transport=transport, timeout=10) as http:
        yield CalendarWriter(ct.store.db, config=sync_config(), http=http)


async def deliver(
    writer: CalendarWriter, t: Tenant, booking_id: str, *, final: bool = False
) -> WriteOutcome:
    """Deliver the booking's newest calendar message (delivery reconciles: the newest says
    all the older ones say)."""
    async with t.store.db.read() as s:
        msg = await s.scalar(
            select(OutboxMessage)
            .where(OutboxMessage.booking_id == booking_id, OutboxMessage.kind == "calendar")
            .order_by(OutboxMessage.id.desc())
            .limit(1)
        )
    assert msg is not None, "no calendar message was queued for the booking"
    return await writer.deliver(msg, final=final)


async def booking(t: Tenant, booking_id: str) -> dict[str, Any]:
    r = await t.client.get(f"/v1/bookings/{booking_id}", headers=t.headers())
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


async def write_calendar(t: Tenant, radicale: Radicale, role: str = "write") -> tuple[str, str]:
    """(business id, collection URL) of a business whose write calendar is on Radicale."""
    biz = await make_business(t, timezone="Europe/Berlin")
    url = radicale.new_calendar()
    r = await connect(
        t,
        biz["id"],
        provider="caldav",
        url=url,
        username=radicale.user,
        password=radicale.password,
        role=role,
    )
    assert r.status_code == 201, r.text
    return biz["id"], url


def only_event(radicale: Radicale, url: str) -> tuple[str, str]:
    events = radicale.list_events(url)
    assert len(events) == 1, sorted(events)
    ((href, body),) = events.items()
    return href, body.replace("\r\n", "\n")


async def test_a_booking_is_written_once_even_when_responses_are_lost(
    ct: Tenant, radicale: Radicale, writer: CalendarWriter, transport: DropResponses
) -> None:
    biz_id, url = await write_calendar(ct, radicale)
    day = future_day()
    r = await book(ct, biz_id, day + 9 * H, 60, title="Checkup", description="Room 4")
    assert r.status_code == 201, r.text
    b = r.json()["data"]
    assert b["calendar_sync_status"] == "pending" and b["calendar_event_id"] is None

    # Five attempts: the first four lose their answers after Radicale stored the event.
    transport.drops = 4
    outcomes = [await deliver(writer, ct, b["id"]) for _ in range(5)]
    assert [o.status for o in outcomes] == ["retry"] * 4 + ["delivered"]
    assert transport.puts[0].get("if-none-match") == "*"
    href, body = only_event(radicale, url)
    assert href.endswith(f"/{b['id']}-1.ics")
    assert f"UID:{b['id']}-1@slotguard" in body and f"X-SLOTGUARD-BOOKING:{b['id']}" in body
    assert "SUMMARY:Checkup" in body and "DESCRIPTION:Room 4" in body
    assert f"DTSTART:{(day + 9 * H).strftime('%Y%m%dT%H%M%SZ')}" in body
    assert "ATTENDEE" not in body
    got = await booking(ct, b["id"])
    assert got["calendar_sync_status"] == "synced"
    assert got["calendar_event_id"] == href

    # A duplicate delivery changes nothing.
    assert (await deliver(writer, ct, b["id"])).status == "delivered"
    assert only_event(radicale, url)[0] == href


async def test_reschedule_and_patch_update_the_event_cancel_deletes_it(
    ct: Tenant, radicale: Radicale, writer: CalendarWriter
) -> None:
    biz_id, url = await write_calendar(ct, radicale)
    day = future_day()
    b = (await book(ct, biz_id, day + 9 * H, 30, title="First")).json()["data"]
    await deliver(writer, ct, b["id"])
    href, _ = only_event(radicale, url)

    r = await ct.client.post(
        f"/v1/bookings/{b['id']}/reschedule",
        json={"start_time": iso(day + 14 * H), "end_time": iso(day + 15 * H)},
        headers=ct.headers(**{"Idempotency-Key": "resched-" + b["id"]}),
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["calendar_sync_status"] == "pending"
    assert (await deliver(writer, ct, b["id"])).status == "delivered"
    moved_href, body = only_event(radicale, url)
    assert moved_href == href
    assert f"DTSTART:{(day + 14 * H).strftime('%Y%m%dT%H%M%SZ')}" in body
    assert f"DTEND:{(day + 15 * H).strftime('%Y%m%dT%H%M%SZ')}" in body

    r = await ct.client.patch(
        f"/v1/bookings/{b['id']}",
        json={"title": "Renamed, with a comma", "description": "Line one\nline two"},
        headers=ct.headers(**{"If-Match": "*", "Idempotency-Key": "patch-" + b["id"]}),
    )
    assert r.status_code == 200, r.text
    assert (await deliver(writer, ct, b["id"])).status == "delivered"
    _, body = only_event(radicale, url)
    assert "SUMMARY:Renamed\\, with a comma" in body
    assert "DESCRIPTION:Line one\\nline two" in body
    assert (await booking(ct, b["id"]))["calendar_sync_status"] == "synced"

    r = await ct.client.post(
        f"/v1/bookings/{b['id']}/cancel",
        json={},
        headers=ct.headers(**{"Idempotency-Key": "cancel-" + b["id"]}),
    )
    assert r.status_code == 200, r.text
    assert (await deliver(writer, ct, b["id"])).status == "delivered"
    assert radicale.list_events(url) == {}
    # Delivered again (a retry): the event is already gone, which is fine.
    assert (await deliver(writer, ct, b["id"])).status == "delivered"


async def test_a_preempted_booking_loses_its_event(
    ct: Tenant, radicale: Radicale, writer: CalendarWriter
) -> None:
    await make_classes(ct)
    biz_id, url = await write_calendar(ct, radicale)
    start = future_day() + 9 * H
    low = (await book(ct, biz_id, start, 30, meeting_class="p10")).json()["data"]
    await deliver(writer, ct, low["id"])
    assert len(radicale.list_events(url)) == 1
    async with ct.store.db.write() as s:  # committed an hour ago: not sacred yet
        await s.execute(
            update(Booking)
            .where(Booking.id == low["id"])
            .values(created_at=dt.datetime.now(dt.UTC) - H)
        )
    caller = await agent_key(
        ct, ["holds:write", "bookings:write", "bookings:read", "bookings:preempt"]
    )
    r = await ct.client.post(
        "/v1/availability",
        json={
            "business_id": biz_id,
            "meeting_class": "p90",
            "window": {"start": iso(start), "end": iso(start + dt.timedelta(minutes=30))},
        },
        headers={"Authorization": f"Bearer {caller}"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["preempted_bookings"] == [low["id"]]
    assert (await deliver(writer, ct, low["id"])).status == "delivered"
    assert radicale.list_events(url) == {}


async def test_a_foreign_event_is_never_overwritten_and_the_last_failure_is_audited(
    ct: Tenant, radicale: Radicale, writer: CalendarWriter
) -> None:
    biz_id, url = await write_calendar(ct, radicale)
    day = future_day()
    b = (await book(ct, biz_id, day + 9 * H, 30)).json()["data"]
    # Something else already lives under the name the booking's event would get.
    foreign = vevent("someone-else", "20260310T090000Z", "20260310T100000Z", "SUMMARY:Theirs\n")
    radicale.put(url, f"{b['id']}-1.ics", foreign)

    first = await deliver(writer, ct, b["id"])
    assert first.status == "retry"
    assert (await booking(ct, b["id"]))["calendar_sync_status"] == "pending"
    last = await deliver(writer, ct, b["id"], final=True)
    assert last.status == "dead"
    _, body = only_event(radicale, url)
    assert "SUMMARY:Theirs" in body and "X-SLOTGUARD-BOOKING" not in body
    got = await booking(ct, b["id"])
    assert got["calendar_sync_status"] == "failed" and got["calendar_event_id"] is None
    log = await ct.client.get(
        "/v1/audit-log",
        params={"booking_id": b["id"], "action": "calendar_write_failed"},
        headers=ct.headers(),
    )
    assert log.status_code == 200, log.text
    rows = log.json()["data"]
    assert len(rows) == 1
    assert radicale.password not in log.text


async def test_no_write_calendar_means_not_applicable(ct: Tenant) -> None:
    biz = await make_business(ct)
    b = (await book(ct, biz["id"], future_day() + 9 * H, 30)).json()["data"]
    assert b["calendar_sync_status"] == "not_applicable" and b["calendar_event_id"] is None
    async with ct.store.db.read() as s:
        queued = await s.scalars(
            select(OutboxMessage).where(
                OutboxMessage.booking_id == b["id"], OutboxMessage.kind == "calendar"
            )
        )
        assert list(queued) == []


async def test_own_events_are_not_busy_so_a_reschedule_over_the_old_time_works(
    ct: Tenant, radicale: Radicale, writer: CalendarWriter
) -> None:
    biz_id, url = await write_calendar(ct, radicale, role="both")
    cals = (await ct.client.get(f"/v1/businesses/{biz_id}/calendars", headers=ct.headers())).json()
    cal_id = cals["data"][0]["id"]
    day = future_day()
    b = (await book(ct, biz_id, day + 9 * H, 60)).json()["data"]
    await deliver(writer, ct, b["id"])
    # The owner's own meeting at 11:00 in the same calendar.
    at11 = (day + 11 * H).strftime("%Y%m%dT%H%M%SZ")
    at12 = (day + 12 * H).strftime("%Y%m%dT%H%M%SZ")
    radicale.put(url, "owner.ics", vevent("owner-meeting", at11, at12))
    synced = await sync(ct, biz_id, cal_id)
    assert synced["status"] == "active"
    assert synced["busy_intervals"] == 1  # the owner's meeting; not the booking's own event
    busy = await ct.client.get(
        f"/v1/businesses/{biz_id}/calendars/{cal_id}/busy",
        params={"start": iso(day), "end": iso(day + 24 * H)},
        headers=ct.headers(),
    )
    assert busy.json()["data"] == [{"start": iso(day + 11 * H), "end": iso(day + 12 * H)}]
    assert (await slots(ct, biz_id, day))["warnings"] == []

    # Over its own old time (and its own event): fine.
    r = await ct.client.post(
        f"/v1/bookings/{b['id']}/reschedule",
        json={"start_time": iso(day + 9 * H + 30 * dt.timedelta(minutes=1))},
        headers=ct.headers(**{"Idempotency-Key": "over-old-" + b["id"]}),
    )
    assert r.status_code == 200, r.text
    await deliver(writer, ct, b["id"])
    assert (await sync(ct, biz_id, cal_id))["busy_intervals"] == 1
    # Onto the owner's meeting: refused like any busy time.
    r = await ct.client.post(
        f"/v1/bookings/{b['id']}/reschedule",
        json={"start_time": iso(day + 10 * H + 30 * dt.timedelta(minutes=1))},
        headers=ct.headers(**{"Idempotency-Key": "onto-owner-" + b["id"]}),
    )
    assert r.status_code == 409, r.text
    assert r.json()["details"] == {"reason": "overlaps_busy_time"}


async def test_a_disconnected_calendar_keeps_its_events_and_bookings_settle(
    ct: Tenant, radicale: Radicale, writer: CalendarWriter
) -> None:
    biz_id, url = await write_calendar(ct, radicale)
    cals = (await ct.client.get(f"/v1/businesses/{biz_id}/calendars", headers=ct.headers())).json()
    day = future_day()
    b = (await book(ct, biz_id, day + 9 * H, 30)).json()["data"]
    await deliver(writer, ct, b["id"])
    d = await ct.client.delete(
        f"/v1/businesses/{biz_id}/calendars/{cals['data'][0]['id']}", headers=ct.headers()
    )
    assert d.status_code == 200
    r = await ct.client.post(
        f"/v1/bookings/{b['id']}/cancel",
        json={},
        headers=ct.headers(**{"Idempotency-Key": "cancel-" + b["id"]}),
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["calendar_sync_status"] == "pending"
    assert (await deliver(writer, ct, b["id"])).status == "delivered"
    assert (await booking(ct, b["id"]))["calendar_sync_status"] == "not_applicable"
    assert len(radicale.list_events(url)) == 1  # events already written stay there


async def test_an_event_the_owner_deleted_is_written_again_as_a_new_generation(
    ct: Tenant, radicale: Radicale, writer: CalendarWriter, transport: DropResponses
) -> None:
    biz_id, url = await write_calendar(ct, radicale)
    day = future_day()
    b = (await book(ct, biz_id, day + 9 * H, 30)).json()["data"]
    await deliver(writer, ct, b["id"])
    href, _ = only_event(radicale, url)
    assert href.endswith(f"/{b['id']}-1.ics")
    radicale.delete(radicale.base + href)  # the owner deletes it in their calendar app
    r = await ct.client.post(
        f"/v1/bookings/{b['id']}/reschedule",
        json={"start_time": iso(day + 11 * H)},
        headers=ct.headers(**{"Idempotency-Key": "after-delete-" + b["id"]}),
    )
    assert r.status_code == 200, r.text
    # The new generation's create loses its answers too: still exactly one event.
    transport.drops = 2
    outcomes = [(await deliver(writer, ct, b["id"])).status for _ in range(5)]
    assert outcomes[-1] == "delivered" and outcomes.count("retry") <= 2
    new_href, body = only_event(radicale, url)
    assert new_href.endswith(f"/{b['id']}-2.ics")
    assert f"UID:{b['id']}-2@slotguard" in body
    assert f"DTSTART:{(day + 11 * H).strftime('%Y%m%dT%H%M%SZ')}" in body
    got = await booking(ct, b["id"])
    assert got["calendar_sync_status"] == "synced" and got["calendar_event_id"] == new_href


async def outbox_round(t: Tenant, writer: CalendarWriter) -> None:
    """One batch of the real outbox worker, delivering calendar messages with `writer`."""
    async with make_webhook_client(allow_private=True, timeout=2) as http:
        worker = OutboxWorker(
            t.store.db,
            http=http,
            mailer=MemoryMailSender(),
            email_from="slotguard <bookings@slotguard.test>",
            settings=OutboxSettings(batch_size=200),
            calendar_writer=writer,
        )
        await worker.run_once()


async def calendar_message(t: Tenant, booking_id: str) -> OutboxMessage:
    async with t.store.db.read() as s:
        (msg,) = (
            await s.scalars(
                select(OutboxMessage).where(
                    OutboxMessage.booking_id == booking_id, OutboxMessage.kind == "calendar"
                )
            )
        ).all()
    return msg


@pytest.mark.parametrize("status", [429, 503])
async def test_a_throttled_caldav_write_waits_for_retry_after_in_the_outbox(
    ct: Tenant,
    radicale: Radicale,
    writer: CalendarWriter,
    transport: DropResponses,
    status: int,
) -> None:
    biz_id, url = await write_calendar(ct, radicale)
    b = (await book(ct, biz_id, future_day() + 9 * H, 30)).json()["data"]
    transport.refuse = (status, "1800")
    began = dt.datetime.now(dt.UTC)
    await outbox_round(ct, writer)
    msg = await calendar_message(ct, b["id"])
    assert msg.status == "pending" and msg.attempts == 1
    said = {429: "asks to slow down", 503: "answered HTTP 503"}[status]
    assert said in (msg.last_error or "")
    # Not the schedule's 5 s: the half hour the server asked for (plus at most 10 %).
    assert msg.next_attempt_at >= began + dt.timedelta(seconds=1800)
    assert msg.next_attempt_at <= began + dt.timedelta(seconds=1800 * 1.1 + 30)
    puts = len(transport.puts)
    await outbox_round(ct, writer)  # nothing is due before then
    assert len(transport.puts) == puts
    assert radicale.list_events(url) == {}
    assert (await booking(ct, b["id"]))["calendar_sync_status"] == "pending"

    # The wait is over: written once.
    transport.refuse = None
    async with ct.store.db.write() as s:
        await s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == msg.id)
            .values(next_attempt_at=dt.datetime.now(dt.UTC))
        )
    await outbox_round(ct, writer)
    href, _ = only_event(radicale, url)
    assert href.endswith(f"/{b['id']}-1.ics")
    assert (await booking(ct, b["id"]))["calendar_sync_status"] == "synced"
    assert (await calendar_message(ct, b["id"])).status == "delivered"
