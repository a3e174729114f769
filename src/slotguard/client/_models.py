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
import email.utils
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import UnionType
from typing import (
    Any,
    Generic,
    Literal,
    Required,
    TypedDict,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

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
        server_time: the server's clock when it answered (see the property).
    """

    __slots__ = ("_date", "_etag", "location", "replayed", "request_id")

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        request_id: str | None = None,
        etag: str | None = None,
        location: str | None = None,
        replayed: bool = False,
        date: str | None = None,
    ) -> None:
        super().__init__(data or {})
        self.request_id = request_id
        self._etag = etag
        self.location = location
        self.replayed = replayed
        self._date = date

    @property
    def etag(self) -> str | None:
        """The ``ETag`` header of the response that returned this object, if any."""
        return self._etag

    @property
    def server_time(self) -> dt.datetime | None:
        """The server's clock when it sent this object: its ``Date`` header (whole seconds,
        UTC), or None when the response had none (an in-process transport sends none).

        Count time left until an ``expires_at`` from this, not from the local clock, which
        may be off from the server's.
        """
        return http_date(self._date)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict.__repr__(self)})"


class TypedObject(ApiObject):
    """An ``ApiObject`` whose documented fields are also typed attributes.

    ``obj.field`` reads ``obj["field"]`` converted to its annotated type: RFC 3339 strings
    become aware ``datetime`` objects, nested objects become their typed class; a field the
    server did not send reads as ``None``. Dict access keeps the raw JSON values, and fields
    the client does not know yet stay available as keys.
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        hints = _field_hints(type(self))
        if name not in hints:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return _convert(hints[name], self.get(name))

    def to_dict(self) -> dict[str, Any]:
        """The raw JSON object (a plain ``dict`` copy)."""
        return dict(self)


_HINTS: dict[type, dict[str, Any]] = {}


def _field_hints(cls: type) -> dict[str, Any]:
    found = _HINTS.get(cls)
    if found is None:
        found = {
            k: v
            for k, v in get_type_hints(cls).items()
            if not k.startswith("_") and k not in ("request_id", "location", "replayed")
        }
        _HINTS[cls] = found
    return found


