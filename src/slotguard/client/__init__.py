"""Python clients for the slotguard HTTP API (API.md §10): ``Client`` and ``AsyncClient``.

Quick start::

    from datetime import datetime, timezone
    from slotguard.client import Client, ConflictError

    with Client("sg_live_…", "http://127.0.0.1:8000") as sg:
        held = sg.availability.hold(
            business_id="biz_…",
            window_start=datetime(2026, 4, 1, 9, tzinfo=timezone.utc),
            window_end="2026-04-01T17:00:00Z",
            meeting_class="recruiting_interview",
        )
        booking = sg.bookings.confirm(held["hold_id"], customer_email="a@example.com").booking
        booking = sg.bookings.update(booking.id, if_match=booking, title="Interview")

``AsyncClient`` has the same surface with ``await`` (and ``async for`` over ``iter()``).

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
  call. Retries of the call (409 ``idempotency_in_progress`` honouring ``Retry-After``,
  502/503/504, connect errors, timeouts, dropped connections; ``max_retries`` times with
  exponential backoff and jitter) reuse that key. Other errors are raised at once as a
  ``SlotguardError`` subclass with ``status``, ``code``, ``message``, ``details``,
  ``request_id`` and ``body``; 429 is not retried (see ``RateLimitedError.retry_after``).
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
