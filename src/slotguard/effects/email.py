"""Booking emails: one message per recipient with an iCalendar invite, and the senders.

``build_messages`` is pure (no I/O). Senders share one interface, as in litestar-fullstack:
``LogMailSender`` when no SMTP server is configured (the mail is logged, never dropped),
``MemoryMailSender`` for tests, ``SmtpMailSender`` for real delivery. SMTP failures raise
``MailDeliveryError`` so the outbox worker can retry; ``permanent`` tells it not to bother.
"""

from __future__ import annotations

import hashlib
import logging
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy as email_policy
from email.errors import HeaderParseError
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Final, Literal, Protocol
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiosmtplib
import jinja2
import structlog
from icalendar import Calendar, Event, vCalAddress
from icalendar.enums import STATUS

__all__ = [
    "BookingMail",
    "EmailKind",
    "LogMailSender",
    "MailDeliveryError",
    "MailSender",
    "MemoryMailSender",
    "SmtpMailSender",
    "booking_uid",
    "build_calendar",
    "build_messages",
    "mail_sender_from_settings",
]

EmailKind = Literal["confirmation", "update", "cancellation", "preemption"]
RecipientRole = Literal["customer", "attendee", "owner"]

PRODID: Final = "-//slotguard//slotguard booking//EN"
_CANCEL_KINDS: Final[frozenset[str]] = frozenset({"cancellation", "preemption"})
_SUBJECT_PREFIX: Final[dict[str, str]] = {
    "confirmation": "Confirmed",
    "update": "Updated",
    "cancellation": "Cancelled",
    "preemption": "Cancelled",
}
_TEMPLATES_DIR: Final = Path(__file__).parent / "templates"
_WHITESPACE = re.compile(r"\s+")

log = structlog.get_logger(__name__)


class _HeaderRegistry(HeaderRegistry):
    """The stdlib registry with its two costs cut: it builds a new header class with
    `type()` on every lookup, and parses the same values (From, Content-Type, MIME-Version,
    …) again for every message. Both results depend only on their arguments, and header
    objects are immutable, so they are computed once."""

    @cache  # noqa: B019 - one module-level instance, kept for the process's lifetime
    def __getitem__(self, name: str) -> type[BaseHeader]:
        return super().__getitem__(name)

    def __call__(self, name: str, value: Any) -> BaseHeader:
        if isinstance(value, str):
            return _parsed_header(self, name, value)
        return super().__call__(name, value)


@lru_cache(maxsize=1024)
def _parsed_header(registry: _HeaderRegistry, name: str, value: str) -> BaseHeader:
    return HeaderRegistry.__call__(registry, name, value)


# email.policy.default with the caching registry: the same headers, folded the same way.
_POLICY: Final = email_policy.default.clone(header_factory=_HeaderRegistry())


@dataclass(frozen=True, slots=True)
class BookingMail:
    """What a booking email needs to know, flattened so this module stays free of the store."""

    booking_id: str
    title: str
    start: datetime
    """Timezone-aware; rendered in ``business_timezone`` in the body and in UTC in the invite."""
    end: datetime
    business_name: str
    business_email: str
    business_timezone: str
    """IANA name; an unknown one falls back to UTC rather than losing the mail."""
    version: int
    """The booking's version; becomes the invite's SEQUENCE so calendars apply the latest."""
    status: str
    customer_email: str | None = None
    customer_name: str | None = None
    description: str | None = None
    attendees: Sequence[tuple[str, str | None]] = field(default_factory=tuple)
    """``(email, display_name)`` pairs."""
    organizer_email: str | None = None
    """ORGANIZER of the invite; defaults to ``business_email``."""
    manage_url: str | None = None
    """A booking page's manage link (cancel or reschedule); shown to the customer only."""


@dataclass(frozen=True, slots=True)
class _Recipient:
    email: str
    name: str | None
    role: RecipientRole


def booking_uid(booking_id: str) -> str:
    """The invite UID: stable per booking, so every update or cancel hits the same event."""
    return f"{booking_id}@slotguard"


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value.astimezone(UTC)


