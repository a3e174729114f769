"""Integration tests of ``slotguard.client`` against one real ``slotguard serve`` process.

One server (module scope) on a fresh SQLite database, started with
``SLOTGUARD_BOOTSTRAP_API_KEY`` on a free port by the helpers of ``tests/race/conftest.py``.
Every scenario runs for ``Client`` and ``AsyncClient`` (fixture ``flavor``) and creates its
own business (open every day 00:00-24:00 UTC), so scenarios do not see each other's
bookings. Times are a few days ahead of now.

Each client talks to the server through a recording transport (``Recorder``): it forwards
every request to the real server over HTTP, keeps a log of the exchanges (method, path,
``Idempotency-Key``, status, error code, ``X-Request-Id``, ``Idempotent-Replayed``) and can
"lose" a response — the server has executed the request and answered, but the client sees
``httpx.ReadTimeout`` instead of the answer.

Covered (the 7 points of ``test_client_unit.py``'s docstring):

1. happy path: slots in the requested zone, hold hides its slot, confirm → version 1 and an
   ``etag`` equal to the ``ETag`` of ``bookings.get``;
2. idempotency end to end: replay, key conflict, concurrent duplicates (one executes, the
   other retries ``idempotency_in_progress`` and gets the replay);
3. lost responses of create, hold and confirm are replayed, never executed twice;
4. error mapping of the real server's errors onto the exception classes;
5. optimistic locking of update, cancel and reschedule;
6. cursor pagination of bookings and the status filter;
7. businesses / meeting classes / rules CRUD, ``effective_rules`` sources, and
   ``X-Request-Id`` equal to ``request_id`` on every result and error.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import inspect
import json
import random
import re
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from slotguard.client import (
    ApiObject,
    AsyncClient,
    AuthError,
    Booking,
    Client,
    Confirmation,
    ConflictError,
    IdempotencyError,
    NotFoundError,
    Page,
    PreconditionError,
    SlotguardError,
    StateError,
    ValidationError,
    VersionConflictError,
)
from tests.race.conftest import Cluster, RaceDatabase, cluster_on

pytestmark = pytest.mark.slow

ALL_DAY = [
    {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00", "end": "24:00"}
]
# Midnight UTC, three days ahead: every scenario works inside this day (or the next ones).
DAY = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).replace(
    hour=0, minute=0, second=0, microsecond=0
)
SLOT_TAKEN = "The requested time slot is no longer available."


def at(hour: int, minute: int = 0, *, day: int = 0) -> dt.datetime:
    """An instant on the test day (UTC)."""
    return DAY + dt.timedelta(days=day, hours=hour, minutes=minute)


def z(value: dt.datetime) -> str:
    """How the server renders an instant in bookings and holds (UTC, ``Z``)."""
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def instant(text: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(text)
    assert parsed.tzinfo is not None, text
    return parsed.astimezone(dt.UTC)


# --- the server ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One ``slotguard serve`` process on a fresh SQLite database."""
    workdir: Path = tmp_path_factory.mktemp("client_integration")
    db = RaceDatabase("sqlite", f"sqlite:///{workdir / 'slotguard.db'}")
    with cluster_on(db, workdir) as cluster:
        cluster.start(1)
        yield cluster


@pytest.fixture(autouse=True)
def _server_stays_up(live: Cluster) -> Iterator[None]:
    """A scenario that kills the server fails with the server's log tail."""
    yield
    live.check_alive()


# --- recording transport ------------------------------------------------------------------


@dataclass
class Exchange:
    method: str
    path: str
    idempotency_key: str | None
    status: int
    error: str | None  # the `error` code of an error body
    header_request_id: str | None  # X-Request-Id
    body_request_id: str | None  # meta.request_id (success) or request_id (error)
    replayed: bool  # Idempotent-Replayed: true
    lost: bool  # the client got ReadTimeout instead of this response


