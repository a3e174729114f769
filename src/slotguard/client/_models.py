"""What the client returns, and the keyword arguments its methods accept.

Returned objects are the API's ``data`` objects as plain dicts (``ApiObject`` is a ``dict``
subclass, so ``json.dumps``, ``==`` and ``obj["id"]`` work as usual) with the response
metadata that matters as attributes. Times in returned objects stay RFC 3339 strings.

The ``TypedDict`` classes below name the keyword arguments of the resource methods; their
keys are the API's field names (API.md §2-§4), so the docs of the API apply unchanged.
"""

# No `from __future__ import annotations` here: the TypedDicts' `Required[...]` markers must
# be real objects at runtime, so that `__required_keys__` (used by `check_kwargs`) is right.

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Required, TypedDict, TypeVar

T = TypeVar("T")

#: An instant: an aware ``datetime`` (sent as RFC 3339) or an RFC 3339 string (sent as is).
#: A naive ``datetime`` is refused with ``ValueError`` before anything is sent.
DateTimeLike = dt.datetime | str


class ApiObject(dict[str, Any]):
    """One ``data`` object of a response: a plain dict plus response metadata.

    Attributes:
        request_id: ``meta.request_id`` / ``X-Request-Id`` of the response.
        location: the ``Location`` header of a 201, if any.
        replayed: True when the server replayed a stored response for the same
            Idempotency-Key (header ``Idempotent-Replayed: true``).
    """

    __slots__ = ("_etag", "location", "replayed", "request_id")

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        request_id: str | None = None,
        etag: str | None = None,
        location: str | None = None,
        replayed: bool = False,
    ) -> None:
        super().__init__(data or {})
        self.request_id = request_id
        self._etag = etag
        self.location = location
        self.replayed = replayed

    @property
    def etag(self) -> str | None:
        """The ``ETag`` header of the response that returned this object, if any."""
        return self._etag

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict.__repr__(self)})"


class Booking(ApiObject):
    """A booking (API.md §4.1) with its optimistic-locking tag.

    ``booking.etag`` is the ``ETag`` the server sent with it, or, for bookings that came
    without one (list pages, the booking inside a confirmation), ``'"<version>"'``; pass the
    booking itself, its ``etag`` or its ``version`` as ``if_match=`` to ``update``,
    ``cancel`` or ``reschedule``.
    """

    __slots__ = ()

    @property
    def etag(self) -> str | None:
        """The ETag of this booking version (header, else derived from ``version``)."""
        if self._etag is not None:
            return self._etag
        version = self.version
        return f'"{version}"' if version is not None else None

    @property
    def version(self) -> int | None:
        """The booking's integer ``version``."""
        value = self.get("version")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def id(self) -> str:
        """The booking id (``bk_…``)."""
        return str(self["id"])


