"""Driving the real engine in the Google/Microsoft end-to-end tests: the sync engine the
worker runs, and the outbox worker with the calendar writer."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx

from slotguard.calendars.sync import CalendarSync, Outcome, SyncConfig
from slotguard.calendars.writeback import CalendarWriter
from slotguard.config import Settings
from slotguard.effects.email import MemoryMailSender
from slotguard.effects.netguard import make_webhook_client
from slotguard.effects.outbox import OutboxSettings, OutboxWorker
from slotguard.store.db import Database
from slotguard.store.models import Booking, Calendar
from tests.api.helpers import iso, key
from tests.conftest import Tenant

H = dt.timedelta(hours=1)


async def connect(t: Tenant, biz_id: str, **body: Any) -> httpx.Response:
    return await t.client.post(f"/v1/businesses/{biz_id}/calendars", json=body, headers=t.headers())


async def sync_once(db: Database, settings: Settings, calendar_id: str) -> Outcome:
    """One sync by the engine the worker runs (its own HTTP client, as in `run`)."""
    engine = CalendarSync(db, config=SyncConfig.from_settings(settings))
    return await engine.sync_one(calendar_id)


async def calendar_row(db: Database, calendar_id: str) -> Calendar:
    async with db.read() as s:
        cal = await s.get(Calendar, calendar_id, populate_existing=True)
    assert cal is not None
    return cal


async def booking_row(db: Database, booking_id: str) -> Booking:
    async with db.read() as s:
        b = await s.get(Booking, booking_id, populate_existing=True)
    assert b is not None
    return b


async def deliver(
    db: Database, settings: Settings, booking_id: str, *, rounds: int = 12
) -> Booking:
    """Run the outbox worker (with the calendar writer) until the booking's calendar
    message is done (synced or failed) or `rounds` batches ran."""
    config = SyncConfig.from_settings(settings)
    async with (
        make_webhook_client(allow_private=True, timeout=2) as webhook_http,
        config.client() as calendar_http,
    ):
        worker = OutboxWorker(
            db,
            http=webhook_http,
            mailer=MemoryMailSender(),
            email_from="slotguard <bookings@slotguard.test>",
            settings=OutboxSettings(batch_size=200),
            calendar_writer=CalendarWriter(db, config=config, http=calendar_http),
        )
        for _ in range(rounds):
            await worker.run_once()
            b = await booking_row(db, booking_id)
            if b.calendar_sync_status != "pending":
                return b
    return await booking_row(db, booking_id)


async def slot_starts(t: Tenant, biz_id: str, day: dt.datetime) -> tuple[list[str], list[Any]]:
    r = await t.client.get(
        "/v1/availability/slots",
        params={
            "business_id": biz_id,
            "start": iso(day + 8 * H),
            "end": iso(day + 13 * H),
            "duration_minutes": 60,
            "slot_interval_minutes": 60,
        },
        headers=t.headers(),
    )
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    return [s["start"] for s in data["slots"]], data["warnings"]


async def cancel(t: Tenant, booking_id: str) -> None:
    r = await t.client.post(
        f"/v1/bookings/{booking_id}/cancel",
        json={"reason": "changed plans"},
        headers=t.headers(**{"Idempotency-Key": key()}),
    )
    assert r.status_code == 200, r.text


async def reschedule(t: Tenant, booking: dict[str, Any], start: dt.datetime) -> dict[str, Any]:
    r = await t.client.post(
        f"/v1/bookings/{booking['id']}/reschedule",
        json={"start_time": iso(start)},
        headers=t.headers(**{"Idempotency-Key": key(), "If-Match": f'W/"{booking["version"]}"'}),
    )
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()["data"]
    return data