def _one_line(text: str) -> str:
    # Header values and display names must not carry line breaks (header injection).
    return _WHITESPACE.sub(" ", text).strip()


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _recipients(mail: BookingMail, *, warn: bool = False) -> list[_Recipient]:
    """Customer, attendees, owner: de-duplicated case-insensitively, unusable addresses left
    out (the API validates addresses; one bad stored address must not block the others)."""
    seen: set[str] = set()
    result: list[_Recipient] = []
    candidates: list[_Recipient] = []
    if mail.customer_email:
        candidates.append(_Recipient(mail.customer_email, mail.customer_name, "customer"))
    candidates.extend(_Recipient(email, name, "attendee") for email, name in mail.attendees)
    candidates.append(_Recipient(mail.business_email, mail.business_name, "owner"))
    for candidate in candidates:
        email = candidate.email.strip()
        key = email.casefold()
        if not email or key in seen:
            continue
        seen.add(key)
        if _address("", email) is None:
            if warn:
                log.warning("email.bad_recipient", booking_id=mail.booking_id, role=candidate.role)
            continue
        result.append(_Recipient(email, candidate.name, candidate.role))
    return result


def _format_range(start: datetime, end: datetime, zone: ZoneInfo, label: str) -> str:
    start_l, end_l = start.astimezone(zone), end.astimezone(zone)
    day = f"{start_l:%A}, {start_l.day} {start_l:%B %Y}"
    if start_l.date() == end_l.date():
        return f"{day}, {start_l:%H:%M}-{end_l:%H:%M} ({label})"
    end_day = f"{end_l:%A}, {end_l.day} {end_l:%B %Y}"
    return f"{day}, {start_l:%H:%M} to {end_day}, {end_l:%H:%M} ({label})"


def build_calendar(mail: BookingMail, kind: EmailKind, *, now: datetime) -> Calendar:
    """The iTIP message: METHOD REQUEST, or CANCEL for cancellation and preemption.

    The customer and the attendees are ATTENDEEs; the organizer (the business) is not
    listed as its own attendee.
    """
    cancel = kind in _CANCEL_KINDS
    organizer_email = mail.organizer_email or mail.business_email
    organizer = vCalAddress.new(organizer_email, cn=_one_line(mail.business_name))
    attendees: list[vCalAddress] = []
    listed = {organizer_email.casefold()}
    for person in _recipients(mail):
        if person.role == "owner" or person.email.casefold() in listed:
            continue
        listed.add(person.email.casefold())
        attendees.append(
            vCalAddress.new(
                person.email,
                cn=_one_line(person.name) if person.name else None,
                role="REQ-PARTICIPANT",
                # The customer chose this time themselves; other attendees were invited.
                partstat="ACCEPTED" if person.role == "customer" else "NEEDS-ACTION",
                rsvp=False,
            )
        )
    event = Event.new(
        uid=booking_uid(mail.booking_id),
        sequence=mail.version,
        stamp=_utc(now, "now"),
        start=_utc(mail.start, "start"),
        end=_utc(mail.end, "end"),
        summary=mail.title,
        description=mail.description or None,
        organizer=organizer,
        attendees=attendees,
        status=STATUS.CANCELLED if cancel else STATUS.CONFIRMED,
    )
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "CANCEL" if cancel else "REQUEST")
    calendar.add_component(event)
    return calendar


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # The templates ship with the package: no mtime check on every mail.
        auto_reload=False,
    )


def _msgid_domain(from_addr: str) -> str:
    domain = parseaddr(from_addr)[1].rpartition("@")[2]
    return domain or "slotguard.invalid"


def _message_id(mail: BookingMail, kind: EmailKind, recipient: str, domain: str) -> str:
    # Deterministic per (booking, version, kind, recipient): the worker delivers at least
    # once, and a re-sent mail with the same Message-ID is collapsed by most mail systems.
    digest = hashlib.sha256(recipient.casefold().encode()).hexdigest()[:16]
    return f"<{mail.booking_id}.v{mail.version}.{kind}.{digest}@{domain}>"


@lru_cache(maxsize=1024)  # Address objects are immutable; parsing them is not free
def _address(display_name: str, addr_spec: str) -> Address | None:
    try:
        return Address(display_name=display_name, addr_spec=addr_spec.strip())
    except (ValueError, IndexError, HeaderParseError):
        return None


