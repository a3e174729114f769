"""A slot is never booked twice: concurrent clients against two real server processes.

Every test runs on both stores: one SQLite file, or one throwaway PostgreSQL database, shared
by two `slotguard serve` processes (see conftest.py). Clients are spread evenly over the two
processes and released together with an asyncio.Barrier after each has opened its connection.
Figures are printed; run with `-s` to see them. `SLOTGUARD_RACE_SEED` fixes the random parts.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import os
import random
import ssl
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import httpx
import pytest

from tests.race.conftest import STORE_PARAMS, Cluster

pytestmark = pytest.mark.slow

T = TypeVar("T")
H = dt.timedelta(hours=1)
MIN = dt.timedelta(minutes=1)
ALL_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
OPEN_ALL_DAY: dict[str, Any] = {
    "working_hours": [{"days": ALL_DAYS, "start": "00:00", "end": "24:00"}]
}
HTTP_TIMEOUT = httpx.Timeout(30.0)
SEED = int(os.environ.get("SLOTGUARD_RACE_SEED", random.randrange(1_000_000)))
# Plain HTTP only, but httpx builds a TLS context per client (~50 ms each): share one.
SHARED_TLS = ssl.create_default_context()
CONFLICT_MESSAGE = "The requested time slot is no longer available."


# --------------------------------------------------------------------------- helpers


def future_day(days_ahead: int) -> dt.datetime:
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + dt.timedelta(days=days_ahead)


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def parse(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


def new_key() -> str:
    return uuid.uuid4().hex


@contextlib.asynccontextmanager
async def clients(cluster: Cluster, n: int) -> AsyncIterator[list[httpx.AsyncClient]]:
    """n clients, client i talking to server i % servers, each with an open connection."""
    async with contextlib.AsyncExitStack() as stack:
        out: list[httpx.AsyncClient] = []
        for i in range(n):
            server = cluster.servers[i % len(cluster.servers)]
            out.append(
                await stack.enter_async_context(
                    httpx.AsyncClient(
                        base_url=server.base_url,
                        headers={"Authorization": f"Bearer {cluster.api_key}"},
                        timeout=HTTP_TIMEOUT,
                        verify=SHARED_TLS,
                    )
                )
            )
        warm = await asyncio.gather(*(c.get("/healthz") for c in out))
        assert all(r.status_code == 200 for r in warm)
        yield out


async def together(n: int, fn: Callable[[int], Awaitable[T]]) -> tuple[list[T], float]:
    """Run fn(0..n-1) concurrently, all released at one barrier; (results, seconds)."""
    barrier = asyncio.Barrier(n + 1)

    async def one(i: int) -> T:
        await barrier.wait()
        return await fn(i)

    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    await asyncio.sleep(0)
    t0 = time.monotonic()
    await barrier.wait()
    results = await asyncio.gather(*tasks)
    return list(results), time.monotonic() - t0


async def make_business(client: httpx.AsyncClient, rules: dict[str, Any]) -> str:
    r = await client.post(
        "/v1/businesses", json={"name": "Race", "timezone": "UTC", "rules": rules}
    )
    assert r.status_code == 201, r.text
    return str(r.json()["data"]["id"])


def booking_body(business_id: str, start: dt.datetime, minutes: int) -> dict[str, Any]:
    return {
        "business_id": business_id,
        "start_time": iso(start),
        "end_time": iso(start + minutes * MIN),
    }


async def book(
    client: httpx.AsyncClient, business_id: str, start: dt.datetime, minutes: int
) -> httpx.Response:
    return await client.post(
        "/v1/bookings",
        json=booking_body(business_id, start, minutes),
        headers={"Idempotency-Key": new_key()},
    )


async def list_bookings(
    client: httpx.AsyncClient, business_id: str, status: str | None = None
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    params: dict[str, Any] = {"business_id": business_id, "limit": 200}
    if status:
        params["status"] = status
    while True:
        r = await client.get("/v1/bookings", params=params)
        assert r.status_code == 200, r.text
        out += r.json()["data"]
        meta = r.json()["meta"]
        if not meta.get("has_more"):
            return out
        params["cursor"] = meta["next_cursor"]


def outcome(r: httpx.Response) -> str:
    """'201', '409 conflict/overlaps_booking', … for tallies and messages."""
    if r.status_code < 300:
        return str(r.status_code)
    try:
        body = r.json()
    except ValueError:
        return f"{r.status_code} {r.text[:200]!r}"
    reason = (body.get("details") or {}).get("reason")
    return f"{r.status_code} {body.get('error')}" + (f"/{reason}" if reason else "")


def assert_apart(
    intervals: Sequence[tuple[dt.datetime, dt.datetime]], gap: dt.timedelta, what: str
) -> None:
    """Sorted by start, each interval begins >= gap after the previous one ends (half-open)."""
    ordered = sorted(intervals)
    for prev, nxt in itertools.pairwise(ordered):
        assert nxt[0] >= prev[1] + gap, (
            f"{what}: {iso(prev[0])}-{iso(prev[1])} and {iso(nxt[0])}-{iso(nxt[1])} "
            f"are less than {gap} apart"
        )


def times_of(bookings: Sequence[dict[str, Any]]) -> list[tuple[dt.datetime, dt.datetime]]:
    return [(parse(b["start_time"]), parse(b["end_time"])) for b in bookings]


# --------------------------------------------------------------------------- tests


async def test_forty_clients_one_slot(cluster: Cluster) -> None:
    """40 clients over both processes book the same slot: one 201, 39 x 409 conflict."""
    n = 40
    async with clients(cluster, n) as cs:
        biz = await make_business(cs[0], OPEN_ALL_DAY)
        start = future_day(10) + 9 * H
        responses, elapsed = await together(n, lambda i: book(cs[i], biz, start, 30))
        tally = Counter(outcome(r) for r in responses)
        print(f"\n[{cluster.db.store}] one slot, {n} clients: {dict(tally)} in {elapsed:.2f}s")

        assert tally == {"201": 1, "409 conflict/overlaps_booking": n - 1}, tally
        for r in responses:
            if r.status_code == 409:
                body = r.json()
                assert body["code"] == 409 and body["message"] == CONFLICT_MESSAGE
        (winner,) = [r.json()["data"] for r in responses if r.status_code == 201]

        for c in cs[:2]:  # seen the same way through both processes
            confirmed = await list_bookings(c, biz, "confirmed")
            assert [b["id"] for b in confirmed] == [winner["id"]]
            everything = await list_bookings(c, biz)
            assert [b["id"] for b in everything] == [winner["id"]]
        rows = await cluster.db.active_reservations(biz)
        assert [(r[2], r[3]) for r in rows] == [("booking", winner["id"])]
    cluster.check_alive()


async def test_storm_of_overlapping_bookings(cluster: Cluster) -> None:
    """~150 random overlapping bookings + cancels/reschedules from 30 clients: no overlap."""
    n_clients, per_client = 30, 5
    rng_seed = SEED
    day = future_day(11)
    window = (day + 8 * H, day + 18 * H)  # starts on a 5-minute grid inside ten hours

    # What we know of every booking we created: id -> [status, start, end]. Only the client
    # that created a booking ever touches it again, so this is the exact expected state.
    mine: dict[str, list[Any]] = {}
    tally: Counter[str] = Counter()
    bad: list[str] = []

    def random_slot(rng: random.Random) -> tuple[dt.datetime, int]:
        minutes = rng.randrange(15, 95, 5)
        span = int((window[1] - window[0] - minutes * MIN) / (5 * MIN))
        return window[0] + rng.randint(0, span) * 5 * MIN, minutes

    async def attempt(
        op: str, call: Awaitable[httpx.Response], ok: set[int]
    ) -> httpx.Response | None:
        try:
            r = await call
        except httpx.HTTPError as exc:  # a timeout or a dropped connection: recorded, not raised
            bad.append(f"{op}: {exc!r}")
            tally[f"{op} {type(exc).__name__}"] += 1
            return None
        tally[f"{op} {outcome(r)}"] += 1
        conflict_ok = r.status_code != 409 or r.json().get("error") == "conflict"
        if r.status_code not in ok or not conflict_ok:
            bad.append(f"{op}: {r.status_code} {r.text[:300]}")
        return r

    async def client_run(i: int, c: httpx.AsyncClient, biz: str) -> None:
        rng = random.Random(rng_seed * 1000 + i)
        own: list[str] = []
        for _ in range(per_client):
            start, minutes = random_slot(rng)
            r = await attempt("book", book(c, biz, start, minutes), {201, 409})
            if r is not None and r.status_code == 201:
                b = r.json()["data"]
                assert (b["start_time"], b["end_time"]) == (
                    iso(start),
                    iso(start + minutes * MIN),
                )
                mine[b["id"]] = ["confirmed", b["start_time"], b["end_time"]]
                own.append(b["id"])
            live = [bid for bid in own if mine[bid][0] == "confirmed"]
            if not live or rng.random() >= 0.35:
                continue
            target = rng.choice(live)
            if rng.random() < 0.4:
                r = await attempt(
                    "cancel",
                    c.post(
                        f"/v1/bookings/{target}/cancel",
                        json={"reason": "race"},
                        headers={"Idempotency-Key": new_key()},
                    ),
                    {200},
                )
                if r is not None and r.status_code == 200:
                    mine[target][0] = "cancelled"
            else:
                if rng.random() < 0.5:  # anywhere, or a small shift overlapping its old time
                    new_start, new_minutes = random_slot(rng)
                else:
                    old_start, old_end = parse(mine[target][1]), parse(mine[target][2])
                    new_minutes = int((old_end - old_start) / MIN)
                    shift = rng.choice([-30, -15, -10, -5, 5, 10, 15, 30]) * MIN
                    latest = window[1] - new_minutes * MIN
                    new_start = min(max(old_start + shift, window[0]), latest)
                r = await attempt(
                    "reschedule",
                    c.post(
                        f"/v1/bookings/{target}/reschedule",
                        json={
                            "start_time": iso(new_start),
                            "end_time": iso(new_start + new_minutes * MIN),
                        },
                        headers={"Idempotency-Key": new_key()},
                    ),
                    {200, 409},
                )
                if r is not None and r.status_code == 200:
                    b = r.json()["data"]
                    assert b["id"] == target and b["status"] == "confirmed"
                    mine[target][1:] = [b["start_time"], b["end_time"]]

    async with clients(cluster, n_clients) as cs:
        biz = await make_business(cs[0], {**OPEN_ALL_DAY, "slot_interval_minutes": 5})
        _, elapsed = await together(n_clients, lambda i: client_run(i, cs[i], biz))
        expected_confirmed = {bid: v for bid, v in mine.items() if v[0] == "confirmed"}
        print(
            f"\n[{cluster.db.store}] storm seed={rng_seed}: {sum(tally.values())} requests "
            f"in {elapsed:.2f}s, {dict(sorted(tally.items()))}; "
            f"created {len(mine)}, confirmed at the end {len(expected_confirmed)}"
        )
        assert not bad, f"unexpected responses (seed {rng_seed}):\n" + "\n".join(bad[:20])
        assert tally["book 201"] >= 5, tally  # the storm really booked something

        for c in cs[:2]:
            confirmed = await list_bookings(c, biz, "confirmed")
            assert_apart(times_of(confirmed), dt.timedelta(0), "confirmed bookings (API)")
            assert {
                b["id"]: ["confirmed", b["start_time"], b["end_time"]] for b in confirmed
            } == expected_confirmed
            everything = {b["id"]: b for b in await list_bookings(c, biz)}
            assert set(everything) == set(mine)
            for bid, (status, _, _) in mine.items():
                assert everything[bid]["status"] == status, (bid, everything[bid])

        rows = await cluster.db.active_reservations(biz)
        print(f"[{cluster.db.store}] storm: {len(rows)} active reservations in the database")
        assert_apart([(r[0], r[1]) for r in rows], dt.timedelta(0), "active reservations (SQL)")
        assert {r[3]: ["confirmed", iso(r[0]), iso(r[1])] for r in rows} == expected_confirmed
        assert {r[2] for r in rows} <= {"booking"}
    cluster.check_alive()


async def test_one_idempotency_key_twenty_requests(cluster: Cluster) -> None:
    """20 concurrent requests with one key and body: one booking, replays or in-progress 409s."""
    n = 20
    async with clients(cluster, n) as cs:
        biz = await make_business(cs[0], OPEN_ALL_DAY)
        body = booking_body(biz, future_day(12) + 10 * H, 45)
        idem = {"Idempotency-Key": f"race-{new_key()}"}

        async def send(i: int) -> httpx.Response:
            return await cs[i].post("/v1/bookings", json=body, headers=idem)

        responses, elapsed = await together(n, send)
        tally = Counter(
            outcome(r) + (" replayed" if r.headers.get("Idempotent-Replayed") else "")
            for r in responses
        )
        print(f"\n[{cluster.db.store}] one key, {n} requests: {dict(tally)} in {elapsed:.2f}s")

        originals = [
            r for r in responses if r.status_code == 201 and "Idempotent-Replayed" not in r.headers
        ]
        assert len(originals) == 1, tally
        original = originals[0]
        waiting: list[int] = []
        for i, r in enumerate(responses):
            if r is original:
                continue
            if r.status_code == 201:
                assert r.headers["Idempotent-Replayed"] == "true"
                assert r.content == original.content
                assert r.headers["Location"] == original.headers["Location"]
                assert r.headers["ETag"] == original.headers["ETag"]
            else:
                assert r.status_code == 409, r.text
                assert r.json()["error"] == "idempotency_in_progress", r.text
                assert r.headers["Retry-After"] == "1"
                waiting.append(i)

        async def retry(i: int) -> tuple[httpx.Response, int]:
            deadline = time.monotonic() + 15
            tries = 0
            while True:
                tries += 1
                r = await send(i)
                if r.status_code != 409 or time.monotonic() > deadline:
                    return r, tries
                assert r.json()["error"] == "idempotency_in_progress", r.text
                await asyncio.sleep(float(r.headers["Retry-After"]))

        t0 = time.monotonic()
        retried = await asyncio.gather(*(retry(i) for i in waiting))
        print(
            f"[{cluster.db.store}] {len(waiting)} in-progress 409s retried in "
            f"{time.monotonic() - t0:.2f}s, tries {[t for _, t in retried]}"
        )
        for r, _ in retried:
            assert r.status_code == 201, r.text
            assert r.headers["Idempotent-Replayed"] == "true"
            assert r.content == original.content

        booking = original.json()["data"]
        for c in cs[:2]:
            assert [b["id"] for b in await list_bookings(c, biz)] == [booking["id"]]
        rows = await cluster.db.active_reservations(biz)
        assert [r[3] for r in rows] == [booking["id"]]
        (count,) = (
            await cluster.db.fetch("SELECT count(*) FROM bookings WHERE business_id = $1", biz)
        )[0]
        assert count == 1
    cluster.check_alive()


async def test_buffers_hold_under_concurrency(cluster: Cluster) -> None:
    """buffer_minutes 30: 30 clients on random 30-minute slots; survivors ≥ 30 min apart."""
    n = 30
    rng = random.Random(SEED + 4)
    day = future_day(13)
    starts = [day + 9 * H + rng.randint(0, 5 * 12) * 5 * MIN for _ in range(n)]
    async with clients(cluster, n) as cs:
        biz = await make_business(
            cs[0], {**OPEN_ALL_DAY, "buffer_minutes": 30, "slot_interval_minutes": 5}
        )
        responses, elapsed = await together(n, lambda i: book(cs[i], biz, starts[i], 30))
        tally = Counter(outcome(r) for r in responses)
        print(
            f"\n[{cluster.db.store}] buffer 30, {n} clients (seed {SEED}): {dict(tally)} "
            f"in {elapsed:.2f}s"
        )
        allowed = {"201", "409 conflict/overlaps_booking", "409 conflict/buffer"}
        assert set(tally) <= allowed, tally
        created = {r.json()["data"]["id"] for r in responses if r.status_code == 201}

        for c in cs[:2]:
            confirmed = await list_bookings(c, biz, "confirmed")
            assert {b["id"] for b in confirmed} == created
            assert_apart(times_of(confirmed), 30 * MIN, "confirmed bookings with buffer")
        rows = await cluster.db.active_reservations(biz)
        assert {r[3] for r in rows} == created
        assert_apart([(r[0], r[1]) for r in rows], 30 * MIN, "active reservations (SQL)")
    cluster.check_alive()


async def test_daily_cap_holds_under_concurrency(cluster: Cluster) -> None:
    """max_meetings_per_day 3: 20 clients on distinct free slots of one day → exactly 3."""
    n, cap = 20, 3
    day = future_day(14)
    async with clients(cluster, n) as cs:
        biz = await make_business(cs[0], {**OPEN_ALL_DAY, "max_meetings_per_day": cap})
        responses, elapsed = await together(n, lambda i: book(cs[i], biz, day + i * H, 30))
        tally = Counter(outcome(r) for r in responses)
        print(
            f"\n[{cluster.db.store}] daily cap {cap}, {n} clients: {dict(tally)} in {elapsed:.2f}s"
        )
        assert tally == {"201": cap, "409 conflict/daily_limit": n - cap}, tally
        created = {r.json()["data"]["id"] for r in responses if r.status_code == 201}
        for c in cs[:2]:
            confirmed = await list_bookings(c, biz, "confirmed")
            assert {b["id"] for b in confirmed} == created
        rows = await cluster.db.active_reservations(biz)
        assert {r[3] for r in rows} == created
    cluster.check_alive()


@pytest.mark.parametrize("fresh_cluster", STORE_PARAMS, indirect=True)
async def test_two_processes_first_start_together(fresh_cluster: Cluster) -> None:
    """Two servers started at the same instant on an empty database bootstrap one account."""
    t0 = time.monotonic()
    fresh_cluster.start(2, together=True)
    print(
        f"\n[{fresh_cluster.db.store}] 2 servers started together, ready in "
        f"{time.monotonic() - t0:.1f}s"
    )
    p0, p1 = fresh_cluster.servers
    created = [s.name for s in (p0, p1) if "created account" in s.log()]
    assert len(created) == 1, f"bootstrap messages from {created}:\n{fresh_cluster.tails()}"

    headers = {"Authorization": f"Bearer {fresh_cluster.api_key}"}
    async with (
        httpx.AsyncClient(base_url=p0.base_url, headers=headers, verify=SHARED_TLS) as c0,
        httpx.AsyncClient(base_url=p1.base_url, headers=headers, verify=SHARED_TLS) as c1,
    ):
        # The bootstrap key works on both, and both see one and the same account.
        for c in (c0, c1):
            r = await c.get("/v1/businesses")
            assert r.status_code == 200, r.text
            assert r.json()["data"] == []
        biz = await make_business(c0, OPEN_ALL_DAY)
        r = await c1.get(f"/v1/businesses/{biz}")
        assert r.status_code == 200, r.text
        r = await c1.get("/v1/businesses", headers={"Authorization": "Bearer sg_live_nope"})
        assert r.status_code == 401

    ((accounts,),) = await fresh_cluster.db.fetch("SELECT count(*) FROM accounts")
    ((keys,),) = await fresh_cluster.db.fetch("SELECT count(*) FROM api_keys")
    print(f"[{fresh_cluster.db.store}] accounts={accounts} api_keys={keys}")
    assert (accounts, keys) == (1, 1)
    fresh_cluster.check_alive()
