"""The provider interface: what the sync engine and the write-back need from a calendar.

One implementation per provider (``ics``, ``caldav``, ``google``, ``microsoft``), each a
thin adapter over ``httpx`` in its own module. Everything above this interface (the sync
engine, the local copy, staleness, write-back retries, credentials) is provider-free.

The interface is deliberately narrow, like httpx's transports:

* ``check()``        one request at connect time: are the settings and credentials good?
* ``pull()``         what changed since a cursor (or a full copy), as busy periods in UTC;
* ``upsert_event()`` write one booking's event, idempotently;
* ``delete_event()`` remove it (already gone = done).

Providers translate every lower-layer failure into the errors below, never raise raw
``httpx`` exceptions, and never log credentials. They do not touch the database: what they
must persist (a new cursor, an etag, rotated credentials) is returned or handed to the
``ProviderContext.save_credentials`` callback.

Each provider module exposes ``SPEC: ProviderSpec``; ``calendars/registry.py`` lists the
modules, and the API and the engine find providers only through it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

import httpx

__all__ = [
    "EVENT_NAMESPACE",
    "MARKER_PROPERTY",
    "AccessTokens",
    "BookingEvent",
    "BusyPeriod",
    "CalendarProvider",
    "CheckResult",
    "CursorExpired",
    "EventGone",
    "EventRef",
    "Limiter",
    "MailboxPermits",
    "ProviderAuthError",
    "ProviderContext",
    "ProviderDataError",
    "ProviderError",
    "ProviderRateLimited",
    "ProviderSpec",
    "ProviderUnavailable",
    "Pull",
    "RemoteItem",
    "Role",
    "Window",
    "all_day_period",
    "parse_retry_after",
    "remote_identity",
    "retry_delay",
]

Role = Literal["busy", "write", "both"]

EVENT_NAMESPACE = uuid.UUID("5b0f3c36-3c1e-4f0a-9d53-7a0c5e1f8a21")
"""Namespace of the derived remote identities (never change it: ids already written use it)."""

MARKER_PROPERTY = "X-SLOTGUARD-BOOKING"
"""iCalendar property naming the booking on events slotguard wrote (Google: the private
extended property ``slotguard_booking``; Graph: a single-value extended property). An event
carrying a marker is never busy time, so a booking never conflicts with its own event."""


def remote_identity(booking_id: str, generation: int) -> uuid.UUID:
    """The remote identity of a booking's event: ``uuid5(NS, f"{booking_id}:{generation}")``.

    Deterministic, so a write retried after its response was lost addresses the same remote
    object and adopts it instead of making a second one. Providers derive their ids from it:
    Google ``id`` = ``.hex`` (base32hex-safe), Graph ``transactionId`` = ``str()``, CalDAV
    resource ``{booking_id}-{generation}.ics`` with ``UID:{booking_id}-{generation}@slotguard``.
    ``generation`` starts at 1 and is bumped when the remote event was removed by someone else
    and must be written again (Google keeps deleted ids as tombstones; Nextcloud keeps UIDs
    in its trash bin), so the new event gets a fresh identity.
    """
    return uuid.uuid5(EVENT_NAMESPACE, f"{booking_id}:{generation}")


# -- values ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    """The span the local copy covers: ``[start, end)`` in UTC (now - 1 day → now + the
    business's ``max_advance_days`` + 1 day). Providers may return more; the engine clips."""

    start: dt.datetime
    end: dt.datetime


@dataclass(frozen=True, slots=True)
class BusyPeriod:
    """One interval of busy time, ``[start, end)``, aware datetimes in UTC."""

    start: dt.datetime
    end: dt.datetime


def all_day_period(first: dt.date, end_exclusive: dt.date, tz: ZoneInfo) -> BusyPeriod:
    """The busy time of an all-day event: whole local days in ``tz`` (the calendar's zone,
    or the business zone for floating dates), not UTC days. DST-safe: each boundary is the
    local midnight of its own day."""
    start = dt.datetime.combine(first, dt.time(0), tzinfo=tz).astimezone(dt.UTC)
    end = dt.datetime.combine(end_exclusive, dt.time(0), tzinfo=tz).astimezone(dt.UTC)
    return BusyPeriod(start, end)


@dataclass(frozen=True, slots=True)
class RemoteItem:
    """One remote object (a CalDAV resource, an ICS feed's event series, a Google or Graph
    event/instance) as the local copy keeps it.

    ``busy`` holds its busy periods after the busy rule and recurrence expansion (empty when
    it is free: cancelled, transparent, declined by the owner, or one of our own events).
    An item in a delta *replaces* every period stored under the same ``external_id``.
    ``series_id``: the master an instance belongs to (Google ``recurringEventId``), so that
    deleting a series also deletes its instances. ``own_booking_id``: the booking named by
    the marker, when this is an event slotguard wrote.
    """

    external_id: str
    busy: tuple[BusyPeriod, ...] = ()
    etag: str | None = None
    series_id: str | None = None
    own_booking_id: str | None = None


@dataclass(frozen=True, slots=True)
class Pull:
    """The result of one ``pull``.

    ``full=True``: ``items`` is the complete copy of the window; the engine writes it into a
    new copy generation and swaps it in, in one transaction, so availability never sees a
    calendar half-loaded. ``full=False``: a delta merged into the current copy (items
    replace their ``external_id``'s rows, ``deleted`` ids, and items whose ``series_id`` is
    deleted, are removed); other rows stay. An unchanged source is ``Pull(full=False)``
    with nothing in it (an ICS 304, an unchanged ctag).

    ``cursor`` is opaque to the engine and handed back on the next pull (a sync token, a
    delta link, validators plus a content hash). ``notes`` are non-fatal problems shown in
    the calendar's ``last_error`` (e.g. an unknown TZID read as floating time).
    """

    full: bool
    items: list[RemoteItem] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    cursor: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What ``check`` learnt: a display name and the calendar's own zone, when the source
    says (used for all-day events; None = the business zone), and the mailbox the calendar
    lives in (Microsoft: its owner's address; requests are counted per mailbox)."""

    name: str | None = None
    timezone: str | None = None
    mailbox: str | None = None


@dataclass(frozen=True, slots=True)
class BookingEvent:
    """What slotguard writes for one confirmed booking. Attendees are never written:
    slotguard mails its own invites (§8), so nobody gets two."""

    booking_id: str
    generation: int
    title: str
    description: str | None
    start: dt.datetime  # UTC
    end: dt.datetime  # UTC
    timezone: str  # the business zone, for providers that show it

    @property
    def identity(self) -> uuid.UUID:
        return remote_identity(self.booking_id, self.generation)


@dataclass(frozen=True, slots=True)
class EventRef:
    """Where a booking's event lives: ``remote_id`` (CalDAV href, Google/Graph event id),
    the ``etag`` last seen (for conditional updates), and the generation it was made with."""

    remote_id: str
    generation: int
    etag: str | None = None


# -- errors ------------------------------------------------------------------------------


class ProviderError(Exception):
    """Base of every provider failure. ``message`` is safe to show and store (no secrets);
    ``status`` is the provider's HTTP status when it answered; ``retry_after`` the seconds
    it asked to be left alone (``Retry-After``), when it said so."""

    code = "calendar_unreachable"

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after


class ProviderUnavailable(ProviderError):
    """Unreachable, timed out, 5xx, or an answer that makes no sense. Retried later."""


class ProviderDataError(ProviderUnavailable):
    """The source answered with something unusable: malformed iCalendar or XML, an
    oversized feed, an XML bomb. The calendar keeps its last good copy."""


class ProviderAuthError(ProviderError):
    """Credentials refused (401/403, OAuth ``invalid_grant``). Sets status ``auth_failed``;
    the engine does not retry until the credentials change (no hot loop)."""

    code = "calendar_auth_failed"


class ProviderRateLimited(ProviderError):
    """429 or a rate-limit 403: try again after ``retry_after`` seconds (None = backoff)."""

    code = "calendar_rate_limited"

    def __init__(
        self, message: str, *, retry_after: float | None = None, status: int | None = 429
    ) -> None:
        super().__init__(message, status=status, retry_after=retry_after)


RETRY_AFTER_JITTER = 0.10


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """A ``Retry-After`` header as seconds from now: delta-seconds or an HTTP date. None
    when absent or unreadable; a value that is not a finite number (``inf``, ``1e999``)
    is unreadable too, so no caller ever computes a date from it."""
    if value is None:
        return None
    raw = value.strip()
    try:
        seconds = float(raw)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - (now or dt.datetime.now(dt.UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def retry_delay(
    retry_after: float | None, *, floor: float, cap: float, rng: random.Random
) -> float:
    """Seconds until a provider is asked again, by the sync engine (a calendar's next sync)
    and the outbox (a write's next attempt) alike: ``floor`` (the caller's own backoff,
    already jittered), but never earlier than the provider's ``retry_after``, which gets up
    to 10 % jitter upwards so that what was throttled together does not come back
    together. A ``retry_after`` beyond ``cap`` is obeyed only up to ``cap`` (an absurd or
    hostile value must not park a calendar or a write for ever)."""
    if retry_after is None:
        return floor
    asked = retry_after * (1 + rng.uniform(0, RETRY_AFTER_JITTER))
    return max(floor, min(asked, cap))


class CursorExpired(ProviderError):
    """The provider no longer accepts the cursor (Google 410, Graph 410 SyncStateNotFound,
    CalDAV 403 ``valid-sync-token``). The engine calls ``pull(None, window)`` for a full
    copy and swaps it in when complete."""

    code = "calendar_cursor_expired"


class EventGone(ProviderError):
    """``upsert_event`` found the existing event removed remotely (deleted by the owner, a
    Google tombstone). The engine bumps the generation and creates a new event."""

    code = "calendar_event_gone"


# -- the interface -----------------------------------------------------------------------


SaveCredentials = Callable[[Mapping[str, Any]], Awaitable[None]]
Limiter = Callable[[], contextlib.AbstractAsyncContextManager[Any]]
"""Makes the context a request is sent in (a permit held while it is on the wire)."""


class MailboxPermits(Protocol):
    """Requests in flight per provider mailbox, counted across every calendar of the
    mailbox and every process sharing the database (``calendars/permits.py``)."""

    def limiter(self, key: str) -> Limiter:
        """The limiter of mailbox ``key`` (see ``permits.mailbox_key``)."""
        ...


class AccessTokens(Protocol):
    """A calendar's OAuth access tokens (Google, Microsoft), refreshed before they expire,
    once per credential at a time across every worker (``calendars/tokens.py``)."""

    async def get(self, *, rejected: str | None = None) -> str:
        """A valid access token. ``rejected``: the token the provider just refused (401),
        so a new one is fetched unless another worker already replaced it. Raises
        ``ProviderAuthError`` when the grant is refused (no retry until the credentials
        change) and ``ProviderUnavailable`` when the token endpoint is down or hangs."""
        ...


@dataclass(frozen=True, slots=True)
class ProviderContext:
    """Everything a provider is built from. ``http`` is shared and already guarded (the
    address guard for user-supplied URLs, timeouts, size limits are the provider's job via
    ``max_bytes``). ``credentials`` is the decrypted secret part (password, refresh token,
    cached access token…); ``settings`` the non-secret part (e.g. ``calendar_id``).
    ``save_credentials`` persists changed credentials (a rotated refresh token, a fresh
    access token) encrypted, in its own short transaction."""

    calendar_id: str
    provider: str
    url: str | None
    settings: Mapping[str, Any]
    credentials: Mapping[str, Any]
    http: httpx.AsyncClient
    business_tz: ZoneInfo
    calendar_tz: ZoneInfo | None = None
    owner_emails: frozenset[str] = frozenset()
    max_bytes: int = 10 * 1024 * 1024
    timeout_s: float = 30.0
    save_credentials: SaveCredentials | None = None
    tokens: AccessTokens | None = None
    permits: MailboxPermits | None = None


class CalendarProvider(Protocol):
    """One connected calendar, as seen through its provider."""

    async def check(self) -> CheckResult:
        """Validate settings and credentials with one request. Raises ``ProviderAuthError``
        (wrong credentials → 422 ``calendar_auth_failed``) or ``ProviderUnavailable`` /
        ``ProviderDataError`` (unreachable or malformed → 422 ``calendar_unreachable``
        with ``details.status`` when the provider answered)."""
        ...

    async def pull(self, cursor: str | None, window: Window) -> Pull:
        """Changes since ``cursor``, or the full copy of ``window`` when ``cursor`` is None
        (then ``Pull.full`` must be True). Applies the busy rule (fail closed: what is not
        known to be free is busy) and expands recurrences (``calendars.recurrence``).
        Raises ``CursorExpired`` when the cursor is dead; never returns a partial full copy
        (pages are followed to the end or the call fails)."""
        ...

    async def upsert_event(self, event: BookingEvent, existing: EventRef | None) -> EventRef:
        """Create (``existing`` None) or update the booking's event; idempotent. A create
        whose identity already exists remotely adopts that object if its marker names the
        booking, and never makes a second one. Raises ``EventGone`` when updating an event
        that was removed remotely."""
        ...

    async def delete_event(self, ref: EventRef) -> None:
        """Delete the booking's event. Already gone (404/410) is success."""
        ...


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """How the API and the engine know a provider.

    ``read_only``: only role ``busy`` is allowed (ICS). ``needs_url``: ``url`` is required
    and passes the address guard. ``secret_fields`` are the connect-body fields stored
    encrypted (never returned); ``setting_fields`` are stored as plain settings and
    returned (``calendar_id``); ``setting_defaults`` are stored when a connect leaves
    them out (Google ``calendar_id`` = ``primary``). ``build`` makes a provider for one
    calendar."""

    name: str
    build: Callable[[ProviderContext], CalendarProvider]
    read_only: bool = False
    needs_url: bool = False
    secret_fields: tuple[str, ...] = ()
    setting_fields: tuple[str, ...] = ()
    required_fields: tuple[str, ...] = ()
    setting_defaults: Mapping[str, str] = field(default_factory=dict)
    # Requests are counted per mailbox, which ``check`` reads (Microsoft): a calendar stored
    # without it is checked once by the engine, and the mailbox kept.
    learns_mailbox: bool = False