def build_messages(
    mail: BookingMail, kind: EmailKind, *, from_addr: str, now: datetime | None = None
) -> list[EmailMessage]:
    """One message per recipient (customer, attendees, business owner; de-duplicated).

    Each is multipart/alternative: text/plain, text/html and the text/calendar invite, which
    is how calendar clients expect an iTIP message to arrive.
    """
    now = _utc(now or datetime.now(UTC), "now")
    start, end = _utc(mail.start, "start"), _utc(mail.end, "end")
    zone = _zone(mail.business_timezone)
    cancel = kind in _CANCEL_KINDS
    method = "CANCEL" if cancel else "REQUEST"
    ics = build_calendar(mail, kind, now=now).to_ical().decode("utf-8")

    when_local = _format_range(start, end, zone, zone.key)
    when_utc = _format_range(start, end, ZoneInfo("UTC"), "UTC")
    start_local = start.astimezone(zone)
    short_when = f"{start_local:%a} {start_local.day} {start_local:%b %Y} {start_local:%H:%M}"
    subject = _one_line(f"{_SUBJECT_PREFIX[kind]}: {mail.title} ({short_when} {zone.key})")
    customer_label = None
    if mail.customer_email:
        name = _one_line(mail.customer_name) if mail.customer_name else None
        customer_label = f"{name} <{mail.customer_email}>" if name else mail.customer_email

    env = _environment()
    text_template = env.get_template("booking.txt")
    html_template = env.get_template("booking.html")
    domain = _msgid_domain(from_addr)
    reply_to = _address(_one_line(mail.business_name), mail.business_email)

    messages: list[EmailMessage] = []
    for recipient in _recipients(mail, warn=True):
        display_name = _one_line(recipient.name) if recipient.name else ""
        context = {
            "kind": kind,
            "role": recipient.role,
            "recipient_name": display_name,
            "subject": subject,
            "title": _one_line(mail.title),
            "description": mail.description,
            "business_name": _one_line(mail.business_name),
            "business_email": mail.business_email,
            "customer_label": customer_label,
            "when_local": when_local,
            "when_utc": when_utc,
            "booking_id": mail.booking_id,
            "status": mail.status,
            "manage_url": mail.manage_url if recipient.role == "customer" else None,
        }
        to = _address(display_name, recipient.email)
        assert to is not None  # _recipients checked it
        msg = EmailMessage(policy=_POLICY)
        msg["From"] = from_addr
        # As text, so the caching registry parses each address once per process (an
        # Address object would be parsed again for every message; the header is the same).
        msg["To"] = str(to)
        if recipient.role != "owner" and reply_to is not None:
            msg["Reply-To"] = str(reply_to)
        msg["Subject"] = subject
        msg["Date"] = formatdate(now.timestamp(), usegmt=True)
        msg["Message-ID"] = _message_id(mail, kind, recipient.email, domain)
        msg["X-Slotguard-Booking-Id"] = mail.booking_id
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(text_template.render(context))
        msg.add_alternative(html_template.render(context), subtype="html")
        msg.add_alternative(ics, subtype="calendar", params={"method": method})
        messages.append(msg)
    return messages


# --- senders -------------------------------------------------------------------------------


class MailDeliveryError(Exception):
    """Sending failed. ``permanent`` means a retry will fail the same way (5xx refusal)."""

    def __init__(self, message: str, *, permanent: bool = False, code: int | None = None):
        super().__init__(message)
        self.permanent = permanent
        self.code = code


class MailSender(Protocol):
    async def send(self, msg: EmailMessage) -> None:
        """Hand the message over for delivery; raise ``MailDeliveryError`` on failure."""
        ...


def _part_text(msg: EmailMessage, content_type: str) -> str | None:
    for part in msg.walk():
        if part.get_content_type() == content_type and not part.is_multipart():
            content = part.get_content()
            return content if isinstance(content, str) else None
    return None


# A manage link is a bearer credential for one booking: logged mails show it redacted.
_MANAGE_LINK = re.compile(r"/manage/[A-Za-z0-9_-]+")


def _redact(text: str | None) -> str | None:
    return None if text is None else _MANAGE_LINK.sub("/manage/[redacted]", text)


class LogMailSender:
    """Used when no SMTP server is configured: the whole mail goes to the log, none is lost."""

    async def send(self, msg: EmailMessage) -> None:
        if not log.is_enabled_for(logging.INFO):
            # Nothing would be written: skip decoding the three bodies.
            return
        log.info(
            "email.logged",
            to=msg.get_all("To", []),
            sender=msg["From"],
            subject=msg["Subject"],
            message_id=msg["Message-ID"],
            booking_id=msg["X-Slotguard-Booking-Id"],
            text_body=_redact(_part_text(msg, "text/plain")),
            html_body=_redact(_part_text(msg, "text/html")),
            calendar=_part_text(msg, "text/calendar"),
        )