class Confirmation(ApiObject):
    """Result of confirming a hold: ``{booking_id, correlation_id, booking}``.

    ``confirmation["booking"]`` (also ``confirmation.booking``) is a ``Booking``.
    """

    __slots__ = ()

    @property
    def booking(self) -> Booking:
        """The confirmed booking."""
        value = self["booking"]
        return value if isinstance(value, Booking) else Booking(value)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list endpoint. Iterating a page iterates its ``items``."""

    items: list[T]
    next_cursor: str | None = None
    has_more: bool = False
    request_id: str | None = None

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True, slots=True)
class ApiResponse:
    """A decoded 2xx response, as returned by ``Client.request`` (the escape hatch)."""

    status: int
    data: Any
    meta: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def request_id(self) -> str | None:
        """``meta.request_id``, else the ``X-Request-Id`` header."""
        rid = self.meta.get("request_id")
        return rid if isinstance(rid, str) else self.headers.get("x-request-id")

    @property
    def etag(self) -> str | None:
        """The ``ETag`` header, if any."""
        return self.headers.get("etag")

    @property
    def location(self) -> str | None:
        """The ``Location`` header, if any."""
        return self.headers.get("location")

    @property
    def replayed(self) -> bool:
        """True when the server replayed a stored response for this Idempotency-Key."""
        return self.headers.get("idempotent-replayed", "").lower() == "true"


#: An If-Match value: a version number (sent as ``"<n>"``), an ETag string (``"3"`` or
#: ``W/"3"``; a bare ``3`` is quoted) or a ``Booking`` (its ``etag``).
IfMatch = int | str | Booking

Attendee = Mapping[str, Any]  # {email, display_name?}


# --- keyword arguments --------------------------------------------------------------------
# In query/create kwargs, None means "not sent" (server default). In update kwargs (PATCH,
# PUT), every key you pass is sent, so None sends JSON null (e.g. clears a field).


class SlotsQuery(TypedDict, total=False):
    """Query of ``GET /v1/availability/slots`` (§3.1)."""

    business_id: str | None
    owner_email: str | None
    duration_minutes: int | None
    meeting_class: str | None
    start: DateTimeLike | None
    end: DateTimeLike | None
    timezone: str | None
    buffer_minutes: int | None
    slot_interval_minutes: int | None
    limit: int | None


class HoldRequest(TypedDict, total=False):
    """Body of ``POST /v1/availability`` (§3.2); ``window_*`` become ``window.{start,end}``."""

    business_id: str | None
    owner_email: str | None
    window_start: Required[DateTimeLike]
    window_end: Required[DateTimeLike]
    meeting_class: str | None
    duration_minutes: int | None
    ttl_seconds: int | None
    max_slots: int | None
    next_available_lookahead_hours: int | None


class BookingCreate(TypedDict, total=False):
    """Body of ``POST /v1/bookings`` (§4.3)."""

    business_id: str | None
    owner_email: str | None
    start_time: DateTimeLike | None
    end_time: DateTimeLike | None
    meeting_class: str | None
    customer_email: str | None
    customer_name: str | None
    title: str | None
    description: str | None
    attendees: Sequence[Attendee] | None
    metadata: Mapping[str, str] | None


class HoldConfirm(TypedDict, total=False):
    """Body of ``POST /v1/bookings/{hold_id}/confirm`` (§4.2)."""

    start: DateTimeLike | None
    title: str | None
    description: str | None
    attendees: Sequence[Attendee] | None
    customer_email: str | None
    customer_name: str | None
    metadata: Mapping[str, str] | None


class BookingUpdate(TypedDict, total=False):
    """Body of ``PATCH /v1/bookings/{id}`` (§4.5); ``metadata`` is merged, null removes."""

    title: str | None
    description: str | None
    attendees: Sequence[Attendee] | None
    metadata: Mapping[str, str | None] | None
    customer_name: str | None


class BookingFilters(TypedDict, total=False):
    """Query of ``GET /v1/bookings`` (§4.4); ``status`` may be a list (sent comma-joined)."""

    business_id: str | None
    status: str | Sequence[str] | None
    start: DateTimeLike | None
    end: DateTimeLike | None
    customer_email: str | None
    updated_since: DateTimeLike | None
    sort: str | None
    limit: int | None
    cursor: str | None


class ListQuery(TypedDict, total=False):
    """Query of a plain list endpoint (businesses, meeting classes)."""

    limit: int | None
    cursor: str | None


class RulesFields(TypedDict, total=False):
    """Rule fields (§2.2): account defaults, or a business's overrides."""

    working_hours: Sequence[Mapping[str, Any]] | None
    date_overrides: Sequence[Mapping[str, Any]] | None
    buffer_minutes: int | None
    slot_interval_minutes: int | None
    min_notice_minutes: int | None
    max_advance_days: int | None
    max_meetings_per_day: int | None
    hold_ttl_seconds: int | None
    sacred_meeting_age_hours: int | None


class BusinessCreate(TypedDict, total=False):
    """Body of ``POST /v1/businesses`` (§2.1)."""

    name: Required[str]
    timezone: Required[str]
    email: str | None
    rules: RulesFields | Mapping[str, Any] | None


class BusinessUpdate(TypedDict, total=False):
    """Body of ``PATCH /v1/businesses/{id}`` (§2.1)."""

    name: str | None
    email: str | None
    timezone: str | None
    rules: RulesFields | Mapping[str, Any] | None


class MeetingClassCreate(TypedDict, total=False):
    """Body of ``POST /v1/meeting-classes`` (§2.3)."""

    name: Required[str]
    display_name: str | None
    duration_minutes: int | None
    priority: int | None
    buffer_before_minutes: int | None
    buffer_after_minutes: int | None


class MeetingClassUpdate(TypedDict, total=False):
    """Body of ``PATCH /v1/meeting-classes/{name}`` (§2.3)."""

    display_name: str | None
    duration_minutes: int | None
    priority: int | None
    buffer_before_minutes: int | None
    buffer_after_minutes: int | None
