"""Rebuild every booking's and hold's final state from the audit log alone."""

from __future__ import annotations

import datetime as dt
import json
import random
from typing import Any

from sqlalchemy import select, update

from slotguard.services.holds import sweep_expired_holds
from slotguard.store.models import Booking, Hold, Reservation
from tests.api.helpers import book, future_day, iso, key, make_business
from tests.conftest import Tenant

H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)


def replay(rows: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, str]]:
    bookings: dict[str, Any] = {}
    holds: dict[str, str] = {}
    for row in rows:
        details = row["details"]
        if row["booking_id"] and "state" in details:
            bookings[row["booking_id"]] = details["state"]
        if row["hold_id"]:
            if row["action"] == "booking_confirmed":
                holds[row["hold_id"]] = details["hold_status"]
            elif "status" in details:
                holds[row["hold_id"]] = details["status"]
    return bookings, holds


async def test_audit_log_replays_to_table_state(tenant: Tenant) -> None:
    rng = random.Random(7)
    for name, prio in (("low", 10), ("high", 90)):
        await tenant.client.post(
            "/v1/meeting-classes",
            json={"name": name, "display_name": name, "priority": prio, "duration_minutes": 30},
            headers=tenant.headers(),
        )
    biz = await make_business(tenant)
    day = future_day() + 8 * H
    booking_ids: list[str] = []
    hold_ids: list[str] = []
    for _ in range(60):
        op = rng.choice(["book", "hold", "confirm", "release", "cancel", "reschedule", "patch"])
        at = day + rng.randrange(0, 16) * 30 * M
        if op == "book":
            r = await book(tenant, biz["id"], at, meeting_class=rng.choice(["low", "high"]))
            if r.status_code == 201:
                booking_ids.append(r.json()["data"]["id"])
        elif op == "hold":
            r = await tenant.client.post(
                "/v1/availability",
                json={
                    "business_id": biz["id"],
                    "meeting_class": rng.choice(["low", "high"]),
                    "max_slots": rng.randint(1, 3),
                    "window": {"start": iso(at), "end": iso(at + 2 * H)},
                },
                headers=tenant.headers(),
            )
            if r.status_code == 200:
                hold_ids.append(r.json()["data"]["hold_id"])
        elif op in ("confirm", "release") and hold_ids:
            hid = rng.choice(hold_ids)
            if op == "confirm":
                r = await tenant.client.post(
                    f"/v1/bookings/{hid}/confirm",
                    json={},
                    headers=tenant.headers(**{"Idempotency-Key": key()}),
                )
                if r.status_code == 200:
                    booking_ids.append(r.json()["data"]["booking_id"])
            else:
                await tenant.client.delete(f"/v1/holds/{hid}", headers=tenant.headers())
        elif booking_ids:
            bid = rng.choice(booking_ids)
            h = tenant.headers(**{"Idempotency-Key": key()})
            if op == "cancel":
                await tenant.client.post(f"/v1/bookings/{bid}/cancel", headers=h)
            elif op == "reschedule":
                await tenant.client.post(
                    f"/v1/bookings/{bid}/reschedule", json={"start_time": iso(at)}, headers=h
                )
            else:
                g = await tenant.client.get(f"/v1/bookings/{bid}", headers=tenant.headers())
                await tenant.client.patch(
                    f"/v1/bookings/{bid}",
                    json={"title": "t"},
                    headers={**h, "If-Match": g.headers["ETag"]},
                )
    # Let one live hold expire and be swept, so `hold_expired` is part of the story.
    live = list(hold_ids)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    async with tenant.store.db.write() as s:
        active = (
            await s.scalars(select(Hold).where(Hold.id.in_(live), Hold.status == "active"))
        ).all()
        if active:
            await s.execute(update(Hold).where(Hold.id == active[0].id).values(expires_at=past))
            await s.execute(
                update(Reservation)
                .where(Reservation.hold_id == active[0].id)
                .values(expires_at=past)
            )
    await sweep_expired_holds(tenant.store.db, dt.datetime.now(dt.UTC))

    r = await tenant.client.get("/v1/audit-log/export", headers=tenant.headers())
    rows = [json.loads(line) for line in r.text.splitlines()]
    assert len(rows) > 20
    bookings, holds = replay(rows)
    async with tenant.store.db.read() as s:
        table_bookings = (
            await s.scalars(select(Booking).where(Booking.account_id == tenant.account_id))
        ).all()
        table_holds = (
            await s.scalars(select(Hold).where(Hold.account_id == tenant.account_id))
        ).all()
    assert {b.id for b in table_bookings} == set(bookings)
    for b in table_bookings:
        state = bookings[b.id]
        assert state["status"] == b.status
        assert state["version"] == b.version
        assert dt.datetime.fromisoformat(state["start_time"]) == b.start_at
        assert dt.datetime.fromisoformat(state["end_time"]) == b.end_at
    assert {h.id for h in table_holds} == set(holds)
    for h in table_holds:
        assert holds[h.id] == h.status, h.id
    actions = {row["action"] for row in rows}
    assert {"booking_created", "hold_created", "hold_expired"} <= actions