def _convert(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = get_origin(hint)
    if origin in (Union, UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        return _convert(args[0], value) if len(args) == 1 else value
    if hint is dt.datetime and isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    if origin is list and isinstance(value, list):
        (arg,) = get_args(hint) or (Any,)
        return [_convert(arg, x) for x in value]
    if isinstance(hint, type) and issubclass(hint, ApiObject) and isinstance(value, Mapping):
        return value if isinstance(value, hint) else hint(value)
    return value


class Booking(TypedObject):
    """A booking (API.md §4.1) with its optimistic-locking tag.

    ``booking.etag`` is the ``ETag`` the server sent with it, or, for bookings that came
    without one (list pages, the booking inside a confirmation), ``'"<version>"'``; pass the
    booking itself, its ``etag`` or its ``version`` as ``if_match=`` to ``update``,
    ``cancel`` or ``reschedule``.
    """

    __slots__ = ()

    business_id: str
    meeting_class: str
    status: Literal["confirmed", "cancelled", "preempted"]
    start_time: dt.datetime
    end_time: dt.datetime
    title: str | None
    description: str | None
    customer_email: str | None
    customer_name: str | None
    attendees: list[dict[str, Any]]
    metadata: dict[str, str]
    hold_id: str | None
    correlation_id: str
    calendar_sync_status: str
    calendar_event_id: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    cancelled_at: dt.datetime | None
    cancellation_reason: str | None

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


class Confirmation(TypedObject):
    """Result of confirming a hold: ``{booking_id, correlation_id, booking}``.

    ``confirmation["booking"]`` (also ``confirmation.booking``) is a ``Booking``.
    """

    __slots__ = ()

    booking_id: str
    correlation_id: str

    @property
    def booking(self) -> Booking:
        """The confirmed booking."""
        value = self["booking"]
        return value if isinstance(value, Booking) else Booking(value)


class Slot(TypedObject):
    """``{start, end}``: one free or held slot."""

    __slots__ = ()

    start: dt.datetime
    end: dt.datetime


class SlotList(TypedObject):
    """``GET /v1/availability/slots`` (§3.1)."""

    __slots__ = ()

    business_id: str
    timezone: str
    duration_minutes: int
    slots: list[Slot]
    computed_at: dt.datetime
    warnings: list[dict[str, Any]]


class AvailabilityCheck(TypedObject):
    """``GET /v1/availability/check`` (§3.4): would this booking succeed now?"""

    __slots__ = ()

    available: bool
    reason: str | None
    next_available: Slot | None
    business_id: str
    meeting_class: str
    start_time: dt.datetime
    end_time: dt.datetime


class HoldDecision(TypedObject):
    """``POST /v1/availability`` (§3.2): the hold that was taken."""

    __slots__ = ()

    hold_id: str
    expires_at: dt.datetime
    slots: list[Slot]
    meeting_class: str
    decision: Literal["accept", "preempt"]
    preempted_holds: list[str]
    preempted_bookings: list[str]
    warnings: list[dict[str, Any]]


class Hold(TypedObject):
    """``GET /v1/holds/{id}`` (§3.3)."""

    __slots__ = ()

    hold_id: str
    status: Literal["active", "confirmed", "released", "expired", "preempted"]
    slots: list[Slot]
    expires_at: dt.datetime
    meeting_class: str
    business_id: str
    booking_id: str | None


class Business(TypedObject):
    """A business (§2.1)."""

    __slots__ = ()

    id: str
    name: str
    email: str | None
    timezone: str
    rules: dict[str, Any]
    created_at: dt.datetime


class EffectiveRules(TypedObject):
    """``GET /v1/businesses/{id}/rules``: the effective rules and where each came from."""

    __slots__ = ()

    business_id: str
    rules: dict[str, Any]
    sources: dict[str, str]


class MeetingClass(TypedObject):
    """A meeting class (§2.3)."""

    __slots__ = ()

    name: str
    display_name: str
    duration_minutes: int | None
    priority: int
    buffer_before_minutes: int
    buffer_after_minutes: int


class BusyInterval(TypedObject):
    """Busy time posted through the API (§2.4) or listed from a calendar (§7.1)."""

    __slots__ = ()

    id: str | None
    business_id: str | None
    start: dt.datetime
    end: dt.datetime
    title: str | None
    external_id: str | None


class Me(TypedObject):
    """``GET /v1/me`` (§3.5): the calling key and the server's clock."""

    __slots__ = ()

    account_id: str
    key_id: str | None
    agent_id: str | None
    scopes: list[str]
    allowed_business_ids: str | list[str]
    now: dt.datetime


class Agent(TypedObject):
    """An agent (§6)."""

    __slots__ = ()

    id: str
    name: str
    scopes: list[str]
    allowed_business_ids: str | list[str]
    default_meeting_class: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


class ApiKey(TypedObject):
    """An API key without its secret (§6). ``ApiKey.key`` is set only right after creation."""

    __slots__ = ()

    id: str
    agent_id: str | None
    name: str | None
    prefix: str | None
    key: str | None
    created_at: dt.datetime
    revoked_at: dt.datetime | None


# The slot that holds ApiObject.request_id (the response's id), reached past the property.
_RESPONSE_REQUEST_ID: Any = ApiObject.__dict__["request_id"]


class AuditEntry(TypedObject):
    """One audit row (§8).

    ``entry.request_id`` is the row's own ``request_id`` (the request that made the
    decision, as ``explain_decision`` and the ``request_id`` filter use it), not the id of
    the response that listed it; that one is ``response_request_id``.
    """

    __slots__ = ()

    id: str
    at: dt.datetime
    action: str
    actor: dict[str, Any]
    business_id: str | None
    hold_id: str | None
    booking_id: str | None
    meeting_class: str | None
    decision: str | None
    reason: str | None
    correlation_id: str | None
    details: dict[str, Any]

    @property
    def request_id(self) -> str | None:
        value = self.get("request_id")
        return value if isinstance(value, str) else None

    @request_id.setter
    def request_id(self, value: str | None) -> None:
        _RESPONSE_REQUEST_ID.__set__(self, value)

    @property
    def response_request_id(self) -> str | None:
        """``meta.request_id`` of the response that returned this row."""
        value: str | None = _RESPONSE_REQUEST_ID.__get__(self, type(self))
        return value


class WebhookEndpoint(TypedObject):
    """A webhook endpoint (§8). ``secret`` is set only at creation and rotation."""

    __slots__ = ()

    id: str
    url: str
    events: list[str]
    description: str | None
    enabled: bool
    disabled_reason: str | None
    secret: str | None
    previous_secret_expires_at: dt.datetime | None
    created_at: dt.datetime


class WebhookDelivery(TypedObject):
    """One delivery attempt of a webhook event."""

    __slots__ = ()

    id: int
    endpoint_id: str
    event_id: str
    event_type: str
    attempt: int
    succeeded: bool
    status_code: int | None
    error: str | None
    duration_ms: int
    attempted_at: dt.datetime


class Calendar(TypedObject):
    """A connected calendar (§7.1)."""

    __slots__ = ()

    id: str
    business_id: str
    provider: str
    role: str
    name: str | None
    url: str | None
    calendar_id: str | None
    status: str
    last_synced_at: dt.datetime | None
    last_error: dict[str, Any] | None
    busy_intervals: int
    created_at: dt.datetime
    updated_at: dt.datetime


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

    @property
    def date(self) -> str | None:
        """The ``Date`` header (the server's clock), if any."""
        return self.headers.get("date")


def http_date(value: str | None) -> dt.datetime | None:
    """An HTTP ``Date`` header as an aware UTC datetime; None when absent or malformed."""
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


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
    display_name: Required[str]  # the server requires it (the default title of bookings)
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


class CheckQuery(TypedDict, total=False):
    """Query of ``GET /v1/availability/check`` (§3.4): the fields of a one-step booking."""

    business_id: str | None
    owner_email: str | None
    start_time: Required[DateTimeLike]
    end_time: DateTimeLike | None
    meeting_class: str | None


class AuditFilters(TypedDict, total=False):
    """Query of ``GET /v1/audit-log`` (§8); ``action`` may be a list (sent comma-joined)."""

    business_id: str | None
    action: str | Sequence[str] | None
    agent_id: str | None
    booking_id: str | None
    hold_id: str | None
    request_id: str | None
    since: DateTimeLike | None
    until: DateTimeLike | None
    limit: int | None
    cursor: str | None


class AgentCreate(TypedDict, total=False):
    """Body of ``POST /v1/agents`` (§6)."""

    name: Required[str]
    scopes: Required[Sequence[str]]
    allowed_business_ids: Required[str | Sequence[str]]
    default_meeting_class: str | None


class AgentUpdate(TypedDict, total=False):
    """Body of ``PATCH /v1/agents/{id}`` (§6)."""

    name: str | None
    scopes: Sequence[str] | None
    allowed_business_ids: str | Sequence[str] | None
    default_meeting_class: str | None


class BusyCreate(TypedDict, total=False):
    """Body of ``POST /v1/businesses/{id}/busy`` (§2.4)."""

    start: Required[DateTimeLike]
    end: Required[DateTimeLike]
    title: str | None
    external_id: str | None


class BusyQuery(TypedDict, total=False):
    """Query of ``GET /v1/businesses/{id}/busy``."""

    start: DateTimeLike | None
    end: DateTimeLike | None
    limit: int | None
    cursor: str | None


class CalendarCreate(TypedDict, total=False):
    """Body of ``POST /v1/businesses/{id}/calendars`` (§7.1): provider settings included."""

    provider: Required[Literal["ics", "caldav", "google", "microsoft"]]
    role: Literal["busy", "write", "both"] | None
    name: str | None
    url: str | None
    username: str | None
    password: str | None
    calendar_id: str | None
    refresh_token: str | None


class CalendarUpdate(TypedDict, total=False):
    """Body of ``PATCH …/calendars/{cid}`` (§7.1): name, role, credentials."""

    name: str | None
    role: Literal["busy", "write", "both"] | None
    url: str | None
    username: str | None
    password: str | None
    refresh_token: str | None


class WebhookEndpointCreate(TypedDict, total=False):
    """Body of ``POST /v1/webhook-endpoints`` (§8)."""

    url: Required[str]
    events: Required[Sequence[str]]
    description: str | None


class WebhookEndpointUpdate(TypedDict, total=False):
    """Body of ``PATCH /v1/webhook-endpoints/{id}`` (§8)."""

    url: str | None
    events: Sequence[str] | None
    description: str | None
    enabled: bool | None


class DeliveryQuery(TypedDict, total=False):
    """Query of ``GET /v1/webhook-endpoints/{id}/deliveries``."""

    event_id: str | None
    succeeded: bool | None
    limit: int | None
    cursor: str | None
