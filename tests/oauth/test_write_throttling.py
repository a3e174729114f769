"""A throttled calendar write (Google or Microsoft answering 429, or a rate-limit 403, with
Retry-After) goes back to the outbox with its next attempt no earlier than Retry-After (the
schedule's own delay as the floor, the outbox's longest delay as the cap), through the real
outbox worker and calendar writer against the served fakes. The write is never dropped: it
is made once the wait is over, and the last attempt still fails the booking with
`calendar_write_failed` as any other failure does."""

from __future__ import annotations

import datetime as dt
import random
from email.utils import format_datetime
from typing import Any

import pytest
from sqlalchemy import select, update

from slotguard.calendars.base import parse_retry_after, retry_delay
from slotguard.effects.outbox import MAX_RETRY_DELAY_S
from slotguard.effects.webhooks import MAX_ATTEMPTS
from slotguard.store.models import AuditEntry, OutboxMessage
from tests.api.helpers import book, future_day
from tests.conftest import Store, Tenant
from tests.fakes.google import GOOGLE_ERRORS
from tests.fakes.graph import GRAPH_ERRORS
from tests.oauth.conftest import Served
from tests.oauth.engine import H, deliver
from tests.oauth.test_faults import google_calendar, graph_calendar

# (provider, fake route of the create, the canned error)
THROTTLES = {
    "google-429": ("google", "insert", GOOGLE_ERRORS["rateLimitExceeded"]),
    "google-403": ("google", "insert", GOOGLE_ERRORS["rateLimitExceeded403"]),
    "microsoft-429": ("microsoft", "create", GRAPH_ERRORS["TooManyRequests"]),
}
SLACK = dt.timedelta(seconds=30)


async def calendar_message(store: Store, booking_id: str) -> OutboxMessage:
    async with store.db.read() as s:
        (msg,) = (
            await s.scalars(
                select(OutboxMessage).where(
                    OutboxMessage.booking_id == booking_id, OutboxMessage.kind == "calendar"
                )
            )
        ).all()
    return msg


async def make_due(store: Store, message_id: str, **values: Any) -> None:
    async with store.db.write() as s:
        await s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == message_id)
            .values(next_attempt_at=dt.datetime.now(dt.UTC), **values)
        )


async def throttled_booking(
    api: Tenant, served: Served, case: str, retry_after: str
) -> tuple[Any, str, dict[str, Any]]:
    provider, route, (status, body) = THROTTLES[case]
    user = f"throttle-{case}@example.com"
    make = google_calendar if provider == "google" else graph_calendar
    biz, _ = await make(api, served, user, role="write")
    fake: Any = served.google if provider == "google" else served.graph
    fake.fail_next(route, status, body, headers={"Retry-After": retry_after}, times=1000)
    booking = (await book(api, biz["id"], future_day() + 9 * H, 30)).json()["data"]
    return fake, route, booking


@pytest.mark.parametrize("case", sorted(THROTTLES))
async def test_a_throttled_write_is_not_attempted_again_before_retry_after(
    api: Tenant, served: Served, store: Store, case: str
) -> None:
    fake, route, booking = await throttled_booking(api, served, case, "3600")
    began = dt.datetime.now(dt.UTC)
    pending = await deliver(store.db, served.settings, booking["id"], rounds=1)
    assert pending.calendar_sync_status == "pending"
    msg = await calendar_message(store, booking["id"])
    assert msg.status == "pending" and msg.attempts == 1
    assert "rate limiting" in (msg.last_error or "")
    # Not the schedule's 5 s: the hour the provider asked for (plus jitter, at most 25 %
    # from the request layer and 10 % from the outbox).
    assert msg.next_attempt_at >= began + dt.timedelta(seconds=3600)
    assert msg.next_attempt_at <= began + dt.timedelta(seconds=3600 * 1.25 * 1.1) + SLACK
    # Nothing is due before then: another round does not touch the provider.
    creates = len(fake.calls(route))
    await deliver(store.db, served.settings, booking["id"], rounds=1)
    assert len(fake.calls(route)) == creates
    assert (await calendar_message(store, booking["id"])).attempts == 1

    # The wait is over and the provider takes writes again: the event is written, once.
    fake.faults.clear()
    await make_due(store, msg.id)
    written = await deliver(store.db, served.settings, booking["id"])
    assert written.calendar_sync_status == "synced" and written.calendar_event_id
    user = f"throttle-{case}@example.com"
    if case.startswith("google"):
        assert len(fake.live_events(user)) == 1
    else:
        assert [e["id"] for e in fake.live_events(user)] == [written.calendar_event_id]
    done = await calendar_message(store, booking["id"])
    assert done.status == "delivered" and done.attempts == 2


