"""Booking mails through the outbox to a real SMTP server (aiosmtpd on 127.0.0.1)."""

from __future__ import annotations

import datetime as dt
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from icalendar import Calendar

from slotguard.config import Settings
from slotguard.effects.email import LogMailSender, SmtpMailSender
from slotguard.effects.worker import mailer_from_settings
from tests.conftest import Tenant

from .conftest import (
    Clock,
    Smtp,
    book,
    future_day,
    idem,
    iso,
    make_business,
    make_worker,
    messages,
)

H = dt.timedelta(hours=1)


def parse(raw: bytes) -> EmailMessage:
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def invite(msg: EmailMessage) -> tuple[str, Any]:
    for part in msg.walk():
        if part.get_content_type() == "text/calendar":
            cal = Calendar.from_ical(part.get_content())
            [event] = cal.walk("VEVENT")
            return str(cal["METHOD"]), event
    raise AssertionError("no text/calendar part")


def to(msg: EmailMessage) -> str:
    [address] = msg["To"].addresses
    return str(address.addr_spec)


def mails_for(smtp: Smtp, booking_id: str) -> list[EmailMessage]:
    found = [parse(m.content) for m in smtp.handler.mails]
    return [m for m in found if m["X-Slotguard-Booking-Id"] == booking_id]


async def test_confirmation_update_cancellation_with_invites(otenant: Tenant, smtp: Smtp) -> None:
    t = otenant
    biz = await make_business(t)
    start = future_day() + 9 * H
    b = await book(
        t,
        biz["id"],
        start,
        title="Intro call",
        attendees=[{"email": "bob@team.example.com", "display_name": "Bob"}],
    )
    mailer = SmtpMailSender.from_url(smtp.url)
    async with make_worker(t.store.db, mailer=mailer) as worker:
        assert await worker.run_once() == 1
        sent = mails_for(smtp, b["id"])
        assert sorted(to(m) for m in sent) == [
            "ada@customer.example.com",
            "bob@team.example.com",
            "owner@biz.example.com",
        ]
        for m in sent:
            assert str(m["From"]) == "Slotguard <bookings@slotguard.test>"
            assert m["Subject"].startswith("Confirmed: Intro call")
            types = [p.get_content_type() for p in m.walk()]
            assert {"text/plain", "text/html", "text/calendar"} <= set(types)
            method, event = invite(m)
            assert method == "REQUEST"
            assert str(event["UID"]) == f"{b['id']}@slotguard" and int(event["SEQUENCE"]) == 1
        body = sent[0].get_body(("plain",))
        assert body is not None and "Europe/Paris" in body.get_content()

        r = await t.client.post(
            f"/v1/bookings/{b['id']}/reschedule",
            json={"start_time": iso(start + H)},
            headers=t.headers(**idem()),
        )
        assert r.status_code == 200
        r = await t.client.post(
            f"/v1/bookings/{b['id']}/cancel", json={}, headers=t.headers(**idem())
        )
        assert r.status_code == 200
        assert await worker.run_once() == 2

    sent = mails_for(smtp, b["id"])
    assert len(sent) == 9
    by_subject: dict[str, list[EmailMessage]] = {}
    for m in sent:
        by_subject.setdefault(str(m["Subject"]).split(":")[0], []).append(m)
    assert {k: len(v) for k, v in by_subject.items()} == {
        "Confirmed": 3,
        "Updated": 3,
        "Cancelled": 3,
    }
    method, event = invite(by_subject["Updated"][0])
    assert method == "REQUEST" and int(event["SEQUENCE"]) == 2
    assert start + H == event.DTSTART
    method, event = invite(by_subject["Cancelled"][0])
    assert method == "CANCEL" and int(event["SEQUENCE"]) == 3
    assert str(event["UID"]) == f"{b['id']}@slotguard"
    assert all(r.status == "delivered" for r in await messages(t.store.db, booking_id=b["id"]))


async def test_refused_recipients_temporary_retried_alone_permanent_skipped(
    otenant: Tenant, smtp: Smtp
) -> None:
    t = otenant
    biz = await make_business(t)
    b = await book(
        t,
        biz["id"],
        future_day() + 9 * H,
        attendees=[{"email": "later@team.example.com"}, {"email": "bounce@team.example.com"}],
    )
    clock = Clock()
    mailer = SmtpMailSender.from_url(smtp.url)
    async with make_worker(t.store.db, mailer=mailer, clock=clock) as worker:
        await worker.run_once()
        [row] = await messages(t.store.db, kind="email")
        assert row.status == "pending" and "451" in (row.last_error or "")
        assert len(row.progress["sent"]) == 2  # customer and owner
        assert next(iter(row.progress["refused"].values())).startswith("bounce@")
        assert sorted(to(m) for m in mails_for(smtp, b["id"])) == [
            "ada@customer.example.com",
            "owner@biz.example.com",
        ]
        # The retry mails only the recipient still missing (refused again here).
        clock.set(row.next_attempt_at + dt.timedelta(seconds=1))
        await worker.run_once()
        assert len(mails_for(smtp, b["id"])) == 2
        [row] = await messages(t.store.db, kind="email")
        assert row.attempts == 2 and row.status == "pending"


async def test_smtp_down_keeps_the_mail_waiting(otenant: Tenant, smtp: Smtp) -> None:
    t = otenant
    biz = await make_business(t)
    b = await book(t, biz["id"], future_day() + 9 * H)
    clock = Clock()
    down = SmtpMailSender(hostname="127.0.0.1", port=1, timeout=2)
    async with make_worker(t.store.db, mailer=down, clock=clock) as worker:
        await worker.run_once()
    [row] = await messages(t.store.db, kind="email")
    assert row.status == "pending" and "SMTP failure" in (row.last_error or "")
    clock.set(row.next_attempt_at + dt.timedelta(seconds=1))
    async with make_worker(
        t.store.db, mailer=SmtpMailSender.from_url(smtp.url), clock=clock
    ) as worker:
        assert await worker.run_once() == 1
    assert len(mails_for(smtp, b["id"])) == 2
    assert (await messages(t.store.db, kind="email"))[0].status == "delivered"


class SpyLogSender(LogMailSender):
    """The log sender, remembering what it logged (structlog caches its loggers, so
    capturing the log lines themselves depends on test order)."""

    def __init__(self) -> None:
        self.seen: list[EmailMessage] = []

    async def send(self, msg: EmailMessage) -> None:
        self.seen.append(msg)
        await super().send(msg)


async def test_without_smtp_mails_are_logged(otenant: Tenant) -> None:
    settings = Settings.model_validate({"SLOTGUARD_SMTP_URL": ""})
    assert isinstance(mailer_from_settings(settings), LogMailSender)
    t = otenant
    biz = await make_business(t, email=None)
    b = await book(t, biz["id"], future_day() + 9 * H)
    mailer = SpyLogSender()
    async with make_worker(t.store.db, mailer=mailer) as worker:
        assert await worker.run_once() == 1
    [msg] = mailer.seen
    assert msg["X-Slotguard-Booking-Id"] == b["id"]
    method, event = invite(msg)
    # No business address: the invite's organizer falls back to the sender address.
    assert method == "REQUEST" and "bookings@slotguard.test" in str(event["ORGANIZER"])
    assert (await messages(t.store.db, kind="email"))[0].status == "delivered"
