"""Unit tests of ``slotguard.client`` against an in-memory HTTP peer.

``FakeSlotguard`` is an ``httpx.MockTransport`` handler that follows the HTTP contract
(API.md §1 envelope/errors, §1.5 idempotency with replay, §1.6 If-Match, §1.7 cursors, §3,
§4) for the few endpoints the client scenarios need; faults (in-progress answers, connect
errors, lost responses, gateway errors) are injected per request. Every scenario that makes
sense for both clients runs against ``Client`` and ``AsyncClient`` (fixture ``flavor``).

Integration test still to be written (tests/client/test_client_integration.py, once the
server exists) — run both clients against a real ``slotguard serve`` (fresh SQLite
database, ``SLOTGUARD_BOOTSTRAP_API_KEY`` as the key, random free port) and cover:

1. Happy path: create a business and a meeting class; ``availability.get_slots`` returns
   slots rendered in the requested timezone with offsets; ``availability.hold`` returns a
   hold whose slot is gone from ``get_slots``; ``bookings.confirm`` returns a ``Booking``
   with ``version`` 1 and an ``etag`` equal to the ``ETag`` of ``bookings.get``.
2. Idempotency end to end: ``bookings.create`` twice with the same ``idempotency_key`` →
   one booking, second result ``replayed``; same key with another body →
   ``IdempotencyError`` ``idempotency_key_conflict``; two concurrent creates with one key
   (threads for ``Client``, ``asyncio.gather`` for ``AsyncClient``) → one booking, both
   calls succeed (the loser retried on ``idempotency_in_progress``).
3. Lost response: a proxy transport that forwards the request to the server but raises
   ``httpx.ReadTimeout`` instead of returning the first response → the client's retry is
   replayed, exactly one booking exists.
4. Error mapping from the real server: overlapping ``bookings.create`` → ``ConflictError``
   with ``reason == "overlaps_booking"``; hold in a fully booked window →
   ``ConflictError`` ``no_slots_available`` with and without ``next_available``; unknown id
   → ``NotFoundError``; bad key → ``AuthError``; confirm after release → ``StateError``;
   ``window_too_large``/naive string time → ``ValidationError`` with ``details.fields``.
5. Optimistic locking: ``update(if_match=booking)`` bumps ``version``; ``update`` with the
   old version → ``VersionConflictError`` (``current_version``); ``cancel`` and
   ``reschedule`` with and without ``if_match``; reschedule of a cancelled booking →
   ``StateError`` ``booking_not_active``.
6. Pagination: more bookings than ``limit`` → ``iter()`` yields each exactly once in
   ``start_time`` order; ``status=["confirmed", "cancelled"]`` filter is honoured.
7. Businesses/meeting classes/rules CRUD round trip, ``effective_rules`` sources, and
   ``X-Request-Id`` equal to ``request_id`` on results and errors.
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import random
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

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
    ForbiddenError,
    IdempotencyError,
    NotFoundError,
    Page,
    PreconditionError,
    RateLimitedError,
    ServerError,
    SlotguardConnectionError,
    SlotguardError,
    StateError,
    ValidationError,
    VersionConflictError,
    format_datetime,
    format_if_match,
)
from slotguard.client._core import Core

API_KEY = "sg_live_unit_test_key"
T0 = dt.datetime(2030, 4, 1, 9, 0, tzinfo=dt.UTC)

# --- the fake HTTP peer -------------------------------------------------------------------

Handler = Callable[[httpx.Request], httpx.Response]
Fault = Callable[[httpx.Request, Handler], httpx.Response]


def _error(status: int, code: str, message: str, **extra: Any) -> httpx.Response:
    headers = extra.pop("headers", {})
    body = {
        "error": code,
        "message": message,
        "code": status,
        "request_id": "req_err",
        "details": extra.pop("details", {}),
    } | extra
    return httpx.Response(status, json=body, headers={"X-Request-Id": "req_err", **headers})


def _ok(
    status: int, data: Any, *, headers: dict[str, str] | None = None, **meta: Any
) -> httpx.Response:
    body = {"data": data, "meta": {"request_id": "req_ok", **meta}}
    return httpx.Response(status, json=body, headers={"X-Request-Id": "req_ok", **(headers or {})})


def _instant(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def in_progress(request: httpx.Request, handle: Handler) -> httpx.Response:
    """A concurrent attempt with the same key is still running (§1.5)."""
    return _error(
        409,
        "idempotency_in_progress",
        "A request with this key is in progress.",
        headers={"Retry-After": "1"},
    )


def connect_error(request: httpx.Request, handle: Handler) -> httpx.Response:
    """The request never reached the server."""
    raise httpx.ConnectError("connection refused", request=request)


def lost_response(request: httpx.Request, handle: Handler) -> httpx.Response:
    """The server executed the request, but the response never arrived."""
    handle(request)
    raise httpx.ReadTimeout("timed out", request=request)


def dropped_connection(request: httpx.Request, handle: Handler) -> httpx.Response:
    raise httpx.RemoteProtocolError("server disconnected", request=request)


def gateway(status: int, *, text: str = "", retry_after: str | None = None) -> Fault:
    def fault(request: httpx.Request, handle: Handler) -> httpx.Response:
        headers = {"Content-Type": "text/html"} | (
            {"Retry-After": retry_after} if retry_after else {}
        )
        return httpx.Response(status, text=text, headers=headers)

    return fault


def canned(response: httpx.Response) -> Fault:
    # A fresh copy per use: the same parametrized response serves both clients.
    def fault(request: httpx.Request, handle: Handler) -> httpx.Response:
        return httpx.Response(
            response.status_code, headers=response.headers, content=response.content
        )

    return fault


class FakeSlotguard:
    """An in-memory peer that answers like the API contract for the endpoints used here."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.faults: list[Fault] = []
        self.bookings: dict[str, dict[str, Any]] = {}
        self.executions = 0
        self.next_available: dict[str, str] | None = None
        # key -> (fingerprint, status, body bytes, headers) of a completed 2xx (§1.5)
        self._stored: dict[str, tuple[str, int, bytes, dict[str, str]]] = {}

    # transport entry point
    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.faults:
            return self.faults.pop(0)(request, self._handle)
        return self._handle(request)

    def keys(self) -> list[str | None]:
        return [r.headers.get("Idempotency-Key") for r in self.requests]

    def add_booking(self, start: dt.datetime, minutes: int = 30) -> dict[str, Any]:
        booking_id = f"bk_{len(self.bookings) + 1:04d}"
        booking: dict[str, Any] = {
            "id": booking_id,
            "business_id": "biz_1",
            "meeting_class": "default",
            "status": "confirmed",
            "start_time": _iso(start),
            "end_time": _iso(start + dt.timedelta(minutes=minutes)),
            "title": "Meeting",
            "description": None,
            "customer_email": None,
            "customer_name": None,
            "attendees": [],
            "metadata": {},
            "version": 1,
        }
        self.bookings[booking_id] = booking
        return booking

    # --- dispatch -------------------------------------------------------------------------

    def _handle(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return _error(401, "unauthorized", "Missing or invalid API key.")
        key = request.headers.get("Idempotency-Key")
        body = json.loads(request.content) if request.content else None
        if key is not None and request.method in {"POST", "PATCH", "DELETE"}:
            fingerprint = json.dumps([request.method, request.url.path, body], sort_keys=True)
            stored = self._stored.get(key)
            if stored is not None:
                if stored[0] != fingerprint:
                    return _error(409, "idempotency_key_conflict", "Key used for another request.")
                _, status, content, headers = stored
                return httpx.Response(
                    status, content=content, headers=headers | {"Idempotent-Replayed": "true"}
                )
            response = self._route(request, body)
            if 200 <= response.status_code < 300:
                response.read()
                keep = {
                    k: v
                    for k, v in response.headers.items()
                    if k.lower() in {"etag", "location", "content-type", "x-request-id"}
                }
                self._stored[key] = (fingerprint, response.status_code, response.content, keep)
            return response
        return self._route(request, body)

    def _route(self, request: httpx.Request, body: Any) -> httpx.Response:
        method, parts = request.method, request.url.path.strip("/").split("/")
        query = {k: v[-1] for k, v in parse_qs(request.url.query.decode()).items()}
        if parts[:1] != ["v1"]:
            return _error(404, "not_found", "No such route.")
        parts = parts[1:]
        if parts == ["availability", "slots"] and method == "GET":
            return _ok(200, {"business_id": query.get("business_id"), "query": query, "slots": []})
        if parts == ["availability"] and method == "POST":
            return self._hold(body)
        if parts[:1] == ["holds"] and len(parts) == 2:
            status = "released" if method == "DELETE" else "active"
            return _ok(200, {"hold_id": parts[1], "status": status})
        if parts == ["bookings"] and method == "POST":
            return self._create(request, body)
        if parts == ["bookings"] and method == "GET":
            return self._list(query)
        if parts[:1] == ["bookings"] and len(parts) == 3 and parts[2] == "confirm":
            return self._confirm(request, parts[1], body or {})
        if parts[:1] == ["bookings"] and len(parts) >= 2:
            return self._booking_op(request, method, parts[1], parts[2:], body or {})
        if parts == ["rules", "defaults"]:
            return _ok(200, body if method == "PUT" else {"buffer_minutes": 0})
        if parts[:1] in (["businesses"], ["meeting-classes"], ["agents"]):
            return self._generic(request, method, parts, body)
        return _error(404, "not_found", "No such route.")

    # --- endpoints ------------------------------------------------------------------------

    def _require_key(self, request: httpx.Request) -> httpx.Response | None:
        if request.headers.get("Idempotency-Key") is None:
            return _error(400, "missing_idempotency_key", "Idempotency-Key header is required.")
        return None

    def _hold(self, body: dict[str, Any]) -> httpx.Response:
        window = body.get("window", {})
        start, end = _instant(window.get("start")), _instant(window.get("end"))
        if start is None or end is None:
            return _error(
                422, "validation_error", "Bad window.", details={"fields": ["window.start"]}
            )
        if self.next_available is not None or any(
            b["start_time"] == _iso(start) for b in self.bookings.values()
        ):
            extra = {"next_available": self.next_available} if self.next_available else {}
            return _error(409, "no_slots_available", "No slot in the window.", **extra)
        minutes = body.get("duration_minutes", 30)
        slot = {"start": _iso(start), "end": _iso(start + dt.timedelta(minutes=minutes))}
        return _ok(200, {"hold_id": "hld_1", "slots": [slot], "decision": "accept"})

    def _create(self, request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        if (missing := self._require_key(request)) is not None:
            return missing
        start = _instant(body.get("start_time"))
        if start is None:
            return _error(
                422,
                "validation_error",
                "start_time needs an offset.",
                details={"fields": ["start_time"]},
            )
        for other in self.bookings.values():
            if other["status"] == "confirmed" and other["start_time"] == _iso(start):
                return _error(
                    409,
                    "conflict",
                    "The requested time slot is no longer available.",
                    details={"reason": "overlaps_booking"},
                )
        self.executions += 1
        booking = self.add_booking(start)
        for field in ("title", "customer_email", "customer_name", "attendees", "metadata"):
            if field in body:
                booking[field] = body[field]
        return _ok(
            201,
            booking,
            headers={"ETag": '"1"', "Location": f"/v1/bookings/{booking['id']}"},
        )

    def _confirm(
        self, request: httpx.Request, hold_id: str, body: dict[str, Any]
    ) -> httpx.Response:
        if (missing := self._require_key(request)) is not None:
            return missing
        if hold_id == "hld_gone":
            return _error(410, "hold_expired", "The hold has expired.")
        self.executions += 1
        booking = self.add_booking(_instant(body.get("start")) or T0)
        booking["title"] = body.get("title", booking["title"])
        data = {"booking_id": booking["id"], "correlation_id": "corr_1", "booking": booking}
        return _ok(200, data, headers={"ETag": '"1"'})

    def _list(self, query: dict[str, str]) -> httpx.Response:
        rows = sorted(self.bookings.values(), key=lambda b: b["start_time"])
        if "status" in query:
            rows = [b for b in rows if b["status"] in query["status"].split(",")]
        offset = int(query["cursor"].removeprefix("cur_")) if "cursor" in query else 0
        limit = min(int(query.get("limit", 50)), 200)
        page = rows[offset : offset + limit]
        more = offset + limit < len(rows)
        meta: dict[str, Any] = {"has_more": more}
        if more:
            meta["next_cursor"] = f"cur_{offset + limit}"
        return _ok(200, page, **meta)

    def _booking_op(
        self,
        request: httpx.Request,
        method: str,
        booking_id: str,
        rest: list[str],
        body: dict[str, Any],
    ) -> httpx.Response:
        booking = self.bookings.get(booking_id)
        if booking is None:
            return _error(404, "not_found", "Booking not found.")
        if method == "GET" and not rest:
            return _ok(200, booking, headers={"ETag": f'"{booking["version"]}"'})
        if (missing := self._require_key(request)) is not None:
            return missing
        if_match = request.headers.get("If-Match")
        if method == "PATCH" and if_match is None:
            return _error(428, "missing_if_match", "If-Match is required.")
        if if_match is not None:
            tag = if_match.removeprefix("W/")
            if not (tag.startswith('"') and tag.endswith('"') and tag[1:-1].isdigit()):
                return _error(400, "invalid_if_match", "Malformed If-Match.")
            if int(tag[1:-1]) != booking["version"]:
                return _error(
                    412,
                    "version_conflict",
                    "The booking has changed.",
                    details={"current_version": booking["version"]},
                )
        if method == "PATCH":
            immutable = sorted(
                set(body) - {"title", "description", "attendees", "metadata", "customer_name"}
            )
            if immutable:
                return _error(422, "field_immutable", "Read-only.", details={"fields": immutable})
            booking.update(body)
        elif rest == ["cancel"]:
            booking["status"] = "cancelled"
            booking["cancellation_reason"] = body.get("reason")
        elif rest == ["reschedule"]:
            if booking["status"] != "confirmed":
                return _error(409, "booking_not_active", "Booking is not active.")
            start = _instant(body.get("start_time"))
            if start is None:
                return _error(422, "validation_error", "Bad start_time.")
            booking["start_time"] = _iso(start)
            booking["end_time"] = _iso(start + dt.timedelta(minutes=30))
        else:
            return _error(404, "not_found", "No such route.")
        self.executions += 1
        booking["version"] += 1
        return _ok(200, booking, headers={"ETag": f'"{booking["version"]}"'})

    def _generic(
        self, request: httpx.Request, method: str, parts: list[str], body: Any
    ) -> httpx.Response:
        if method == "POST":
            self.executions += 1
            return _ok(201, {"id": f"{parts[0]}_1", **(body or {})})
        if method == "GET" and len(parts) == 1:
            return _ok(200, [{"id": f"{parts[0]}_1"}], has_more=False)
        return _ok(200, {"id": parts[-1], "method": method, **(body or {})})


# --- harness: the same scenario on Client and AsyncClient --------------------------------


class Harness:
    def __init__(
        self, flavor: str, server: FakeSlotguard, api_key: str = API_KEY, **options: Any
    ) -> None:
        self.server = server
        self.sleeps: list[float] = []
        transport = httpx.MockTransport(server)
        self.client: Client | AsyncClient
        if flavor == "sync":
            self.client = Client(api_key, transport=transport, sleep=self.sleeps.append, **options)
        else:

            async def sleep(seconds: float) -> None:
                self.sleeps.append(seconds)

            self.client = AsyncClient(api_key, transport=transport, sleep=sleep, **options)

    async def call(self, fn: Callable[[Any], Any]) -> Any:
        result = fn(self.client)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def collect(self, fn: Callable[[Any], Any]) -> list[Any]:
        iterator = fn(self.client)
        if hasattr(iterator, "__aiter__"):
            return [item async for item in iterator]
        return list(iterator)

    async def close(self) -> None:
        if isinstance(self.client, AsyncClient):
            await self.client.aclose()
        else:
            self.client.close()


@pytest.fixture(params=["sync", "async"])
def flavor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server() -> FakeSlotguard:
    return FakeSlotguard()


@pytest.fixture
async def make(flavor: str, server: FakeSlotguard) -> AsyncIterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def factory(**options: Any) -> Harness:
        harness = Harness(flavor, server, **options)
        made.append(harness)
        return harness

    yield factory
    for harness in made:
        await harness.close()


@pytest.fixture
def h(make: Callable[..., Harness]) -> Harness:
    return make()


def _create(start: dt.datetime = T0, **extra: Any) -> Callable[[Any], Any]:
    return lambda c: c.bookings.create(business_id="biz_1", start_time=start, **extra)


# --- (a) idempotency keys and retries -----------------------------------------------------


async def test_key_reused_across_in_progress_retries_and_respects_retry_after(
    h: Harness, server: FakeSlotguard
) -> None:
    server.faults = [in_progress, in_progress]
    booking = await h.call(_create())
    keys = server.keys()
    assert len(keys) == 3
    assert keys[0] is not None
    assert len(set(keys)) == 1
    assert uuid.UUID(keys[0]).version == 4
    assert h.sleeps == [1.0, 1.0]  # Retry-After: 1
    assert server.executions == 1
    assert booking["id"] == "bk_0001"


async def test_key_reused_after_connect_error(h: Harness, server: FakeSlotguard) -> None:
    server.faults = [connect_error]
    booking = await h.call(_create())
    keys = server.keys()
    assert len(keys) == 2
    assert keys[0] == keys[1] is not None
    assert len(h.sleeps) == 1
    assert 0.05 <= h.sleeps[0] <= 0.1  # first backoff step: base 0.1 with jitter
    assert booking.replayed is False


async def test_lost_response_is_replayed_not_executed_twice(
    h: Harness, server: FakeSlotguard
) -> None:
    server.faults = [lost_response]
    booking = await h.call(_create())
    assert server.executions == 1
    assert len(server.bookings) == 1
    assert booking.replayed is True
    assert booking.location == "/v1/bookings/bk_0001"
    assert server.keys()[0] == server.keys()[1]


async def test_new_call_gets_new_key_and_given_key_is_used(
    h: Harness, server: FakeSlotguard
) -> None:
    await h.call(_create(T0))
    await h.call(_create(T0 + dt.timedelta(hours=1)))
    await h.call(_create(T0 + dt.timedelta(hours=2), idempotency_key="my-key-1"))
    keys = server.keys()
    assert keys[0] != keys[1]
    assert keys[2] == "my-key-1"


async def test_same_given_key_replays_and_conflicting_body_raises(
    h: Harness, server: FakeSlotguard
) -> None:
    first = await h.call(_create(idempotency_key="k1"))
    again = await h.call(_create(idempotency_key="k1"))
    assert again == first
    assert again.replayed is True
    assert server.executions == 1
    with pytest.raises(IdempotencyError) as info:
        await h.call(_create(T0 + dt.timedelta(hours=1), idempotency_key="k1"))
    assert info.value.code == "idempotency_key_conflict"
    assert info.value.status == 409


async def test_reads_carry_no_key_writes_do(h: Harness, server: FakeSlotguard) -> None:
    server.add_booking(T0)
    await h.call(lambda c: c.bookings.get("bk_0001"))
    await h.call(lambda c: c.availability.get_slots(business_id="biz_1"))
    await h.call(lambda c: c.rules.put_defaults(buffer_minutes=5))
    await h.call(lambda c: c.holds.release("hld_1"))
    await h.call(
        lambda c: c.availability.hold(
            business_id="biz_1",
            window_start=T0 + dt.timedelta(hours=1),
            window_end=T0 + dt.timedelta(hours=8),
        )
    )
    await h.call(lambda c: c.businesses.delete("biz_1"))
    keys = server.keys()
    assert keys[:3] == [None, None, None]
    assert all(k is not None for k in keys[3:])
    assert len(set(keys[3:])) == 3


@pytest.mark.parametrize(
    "fault", [gateway(502), gateway(503), gateway(504), dropped_connection, lost_response]
)
async def test_transient_failures_are_retried(
    h: Harness, server: FakeSlotguard, fault: Fault
) -> None:
    server.faults = [fault, fault]
    booking = await h.call(_create())
    assert booking["id"] == "bk_0001"
    assert len(server.requests) == 3
    assert len(set(server.keys())) == 1
    assert len(h.sleeps) == 2
    assert 0.05 <= h.sleeps[0] <= 0.1
    assert 0.1 <= h.sleeps[1] <= 0.2


async def test_gateway_retry_after_is_respected(h: Harness, server: FakeSlotguard) -> None:
    server.faults = [gateway(503, retry_after="3")]
    await h.call(lambda c: c.bookings.list())
    assert h.sleeps == [3.0]


async def test_retries_are_bounded(make: Callable[..., Harness], server: FakeSlotguard) -> None:
    h = make(max_retries=2)
    server.faults = [gateway(503, text="<html>busy</html>")] * 10
    with pytest.raises(ServerError) as info:
        await h.call(_create())
    assert len(server.requests) == 3
    assert info.value.status == 503
    assert info.value.code == "http_503"
    assert info.value.body == "<html>busy</html>"


async def test_connection_errors_outliving_retries_are_translated(
    make: Callable[..., Harness], server: FakeSlotguard
) -> None:
    h = make(max_retries=1)
    server.faults = [connect_error, connect_error]
    with pytest.raises(SlotguardConnectionError) as info:
        await h.call(_create())
    assert info.value.status is None
    assert info.value.code == "connection_error"
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    server.faults = [lost_response, lost_response]
    with pytest.raises(SlotguardConnectionError) as info:
        await h.call(_create(T0 + dt.timedelta(hours=3)))
    assert info.value.code == "timeout"


async def test_in_progress_forever_raises_idempotency_error(
    make: Callable[..., Harness], server: FakeSlotguard
) -> None:
    h = make(max_retries=3)
    server.faults = [in_progress] * 10
    with pytest.raises(IdempotencyError) as info:
        await h.call(_create())
    assert info.value.code == "idempotency_in_progress"
    assert len(server.requests) == 4
    assert h.sleeps == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    "response",
    [
        _error(400, "invalid_idempotency_key", "bad"),
        _error(404, "not_found", "nope"),
        _error(409, "conflict", "taken", details={"reason": "overlaps_hold"}),
        _error(422, "validation_error", "bad"),
        httpx.Response(501, text="Not Implemented"),
    ],
)
async def test_other_errors_are_not_retried(
    h: Harness, server: FakeSlotguard, response: httpx.Response
) -> None:
    server.faults = [canned(response)]
    with pytest.raises(SlotguardError):
        await h.call(_create())
    assert len(server.requests) == 1
    assert h.sleeps == []


def test_backoff_is_exponential_jittered_and_capped() -> None:
    core = Core(
        API_KEY,
        "http://x",
        max_retries=20,
        backoff_base=0.1,
        backoff_max=2.0,
        max_retry_after=30.0,
        rng=random.Random(7),
    )
    for attempt in range(20):
        ceiling = min(2.0, 0.1 * 2**attempt)
        for _ in range(20):
            assert ceiling / 2 <= core.backoff(attempt) <= ceiling


# --- (b) error mapping --------------------------------------------------------------------


ERROR_CASES = [
    (_error(401, "unauthorized", "no key"), AuthError),
    (
        _error(403, "forbidden", "scope", details={"required_scope": "bookings:write"}),
        ForbiddenError,
    ),
    (_error(404, "hold_not_found", "no hold"), NotFoundError),
    (_error(409, "hold_already_confirmed", "done", details={"booking_id": "bk_9"}), StateError),
    (_error(410, "hold_expired", "late"), StateError),
    (_error(409, "booking_not_active", "cancelled"), StateError),
    (_error(400, "invalid_if_match", "bad tag"), PreconditionError),
    (_error(428, "missing_if_match", "need tag"), PreconditionError),
    (_error(422, "window_too_large", "90 days max"), ValidationError),
    (_error(413, "payload_too_large", "too big"), ValidationError),
    (_error(500, "internal_error", "oops"), ServerError),
    (_error(418, "teapot_mode", "unknown code"), SlotguardError),
]


@pytest.mark.parametrize(("response", "exc_type"), ERROR_CASES)
async def test_error_codes_map_to_exception_classes(
    h: Harness, server: FakeSlotguard, response: httpx.Response, exc_type: type[Exception]
) -> None:
    server.faults = [canned(response)] * 10  # 429 and 5xx are retried: answer every attempt
    with pytest.raises(SlotguardError) as info:
        await h.call(lambda c: c.holds.get("hld_1"))
    err = info.value
    assert type(err) is exc_type
    body = response.json()
    assert err.status == response.status_code
    assert err.code == body["error"]
    assert err.message == body["message"]
    assert err.details == body["details"]
    assert err.request_id == "req_err"
    assert err.body == body
    assert err.code in str(err)


async def test_conflict_error_carries_reason(h: Harness, server: FakeSlotguard) -> None:
    server.add_booking(T0)
    with pytest.raises(ConflictError) as info:
        await h.call(_create(T0))
    assert info.value.code == "conflict"
    assert info.value.reason == "overlaps_booking"
    assert info.value.message == "The requested time slot is no longer available."
    assert info.value.next_available is None


async def test_no_slots_available_with_and_without_next_available(
    h: Harness, server: FakeSlotguard
) -> None:
    def hold(c: Any) -> Any:
        return c.availability.hold(
            business_id="biz_1", window_start=T0, window_end=T0 + dt.timedelta(hours=1)
        )

    server.add_booking(T0)
    with pytest.raises(ConflictError) as info:
        await h.call(hold)
    assert info.value.code == "no_slots_available"
    assert info.value.next_available is None
    nxt = {"start": "2030-04-02T09:00:00Z", "end": "2030-04-02T09:30:00Z"}
    server.next_available = nxt
    with pytest.raises(ConflictError) as info:
        await h.call(hold)
    assert info.value.next_available == nxt


async def test_validation_and_not_found_and_auth_from_the_peer(
    make: Callable[..., Harness], server: FakeSlotguard
) -> None:
    h = make()
    with pytest.raises(ValidationError) as verr:
        await h.call(lambda c: c.bookings.create(business_id="b", start_time="2030-04-01T09:00"))
    assert verr.value.fields == ["start_time"]
    with pytest.raises(NotFoundError) as nf:
        await h.call(lambda c: c.bookings.get("bk_missing"))
    assert nf.value.status == 404
    assert nf.value.code == "not_found"
    server.add_booking(T0)
    with pytest.raises(ValidationError) as imm:
        await h.call(
            lambda c: c.request(
                "PATCH",
                "/v1/bookings/bk_0001",
                if_match=1,
                json={"start_time": "2030-01-01T00:00:00Z"},
            )
        )
    assert imm.value.code == "field_immutable"
    assert imm.value.fields == ["start_time"]
    revoked = make(api_key="sg_live_revoked")
    with pytest.raises(AuthError) as auth:
        await revoked.call(lambda c: c.bookings.get("bk_0001"))
    assert auth.value.code == "unauthorized"


async def test_rate_limited_exposes_retry_after(h: Harness, server: FakeSlotguard) -> None:
    server.faults = [canned(_error(429, "rate_limited", "slow", headers={"Retry-After": "7"}))] * 10
    with pytest.raises(RateLimitedError) as info:
        await h.call(lambda c: c.bookings.list())
    assert info.value.retry_after == 7.0


async def test_non_json_error_body_still_gives_slotguard_error(
    h: Harness, server: FakeSlotguard
) -> None:
    server.faults = [
        canned(
            httpx.Response(404, text="<h1>Not Found</h1>", headers={"X-Request-Id": "req_proxy"})
        )
    ]
    with pytest.raises(NotFoundError) as info:
        await h.call(lambda c: c.bookings.get("bk_1"))
    assert info.value.status == 404
    assert info.value.code == "http_404"
    assert info.value.body == "<h1>Not Found</h1>"
    assert info.value.request_id == "req_proxy"
    assert "Not Found" in info.value.message


async def test_success_without_envelope_is_invalid_response(
    h: Harness, server: FakeSlotguard
) -> None:
    server.faults = [canned(httpx.Response(200, text="hello"))]
    with pytest.raises(SlotguardError) as info:
        await h.call(lambda c: c.holds.get("hld_1"))
    assert info.value.code == "invalid_response"
    assert info.value.status == 200


# --- (c) datetimes ------------------------------------------------------------------------


def test_format_datetime() -> None:
    assert format_datetime(T0) == "2030-04-01T09:00:00Z"
    berlin = dt.datetime(2030, 7, 1, 9, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    assert format_datetime(berlin) == "2030-07-01T09:30:00+02:00"
    minus = dt.datetime(2030, 1, 1, 8, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert format_datetime(minus) == "2030-01-01T08:00:00-05:00"
    assert format_datetime(T0.replace(microsecond=250)) == "2030-04-01T09:00:00.000250Z"
    lmt = dt.datetime(1850, 1, 1, 12, tzinfo=ZoneInfo("Europe/Amsterdam"))  # +00:19:32
    assert format_datetime(lmt) == "1850-01-01T11:40:28Z"
    with pytest.raises(ValueError, match="naive"):
        format_datetime(dt.datetime(2030, 4, 1, 9))


async def test_datetimes_serialise_with_offsets_in_query_and_body(
    h: Harness, server: FakeSlotguard
) -> None:
    tz = ZoneInfo("America/New_York")
    start = dt.datetime(2030, 4, 1, 9, tzinfo=tz)
    await h.call(
        lambda c: c.availability.get_slots(
            business_id="biz_1",
            start=start,
            end="2030-04-02T00:00:00Z",
            duration_minutes=30,
            timezone="America/New_York",
            meeting_class=None,
        )
    )
    query = parse_qs(urlsplit(str(server.requests[-1].url)).query)
    assert query == {
        "business_id": ["biz_1"],
        "start": ["2030-04-01T09:00:00-04:00"],
        "end": ["2030-04-02T00:00:00Z"],
        "duration_minutes": ["30"],
        "timezone": ["America/New_York"],
    }
    await h.call(
        lambda c: c.availability.hold(
            business_id="biz_1",
            window_start=start,
            window_end=start + dt.timedelta(hours=2),
            max_slots=2,
            ttl_seconds=None,
        )
    )
    body = json.loads(server.requests[-1].content)
    assert body == {
        "business_id": "biz_1",
        "max_slots": 2,
        "window": {"start": "2030-04-01T09:00:00-04:00", "end": "2030-04-01T11:00:00-04:00"},
    }


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.bookings.create(business_id="b", start_time=dt.datetime(2030, 4, 1, 9)),
        lambda c: c.availability.get_slots(business_id="b", start=dt.datetime(2030, 4, 1)),
        lambda c: c.availability.hold(
            business_id="b", window_start=T0, window_end=dt.datetime(2030, 4, 1, 17)
        ),
        lambda c: c.bookings.reschedule("bk_1", dt.datetime(2030, 4, 1, 9)),
        lambda c: c.bookings.confirm("hld_1", start=dt.datetime(2030, 4, 1, 9)),
        lambda c: c.bookings.iter(updated_since=dt.datetime(2030, 4, 1)),
    ],
)
async def test_naive_datetimes_are_refused_before_sending(
    h: Harness, server: FakeSlotguard, call: Callable[[Any], Any]
) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        await h.call(call)
    assert server.requests == []


# --- (d) pagination -----------------------------------------------------------------------


async def test_list_returns_a_page_and_iter_follows_cursors(
    h: Harness, server: FakeSlotguard
) -> None:
    for i in range(5):
        server.add_booking(T0 + dt.timedelta(hours=i))
    page = await h.call(lambda c: c.bookings.list(limit=2))
    assert isinstance(page, Page)
    assert [b["id"] for b in page.items] == ["bk_0001", "bk_0002"]
    assert page.has_more is True
    assert page.next_cursor == "cur_2"
    assert page.request_id == "req_ok"
    assert all(isinstance(b, Booking) and b.etag == '"1"' for b in page)
    last = await h.call(lambda c: c.bookings.list(limit=2, cursor="cur_4"))
    assert [b["id"] for b in last] == ["bk_0005"]
    assert (last.has_more, last.next_cursor) == (False, None)

    server.requests.clear()
    items = await h.collect(lambda c: c.bookings.iter(limit=2, status=["confirmed", "cancelled"]))
    assert [b["id"] for b in items] == [f"bk_{i:04d}" for i in range(1, 6)]
    cursors = [parse_qs(r.url.query.decode()).get("cursor") for r in server.requests]
    assert cursors == [None, ["cur_2"], ["cur_4"]]
    assert parse_qs(server.requests[0].url.query.decode())["status"] == ["confirmed,cancelled"]


async def test_iter_stops_on_a_repeated_cursor(h: Harness, server: FakeSlotguard) -> None:
    looping = _ok(200, [{"id": "bk_1", "version": 1}], has_more=True, next_cursor="same")
    server.faults = [canned(looping)] * 3
    with pytest.raises(SlotguardError, match="same cursor"):
        await h.collect(lambda c: c.bookings.iter(cursor="same"))


async def test_businesses_and_meeting_classes_paginate_too(h: Harness) -> None:
    assert [b["id"] for b in await h.collect(lambda c: c.businesses.iter())] == ["businesses_1"]
    classes = await h.collect(lambda c: c.meeting_classes.iter(limit=10))
    assert [m["id"] for m in classes] == ["meeting-classes_1"]


# --- (e) If-Match -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        (3, '"3"'),
        ("3", '"3"'),
        ('"3"', '"3"'),
        ('W/"3"', 'W/"3"'),
        ("*", "*"),
        (Booking({"version": 3}), '"3"'),
    ],
)
def test_format_if_match(given: Any, sent: str) -> None:
    assert format_if_match(given) == sent


