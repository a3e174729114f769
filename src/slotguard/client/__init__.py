"""Python clients for the slotguard HTTP API (API.md §10): ``Client`` and ``AsyncClient``.

Quick start (a business, a hold on its first free slot this week, then the booking)::

    from datetime import datetime, timedelta, timezone
    from slotguard.client import Client, ConflictError

    with Client("sg_live_…", "http://127.0.0.1:8000") as sg:
        biz = sg.businesses.create(name="Dr. Rivera", timezone="Europe/Paris")
        now = datetime.now(timezone.utc)
        held = sg.availability.hold(
            business_id=biz.id, window_start=now, window_end=now + timedelta(days=7)
        )
        booking = sg.bookings.confirm(
            held.hold_id, start=held.slots[0].start, customer_email="a@example.com"
        ).booking
        booking = sg.bookings.update(booking.id, if_match=booking, title="Interview")
        try:  # the slot is taken now: a direct booking of it is a 409
            sg.bookings.create(business_id=biz.id, start_time=booking.start_time)
        except ConflictError as exc:
            print(exc.code, exc.details)

``AsyncClient`` has the same surface with ``await`` (and ``async for`` over ``iter()``
and ``list_all()``).

Conventions:

* Arguments are named like the API's fields. In reads and creates ``None`` means "not
  sent"; in ``update``/``put_defaults`` every keyword you pass is sent (``None`` → null).
* Instants may be aware ``datetime`` objects (sent as RFC 3339, ``Z`` for UTC) or strings
  (sent unchanged). A naive ``datetime`` raises ``ValueError`` before anything is sent.
* Results are ``ApiObject`` dicts (the response ``data``) with ``request_id``,
  ``replayed`` and ``location`` attributes. Bookings are ``Booking`` dicts whose ``etag``
  (``'"<version>"'``) and ``version`` feed ``if_match=``. ``list()`` returns a ``Page``
  (``items``, ``next_cursor``, ``has_more``); ``iter()`` follows the cursors.
* Every POST/PATCH/DELETE carries an ``Idempotency-Key``: yours, or a uuid4 generated per
  call. Retries of the call (409 ``idempotency_in_progress``, 429 ``rate_limited``, 5xx
  other than 501/505, connect errors, timeouts, dropped connections; after the server's
  ``Retry-After``, else exponential backoff with jitter; at most ``max_retries`` times and
  within ``deadline`` seconds) reuse that key, so a retried write never runs twice. Other
  errors are raised at once as a ``SlotguardError`` subclass with ``status``, ``code``,
  ``message``, ``details``, ``request_id`` and ``body``.
"""

from ._async import (
    AsyncAvailability,
    AsyncBookings,
    AsyncBusinesses,
    AsyncClient,
    AsyncHolds,
    AsyncMeetingClasses,
    AsyncRules,
)
from ._core import DEFAULT_BASE_URL, format_datetime, format_if_match
from ._errors import (
    ERRORS_BY_CODE,
    AuthError,
    ConflictError,
    ForbiddenError,
    IdempotencyError,
    NotFoundError,
    PreconditionError,
    RateLimitedError,
    ServerError,
    SlotguardConnectionError,
    SlotguardError,
    StateError,
    ValidationError,
    VersionConflictError,
)
from ._models import (
    ApiObject,
    ApiResponse,
    Booking,
    BookingCreate,
    BookingFilters,
    BookingUpdate,
    BusinessCreate,
    BusinessUpdate,
    Confirmation,
    DateTimeLike,
    HoldConfirm,
    HoldRequest,
    IfMatch,
    ListQuery,
    MeetingClassCreate,
    MeetingClassUpdate,
    Page,
    RulesFields,
    SlotsQuery,
)
from ._sync import Availability, Bookings, Businesses, Client, Holds, MeetingClasses, Rules

__all__ = [
    "DEFAULT_BASE_URL",
    "ERRORS_BY_CODE",
    "ApiObject",
    "ApiResponse",
    "AsyncAvailability",
    "AsyncBookings",
    "AsyncBusinesses",
    "AsyncClient",
    "AsyncHolds",
    "AsyncMeetingClasses",
    "AsyncRules",
    "AuthError",
    "Availability",
    "Booking",
    "BookingCreate",
    "BookingFilters",
    "BookingUpdate",
    "Bookings",
    "BusinessCreate",
    "BusinessUpdate",
    "Businesses",
    "Client",
    "Confirmation",
    "ConflictError",
    "DateTimeLike",
    "ForbiddenError",
    "HoldConfirm",
    "HoldRequest",
    "Holds",
    "IdempotencyError",
    "IfMatch",
    "ListQuery",
    "MeetingClassCreate",
    "MeetingClassUpdate",
    "MeetingClasses",
    "NotFoundError",
    "Page",
    "PreconditionError",
    "RateLimitedError",
    "Rules",
    "RulesFields",
    "ServerError",
    "SlotguardConnectionError",
    "SlotguardError",
    "SlotsQuery",
    "StateError",
    "ValidationError",
    "VersionConflictError",
    "format_datetime",
    "format_if_match",
]
