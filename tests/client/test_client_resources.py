"""Every resource of the client (API.md §10) against one real ``slotguard serve`` process.

Complements ``test_client_integration.py`` (bookings, holds, idempotency) with the rest of
the contract: availability check, ``me``, busy time, agents and keys, calendars (an ``ics``
feed served by a local HTTP server), webhook endpoints (deliveries to a local receiver,
verified with ``slotguard.webhooks.verify``), the audit log with its filters and export, and
cursor iteration of each list. Every typed result is checked field by field against its
model: each annotated attribute is present in the server's JSON (unless optional) and reads
as its annotated type. Sync and async flavours both run every scenario.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
import time
import types
import typing
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import pytest

from slotguard.client import ApiObject, AuthError, ForbiddenError, NotFoundError, Page
from slotguard.client import _models as models
from slotguard.webhooks import WebhookVerificationError, verify
from tests.client.test_client_integration import (  # the scenario harness and its fixtures
    ALL_DAY,
    Harness,
    at,
    collect,
    flavor,
    h,
    make,
    run,
    z,
)
from tests.race.conftest import Cluster, RaceDatabase, cluster_on

pytestmark = pytest.mark.slow
__all__ = ["flavor", "h", "make"]  # fixtures used by name


# --- local HTTP peers: an ics feed and a webhook receiver ---------------------------------


class Peer:
    """A local HTTP server: serves ``ics`` at /cal.ics, records every POST (raw bytes)."""

    def __init__(self) -> None:
        self.ics = ""
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self._cond = threading.Condition()
        peer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = peer.ics.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/calendar")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with peer._cond:
                    peer.received.append((self.path, dict(self.headers.items()), raw))
                    peer._cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                del format, args

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def wait_for(
        self, path: str, predicate: Any, timeout: float = 30.0
    ) -> tuple[dict[str, str], bytes]:
        """The first POST to ``path`` whose JSON body satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for p, headers, raw in self.received:
                    if p == path and predicate(json.loads(raw)):
                        return headers, raw
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(p, raw[:120]) for p, _, raw in self.received]
                    raise AssertionError(f"no matching delivery to {path}; got {seen}")
                self._cond.wait(left)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def peer() -> Iterator[Peer]:
    p = Peer()
    yield p
    p.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One server that may reach local webhook receivers and calendar feeds."""
    workdir: Path = tmp_path_factory.mktemp("client_resources")
    db = RaceDatabase("sqlite", f"sqlite:///{workdir / 'slotguard.db'}")
    with pytest.MonkeyPatch.context() as mp, cluster_on(db, workdir) as cluster:
        mp.setenv("SLOTGUARD_ALLOW_PRIVATE_WEBHOOKS", "1")
        mp.setenv("SLOTGUARD_ALLOW_PRIVATE_CALENDARS", "1")
        cluster.start(1)
        yield cluster


@pytest.fixture(autouse=True)
def _server_stays_up(live: Cluster) -> Iterator[None]:
    yield
    live.check_alive()


# --- typed results, checked against the real JSON -----------------------------------------


def _optional(hint: Any) -> bool:
    return get_origin(hint) in (Union, types.UnionType) and type(None) in get_args(hint)


def _matches(hint: Any, value: Any) -> bool:
    if value is None:
        return _optional(hint) or hint is Any
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_matches(a, value) for a in get_args(hint) if a is not type(None))
    if origin is Literal:
        return value in get_args(hint)
    if hint is dt.datetime:
        return isinstance(value, dt.datetime) and value.tzinfo is not None
    if origin is list:
        (arg,) = get_args(hint) or (Any,)
        return isinstance(value, list) and all(_matches(arg, v) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if hint is Any:
        return True
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(hint, type) and issubclass(hint, ApiObject):
        return isinstance(value, hint) and typed(value, hint) is value
    return isinstance(value, hint)


def typed(obj: Any, cls: type[models.TypedObject], *, absent: tuple[str, ...] = ()) -> Any:
    """``obj`` is a ``cls`` whose every annotated field is sent and reads as its type."""
    assert type(obj) is cls, (type(obj), cls)
    hints = {
        k: v
        for k, v in get_type_hints(cls).items()
        if not k.startswith("_") and k not in ("request_id", "location", "replayed")
    }
    for name, hint in hints.items():
        if name in absent:
            continue
        assert name in obj or _optional(hint), f"{cls.__name__}.{name} not in {sorted(obj)}"
        value = getattr(obj, name)
        assert _matches(hint, value), f"{cls.__name__}.{name}: {value!r} is not {hint}"
    return obj


# --- scenarios ----------------------------------------------------------------------------


async def new_business(h: Harness, **fields: Any) -> models.Business:
    b = await run(
        h.c.businesses.create(
            name=f"R {h.flavor} {uuid.uuid4().hex[:6]}",
            timezone=fields.pop("timezone", "UTC"),
            rules={"working_hours": ALL_DAY},
            **fields,
        )
    )
    return typed(b, models.Business)


async def test_me_and_availability_check(h: Harness) -> None:
    me = typed(await run(h.c.me()), models.Me)
    assert me.agent_id is None and "admin" in me.scopes  # the bootstrap admin key
    assert abs((me.now - dt.datetime.now(dt.UTC)).total_seconds()) < 60
    biz = await new_business(h)
    booked = await run(h.c.bookings.create(business_id=biz.id, start_time=at(9), end_time=at(10)))
    free = typed(
        await run(h.c.availability.check(business_id=biz.id, start_time=at(11), end_time=at(12))),
        models.AvailabilityCheck,
        absent=("reason", "next_available"),
    )
    assert free.available is True and free.start_time == at(11)
    taken = typed(
        await run(h.c.availability.check(business_id=biz.id, start_time=at(9, 30))),
        models.AvailabilityCheck,
    )
    assert taken.available is False and taken.reason == "overlaps_booking"
    nxt = typed(taken.next_available, models.Slot)
    assert nxt.start == at(10)
    assert booked.id.startswith("bk_")
    held = typed(
        await run(
            h.c.availability.hold(
                business_id=biz.id, window_start=at(13), window_end=at(14), duration_minutes=30
            )
        ),
        models.HoldDecision,
    )
    hold = typed(await run(h.c.holds.get(held.hold_id)), models.Hold)
    assert hold.status == "active" and hold.slots[0].start == at(13)
    released = typed(await run(h.c.holds.release(held.hold_id)), models.Hold)
    assert released.status == "released"


async def test_busy_time_and_iteration(h: Harness) -> None:
    biz = await new_business(h)
    made = []
    for i in range(5):
        busy = await run(
            h.c.businesses.add_busy(
                biz.id, start=at(8 + i), end=at(8 + i, 30), title=f"b{i}", external_id=f"x{i}"
            )
        )
        made.append(typed(busy, models.BusyInterval).id)
    page = await run(h.c.businesses.list_busy(biz.id, limit=2))
    assert isinstance(page, Page) and len(page.items) == 2 and page.has_more
    every = await collect(h.c.businesses.list_all_busy(biz.id, limit=2))
    assert [b.id for b in every] == made
    slots = await run(
        h.c.availability.get_slots(business_id=biz.id, start=at(8), end=at(9), duration_minutes=30)
    )
    assert [s.start for s in typed(slots, models.SlotList).slots] == [at(8, 30)]
    await run(h.c.businesses.delete_busy(biz.id, made[0]))
    assert len(await collect(h.c.businesses.list_all_busy(biz.id))) == 4

    # Cursor iteration over the other lists: businesses, meeting classes.
    names = {f"it_{h.flavor}_{uuid.uuid4().hex[:6]}" for _ in range(3)}
    for name in names:
        await run(h.c.meeting_classes.create(name=name, display_name="Call", duration_minutes=20))
    classes = await collect(h.c.meeting_classes.list_all(limit=2))
    assert names <= {c.name for c in classes}
    for c in classes:
        typed(c, models.MeetingClass)
    assert len({c.name for c in classes}) == len(classes)
    businesses = await collect(h.c.businesses.list_all(limit=1))
    assert biz.id in {b.id for b in businesses}
    effective = typed(await run(h.c.businesses.effective_rules(biz.id)), models.EffectiveRules)
    assert effective.sources["working_hours"] == "business"


async def test_agents_keys_and_scopes(h: Harness, make: Any, live: Cluster) -> None:
    biz = await new_business(h)
    agent = typed(
        await run(
            h.c.agents.create(
                name="reader", scopes=["availability:read"], allowed_business_ids=[biz.id]
            )
        ),
        models.Agent,
    )
    assert agent.location == f"/v1/agents/{agent.id}"
    key = typed(await run(h.c.agents.create_key(agent.id, name="k1")), models.ApiKey)
    assert key.key and key.key.startswith("sg_live_")
    listed = await run(h.c.agents.list_keys(agent.id))
    assert [k.id for k in listed.items] == [key.id]
    assert listed.items[0].key is None  # no secret after creation
    typed(listed.items[0], models.ApiKey)
    assert typed(await run(h.c.keys.get(key.id)), models.ApiKey).revoked_at is None

    as_agent = make(api_key=key.key)
    me = await run(as_agent.c.me())
    assert me.agent_id == agent.id and me.allowed_business_ids == [biz.id]
    check = await run(as_agent.c.availability.check(business_id=biz.id, start_time=at(11)))
    assert check.available is True
    with pytest.raises(ForbiddenError) as denied:
        await run(as_agent.c.bookings.create(business_id=biz.id, start_time=at(11)))
    assert denied.value.details["required_scope"] == "bookings:write"

    patched = await run(h.c.agents.update(agent.id, name="renamed"))
    assert patched.name == "renamed" and patched.scopes == ["availability:read"]
    agents = await collect(h.c.agents.list_all(limit=1))
    assert agent.id in {a.id for a in agents}

    revoked = typed(await run(h.c.keys.revoke(key.id)), models.ApiKey)
    assert revoked.revoked_at is not None
    with pytest.raises(AuthError):
        await run(as_agent.c.me())
    await run(h.c.agents.delete(agent.id))
    with pytest.raises(NotFoundError):
        await run(h.c.agents.get(agent.id))


ICS = """BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//slotguard tests//EN\r
BEGIN:VEVENT\r
UID:{uid}\r
DTSTAMP:20260101T000000Z\r
DTSTART:{start}\r
DTEND:{end}\r
SUMMARY:Private dentist appointment\r
END:VEVENT\r
END:VCALENDAR\r
"""


def ics_time(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


async def test_calendars_ics_feed_blocks_slots(h: Harness, peer: Peer) -> None:
    biz = await new_business(h)
    peer.ics = ICS.format(
        uid=uuid.uuid4().hex, start=ics_time(at(12, day=1)), end=ics_time(at(13, day=1))
    )
    cal = typed(
        await run(
            h.c.calendars.create(biz.id, provider="ics", url=f"{peer.url}/cal.ics", name="ext")
        ),
        models.Calendar,
        absent=("last_error", "url", "calendar_id", "last_synced_at"),
    )
    assert cal.provider == "ics" and cal.role == "busy"
    synced = await run(h.c.calendars.sync(biz.id, cal.id))
    assert synced.status == "active", synced
    busy = await run(h.c.calendars.busy(biz.id, cal.id, start=at(0, day=1), end=at(0, day=2)))
    assert [(b.start, b.end) for b in busy.items] == [(at(12, day=1), at(13, day=1))]
    assert "title" not in busy.items[0] or busy.items[0]["title"] is None  # no titles leak
    slots = await run(
        h.c.availability.get_slots(
            business_id=biz.id, start=at(12, day=1), end=at(13, day=1), duration_minutes=30
        )
    )
    assert slots.slots == []
    assert [c.id for c in await collect(h.c.calendars.list_all(biz.id))] == [cal.id]
    renamed = await run(h.c.calendars.update(biz.id, cal.id, name="renamed"))
    assert renamed.name == "renamed"
    assert (await run(h.c.calendars.get(biz.id, cal.id))).name == "renamed"
    await run(h.c.calendars.delete(biz.id, cal.id))
    with pytest.raises(NotFoundError):
        await run(h.c.calendars.get(biz.id, cal.id))


async def test_webhook_endpoints_and_a_verified_delivery(h: Harness, peer: Peer) -> None:
    path = f"/hook/{h.flavor}/{uuid.uuid4().hex[:8]}"
    endpoint = typed(
        await run(
            h.c.webhook_endpoints.create(
                url=f"{peer.url}{path}", events=["booking.created"], description="tests"
            )
        ),
        models.WebhookEndpoint,
        absent=("disabled_reason", "previous_secret_expires_at"),
    )
    secret = endpoint.secret
    assert secret and secret.startswith("whsec_")
    assert (await run(h.c.webhook_endpoints.get(endpoint.id))).secret is None

    biz = await new_business(h)
    booking = await run(h.c.bookings.create(business_id=biz.id, start_time=at(15), end_time=at(16)))
    headers, raw = peer.wait_for(path, lambda e: e.get("data", {}).get("id") == booking.id)
    event = verify(raw, headers, secret)
    assert event.type == "booking.created" and event.data["id"] == booking.id
    assert event.id == headers["webhook-id"] and event.id.startswith("evt_")
    assert isinstance(event.created_at, dt.datetime)
    # Tampered bytes, another secret, an old delivery: refused.
    with pytest.raises(WebhookVerificationError):
        verify(raw.replace(booking.id.encode(), b"bk_forged"), headers, secret)
    with pytest.raises(WebhookVerificationError):
        verify(b"\xff" + raw, headers, secret)
    with pytest.raises(WebhookVerificationError):
        verify(raw, {k: v for k, v in headers.items() if k.lower() != "webhook-signature"}, secret)
    other = (await run(h.c.webhook_endpoints.rotate_secret(endpoint.id))).secret
    assert other and other != secret
    with pytest.raises(WebhookVerificationError):
        verify(raw, headers, other)
    assert verify(raw, headers, [other, secret]).id == event.id
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
    with pytest.raises(WebhookVerificationError):
        verify(raw, headers, secret, now=later)

    deliveries = await run(h.c.webhook_endpoints.deliveries(endpoint.id))
    assert deliveries.items and all(d.succeeded for d in deliveries.items)
    for d in deliveries.items:
        typed(d, models.WebhookDelivery, absent=("error",))
    tested = await run(h.c.webhook_endpoints.test(endpoint.id))
    assert isinstance(tested, ApiObject)
    # After the rotation both secrets sign (grace period): the test delivery verifies with
    # the new one alone.
    t_headers, t_raw = peer.wait_for(path, lambda e: e.get("type") != "booking.created")
    assert verify(t_raw, t_headers, other).type == json.loads(t_raw)["type"]

    updated = await run(h.c.webhook_endpoints.update(endpoint.id, description="changed"))
    assert updated.description == "changed"
    assert endpoint.id in {e.id for e in await collect(h.c.webhook_endpoints.list_all(limit=1))}
    await run(h.c.webhook_endpoints.delete(endpoint.id))
    with pytest.raises(NotFoundError):
        await run(h.c.webhook_endpoints.get(endpoint.id))


async def test_audit_log_filters_iteration_and_export(h: Harness) -> None:
    biz = await new_business(h)
    held = await run(
        h.c.availability.hold(
            business_id=biz.id, window_start=at(9, day=2), window_end=at(10, day=2)
        )
    )
    conf = await run(h.c.bookings.confirm(held.hold_id))
    await run(h.c.bookings.cancel(conf.booking_id, reason="test"))
    rows = await collect(h.c.audit_log.list_all(business_id=biz.id, limit=1))
    assert [r.action for r in rows] == ["hold_created", "booking_confirmed", "booking_cancelled"]
    for r in rows:
        typed(r, models.AuditEntry)
    by_hold = await collect(h.c.audit_log.list_all(hold_id=held.hold_id))
    assert [r.action for r in by_hold] == ["hold_created", "booking_confirmed"]
    by_request = await run(h.c.audit_log.list(request_id=held.request_id))
    assert [r.action for r in by_request.items] == ["hold_created"]
    assert by_request.items[0]["request_id"] == held.request_id
    # The attribute is the row's request, not the listing's response.
    assert by_request.items[0].request_id == held.request_id
    assert by_request.items[0].response_request_id == by_request.request_id
    assert by_request.request_id != held.request_id
    only = await run(h.c.audit_log.list(business_id=biz.id, action="booking_cancelled"))
    assert [r.booking_id for r in only.items] == [conf.booking_id]
    exported = await run(h.c.audit_log.export(business_id=biz.id))
    assert [r.id for r in exported] == [r.id for r in rows]
    for r in exported:
        typed(r, models.AuditEntry)


def test_typed_checker_can_fail() -> None:
    """The field checker above rejects a wrong type and a missing required field."""
    bad = models.Me({"account_id": "acc", "scopes": "admin", "now": "2026-01-01T00:00:00Z"})
    with pytest.raises(AssertionError):
        typed(bad, models.Me)
    missing = models.Slot({"start": "2026-01-01T00:00:00Z"})
    with pytest.raises(AssertionError):
        typed(missing, models.Slot)
    assert typed(models.Slot({"start": z(at(1)), "end": z(at(2))}), models.Slot)
    assert typing.get_type_hints(models.Slot)["start"] is dt.datetime
