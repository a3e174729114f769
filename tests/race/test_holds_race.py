"""Holds under concurrency (§3.2, §3.3, §4.2): two real server processes on one database.

Every test runs on both stores (one SQLite file, one throwaway PostgreSQL database) against
the module's cluster of two `slotguard serve` processes (see conftest.py). Clients are spread
evenly over the two processes and released together at a barrier. Figures are printed; run
with `-s` to see them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import sqlite3
from collections import Counter
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.race.conftest import Cluster, RaceDatabase
from tests.race.test_multiprocess import (
    MIN,
    OPEN_ALL_DAY,
    H,
    assert_apart,
    book,
    clients,
    future_day,
    iso,
    list_bookings,
    make_business,
    new_key,
    outcome,
    parse,
    together,
)

pytestmark = pytest.mark.slow

ALL_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


# --------------------------------------------------------------------------- helpers


async def hold(
    client: httpx.AsyncClient,
    business_id: str,
    start: dt.datetime,
    end: dt.datetime,
    **extra: Any,
) -> httpx.Response:
    body = {
        "business_id": business_id,
        "duration_minutes": 30,
        "window": {"start": iso(start), "end": iso(end)},
        **extra,
    }
    return await client.post("/v1/availability", json=body)


async def confirm(client: httpx.AsyncClient, hold_id: str, **body: Any) -> httpx.Response:
    return await client.post(
        f"/v1/bookings/{hold_id}/confirm",
        json=body,
        headers={"Idempotency-Key": new_key()},
    )


def slots_of(h: dict[str, Any]) -> list[tuple[dt.datetime, dt.datetime]]:
    return [(parse(x["start"]), parse(x["end"])) for x in h["slots"]]


async def execute(db: RaceDatabase, sql: str, *args: object) -> None:
    """A write statement with `$1`-style parameters, on either store, committed at once."""
    if db.store == "sqlite":
        with contextlib.closing(sqlite3.connect(db.sqlite_path, timeout=30)) as conn:
            conn.execute(re.sub(r"\$(\d+)", r"?\1", sql), args)
            conn.commit()
        return
    dsn = make_url(db.url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()


def db_instant(db: RaceDatabase, t: dt.datetime) -> object:
    """An instant as the store keeps it (SQLite: naive UTC text, fixed width)."""
    if db.store == "sqlite":
        return t.astimezone(dt.UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    return t


async def active_rows(db: RaceDatabase, business_id: str) -> list[tuple[Any, ...]]:
    """(start, end, kind, hold_id, booking_id) of the business's active reservations."""
    rows = await db.fetch(
        "SELECT start_at, end_at, kind, hold_id, booking_id FROM reservations "
        "WHERE business_id = $1 AND active ORDER BY start_at",
        business_id,
    )
    return [(_instant(r[0]), _instant(r[1]), r[2], r[3], r[4]) for r in rows]


def _instant(value: object) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


async def hold_status(client: httpx.AsyncClient, hold_id: str) -> dict[str, Any]:
    r = await client.get(f"/v1/holds/{hold_id}")
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


# --------------------------------------------------------------------------- tests