@dataclass
class Recorder:
    """Shared state of the sync and async recording transports."""

    exchanges: list[Exchange] = field(default_factory=list)
    # (method, path regex): the first response to a matching request is lost (one per rule).
    lose: list[tuple[str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def should_lose(self, request: httpx.Request) -> bool:
        with self._lock:
            for rule in self.lose:
                method, pattern = rule
                if request.method == method and re.fullmatch(pattern, request.url.path):
                    self.lose.remove(rule)
                    return True
        return False

    def record(self, request: httpx.Request, response: httpx.Response, *, lost: bool) -> None:
        body: Any = None
        with contextlib.suppress(ValueError):
            body = json.loads(response.content) if response.content else None
        error = body_rid = None
        if isinstance(body, dict):
            if isinstance(body.get("error"), str):
                error, body_rid = body["error"], body.get("request_id")
            elif isinstance(body.get("meta"), dict):
                body_rid = body["meta"].get("request_id")
        with self._lock:
            self.exchanges.append(
                Exchange(
                    method=request.method,
                    path=request.url.path,
                    idempotency_key=request.headers.get("idempotency-key"),
                    status=response.status_code,
                    error=error,
                    header_request_id=response.headers.get("x-request-id"),
                    body_request_id=body_rid,
                    replayed=response.headers.get("idempotent-replayed") == "true",
                    lost=lost,
                )
            )

    def of(self, method: str, path: str) -> list[Exchange]:
        """The exchanges of one endpoint (exact path, query ignored), in order."""
        return [e for e in self.exchanges if e.method == method and e.path == path]

    @property
    def last(self) -> Exchange:
        return self.exchanges[-1]


def _lost(request: httpx.Request) -> httpx.ReadTimeout:
    return httpx.ReadTimeout("simulated: the server answered, the answer was lost", request=request)


class SyncRecordingTransport(httpx.BaseTransport):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        response.read()  # the server has finished the request once we have the whole body
        lost = self.recorder.should_lose(request)
        self.recorder.record(request, response, lost=lost)
        if lost:
            response.close()
            raise _lost(request)
        return response

    def close(self) -> None:
        self.inner.close()


class AsyncRecordingTransport(httpx.AsyncBaseTransport):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        await response.aread()
        lost = self.recorder.should_lose(request)
        self.recorder.record(request, response, lost=lost)
        if lost:
            await response.aclose()
            raise _lost(request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


# --- harness: the same scenario on Client and AsyncClient --------------------------------


async def run(value: Any) -> Any:
    """The result of a client call: awaited for ``AsyncClient``, as is for ``Client``."""
    if inspect.isawaitable(value):
        return await value
    return value


async def collect(iterator: Any) -> list[Any]:
    if hasattr(iterator, "__aiter__"):
        return [item async for item in iterator]
    return list(iterator)


class Harness:
    """A client of the flavour under test, wired to the live server through a Recorder."""

    def __init__(
        self,
        flavor: str,
        live: Cluster,
        *,
        api_key: str | None = None,
        lose: list[tuple[str, str]] | None = None,
    ) -> None:
        self.flavor = flavor
        self.recorder = Recorder(lose=list(lose or []))
        key = api_key or live.api_key
        base_url = live.servers[0].base_url
        # Retry-After: 1 of idempotency_in_progress is capped so the suite stays fast.
        options: dict[str, Any] = {"timeout": 15.0, "max_retry_after": 0.2}
        self.client: Client | AsyncClient
        if flavor == "sync":
            self.client = Client(
                key, base_url, transport=SyncRecordingTransport(self.recorder), **options
            )
        else:
            self.client = AsyncClient(
                key, base_url, transport=AsyncRecordingTransport(self.recorder), **options
            )

    @property
    def c(self) -> Any:  # Any: the scenarios use both clients' (identical) surface
        return self.client

    async def close(self) -> None:
        if isinstance(self.client, AsyncClient):
            await self.client.aclose()
        else:
            self.client.close()

    def check_request_ids(self) -> None:
        """Every response carried X-Request-Id equal to the body's request_id (§1.1)."""
        for e in self.recorder.exchanges:
            assert e.header_request_id, e
            assert e.header_request_id.startswith("req_"), e
            if e.status != 204 and not e.path.endswith("/export"):  # JSONL: no envelope
                assert e.body_request_id == e.header_request_id, e


@pytest.fixture(params=["sync", "async"])
def flavor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make(flavor: str, live: Cluster) -> AsyncIterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def factory(**options: Any) -> Harness:
        harness = Harness(flavor, live, **options)
        made.append(harness)
        return harness

    yield factory
    for harness in made:
        await harness.close()
    for harness in made:
        harness.check_request_ids()


@pytest.fixture
def h(make: Callable[..., Harness]) -> Harness:
    return make()


async def new_business(h: Harness, **rules: Any) -> str:
    business = await run(
        h.c.businesses.create(
            name=f"IT {h.flavor} {uuid.uuid4().hex[:6]}",
            timezone="UTC",
            rules={"working_hours": ALL_DAY, **rules},
        )
    )
    business_id: str = business["id"]
    assert business_id.startswith("biz_")
    return business_id


async def new_class(h: Harness, **fields: Any) -> str:
    name = f"it_{h.flavor}_{uuid.uuid4().hex[:8]}"
    fields = {"display_name": "Interview", "duration_minutes": 30} | fields
    created = await run(h.c.meeting_classes.create(name=name, **fields))
    assert created["name"] == name
    return name


async def slot_starts(
    h: Harness, business_id: str, start: dt.datetime, end: dt.datetime
) -> set[str]:
    """UTC starts (``Z``) of the free 30-minute slots in [start, end)."""
    result = await run(
        h.c.availability.get_slots(
            business_id=business_id, duration_minutes=30, start=start, end=end, timezone="UTC"
        )
    )
    return {z(instant(s["start"])) for s in result["slots"]}


async def all_bookings(h: Harness, business_id: str, **filters: Any) -> list[Booking]:
    return await collect(h.c.bookings.iter(business_id=business_id, **filters))


# --- 1. happy path ------------------------------------------------------------------------


async def test_happy_path_slots_hold_confirm(h: Harness) -> None:
    business_id = await new_business(h)
    meeting_class = await new_class(h)

    # Slots in the requested zone (+05:30), with offsets; 15-minute cadence (min(30, 15)).
    slots = await run(
        h.c.availability.get_slots(
            business_id=business_id,
            meeting_class=meeting_class,
            start=at(9),
            end=at(11),
            timezone="Asia/Kolkata",
        )
    )
    assert isinstance(slots, ApiObject)
    assert slots["business_id"] == business_id
    assert slots["timezone"] == "Asia/Kolkata"
    assert slots["duration_minutes"] == 30
    assert slots["slots"], slots
    for slot in slots["slots"]:
        assert slot["start"].endswith("+05:30"), slot
        assert slot["end"].endswith("+05:30"), slot
        assert instant(slot["end"]) - instant(slot["start"]) == dt.timedelta(minutes=30)
    expected = [at(9) + dt.timedelta(minutes=15 * i) for i in range(7)]  # 09:00 … 10:30 UTC
    assert [instant(s["start"]) for s in slots["slots"]] == expected
    assert slots["slots"][0]["start"] == (at(9) + dt.timedelta(hours=5, minutes=30)).strftime(
        "%Y-%m-%dT%H:%M:%S+05:30"
    )

    # Hold: the earliest slot of the window; it (and everything overlapping it) disappears.
    held = await run(
        h.c.availability.hold(
            business_id=business_id,
            meeting_class=meeting_class,
            window_start=at(9, 30),
            window_end=at(11),
        )
    )
    assert held["hold_id"].startswith("hld_")
    assert held["slots"] == [{"start": z(at(9, 30)), "end": z(at(10))}]
    assert held["decision"] == "accept"
    assert held["meeting_class"] == meeting_class
    assert instant(held["expires_at"]) > dt.datetime.now(dt.UTC)
    free = await slot_starts(h, business_id, at(9), at(11))
    assert free == {z(at(9)), z(at(10)), z(at(10, 15)), z(at(10, 30))}, sorted(free)
    hold = await run(h.c.holds.get(held["hold_id"]))
    assert hold["status"] == "active"
    assert hold["business_id"] == business_id

    # Confirm: {booking_id, correlation_id, booking}; version 1; etag == GET's ETag.
    confirmation = await run(
        h.c.bookings.confirm(held["hold_id"], customer_email="ada@example.com", customer_name="Ada")
    )
    assert isinstance(confirmation, Confirmation)
    booking = confirmation.booking
    assert isinstance(booking, Booking)
    assert confirmation["booking_id"] == booking.id
    assert booking.id.startswith("bk_")
    assert confirmation["correlation_id"].startswith("corr_")
    assert booking["correlation_id"] == confirmation["correlation_id"]
    assert booking["status"] == "confirmed"
    assert booking["hold_id"] == held["hold_id"]
    assert booking["business_id"] == business_id
    assert booking["meeting_class"] == meeting_class
    assert booking["title"] == "Interview"  # the class's display_name
    assert (booking["start_time"], booking["end_time"]) == (z(at(9, 30)), z(at(10)))
    assert booking["customer_email"] == "ada@example.com"
    assert booking.version == 1
    assert booking.etag == '"1"'

    fetched = await run(h.c.bookings.get(booking.id))
    assert isinstance(fetched, Booking)
    assert h.recorder.last.path == f"/v1/bookings/{booking.id}"
    assert fetched.etag == '"1"'  # the ETag header of the GET
    assert fetched.etag == booking.etag
    assert dict(fetched) == dict(booking)

    hold = await run(h.c.holds.get(held["hold_id"]))
    assert hold["status"] == "confirmed"
    assert hold["booking_id"] == booking.id
    assert await slot_starts(h, business_id, at(9), at(11)) == free


# --- 2. idempotency end to end ------------------------------------------------------------


async def test_same_key_replays_and_other_body_conflicts(h: Harness) -> None:
    business_id = await new_business(h)
    key = f"it-{uuid.uuid4()}"

    first = await run(
        h.c.bookings.create(
            business_id=business_id, start_time=at(10), end_time=at(10, 30), idempotency_key=key
        )
    )
    second = await run(
        h.c.bookings.create(
            business_id=business_id, start_time=at(10), end_time=at(10, 30), idempotency_key=key
        )
    )
    assert isinstance(first, Booking)
    assert isinstance(second, Booking)
    assert (first.replayed, second.replayed) == (False, True)
    assert dict(second) == dict(first)
    assert second.location == first.location == f"/v1/bookings/{first.id}"
    assert second.etag == first.etag == '"1"'
    assert [e.idempotency_key for e in h.recorder.of("POST", "/v1/bookings")] == [key, key]

    with pytest.raises(IdempotencyError) as info:
        await run(
            h.c.bookings.create(
                business_id=business_id,
                start_time=at(11),
                end_time=at(11, 30),
                idempotency_key=key,
            )
        )
    assert info.value.status == 409
    assert info.value.code == "idempotency_key_conflict"

    # A new call without a key gets a fresh one: same body → a real second attempt (409).
    with pytest.raises(ConflictError) as taken:
        await run(h.c.bookings.create(business_id=business_id, start_time=at(10)))
    assert taken.value.reason == "overlaps_booking"
    assert h.recorder.last.idempotency_key not in (None, key)

    bookings = await all_bookings(h, business_id)
    assert [b.id for b in bookings] == [first.id]


async def test_concurrent_duplicates_execute_once(
    flavor: str, make: Callable[..., Harness]
) -> None:
    """Two callers send one create with one key at the same instant.

    Exactly one executes; the other is answered ``idempotency_in_progress`` (and retries with
    the same key until it gets the replay) or arrives after the first finished (plain
    replay). Rounds repeat, each with a fresh key and slot, until the in-progress path has
    been taken at least once (it is in ~90% of rounds on a quiet machine).
    """
    a, b = make(), make()
    business_id = await new_business(a)
    booked: list[str] = []
    saw_in_progress = False
    for n in range(8):
        key = f"it-conc-{uuid.uuid4()}"
        start = at(1 + n)
        args: dict[str, Any] = {
            "business_id": business_id,
            "start_time": start,
            "end_time": start + dt.timedelta(minutes=30),
            "idempotency_key": key,
        }
        if flavor == "sync":
            barrier = threading.Barrier(2)

            def create(
                harness: Harness,
                barrier: threading.Barrier = barrier,
                args: dict[str, Any] = args,
            ) -> Any:
                barrier.wait(timeout=10)
                return harness.c.bookings.create(**args)

            with ThreadPoolExecutor(max_workers=2) as pool:
                results: list[Any] = list(pool.map(create, [a, b]))
        else:
            results = list(
                await asyncio.gather(a.c.bookings.create(**args), b.c.bookings.create(**args))
            )

        assert results[0].id == results[1].id, results
        assert dict(results[0]) == dict(results[1])
        assert sorted(r.replayed for r in results) == [False, True]
        booked.append(results[0].id)

        attempts = [
            e
            for harness in (a, b)
            for e in harness.recorder.of("POST", "/v1/bookings")
            if e.idempotency_key == key
        ]
        assert sum(1 for e in attempts if e.status == 201 and not e.replayed) == 1, attempts
        assert sum(1 for e in attempts if e.status == 201 and e.replayed) == 1, attempts
        others = [e for e in attempts if e.status != 201]
        assert all(e.error == "idempotency_in_progress" for e in others), attempts
        if others:
            saw_in_progress = True
            break

    assert saw_in_progress, "no round hit idempotency_in_progress; retry path not exercised"
    assert [x.id for x in await all_bookings(a, business_id)] == booked


# --- 3. lost responses --------------------------------------------------------------------


async def test_lost_responses_are_replayed_not_executed_twice(
    make: Callable[..., Harness],
) -> None:
    h = make(
        lose=[
            ("POST", "/v1/bookings"),
            ("POST", "/v1/availability"),
            ("POST", "/v1/bookings/hld_[^/]+/confirm"),
        ]
    )
    observer = make()
    business_id = await new_business(observer)

    # One-step create: the server created the booking, the client saw a ReadTimeout.
    booking = await run(
        h.c.bookings.create(business_id=business_id, start_time=at(9), end_time=at(9, 30))
    )
    assert booking.replayed
    attempts = h.recorder.of("POST", "/v1/bookings")
    assert [(e.status, e.lost, e.replayed) for e in attempts] == [
        (201, True, False),
        (201, False, True),
    ]
    assert attempts[0].idempotency_key == attempts[1].idempotency_key is not None
    assert [b.id for b in await all_bookings(observer, business_id)] == [booking.id]

    # Hold: the retried check returns the same hold (one slot held, not two).
    held = await run(
        h.c.availability.hold(
            business_id=business_id, duration_minutes=30, window_start=at(12), window_end=at(13)
        )
    )
    assert held.replayed
    assert held["slots"] == [{"start": z(at(12)), "end": z(at(12, 30))}]
    holds = h.recorder.of("POST", "/v1/availability")
    assert [(e.status, e.lost, e.replayed) for e in holds] == [
        (200, True, False),
        (200, False, True),
    ]
    assert await slot_starts(observer, business_id, at(12), at(13)) == {
        z(at(12, 30))
    }  # only 12:00 is held; a second hold would have taken 12:30 too

    # Confirm: the retry is replayed; exactly one more booking.
    confirmation = await run(h.c.bookings.confirm(held["hold_id"]))
    assert confirmation.replayed
    assert confirmation.booking.replayed
    confirms = h.recorder.of("POST", f"/v1/bookings/{held['hold_id']}/confirm")
    assert [(e.status, e.lost, e.replayed) for e in confirms] == [
        (200, True, False),
        (200, False, True),
    ]
    ids = [b.id for b in await all_bookings(observer, business_id)]
    assert ids == [booking.id, confirmation["booking_id"]]
    hold = await run(observer.c.holds.get(held["hold_id"]))
    assert hold["status"] == "confirmed"
    assert hold["booking_id"] == confirmation["booking_id"]


# --- 4. error mapping ---------------------------------------------------------------------

E = TypeVar("E", bound=SlotguardError)


async def expect_error(cls: type[E], status: int, code: str, call: Callable[[], Any]) -> E:
    """Run ``call``; it must raise ``cls`` with a complete §1.1 error body behind it."""
    with pytest.raises(cls) as info:
        await run(call())
    err = info.value
    assert (err.status, err.code) == (status, code), repr(err)
    body = err.body
    assert isinstance(body, dict)
    assert {"error", "message", "code", "request_id", "details"} <= set(body), body
    assert (body["error"], body["code"]) == (code, status)
    assert err.message == body["message"]
    assert err.details == body["details"]
    assert err.request_id == body["request_id"] == err.headers["x-request-id"]
    assert err.request_id.startswith("req_")
    return err


async def test_errors_of_the_real_server_map_to_exceptions(
    h: Harness, make: Callable[..., Harness]
) -> None:
    c = h.c
    business_id = await new_business(h)
    booking = await run(
        c.bookings.create(business_id=business_id, start_time=at(10), end_time=at(10, 30))
    )

    # Overlap → ConflictError conflict / overlaps_booking.
    err: Any = await expect_error(
        ConflictError,
        409,
        "conflict",
        lambda: c.bookings.create(
            business_id=business_id, start_time=at(10, 15), end_time=at(10, 45)
        ),
    )
    assert err.reason == "overlaps_booking"
    assert err.message == SLOT_TAKEN

    # Fully booked window, free slot right after it → next_available.
    err = await expect_error(
        ConflictError,
        409,
        "no_slots_available",
        lambda: c.availability.hold(
            business_id=business_id,
            duration_minutes=30,
            window_start=at(10),
            window_end=at(10, 30),
        ),
    )
    assert err.next_available == {"start": z(at(10, 30)), "end": z(at(11))}
    assert err.reason is None

    # Fully booked window and lookahead → next_available absent (not null).
    await run(c.bookings.create(business_id=business_id, start_time=at(12), end_time=at(14)))
    err = await expect_error(
        ConflictError,
        409,
        "no_slots_available",
        lambda: c.availability.hold(
            business_id=business_id,
            duration_minutes=30,
            window_start=at(12),
            window_end=at(12, 30),
            next_available_lookahead_hours=1,
        ),
    )
    assert err.next_available is None
    assert "next_available" not in err.body

    # Unknown ids → NotFoundError.
    unknown = "00000000000000000000000000"
    for call, code in [
        (lambda: c.bookings.get(f"bk_{unknown}"), "not_found"),
        (lambda: c.bookings.cancel(f"bk_{unknown}"), "not_found"),
        (lambda: c.holds.get(f"hld_{unknown}"), "hold_not_found"),
        (lambda: c.bookings.confirm(f"hld_{unknown}"), "hold_not_found"),
        (lambda: c.businesses.get(f"biz_{unknown}"), "not_found"),
        (lambda: c.meeting_classes.get("no_such_class"), "not_found"),
    ]:
        await expect_error(NotFoundError, 404, code, call)

    # Bad key → AuthError.
    stranger = make(api_key=f"sg_live_{uuid.uuid4().hex}")
    await expect_error(AuthError, 401, "unauthorized", lambda: stranger.c.bookings.get(booking.id))

    # Confirm after release → StateError hold_released.
    held = await run(
        c.availability.hold(
            business_id=business_id, duration_minutes=30, window_start=at(16), window_end=at(17)
        )
    )
    released = await run(c.holds.release(held["hold_id"]))
    assert released["status"] == "released"
    again = await run(c.holds.release(held["hold_id"]))  # releasing twice is fine
    assert again["status"] == "released"
    await expect_error(
        StateError, 409, "hold_released", lambda: c.bookings.confirm(held["hold_id"])
    )

    # Window over 90 days → ValidationError window_too_large (reads and holds).
    for call in [
        lambda: c.availability.get_slots(business_id=business_id, start=at(0), end=at(0, day=91)),
        lambda: c.availability.hold(
            business_id=business_id,
            duration_minutes=30,
            window_start=at(0),
            window_end=at(0, day=91),
        ),
    ]:
        await expect_error(ValidationError, 422, "window_too_large", call)

    # A time string without an offset → ValidationError validation_error, details.fields.
    naive = at(15).replace(tzinfo=None).isoformat()
    naive_end = at(15, 30).replace(tzinfo=None).isoformat()
    for call, field_name in [
        (
            lambda: c.bookings.create(
                business_id=business_id, start_time=naive, end_time=z(at(15, 30))
            ),
            "start_time",
        ),
        (
            lambda: c.availability.hold(
                business_id=business_id, window_start=naive, window_end=z(at(16))
            ),
            "window.start",
        ),
        (
            lambda: c.availability.get_slots(
                business_id=business_id, start=z(at(15)), end=naive_end
            ),
            "end",
        ),
    ]:
        err = await expect_error(ValidationError, 422, "validation_error", call)
        assert isinstance(err.fields, list)
        assert field_name in [f["field"] for f in err.fields], err.fields

    # A naive datetime object never leaves the client.
    sent = len(h.recorder.exchanges)
    with pytest.raises(ValueError, match="naive datetime"):
        await run(
            c.bookings.create(business_id=business_id, start_time=at(15).replace(tzinfo=None))
        )
    assert len(h.recorder.exchanges) == sent

    # Nothing above created a booking besides the two made on purpose.
    assert len(await all_bookings(h, business_id)) == 2


# --- 5. optimistic locking ----------------------------------------------------------------


async def test_optimistic_locking_update_cancel_reschedule(h: Harness) -> None:
    business_id = await new_business(h)
    v1 = await run(
        h.c.bookings.create(
            business_id=business_id,
            start_time=at(10),
            end_time=at(10, 30),
            title="Original",
            metadata={"a": "1"},
        )
    )
    assert (v1.version, v1.etag) == (1, '"1"')

    # update(if_match=booking) bumps the version; the response carries the new ETag.
    v2 = await run(h.c.bookings.update(v1.id, if_match=v1, title="Renamed", metadata={"b": "2"}))
    assert isinstance(v2, Booking)
    assert v2.id == v1.id
    assert (v2.version, v2.etag) == (2, '"2"')
    assert v2["title"] == "Renamed"
    assert v2["metadata"] == {"a": "1", "b": "2"}  # shallow merge
    assert (await run(h.c.bookings.get(v1.id))).etag == '"2"'

    # The old version → VersionConflictError with current_version; nothing changes.
    for stale in (v1, 1, '"1"'):
        with pytest.raises(VersionConflictError) as conflict:
            await run(h.c.bookings.update(v1.id, if_match=stale, title="Lost update"))
        assert (conflict.value.status, conflict.value.code) == (412, "version_conflict")
        assert conflict.value.current_version == 2
    assert (await run(h.c.bookings.get(v1.id)))["title"] == "Renamed"

    # PATCH without If-Match (via the escape hatch; update() requires it) → 428.
    with pytest.raises(PreconditionError) as missing:
        await run(h.c.request("PATCH", f"/v1/bookings/{v1.id}", json={"title": "x"}))
    assert (missing.value.status, missing.value.code) == (428, "missing_if_match")

    # A weak tag is accepted; metadata null removes a key.
    v3 = await run(h.c.bookings.update(v1.id, if_match='W/"2"', metadata={"a": None}))
    assert v3.version == 3
    assert v3["metadata"] == {"b": "2"}

    # Reschedule with a stale If-Match → 412, untouched; with the current one → moved.
    with pytest.raises(VersionConflictError) as conflict:
        await run(h.c.bookings.reschedule(v1.id, at(11), at(11, 30), if_match=v2))
    assert conflict.value.current_version == 3
    untouched = await run(h.c.bookings.get(v1.id))
    assert (untouched["start_time"], untouched.version) == (z(at(10)), 3)

    v4 = await run(h.c.bookings.reschedule(v1.id, at(11), at(11, 30), if_match=untouched))
    assert (v4.id, v4.version, v4.etag) == (v1.id, 4, '"4"')
    assert (v4["start_time"], v4["end_time"]) == (z(at(11)), z(at(11, 30)))
    # Without If-Match, and without end_time (the duration is kept).
    v5 = await run(h.c.bookings.reschedule(v1.id, at(13)))
    assert v5.version == 5
    assert (v5["start_time"], v5["end_time"]) == (z(at(13)), z(at(13, 30)))
    # The old intervals are free again.
    assert {z(at(10)), z(at(11))} <= await slot_starts(h, business_id, at(10), at(12))

    # Cancel: stale If-Match → 412; current → cancelled; again without If-Match → unchanged.
    with pytest.raises(VersionConflictError):
        await run(h.c.bookings.cancel(v1.id, reason="no", if_match=v4))
    cancelled = await run(h.c.bookings.cancel(v1.id, reason="changed plans", if_match=v5))
    assert cancelled["status"] == "cancelled"
    assert cancelled.version == 6
    assert cancelled["cancellation_reason"] == "changed plans"
    assert cancelled["cancelled_at"] is not None
    assert z(at(13)) in await slot_starts(h, business_id, at(13), at(14))  # freed at once
    same = await run(h.c.bookings.cancel(v1.id))
    assert same["status"] == "cancelled"
    assert same.version == 6

    # Reschedule of a cancelled booking → StateError booking_not_active.
    with pytest.raises(StateError) as state:
        await run(h.c.bookings.reschedule(v1.id, at(15)))
    assert (state.value.status, state.value.code) == (409, "booking_not_active")
    with pytest.raises(StateError):
        await run(h.c.bookings.reschedule(v1.id, at(15), if_match=cancelled))

    # Cancel without If-Match on another booking works too.
    other = await run(h.c.bookings.create(business_id=business_id, start_time=at(16)))
    gone = await run(h.c.bookings.cancel(other.id))
    assert (gone["status"], gone.version) == ("cancelled", 2)


# --- 6. pagination ------------------------------------------------------------------------


async def test_pagination_and_status_filter(h: Harness) -> None:
    business_id = await new_business(h)
    hours = list(range(1, 8))
    random.Random(7).shuffle(hours)  # created out of start_time order
    created: dict[int, str] = {}
    for hour in hours:
        booking = await run(
            h.c.bookings.create(business_id=business_id, start_time=at(hour), end_time=at(hour, 30))
        )
        created[hour] = booking.id
    in_order = [created[hour] for hour in sorted(created)]

    first = await run(h.c.bookings.list(business_id=business_id, limit=3))
    assert isinstance(first, Page)
    assert len(first) == 3
    assert first.has_more
    assert first.next_cursor
    assert [b.id for b in first] == in_order[:3]

    before = len(h.recorder.of("GET", "/v1/bookings"))
    everything = await all_bookings(h, business_id, limit=3)
    assert len(h.recorder.of("GET", "/v1/bookings")) - before == 3  # 3 + 3 + 1
    assert [b.id for b in everything] == in_order  # each exactly once, by start_time
    assert all(isinstance(b, Booking) and b.etag == '"1"' for b in everything)
    starts = [instant(b["start_time"]) for b in everything]
    assert starts == sorted(starts)

    for hour in (2, 5):
        await run(h.c.bookings.cancel(created[hour]))
    cancelled_ids = [created[2], created[5]]

    both = await all_bookings(h, business_id, status=["confirmed", "cancelled"], limit=3)
    assert [b.id for b in both] == in_order
    only_cancelled = await all_bookings(h, business_id, status="cancelled", limit=1)
    assert [b.id for b in only_cancelled] == cancelled_ids
    assert {b["status"] for b in only_cancelled} == {"cancelled"}
    confirmed = await all_bookings(h, business_id, status=["confirmed"], limit=2)
    assert [b.id for b in confirmed] == [i for i in in_order if i not in cancelled_ids]
    assert {b["status"] for b in confirmed} == {"confirmed"}


# --- 7. CRUD round trips, effective rules, request ids ------------------------------------


async def test_businesses_meeting_classes_rules_and_request_ids(h: Harness) -> None:
    # Businesses.
    email = f"owner-{uuid.uuid4().hex[:8]}@example.com"
    business = await run(
        h.c.businesses.create(
            name="Round Trip", timezone="Europe/Berlin", email=email, rules={"buffer_minutes": 10}
        )
    )
    business_id = business["id"]
    assert business.location == f"/v1/businesses/{business_id}"
    assert business.request_id == h.recorder.last.header_request_id
    assert (business["name"], business["timezone"], business["email"]) == (
        "Round Trip",
        "Europe/Berlin",
        email,
    )
    fetched = await run(h.c.businesses.get(business_id))
    assert dict(fetched) == dict(business)
    assert fetched.request_id == h.recorder.last.header_request_id != business.request_id

    updated = await run(
        h.c.businesses.update(
            business_id, name="Renamed", rules={"working_hours": ALL_DAY, "buffer_minutes": 5}
        )
    )
    assert updated["name"] == "Renamed"
    assert updated["rules"]["buffer_minutes"] == 5
    assert (await run(h.c.businesses.get(business_id)))["name"] == "Renamed"
    listed = await collect(h.c.businesses.iter(limit=2))
    assert [b["id"] for b in listed].count(business_id) == 1

    effective = await run(h.c.businesses.effective_rules(business_id))
    assert effective["rules"]["buffer_minutes"] == 5
    assert effective["rules"]["working_hours"] == ALL_DAY
    assert effective["sources"]["working_hours"] == "business"
    assert effective["sources"]["buffer_minutes"] == "business"
    assert effective["sources"]["max_advance_days"] == "account"
    assert effective["sources"]["hold_ttl_seconds"] == "account"

    # Account defaults feed the fields the business does not override.
    before = await run(h.c.rules.get_defaults())
    try:
        defaults = await run(h.c.rules.put_defaults(**before["rules"], hold_ttl_seconds=120))
        assert defaults["rules"]["hold_ttl_seconds"] == 120
        effective = await run(h.c.businesses.effective_rules(business_id))
        assert effective["rules"]["hold_ttl_seconds"] == 120
        assert effective["sources"]["hold_ttl_seconds"] == "account"
        assert effective["rules"]["buffer_minutes"] == 5  # still the business's own
    finally:
        await run(h.c.rules.put_defaults(**before["rules"]))
    assert (await run(h.c.rules.get_defaults()))["rules"] == before["rules"]

    deleted = await run(h.c.businesses.delete(business_id))
    assert deleted["deleted"] is True
    with pytest.raises(NotFoundError) as gone:
        await run(h.c.businesses.get(business_id))
    err = gone.value
    assert err.request_id == err.headers["x-request-id"] == h.recorder.last.header_request_id
    assert err.body["request_id"] == err.request_id

    # Meeting classes (addressed by name).
    name = await new_class(h, display_name="Screening", duration_minutes=45, priority=70)
    created = h.recorder.last
    mc = await run(h.c.meeting_classes.get(name))
    assert (mc["display_name"], mc["duration_minutes"], mc["priority"]) == ("Screening", 45, 70)
    assert mc.request_id == h.recorder.last.header_request_id != created.header_request_id
    mc = await run(h.c.meeting_classes.update(name, display_name="Final round", priority=80))
    assert (mc["display_name"], mc["priority"], mc["duration_minutes"]) == ("Final round", 80, 45)
    names = [m["name"] for m in await collect(h.c.meeting_classes.iter(limit=1))]
    assert names.count(name) == 1
    assert "default" in names  # created with every account
    assert (await run(h.c.meeting_classes.delete(name)))["deleted"] is True
    with pytest.raises(NotFoundError):
        await run(h.c.meeting_classes.get(name))
    with pytest.raises(ValidationError) as invalid:
        await run(h.c.meeting_classes.create(name="Not A Slug", display_name="x"))
    assert "name" in [f["field"] for f in invalid.value.fields]
    assert invalid.value.request_id == h.recorder.last.header_request_id

    # Pages carry the request id too; the raw escape hatch exposes header and meta.
    page = await run(h.c.businesses.list(limit=1))
    assert page.request_id == h.recorder.last.header_request_id
    raw = await run(h.c.request("GET", "/v1/meeting-classes"))
    assert raw.request_id == raw.meta["request_id"] == raw.headers["x-request-id"]
    # (every exchange of this harness is checked again at teardown: check_request_ids)
    ids = [e.header_request_id for e in h.recorder.exchanges]
    assert len(set(ids)) == len(ids)