class MemoryMailSender:
    """Keeps sent messages in ``sent`` (tests)."""

    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []

    async def send(self, msg: EmailMessage) -> None:
        self.sent.append(msg)


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class SmtpMailSender:
    """Sends over SMTP with aiosmtplib, one connection per message (the worker is not hot)."""

    def __init__(
        self,
        *,
        hostname: str,
        port: int | None = None,
        username: str | None = None,
        password: str | None = None,
        use_tls: bool = False,
        start_tls: bool | None = None,
        timeout: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        """``use_tls``: implicit TLS (smtps). ``start_tls``: True requires STARTTLS, False
        never uses it, None (default) upgrades when the server offers it."""
        if use_tls and start_tls:
            raise ValueError("use_tls and start_tls are mutually exclusive")
        self.hostname = hostname
        self.port = port if port is not None else (465 if use_tls else 587 if start_tls else 25)
        self.username = username
        self.password = password
        self.use_tls = use_tls
        self.start_tls = False if use_tls else start_tls
        self.timeout = timeout
        self.tls_context = tls_context

    @classmethod
    def from_url(cls, url: str, *, tls_context: ssl.SSLContext | None = None) -> SmtpMailSender:
        """``smtp://user:pass@host:port`` (``?starttls=1`` to require STARTTLS, ``=0`` to
        never use it; by default it is used when offered), ``smtps://…`` for implicit TLS,
        ``?timeout=`` in seconds. User and password are percent-decoded."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps"):
            raise ValueError("SMTP URL scheme must be smtp or smtps")
        if not parts.hostname:
            raise ValueError("SMTP URL must include a host")
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        unknown = set(query) - {"starttls", "timeout"}
        if unknown:
            raise ValueError(f"unknown SMTP URL option(s): {', '.join(sorted(unknown))}")
        start_tls: bool | None = None
        if "starttls" in query:
            flag = query["starttls"].lower()
            if flag not in _TRUE | _FALSE:
                raise ValueError("starttls must be 1 or 0")
            start_tls = flag in _TRUE
        use_tls = parts.scheme == "smtps"
        if use_tls and start_tls:
            raise ValueError("smtps:// uses implicit TLS; starttls does not apply")
        timeout = float(query["timeout"]) if "timeout" in query else 30.0
        return cls(
            hostname=parts.hostname,
            port=parts.port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            use_tls=use_tls,
            start_tls=None if use_tls else start_tls,
            timeout=timeout,
            tls_context=tls_context,
        )

    async def send(self, msg: EmailMessage) -> None:
        try:
            errors, _ = await aiosmtplib.send(
                msg,
                hostname=self.hostname,
                port=self.port,
                username=self.username,
                password=self.password if self.username else None,
                use_tls=self.use_tls,
                start_tls=self.start_tls,
                timeout=self.timeout,
                tls_context=self.tls_context,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [refusal.code for refusal in exc.recipients]
            detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            raise MailDeliveryError(
                f"recipients refused: {detail}",
                permanent=bool(codes) and all(500 <= code < 600 for code in codes),
                code=codes[0] if codes else None,
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            # A 5xx to the message data is final; a 5xx to the sender or to AUTH usually is
            # a configuration problem the operator can fix, so it stays retryable.
            permanent = isinstance(
                exc, aiosmtplib.SMTPDataError | aiosmtplib.SMTPRecipientRefused
            ) and (500 <= exc.code < 600)
            raise MailDeliveryError(
                f"SMTP error {exc.code}: {exc.message}", permanent=permanent, code=exc.code
            ) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise MailDeliveryError(f"SMTP failure: {type(exc).__name__}: {exc}") from exc
        if errors:
            codes = [response.code for response in errors.values()]
            raise MailDeliveryError(
                "recipients refused: "
                + "; ".join(f"{rcpt}: {r.code} {r.message}" for rcpt, r in errors.items()),
                permanent=all(500 <= code < 600 for code in codes),
                code=codes[0],
            )


def mail_sender_from_settings(smtp_url: str | None) -> MailSender:
    """``SLOTGUARD_SMTP_URL`` unset or empty: log mails; otherwise send them over SMTP."""
    if not smtp_url:
        return LogMailSender()
    return SmtpMailSender.from_url(smtp_url)