async def test_thirty_agents_three_free_slots(cluster: Cluster) -> None:
    """30 hold requests for a day with three free 30-minute slots: 3 x 200, 27 x 409."""
    n = 30
    day = future_day(20)
    rules = {
        "working_hours": [{"days": ALL_DAYS, "start": "09:00", "end": "10:30"}],
        "slot_interval_minutes": 30,
    }
    async with clients(cluster, n) as cs:
        biz = await make_business(cs[0], rules)
        responses, elapsed = await together(
            n, lambda i: hold(cs[i], biz, day, day + 24 * H, ttl_seconds=600)
        )
        tally = Counter(outcome(r) for r in responses)
        print(f"\n[{cluster.db.store}] 3 free slots, {n} holders: {dict(tally)} in {elapsed:.2f}s")
        assert tally == {"200": 3, "409 no_slots_available": n - 3}, tally

        won = [r.json()["data"] for r in responses if r.status_code == 200]
        held = sorted(s for h in won for s in slots_of(h))
        expected = [
            (day + 9 * H + k * 30 * MIN, day + 9 * H + (k + 1) * 30 * MIN) for k in range(3)
        ]
        assert held == expected, [(iso(a), iso(b)) for a, b in held]
        assert_apart(held, dt.timedelta(0), "held slots (API)")
        for h in won:
            assert h["decision"] == "accept" and h["preempted_holds"] == [], h
            assert h["preempted_bookings"] == [], h
        for r in responses:
            if r.status_code == 409:
                body = r.json()
                assert body["code"] == 409, body
                # The window (the whole day) is full; the next day's 09:00 lies within the
                # default 24 h lookahead after the window end, so it is announced.
                nxt = body.get("next_available")
                assert nxt is not None and parse(nxt["start"]) == day + 33 * H, body

        rows = await active_rows(cluster.db, biz)
        print(f"[{cluster.db.store}] active reservations: {[(iso(r[0]), r[2]) for r in rows]}")
        assert {r[2] for r in rows} == {"hold"}
        assert sorted(r[3] for r in rows) == sorted(h["hold_id"] for h in won)
        assert_apart([(r[0], r[1]) for r in rows], dt.timedelta(0), "active reservations (SQL)")
        for c in cs[:2]:  # both processes see the three holds as active
            for h in won:
                assert (await hold_status(c, h["hold_id"]))["status"] == "active"
    cluster.check_alive()


async def test_holds_and_bookings_race_for_one_slot(cluster: Cluster) -> None:
    """20 holds and 20 direct bookings of one slot at once: one winner of either kind.

    Two rounds, each on a fresh business: the first released client is a holder, then a
    booker (the order only tilts who tends to win; any one winner is correct).
    """
    n_hold, n_book = 20, 20
    n = n_hold + n_book
    async with clients(cluster, n) as cs:
        winners_seen: list[str] = []
        for leader in ("hold", "book"):
            kind = await _hold_or_book_round(cluster, cs, leader, n_hold, n_book)
            winners_seen.append(kind)
        print(f"[{cluster.db.store}] winners by round (leader hold, book): {winners_seen}")
    cluster.check_alive()


