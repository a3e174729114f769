"""Busy time from a connected calendar blocks under the same concurrency as bookings.

Three real `slotguard serve` processes on one database (each store), whose embedded workers
keep syncing the owner's ICS feed (every 5 s) while many clients race for a time the feed
marks busy and for the free time right next to it. Counted afterwards in the database.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.calendars.conftest import FeedServer
from tests.race.conftest import STORE_PARAMS, Cluster, cluster_on, new_race_database
from tests.race.test_multiprocess import (
    MIN,
    OPEN_ALL_DAY,
    H,
    book,
    clients,
    future_day,
    iso,
    make_business,
    new_key,
    outcome,
    together,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def feed() -> Iterator[FeedServer]:
    server = FeedServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module", params=STORE_PARAMS)
def cal_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    store: str = request.param
    workdir: Path = tmp_path_factory.mktemp(f"calrace_{store}")
    with new_race_database(store, workdir) as db, cluster_on(db, workdir) as c:
        c.env.update(
            {"SLOTGUARD_ALLOW_PRIVATE_CALENDARS": "1", "SLOTGUARD_CALENDAR_SYNC_SECONDS": "5"}
        )
        c.start(3)
        yield c


async def test_calendar_busy_time_holds_under_concurrency(
    cal_cluster: Cluster, feed: FeedServer
) -> None:
    n = 48
    day = future_day(12)
    busy_start, free_start = day + 9 * H, day + 10 * H
    feed.set(
        "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//t//EN\nBEGIN:VEVENT\nUID:owner-meeting\n"
        f"DTSTAMP:20260101T000000Z\nDTSTART:{busy_start.strftime('%Y%m%dT%H%M%SZ')}\n"
        f"DTEND:{free_start.strftime('%Y%m%dT%H%M%SZ')}\nEND:VEVENT\nEND:VCALENDAR\n"
    )
    async with clients(cal_cluster, n) as cs:
        biz = await make_business(cs[0], OPEN_ALL_DAY)
        r = await cs[0].post(
            f"/v1/businesses/{biz}/calendars", json={"provider": "ics", "url": feed.url}
        )
        assert r.status_code == 201, r.text
        cal_id = r.json()["data"]["id"]
        r = await cs[1].post(f"/v1/businesses/{biz}/calendars/{cal_id}/sync")
        assert r.status_code == 200, r.text
        assert r.json()["data"]["busy_intervals"] == 1

        async def attempt(i: int) -> tuple[str, str]:
            c = cs[i]
            kind = i % 3
            if kind == 0:  # straight onto the owner's meeting
                return "busy", outcome(await book(c, biz, busy_start + 15 * MIN, 30))
            if kind == 1:  # a hold that could only be inside the meeting
                got = await c.post(
                    "/v1/availability",
                    json={
                        "business_id": biz,
                        "duration_minutes": 30,
                        "window": {"start": iso(busy_start), "end": iso(free_start)},
                    },
                    headers={"Idempotency-Key": new_key()},
                )
                return "hold", outcome(got)
            return "free", outcome(await book(c, biz, free_start, 30))

        results, elapsed = await together(n, attempt)
        tally = Counter(results)
        print(
            f"\n[{cal_cluster.db.store}] calendar race, {n} clients: "
            f"{dict(tally)} in {elapsed:.2f}s"
        )
        cal_cluster.check_alive()

        thirds = n // 3
        assert tally[("busy", "409 conflict/overlaps_busy_time")] == thirds, tally
        assert tally[("hold", "409 no_slots_available")] == thirds, tally
        assert tally[("free", "201")] == 1, tally
        assert tally[("free", "409 conflict/overlaps_booking")] == thirds - 1, tally

        rows = await cal_cluster.db.active_reservations(biz)
        inside = [r for r in rows if r[0] < free_start and r[1] > busy_start]
        assert inside == [], inside
        assert [(r[0], r[1], r[2]) for r in rows] == [
            (free_start, free_start + 30 * MIN, "booking")
        ]
        # The workers really were syncing meanwhile, and the copy is whole.
        r = await cs[2].get(f"/v1/businesses/{biz}/calendars/{cal_id}")
        cal = r.json()["data"]
        assert cal["status"] == "active" and cal["busy_intervals"] == 1