@pytest.mark.parametrize("bad", ["abc", '"3', "", 0, True, 1.5, Booking({})])
def test_format_if_match_rejects_garbage(bad: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        format_if_match(bad)


async def test_update_sends_if_match_and_exactly_the_given_fields(
    h: Harness, server: FakeSlotguard
) -> None:
    server.add_booking(T0)
    booking = await h.call(lambda c: c.bookings.get("bk_0001"))
    assert booking.etag == '"1"'
    assert booking.version == 1
    updated = await h.call(
        lambda c: c.bookings.update(
            "bk_0001",
            if_match=booking,
            title="Interview",
            description=None,
            metadata={"crm": "42", "old": None},
        )
    )
    request = server.requests[-1]
    assert request.method == "PATCH"
    assert request.headers["If-Match"] == '"1"'
    assert request.headers["Idempotency-Key"]
    assert json.loads(request.content) == {
        "title": "Interview",
        "description": None,
        "metadata": {"crm": "42", "old": None},
    }
    assert isinstance(updated, Booking)
    assert (updated.version, updated.etag) == (2, '"2"')
    await h.call(lambda c: c.bookings.update("bk_0001", if_match=2, title="x"))
    assert server.requests[-1].headers["If-Match"] == '"2"'
    with pytest.raises(VersionConflictError) as info:
        await h.call(lambda c: c.bookings.update("bk_0001", if_match='W/"1"', title="y"))
    assert server.requests[-1].headers["If-Match"] == 'W/"1"'
    assert info.value.status == 412
    assert info.value.current_version == 3


async def test_update_requires_if_match(h: Harness, server: FakeSlotguard) -> None:
    kwargs: dict[str, Any] = {"title": "x"}
    with pytest.raises(TypeError, match="if_match"):
        await h.call(lambda c: c.bookings.update("bk_1", **kwargs))
    with pytest.raises(TypeError, match="if_match"):
        await h.call(lambda c: c.bookings.update("bk_1", if_match=None, **kwargs))
    assert server.requests == []


async def test_cancel_and_reschedule_if_match_is_optional(
    h: Harness, server: FakeSlotguard
) -> None:
    server.add_booking(T0)
    moved = await h.call(lambda c: c.bookings.reschedule("bk_0001", T0 + dt.timedelta(hours=1)))
    assert "If-Match" not in server.requests[-1].headers
    assert json.loads(server.requests[-1].content) == {"start_time": "2030-04-01T10:00:00Z"}
    assert moved["start_time"] == "2030-04-01T10:00:00Z"
    cancelled = await h.call(lambda c: c.bookings.cancel("bk_0001", "sick", if_match=moved))
    assert server.requests[-1].headers["If-Match"] == '"2"'
    assert json.loads(server.requests[-1].content) == {"reason": "sick"}
    assert (cancelled["status"], cancelled.version) == ("cancelled", 3)
    with pytest.raises(StateError) as info:
        await h.call(lambda c: c.bookings.reschedule("bk_0001", "2030-04-01T11:00:00Z"))
    assert info.value.code == "booking_not_active"


# --- (f) the rest of the surface, on both clients -----------------------------------------


async def test_confirm_returns_booking_with_etag(h: Harness, server: FakeSlotguard) -> None:
    result = await h.call(
        lambda c: c.bookings.confirm(
            "hld_1", start=T0, title="Intro", customer_email=None, attendees=[{"email": "a@x.io"}]
        )
    )
    assert isinstance(result, Confirmation)
    assert result["booking_id"] == "bk_0001"
    assert isinstance(result.booking, Booking)
    assert result.booking.etag == '"1"'
    assert result["booking"]["title"] == "Intro"
    request = server.requests[-1]
    assert request.url.path == "/v1/bookings/hld_1/confirm"
    assert json.loads(request.content) == {
        "start": "2030-04-01T09:00:00Z",
        "title": "Intro",
        "attendees": [{"email": "a@x.io"}],
    }
    with pytest.raises(StateError) as info:
        await h.call(lambda c: c.bookings.confirm("hld_gone"))
    assert (info.value.status, info.value.code) == (410, "hold_expired")


async def test_created_booking_has_location_etag_and_request_id(h: Harness) -> None:
    booking = await h.call(_create(metadata={"k": "v"}, customer_name=None))
    assert isinstance(booking, Booking)
    assert booking.id == "bk_0001"
    assert booking["metadata"] == {"k": "v"}
    assert booking.etag == '"1"'
    assert booking.location == "/v1/bookings/bk_0001"
    assert booking.request_id == "req_ok"
    assert json.loads(json.dumps(booking)) == dict(booking)


async def test_holds_businesses_meeting_classes_rules(h: Harness, server: FakeSlotguard) -> None:
    released = await h.call(lambda c: c.holds.release("hld_1"))
    assert (released["status"], server.requests[-1].method) == ("released", "DELETE")
    assert (await h.call(lambda c: c.holds.get("hld_1")))["status"] == "active"
    biz = await h.call(
        lambda c: c.businesses.create(
            name="Acme", timezone="Europe/Berlin", email=None, rules={"buffer_minutes": 5}
        )
    )
    assert isinstance(biz, ApiObject)
    assert json.loads(server.requests[-1].content) == {
        "name": "Acme",
        "timezone": "Europe/Berlin",
        "rules": {"buffer_minutes": 5},
    }
    await h.call(lambda c: c.businesses.update("biz 1/x", name="New", email=None))
    assert server.requests[-1].url.raw_path == b"/v1/businesses/biz%201%2Fx"
    assert json.loads(server.requests[-1].content) == {"name": "New", "email": None}
    await h.call(lambda c: c.businesses.effective_rules("biz_1"))
    assert server.requests[-1].url.path == "/v1/businesses/biz_1/rules"
    page = await h.call(lambda c: c.businesses.list(limit=5))
    assert page.items == [{"id": "businesses_1"}]
    await h.call(
        lambda c: c.meeting_classes.create(name="interview", display_name="Interview", priority=80)
    )
    await h.call(lambda c: c.meeting_classes.update("interview", priority=90))
    assert server.requests[-1].url.path == "/v1/meeting-classes/interview"
    await h.call(lambda c: c.meeting_classes.get("interview"))
    await h.call(lambda c: c.meeting_classes.delete("interview"))
    assert server.requests[-1].method == "DELETE"
    hours = [{"days": ["mon"], "start": dt.time(9), "end": dt.time(17, 30)}]
    await h.call(lambda c: c.rules.put_defaults(working_hours=hours, max_meetings_per_day=None))
    request = server.requests[-1]
    assert request.method == "PUT"
    assert json.loads(request.content) == {
        "working_hours": [{"days": ["mon"], "start": "09:00", "end": "17:30"}],
        "max_meetings_per_day": None,
    }
    assert await h.call(lambda c: c.rules.get_defaults()) == {"buffer_minutes": 0}


async def test_request_escape_hatch(h: Harness, server: FakeSlotguard) -> None:
    response = await h.call(lambda c: c.request("POST", "/v1/agents", json={"name": "bot"}))
    assert response.status == 201
    assert response.data == {"id": "agents_1", "name": "bot"}
    assert response.request_id == "req_ok"
    assert server.requests[-1].headers["Idempotency-Key"]


@pytest.mark.parametrize(
    ("call", "exc_type"),
    [
        (lambda c: c.availability.get_slots(business_idd="x"), TypeError),
        (lambda c: c.availability.hold(business_id="x", window_start=T0), TypeError),
        (lambda c: c.bookings.create(start_time=T0, idempotency_key=""), ValueError),
        (lambda c: c.bookings.create(start_time=T0, idempotency_key="ключ"), ValueError),
        (lambda c: c.bookings.get(""), ValueError),
        (lambda c: c.bookings.update("bk_1", if_match=1), ValueError),
        (lambda c: c.bookings.cancel("bk_1", if_match="v1"), ValueError),
    ],
)
async def test_bad_arguments_fail_before_sending(
    h: Harness, server: FakeSlotguard, call: Callable[[Any], Any], exc_type: type[Exception]
) -> None:
    with pytest.raises(exc_type):
        await h.call(call)
    assert server.requests == []


def test_sync_client_context_manager_closes() -> None:
    with Client(API_KEY, transport=httpx.MockTransport(FakeSlotguard())) as client:
        assert client.rules.get_defaults() == {"buffer_minutes": 0}
    assert client._http.is_closed


async def test_async_client_context_manager_closes() -> None:
    async with AsyncClient(API_KEY, transport=httpx.MockTransport(FakeSlotguard())) as client:
        assert await client.rules.get_defaults() == {"buffer_minutes": 0}
    assert client._http.is_closed


def test_base_url_and_headers() -> None:
    server = FakeSlotguard()
    with Client(API_KEY, "http://sg.example:9000/", transport=httpx.MockTransport(server)) as c:
        c.rules.get_defaults()
    request = server.requests[0]
    assert str(request.url) == "http://sg.example:9000/v1/rules/defaults"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["User-Agent"].startswith("slotguard-python/")
    with pytest.raises(ValueError, match="api_key"):
        Client("")


@pytest.mark.parametrize(
    "response",
    [
        _error(429, "rate_limited", "slow down", headers={"Retry-After": "7"}),
        _error(500, "internal_error", "oops"),
        httpx.Response(500, text="Internal Server Error"),
    ],
)
async def test_rate_limits_and_server_errors_are_retried_with_the_same_key(
    h: Harness, server: FakeSlotguard, response: httpx.Response
) -> None:
    server.faults = [canned(response)]
    booking = await h.call(_create())
    assert booking["status"] == "confirmed"
    assert len(server.requests) == 2
    keys = {r.headers["Idempotency-Key"] for r in server.requests}
    assert len(keys) == 1
    assert len(h.sleeps) == 1
    if response.status_code == 429:
        assert h.sleeps == [7.0]


async def test_objects_carry_the_servers_clock_from_the_date_header() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        headers = {"Date": "Wed, 01 Apr 2026 09:00:00 GMT"} if "dated" in request.url.path else {}
        body = {"data": {"hold_id": "hld_1"}, "meta": {"request_id": "req_1"}}
        return httpx.Response(200, json=body, headers=headers)

    async with AsyncClient("sg_live_x", "http://t", transport=httpx.MockTransport(answer)) as c:
        dated = await c.holds.get("dated")
        bare = await c.holds.get("bare")
    assert dated.server_time == dt.datetime(2026, 4, 1, 9, 0, tzinfo=dt.UTC)
    assert bare.server_time is None