async def _hold_or_book_round(
    cluster: Cluster, cs: list[httpx.AsyncClient], leader: str, n_hold: int, n_book: int
) -> str:
    n = n_hold + n_book
    start = future_day(21) + 11 * H
    end = start + 30 * MIN
    biz = await make_business(cs[0], OPEN_ALL_DAY)
    follower = "book" if leader == "hold" else "hold"

    async def go(i: int) -> tuple[str, httpx.Response]:
        # Interleaved so both kinds go through both processes.
        kind = leader if i % 4 < 2 else follower
        if kind == "hold":
            return "hold", await hold(cs[i], biz, start, end, ttl_seconds=600)
        return "book", await book(cs[i], biz, start, 30)

    results, elapsed = await together(n, go)
    tally = Counter(f"{kind} {outcome(r)}" for kind, r in results)
    print(
        f"\n[{cluster.db.store}] one slot, {n_hold} holds + {n_book} bookings "
        f"({leader}s released first): {dict(sorted(tally.items()))} in {elapsed:.2f}s"
    )
    winners = [(i, kind, r) for i, (kind, r) in enumerate(results) if r.status_code < 300]
    assert len(winners) == 1, tally
    ((won_by, kind, won),) = winners
    if kind == "hold":
        assert won.status_code == 200
        expected = {
            "hold 200": 1,
            "hold 409 no_slots_available": n_hold - 1,
            "book 409 conflict/overlaps_hold": n_book,
        }
    else:
        assert won.status_code == 201
        expected = {
            "book 201": 1,
            "book 409 conflict/overlaps_booking": n_book - 1,
            "hold 409 no_slots_available": n_hold,
        }
    assert tally == expected, tally

    rows = await active_rows(cluster.db, biz)
    if kind == "hold":
        h = won.json()["data"]
        assert slots_of(h) == [(start, end)]
        assert [(r[0], r[1], r[2], r[3]) for r in rows] == [(start, end, "hold", h["hold_id"])]
        assert await list_bookings(cs[1], biz) == []
        # Confirmed through the other process than the one that created it.
        other = cs[1 - won_by % len(cluster.servers)]
        confirmed_r = await confirm(other, h["hold_id"])
        assert confirmed_r.status_code == 200, confirmed_r.text
        booking_id = confirmed_r.json()["data"]["booking_id"]
        assert confirmed_r.json()["data"]["booking"]["hold_id"] == h["hold_id"]
        assert (await hold_status(cs[0], h["hold_id"]))["status"] == "confirmed"
    else:
        booking_id = won.json()["data"]["id"]
        assert [(r[0], r[1], r[2], r[4]) for r in rows] == [(start, end, "booking", booking_id)]

    rows = await active_rows(cluster.db, biz)
    assert [(r[0], r[1], r[2], r[4]) for r in rows] == [(start, end, "booking", booking_id)]
    for c in cs[:2]:
        confirmed = await list_bookings(c, biz, "confirmed")
        assert [b["id"] for b in confirmed] == [booking_id]
        assert [b["id"] for b in await list_bookings(c, biz)] == [booking_id]
    print(f"[{cluster.db.store}] winner: {kind} -> booking {booking_id}")
    return kind


async def test_concurrent_confirms_of_one_hold(cluster: Cluster) -> None:
    """2, then 10 confirms of one hold with distinct keys: one 200, the rest already-confirmed."""
    day = future_day(22)
    async with clients(cluster, 10) as cs:
        biz = await make_business(cs[0], OPEN_ALL_DAY)
        booked: list[str] = []
        for n, start in ((2, day + 9 * H), (10, day + 14 * H)):
            r = await hold(cs[0], biz, start, start + 30 * MIN, ttl_seconds=600)
            assert r.status_code == 200, r.text
            hold_id = r.json()["data"]["hold_id"]

            async def confirm_it(i: int, hold_id: str = hold_id) -> httpx.Response:
                return await confirm(cs[i], hold_id)

            responses, elapsed = await together(n, confirm_it)
            tally = Counter(outcome(r) for r in responses)
            print(
                f"\n[{cluster.db.store}] {n} confirms of one hold: {dict(tally)} in {elapsed:.2f}s"
            )
            assert tally == {"200": 1, "409 hold_already_confirmed": n - 1}, tally
            (winner,) = [r.json()["data"] for r in responses if r.status_code == 200]
            booking_id = winner["booking_id"]
            booked.append(booking_id)
            assert winner["booking"]["hold_id"] == hold_id
            assert winner["booking"]["start_time"] == iso(start)
            for r in responses:
                if r.status_code == 409:
                    assert r.json()["details"]["booking_id"] == booking_id, r.text

            rows = await cluster.db.fetch("SELECT id FROM bookings WHERE hold_id = $1", hold_id)
            assert [row[0] for row in rows] == [booking_id]
            for c in cs[:2]:
                h = await hold_status(c, hold_id)
                assert (h["status"], h["booking_id"]) == ("confirmed", booking_id)
            # A late confirm still points at the one booking.
            late = await confirm(cs[1], hold_id)
            assert late.status_code == 409, late.text
            assert late.json()["error"] == "hold_already_confirmed"
            assert late.json()["details"]["booking_id"] == booking_id

        rows = await active_rows(cluster.db, biz)
        assert [(r[2], r[4]) for r in rows] == [("booking", b) for b in booked]
        ((count,),) = await cluster.db.fetch(
            "SELECT count(*) FROM bookings WHERE business_id = $1", biz
        )
        assert count == 2
    cluster.check_alive()


