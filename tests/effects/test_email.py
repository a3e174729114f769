"""Booking mails: content, iCalendar invites, and delivery to a real aiosmtpd server."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from icalendar import Calendar, Event
from structlog.testing import capture_logs

from slotguard.effects.email import (
    BookingMail,
    EmailKind,
    LogMailSender,
    MailDeliveryError,
    MemoryMailSender,
    SmtpMailSender,
    build_messages,
    mail_sender_from_settings,
)

from .conftest import SelfSignedCert, SmtpServer, free_port

FROM = "Slotguard <bookings@slotguard.test>"
NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)


def booking(**overrides: Any) -> BookingMail:
    values: dict[str, Any] = {
        "booking_id": "bk_01JTEST",
        "title": "Intro call",
        "description": "Bring the contract draft.",
        "start": datetime(2026, 4, 1, 7, 0, tzinfo=UTC),
        "end": datetime(2026, 4, 1, 7, 30, tzinfo=UTC),
        "business_name": "Acme Consulting",
        "business_email": "owner@acme.test",
        "business_timezone": "Europe/Berlin",
        "customer_email": "carol@customer.test",
        "customer_name": "Carol Customer",
        "attendees": [("dave@customer.test", "Dave"), ("CAROL@customer.test", "dup")],
        "version": 1,
        "status": "confirmed",
    }
    values.update(overrides)
    return BookingMail(**values)


def parts(msg: EmailMessage) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for part in msg.walk():
        if not part.is_multipart():
            found[part.get_content_type()] = part
    return found


def event_of(msg: EmailMessage) -> tuple[Calendar, Event]:
    calendar = Calendar.from_ical(parts(msg)["text/calendar"].get_content())
    [event] = calendar.events
    return calendar, event


# --- building -------------------------------------------------------------------------------


def test_one_message_per_recipient_deduplicated() -> None:
    messages = build_messages(booking(), "confirmation", from_addr=FROM, now=NOW)
    assert [m["To"].addresses[0].addr_spec for m in messages] == [
        "carol@customer.test",
        "dave@customer.test",
        "owner@acme.test",
    ]
    assert str(messages[0]["To"]) == "Carol Customer <carol@customer.test>"
    assert len({m["Message-ID"] for m in messages}) == 3
    # Stable across rebuilds (a retried send can be de-duplicated by mail systems) ...
    again = build_messages(booking(), "confirmation", from_addr=FROM)
    assert [m["Message-ID"] for m in again] == [m["Message-ID"] for m in messages]
    # ... but new for every version and kind.
    updated = build_messages(booking(version=2), "update", from_addr=FROM, now=NOW)
    assert not {m["Message-ID"] for m in updated} & {m["Message-ID"] for m in messages}
    for msg in messages:
        assert msg["From"] == FROM
        assert msg["X-Slotguard-Booking-Id"] == "bk_01JTEST"
        assert msg["Message-ID"].endswith("@slotguard.test>")
        assert msg.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in msg.iter_parts()] == [
            "text/plain",
            "text/html",
            "text/calendar",
        ]
        assert msg["Subject"] == "Confirmed: Intro call (Wed 1 Apr 2026 09:00 Europe/Berlin)"


def test_bad_recipient_address_is_skipped() -> None:
    mail = booking(attendees=[("not an address", "Broken")])
    with capture_logs() as logs:
        messages = build_messages(mail, "confirmation", from_addr=FROM, now=NOW)
    assert [m["To"].addresses[0].addr_spec for m in messages] == [
        "carol@customer.test",
        "owner@acme.test",
    ]
    assert [entry["event"] for entry in logs] == ["email.bad_recipient"]
    assert "not an address" not in parts(messages[0])["text/calendar"].get_content()


def test_owner_in_attendees_is_not_mailed_twice() -> None:
    mail = booking(attendees=[("Owner@Acme.test", "Boss")], customer_email=None)
    messages = build_messages(mail, "update", from_addr=FROM, now=NOW)
    assert [m["To"].addresses[0].addr_spec for m in messages] == ["Owner@Acme.test"]


def test_bodies_render_local_time_and_escape_html() -> None:
    mail = booking(title="Q&A <script>alert(1)</script>", description="Line one\nLine <two>")
    customer, _attendee, owner = build_messages(mail, "confirmation", from_addr=FROM, now=NOW)
    text = parts(customer)["text/plain"].get_content()
    html = parts(customer)["text/html"].get_content()
    assert "Hello Carol Customer," in text
    assert "Your meeting with Acme Consulting is confirmed." in text
    assert "Wednesday, 1 April 2026, 09:00-09:30 (Europe/Berlin)" in text
    assert "07:00-07:30 (UTC)" in text
    assert "Q&A <script>alert(1)</script>" in text  # plain text is not escaped
    assert "<script>" not in html
    assert "Q&amp;A &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Line &lt;two&gt;" in html
    assert "<strong>confirmed</strong>" in html
    owner_text = parts(owner)["text/plain"].get_content()
    assert "A new booking is confirmed with Carol Customer <carol@customer.test>." in owner_text
    assert owner["Reply-To"] is None
    assert customer["Reply-To"] == "Acme Consulting <owner@acme.test>"


@pytest.mark.parametrize("kind", ["confirmation", "update", "cancellation", "preemption"])
def test_plain_ascii_bodies_travel_as_7bit(kind: EmailKind) -> None:
    # The HTML template keeps its lines short, so an ordinary mail needs no
    # quoted-printable (readable source, and the stdlib skips encoding it twice to compare).
    for msg in build_messages(booking(), kind, from_addr=FROM, now=NOW):
        for part in parts(msg).values():
            assert part["Content-Transfer-Encoding"] == "7bit", part.get_content_type()


def test_long_or_non_ascii_text_still_round_trips() -> None:
    title = "Ünïcödé review " + "x" * 120
    msgs = build_messages(booking(title=title), "confirmation", from_addr=FROM, now=NOW)
    html = parts(msgs[0])["text/html"]
    assert html["Content-Transfer-Encoding"] in ("quoted-printable", "base64")
    reparsed = message_from_bytes(bytes(msgs[0]), policy=policy.default)
    assert title in parts(reparsed)["text/html"].get_content()


def test_header_injection_is_neutralised() -> None:
    mail = booking(title="Hi\r\nBcc: victim@evil.test", customer_name="Eve\nBcc: x@evil.test")
    [customer, *_] = build_messages(mail, "confirmation", from_addr=FROM, now=NOW)
    parsed = parse(customer.as_bytes())
    assert parsed["Bcc"] is None
    assert parsed["Subject"].strip().startswith("Confirmed: Hi Bcc: victim@evil.test (")
    assert parsed["To"].addresses[0].addr_spec == "carol@customer.test"
    assert "Hello Eve Bcc: x@evil.test," in parts(parsed)["text/plain"].get_content()


def test_invite_request() -> None:
    [msg, *_] = build_messages(booking(version=3), "confirmation", from_addr=FROM, now=NOW)
    assert parts(msg)["text/calendar"].get_param("method") == "REQUEST"
    calendar, event = event_of(msg)
    assert calendar["METHOD"] == "REQUEST"
    assert "slotguard" in str(calendar["PRODID"])
    assert event["UID"] == "bk_01JTEST@slotguard"
    assert event["SEQUENCE"] == 3
    assert event["STATUS"] == "CONFIRMED"
    assert event["SUMMARY"] == "Intro call"
    assert event.start == datetime(2026, 4, 1, 7, 0, tzinfo=UTC)
    assert event.end == datetime(2026, 4, 1, 7, 30, tzinfo=UTC)
    assert event.DTSTAMP == NOW
    assert event["ORGANIZER"] == "mailto:owner@acme.test"
    assert event["ORGANIZER"].params["CN"] == "Acme Consulting"
    attendees = {str(a): a.params for a in event.attendees}
    assert set(attendees) == {"mailto:carol@customer.test", "mailto:dave@customer.test"}
    assert attendees["mailto:carol@customer.test"]["PARTSTAT"] == "ACCEPTED"
    assert attendees["mailto:dave@customer.test"]["CN"] == "Dave"


def test_non_utc_input_is_written_in_utc() -> None:
    plus2 = timezone(timedelta(hours=2))
    mail = booking(
        start=datetime(2026, 4, 1, 9, 0, tzinfo=plus2),
        end=datetime(2026, 4, 1, 9, 30, tzinfo=plus2),
    )
    [msg, *_] = build_messages(mail, "confirmation", from_addr=FROM, now=NOW)
    ics = parts(msg)["text/calendar"].get_content()
    assert "DTSTART:20260401T070000Z" in ics
    assert "DTEND:20260401T073000Z" in ics
    with pytest.raises(ValueError, match="timezone-aware"):
        build_messages(booking(start=datetime(2026, 4, 1, 7)), "update", from_addr=FROM)


@pytest.mark.parametrize(
    ("kind", "method", "status", "prefix"),
    [
        ("confirmation", "REQUEST", "CONFIRMED", "Confirmed"),
        ("update", "REQUEST", "CONFIRMED", "Updated"),
        ("cancellation", "CANCEL", "CANCELLED", "Cancelled"),
        ("preemption", "CANCEL", "CANCELLED", "Cancelled"),
    ],
)
def test_kinds(kind: EmailKind, method: str, status: str, prefix: str) -> None:
    mail = booking(version=2, status="cancelled" if method == "CANCEL" else "confirmed")
    messages = build_messages(mail, kind, from_addr=FROM, now=NOW)
    for msg in messages:
        assert msg["Subject"].startswith(f"{prefix}: Intro call")
        assert parts(msg)["text/calendar"].get_param("method") == method
        calendar, event = event_of(msg)
        assert calendar["METHOD"] == method
        assert event["STATUS"] == status
        assert event["UID"] == "bk_01JTEST@slotguard"
        assert event["SEQUENCE"] == 2
    text = parts(messages[0])["text/plain"].get_content()
    if kind == "preemption":
        assert "higher-priority booking" in text


def test_uid_stable_and_sequence_follows_version() -> None:
    uids, sequences = set(), []
    history: list[tuple[int, EmailKind]] = [(1, "confirmation"), (2, "update"), (3, "cancellation")]
    for version, kind in history:
        [msg, *_] = build_messages(booking(version=version), kind, from_addr=FROM, now=NOW)
        _, event = event_of(msg)
        uids.add(str(event["UID"]))
        sequences.append(event["SEQUENCE"])
    assert uids == {"bk_01JTEST@slotguard"}
    assert sequences == [1, 2, 3]


def test_unknown_timezone_falls_back_to_utc() -> None:
    mail = booking(business_timezone="Mars/Olympus_Mons")
    [msg, *_] = build_messages(mail, "confirmation", from_addr=FROM, now=NOW)
    assert "07:00-07:30 (UTC)" in parts(msg)["text/plain"].get_content()


# --- senders without SMTP -------------------------------------------------------------------


async def test_log_sender_logs_the_whole_mail() -> None:
    [msg, *_] = build_messages(booking(), "confirmation", from_addr=FROM, now=NOW)
    with capture_logs() as logs:
        await LogMailSender().send(msg)
    [entry] = logs
    assert entry["event"] == "email.logged"
    assert entry["log_level"] == "info"
    assert entry["to"] == ["Carol Customer <carol@customer.test>"]
    assert entry["subject"] == msg["Subject"]
    assert entry["booking_id"] == "bk_01JTEST"
    assert "Your meeting with Acme Consulting is confirmed." in entry["text_body"]
    assert "<strong>confirmed</strong>" in entry["html_body"]
    assert "UID:bk_01JTEST@slotguard" in entry["calendar"]


async def test_memory_sender_keeps_messages() -> None:
    sender = MemoryMailSender()
    messages = build_messages(booking(), "confirmation", from_addr=FROM, now=NOW)
    for msg in messages:
        await sender.send(msg)
    assert sender.sent == messages


def test_mail_sender_from_settings() -> None:
    assert isinstance(mail_sender_from_settings(None), LogMailSender)
    assert isinstance(mail_sender_from_settings(""), LogMailSender)
    sender = mail_sender_from_settings("smtp://mailer:s3cr%3Aet%40@mail.example.com:2525")
    assert isinstance(sender, SmtpMailSender)
    assert (sender.hostname, sender.port) == ("mail.example.com", 2525)
    assert (sender.username, sender.password) == ("mailer", "s3cr:et@")
    assert (sender.use_tls, sender.start_tls) == (False, None)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.com", ("mail.example.com", 25, False, None, None)),
        ("smtp://mail.example.com?starttls=1", ("mail.example.com", 587, False, True, None)),
        ("smtp://mail.example.com:25?starttls=0", ("mail.example.com", 25, False, False, None)),
        ("smtps://u:p@mail.example.com", ("mail.example.com", 465, True, False, "u")),
        ("smtps://mail.example.com:2465", ("mail.example.com", 2465, True, False, None)),
    ],
)
def test_smtp_url_parsing(url: str, expected: tuple[Any, ...]) -> None:
    sender = SmtpMailSender.from_url(url)
    assert (
        sender.hostname,
        sender.port,
        sender.use_tls,
        sender.start_tls,
        sender.username,
    ) == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://mail.example.com",
        "smtp://",
        "smtp://mail.example.com?starttls=maybe",
        "smtp://mail.example.com?tls=1",
        "smtps://mail.example.com?starttls=1",
    ],
)
def test_smtp_url_rejects(url: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        SmtpMailSender.from_url(url)


# --- real SMTP server -----------------------------------------------------------------------


def parse(raw: bytes) -> EmailMessage:
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


async def test_smtp_delivers_all_parts(smtp_server: Callable[..., SmtpServer]) -> None:
    server = smtp_server()
    sender = SmtpMailSender.from_url(f"smtp://127.0.0.1:{server.port}?timeout=5")
    messages = build_messages(booking(), "confirmation", from_addr=FROM, now=NOW)
    for msg in messages:
        await sender.send(msg)

    received = server.handler.mails
    assert [m.rcpt_tos for m in received] == [
        ["carol@customer.test"],
        ["dave@customer.test"],
        ["owner@acme.test"],
    ]
    assert {m.mail_from for m in received} == {"bookings@slotguard.test"}
    carol = parse(received[0].content)
    assert carol["Subject"] == "Confirmed: Intro call (Wed 1 Apr 2026 09:00 Europe/Berlin)"
    assert carol["To"] == "Carol Customer <carol@customer.test>"
    assert carol["X-Slotguard-Booking-Id"] == "bk_01JTEST"
    assert (
        "Your meeting with Acme Consulting is confirmed."
        in parts(carol)["text/plain"].get_content()
    )
    assert "<strong>confirmed</strong>" in parts(carol)["text/html"].get_content()
    calendar, event = event_of(carol)
    assert calendar["METHOD"] == "REQUEST"
    assert event["UID"] == "bk_01JTEST@slotguard"
    assert event["SEQUENCE"] == 1


async def test_smtp_cancellation_keeps_uid(smtp_server: Callable[..., SmtpServer]) -> None:
    server = smtp_server()
    sender = SmtpMailSender.from_url(f"smtp://127.0.0.1:{server.port}")
    first = build_messages(booking(version=1), "confirmation", from_addr=FROM, now=NOW)[0]
    cancel = build_messages(booking(version=2), "cancellation", from_addr=FROM, now=NOW)[0]
    await sender.send(first)
    await sender.send(cancel)
    events = [event_of(parse(m.content)) for m in server.handler.mails]
    assert [str(c["METHOD"]) for c, _ in events] == ["REQUEST", "CANCEL"]
    assert [str(e["UID"]) for _, e in events] == ["bk_01JTEST@slotguard"] * 2
    assert [e["SEQUENCE"] for _, e in events] == [1, 2]
    assert events[1][1]["STATUS"] == "CANCELLED"


async def test_smtp_auth(smtp_server: Callable[..., SmtpServer]) -> None:
    server = smtp_server(auth=True)
    [msg, *_] = build_messages(booking(), "confirmation", from_addr=FROM, now=NOW)
    good = SmtpMailSender.from_url(f"smtp://mailer:s3cr%3Aet%40@127.0.0.1:{server.port}")
    await good.send(msg)
    assert [m.login for m in server.handler.mails] == ["mailer"]

    bad = SmtpMailSender.from_url(f"smtp://mailer:wrong@127.0.0.1:{server.port}")
    with pytest.raises(MailDeliveryError) as caught:
        await bad.send(msg)
    assert caught.value.code == 535
    assert not caught.value.permanent  # fixable configuration, keep retrying
    assert len(server.handler.mails) == 1


async def test_smtp_permanent_and_temporary_refusals(
    smtp_server: Callable[..., SmtpServer],
) -> None:
    server = smtp_server()
    sender = SmtpMailSender.from_url(f"smtp://127.0.0.1:{server.port}")

    def to(address: str) -> EmailMessage:
        mail = booking(customer_email=address, attendees=[])
        return build_messages(mail, "confirmation", from_addr=FROM, now=NOW)[0]

    with pytest.raises(MailDeliveryError) as permanent:
        await sender.send(to("bounce@customer.test"))
    assert permanent.value.permanent
    assert permanent.value.code == 550

    with pytest.raises(MailDeliveryError) as temporary:
        await sender.send(to("later@customer.test"))
    assert not temporary.value.permanent
    assert temporary.value.code == 451
    assert server.handler.mails == []


async def test_smtp_connection_refused_is_retryable() -> None:
    sender = SmtpMailSender.from_url(f"smtp://127.0.0.1:{free_port()}?timeout=2")
    [msg, *_] = build_messages(booking(), "confirmation", from_addr=FROM, now=NOW)
    with pytest.raises(MailDeliveryError) as caught:
        await sender.send(msg)
    assert not caught.value.permanent
    assert caught.value.code is None


async def test_smtp_starttls(
    smtp_server: Callable[..., SmtpServer], test_cert: SelfSignedCert
) -> None:
    server = smtp_server(starttls=test_cert.server_context())
    [msg, *_] = build_messages(booking(), "confirmation", from_addr=FROM, now=NOW)
    # No ?starttls: the upgrade happens because the server offers it.
    sender = SmtpMailSender.from_url(
        f"smtp://127.0.0.1:{server.port}", tls_context=test_cert.client_context()
    )
    await sender.send(msg)
    assert [m.tls for m in server.handler.mails] == [True]

    # A server certificate the client does not trust is an error, not a silent downgrade.
    with pytest.raises(MailDeliveryError):
        await SmtpMailSender.from_url(f"smtp://127.0.0.1:{server.port}?timeout=5").send(msg)
    assert len(server.handler.mails) == 1


async def test_smtps_implicit_tls(
    smtp_server: Callable[..., SmtpServer], test_cert: SelfSignedCert
) -> None:
    server = smtp_server(implicit_tls=test_cert.server_context())
    [msg, *_] = build_messages(booking(), "confirmation", from_addr=FROM, now=NOW)
    sender = SmtpMailSender.from_url(
        f"smtps://127.0.0.1:{server.port}?timeout=5", tls_context=test_cert.client_context()
    )
    await sender.send(msg)
    assert [m.tls for m in server.handler.mails] == [True]