async def test_an_absurd_retry_after_is_capped_at_the_outbox_longest_delay(
    api: Tenant, served: Served, store: Store
) -> None:
    _, _, booking = await throttled_booking(api, served, "google-429", "1e12")
    began = dt.datetime.now(dt.UTC)
    await deliver(store.db, served.settings, booking["id"], rounds=1)
    msg = await calendar_message(store, booking["id"])
    assert msg.status == "pending" and msg.attempts == 1
    cap = dt.timedelta(seconds=MAX_RETRY_DELAY_S)
    assert began + cap <= msg.next_attempt_at <= began + cap + SLACK


async def test_a_retry_after_given_as_a_date_is_honoured(
    api: Tenant, served: Served, store: Store
) -> None:
    when = dt.datetime.now(dt.UTC) + 2 * H
    _, _, booking = await throttled_booking(
        api, served, "microsoft-429", format_datetime(when, usegmt=True)
    )
    await deliver(store.db, served.settings, booking["id"], rounds=1)
    msg = await calendar_message(store, booking["id"])
    assert msg.status == "pending"
    assert msg.next_attempt_at >= when - dt.timedelta(seconds=2)  # the date has whole seconds


async def test_a_throttled_last_attempt_fails_the_booking_as_before(
    api: Tenant, served: Served, store: Store
) -> None:
    _, _, booking = await throttled_booking(api, served, "google-429", "3600")
    await deliver(store.db, served.settings, booking["id"], rounds=1)
    msg = await calendar_message(store, booking["id"])
    assert msg.status == "pending" and msg.attempts == 1
    # The attempts before the last one were made (and throttled) too.
    await make_due(store, msg.id, attempts=MAX_ATTEMPTS - 1)
    failed = await deliver(store.db, served.settings, booking["id"], rounds=1)
    assert failed.calendar_sync_status == "failed"
    dead = await calendar_message(store, booking["id"])
    assert dead.status == "dead" and dead.attempts == MAX_ATTEMPTS
    async with store.db.read() as s:
        audit = (
            await s.scalars(
                select(AuditEntry).where(
                    AuditEntry.booking_id == booking["id"],
                    AuditEntry.action == "calendar_write_failed",
                )
            )
        ).all()
    assert len(audit) == 1 and "rate limiting" in (audit[0].reason or "")


def test_retry_after_values_are_read_as_seconds_or_dates_and_never_as_infinity() -> None:
    now = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)
    assert parse_retry_after("120", now=now) == 120.0
    assert parse_retry_after(" 1.5 ", now=now) == 1.5
    assert parse_retry_after("-3", now=now) == 0.0
    assert parse_retry_after("Tue, 01 Dec 2026 11:00:00 GMT", now=now) == 3600.0
    assert parse_retry_after("Tue, 01 Dec 2026 09:00:00 GMT", now=now) == 0.0
    for bad in (None, "", "soon", "inf", "1e999", "nan"):
        assert parse_retry_after(bad, now=now) is None, bad
    rng = random.Random(1)
    assert retry_delay(None, floor=5.0, cap=60.0, rng=rng) == 5.0
    assert retry_delay(1.0, floor=5.0, cap=60.0, rng=rng) == 5.0  # the floor stays
    assert 30.0 <= retry_delay(30.0, floor=5.0, cap=60.0, rng=rng) <= 33.0
    assert retry_delay(1e12, floor=5.0, cap=60.0, rng=rng) == 60.0
