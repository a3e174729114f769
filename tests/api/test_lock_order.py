"""Writers that touch one business never deadlock each other.

A preempting hold locks the business, then the bookings and holds it displaces; a cancel,
reschedule, confirm or release of one of those must take the locks in the same order, or
PostgreSQL breaks the cycle by killing one transaction (a 500).
"""

from __future__ import annotations

import asyncio
import datetime as dt

from tests.api.helpers import book, future_day, iso, key, make_business
from tests.api.test_priority import agent_key, make_classes
from tests.conftest import Tenant

H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)


async def test_cancels_confirms_and_preemption_race_without_errors(tenant: Tenant) -> None:
    await make_classes(tenant)
    preemptor = await agent_key(tenant, ["holds:write", "bookings:write", "bookings:preempt"])
    day = future_day() + 8 * H
    statuses: list[int] = []
    for round_no in range(6):
        biz = await make_business(tenant)
        bookings = []
        for i in range(4):
            r = await book(tenant, biz["id"], day + i * 30 * M, meeting_class="p10")
            assert r.status_code == 201, r.text
            bookings.append(r.json()["data"]["id"])
        low = await tenant.client.post(
            "/v1/availability",
            json={
                "business_id": biz["id"],
                "meeting_class": "p10",
                "window": {"start": iso(day + 2 * H), "end": iso(day + 3 * H)},
            },
            headers=tenant.headers(),
        )
        assert low.status_code == 200, low.text
        hold_id = low.json()["data"]["hold_id"]

        async def cancel(bid: str) -> int:
            r = await tenant.client.post(
                f"/v1/bookings/{bid}/cancel", headers=tenant.headers(**{"Idempotency-Key": key()})
            )
            return r.status_code

        async def confirm(hold_id: str = hold_id) -> int:
            r = await tenant.client.post(
                f"/v1/bookings/{hold_id}/confirm",
                json={},
                headers=tenant.headers(**{"Idempotency-Key": key()}),
            )
            return r.status_code

        async def preempt(hours: int, biz: dict[str, str] = biz) -> int:
            r = await tenant.client.post(
                "/v1/availability",
                json={
                    "business_id": biz["id"],
                    "meeting_class": "p90",
                    "max_slots": 4,
                    "window": {"start": iso(day), "end": iso(day + hours * H)},
                },
                headers={"Authorization": f"Bearer {preemptor}"},
            )
            return r.status_code

        jobs = [cancel(b) for b in bookings] + [confirm(), preempt(2), preempt(3)]
        if round_no % 2:
            jobs.reverse()
        statuses += await asyncio.gather(*jobs)
    assert all(s < 500 for s in statuses), statuses