async def test_expired_hold_frees_its_slot_under_concurrency(cluster: Cluster) -> None:
    """A hold expired in the database (sweeper or not): 10 racers, one wins; confirm is 410."""
    n = 10
    start = future_day(23) + 15 * H
    end = start + 30 * MIN
    async with clients(cluster, n + 2) as cs:
        biz = await make_business(cs[0], OPEN_ALL_DAY)
        r = await hold(cs[0], biz, start, end, ttl_seconds=1800)
        assert r.status_code == 200, r.text
        old = r.json()["data"]["hold_id"]
        # Still held: both kinds are refused before the expiry.
        assert outcome(await book(cs[1], biz, start, 30)) == "409 conflict/overlaps_hold"
        assert outcome(await hold(cs[1], biz, start, end)) == "409 no_slots_available"

        past = db_instant(cluster.db, dt.datetime.now(dt.UTC) - 2 * MIN)
        await execute(cluster.db, "UPDATE holds SET expires_at = $1 WHERE id = $2", past, old)
        await execute(
            cluster.db, "UPDATE reservations SET expires_at = $1 WHERE hold_id = $2", past, old
        )
        ((status_before,),) = await cluster.db.fetch("SELECT status FROM holds WHERE id = $1", old)

        async def go(i: int) -> tuple[str, httpx.Response]:
            if i >= n:  # two confirms of the old hold race along
                return "confirm", await confirm(cs[i], old)
            if i % 2 == 1:
                return "hold", await hold(cs[i], biz, start, end, ttl_seconds=600)
            return "book", await book(cs[i], biz, start, 30)

        results, elapsed = await together(n + 2, go)
        ((status_after,),) = await cluster.db.fetch("SELECT status FROM holds WHERE id = $1", old)
        tally = Counter(f"{kind} {outcome(r)}" for kind, r in results)
        print(
            f"\n[{cluster.db.store}] expired hold, {n} racers + 2 confirms: "
            f"{dict(sorted(tally.items()))} in {elapsed:.2f}s "
            f"(old hold row: {status_before} before, {status_after} after)"
        )
        confirms = [r for kind, r in results if kind == "confirm"]
        for cr in confirms:
            assert cr.status_code == 410 and cr.json()["error"] == "hold_expired", cr.text
        winners = [(kind, r) for kind, r in results if r.status_code in (200, 201)]
        assert len(winners) == 1, tally
        ((kind, won),) = winners
        allowed = {
            "hold 409 no_slots_available",
            "book 409 conflict/overlaps_hold",
            "book 409 conflict/overlaps_booking",
            "confirm 410 hold_expired",
            "hold 200",
            "book 201",
        }
        assert set(tally) <= allowed, tally

        late = await confirm(cs[1], old)
        assert late.status_code == 410 and late.json()["error"] == "hold_expired", late.text
        for c in cs[:2]:
            assert (await hold_status(c, old))["status"] == "expired"
        rows = await active_rows(cluster.db, biz)
        assert len(rows) == 1, rows
        ((r_start, r_end, r_kind, r_hold, r_booking),) = rows
        assert (r_start, r_end) == (start, end)
        if kind == "hold":
            assert (r_kind, r_hold) == ("hold", won.json()["data"]["hold_id"])
            assert await list_bookings(cs[0], biz) == []
        else:
            assert (r_kind, r_booking) == ("booking", won.json()["data"]["id"])
            assert [b["id"] for b in await list_bookings(cs[0], biz)] == [r_booking]
        ((n_bookings,),) = await cluster.db.fetch(
            "SELECT count(*) FROM bookings WHERE hold_id = $1", old
        )
        assert n_bookings == 0
        print(f"[{cluster.db.store}] winner: {kind}")
    cluster.check_alive()
