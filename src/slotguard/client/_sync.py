"""``Client``: the blocking executor and its resource namespaces (thin wrappers)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar, Unpack

import httpx

from . import _endpoints as ep
from ._core import DEFAULT_BASE_URL, Call, Core, next_cursor
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

T = TypeVar("T")
ObjT = TypeVar("ObjT", bound=ApiObject)


class Client:
    """Blocking client for the slotguard HTTP API.

    ``base_url`` is the server root (without ``/v1``). Every POST/PATCH/DELETE gets a fresh
    uuid4 Idempotency-Key per call unless ``idempotency_key=`` is given; retries of that call
    (409 ``idempotency_in_progress``, 502/503/504, connect errors, timeouts, dropped
    connections — at most ``max_retries`` of them, exponential backoff with jitter, or the
    server's ``Retry-After``) reuse it. ``sleep`` is injectable for tests. Any other error
    raises a ``SlotguardError`` subclass. Use as a context manager or call ``close()``.
    """

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        timeout: float | httpx.Timeout = 10.0,
        max_retries: int = 5,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], object] | None = None,
        backoff_base: float = 0.1,
        backoff_max: float = 2.0,
        max_retry_after: float = 30.0,
    ) -> None:
        self._core = Core(
            api_key,
            base_url,
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            max_retry_after=max_retry_after,
        )
        self._http = httpx.Client(
            base_url=self._core.base_url,
            headers=self._core.headers,
            timeout=timeout,
            transport=transport,
        )
        self._sleep: Callable[[float], object] = sleep or time.sleep
        self.availability = Availability(self)
        self.holds = Holds(self)
        self.bookings = Bookings(self)
        self.businesses = Businesses(self)
        self.meeting_classes = MeetingClasses(self)
        self.rules = Rules(self)

    def _run(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            request = self._core.build_request(self._http, call)
            try:
                response = self._http.send(request)
            except httpx.TransportError as exc:
                delay = self._core.retry_delay(call, attempt, error=exc)
                if delay is None:
                    raise self._core.connection_error(call, exc) from exc
            else:
                delay = self._core.retry_delay(call, attempt, response=response)
                if delay is None:
                    return self._core.finish(call, response)
            self._sleep(delay)
            attempt += 1

    def _paginate(
        self, first: Call[Page[ObjT]], then: Callable[[str], Call[Page[ObjT]]]
    ) -> Iterator[ObjT]:
        call, cursor = first, first.params.get("cursor")
        while True:
            page = self._run(call)
            yield from page.items
            cursor = next_cursor(cursor, page.next_cursor, page.has_more)
            if cursor is None:
                return
            call = then(cursor)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        if_match: IfMatch | None = None,
    ) -> ApiResponse:
        """Call any endpoint (e.g. ``/v1/agents``) with the client's auth, keys and retries."""
        return self._run(
            ep.raw(
                method,
                path,
                params=params,
                json=json,
                idempotency_key=idempotency_key,
                if_match=if_match,
            )
        )

    def close(self) -> None:
        """Close the underlying connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Resource:
    def __init__(self, client: Client) -> None:
        self._client = client


class Availability(_Resource):
    """``/v1/availability``: read slots, check-and-hold."""

    def get_slots(self, **query: Unpack[SlotsQuery]) -> ApiObject:
        """Free slots (GET /v1/availability/slots); returns ``{business_id, slots, …}``."""
        return self._client._run(ep.get_slots(query))

    def hold(
        self, *, idempotency_key: str | None = None, **request: Unpack[HoldRequest]
    ) -> ApiObject:
        """Find and hold up to ``max_slots`` slots in the window (POST /v1/availability)."""
        return self._client._run(ep.hold(request, idempotency_key=idempotency_key))


class Holds(_Resource):
    """``/v1/holds``."""

    def get(self, hold_id: str) -> ApiObject:
        """Fetch a hold and its status."""
        return self._client._run(ep.get_hold(hold_id))

    def release(self, hold_id: str, *, idempotency_key: str | None = None) -> ApiObject:
        """Release a hold (releasing twice is fine)."""
        return self._client._run(ep.release_hold(hold_id, idempotency_key=idempotency_key))


class Bookings(_Resource):
    """``/v1/bookings``. Returned bookings are ``Booking`` dicts with ``.etag``/``.version``."""

    def create(
        self, *, idempotency_key: str | None = None, **fields: Unpack[BookingCreate]
    ) -> Booking:
        """Book a slot in one step (POST /v1/bookings)."""
        return self._client._run(ep.create_booking(fields, idempotency_key=idempotency_key))

    def confirm(
        self, hold_id: str, *, idempotency_key: str | None = None, **fields: Unpack[HoldConfirm]
    ) -> Confirmation:
        """Turn a hold into a booking; returns ``{booking_id, correlation_id, booking}``."""
        return self._client._run(ep.confirm_hold(hold_id, fields, idempotency_key=idempotency_key))

    def get(self, booking_id: str) -> Booking:
        """Fetch a booking (with its ETag)."""
        return self._client._run(ep.get_booking(booking_id))

    def list(self, **filters: Unpack[BookingFilters]) -> Page[Booking]:
        """One page of bookings; pass ``cursor=page.next_cursor`` for the next."""
        return self._client._run(ep.list_bookings(filters))

    def iter(self, **filters: Unpack[BookingFilters]) -> Iterator[Booking]:
        """Every booking matching the filters, fetching pages as needed."""
        return self._client._paginate(
            ep.list_bookings(filters), lambda cursor: ep.list_bookings(filters, cursor=cursor)
        )

    def cancel(
        self,
        booking_id: str,
        reason: str | None = None,
        if_match: IfMatch | None = None,
        idempotency_key: str | None = None,
    ) -> Booking:
        """Cancel a booking (cancelling twice returns it unchanged)."""
        return self._client._run(
            ep.cancel_booking(
                booking_id, reason=reason, if_match=if_match, idempotency_key=idempotency_key
            )
        )

    def reschedule(
        self,
        booking_id: str,
        start_time: DateTimeLike,
        end_time: DateTimeLike | None = None,
        if_match: IfMatch | None = None,
        idempotency_key: str | None = None,
    ) -> Booking:
        """Move a booking to a new time (same id, version + 1)."""
        return self._client._run(
            ep.reschedule_booking(
                booking_id,
                start_time=start_time,
                end_time=end_time,
                if_match=if_match,
                idempotency_key=idempotency_key,
            )
        )

    def update(
        self,
        booking_id: str,
        *,
        if_match: IfMatch,
        idempotency_key: str | None = None,
        **fields: Unpack[BookingUpdate],
    ) -> Booking:
        """PATCH title/description/attendees/metadata/customer_name; None sends null."""
        return self._client._run(
            ep.update_booking(
                booking_id, fields, if_match=if_match, idempotency_key=idempotency_key
            )
        )


class Businesses(_Resource):
    """``/v1/businesses``."""

    def create(
        self, *, idempotency_key: str | None = None, **fields: Unpack[BusinessCreate]
    ) -> ApiObject:
        """Create a business."""
        return self._client._run(ep.create_business(fields, idempotency_key=idempotency_key))

    def get(self, business_id: str) -> ApiObject:
        """Fetch a business."""
        return self._client._run(ep.get_business(business_id))

    def list(self, **query: Unpack[ListQuery]) -> Page[ApiObject]:
        """One page of businesses."""
        return self._client._run(ep.list_businesses(query))

    def iter(self, **query: Unpack[ListQuery]) -> Iterator[ApiObject]:
        """Every business, fetching pages as needed."""
        return self._client._paginate(
            ep.list_businesses(query), lambda cursor: ep.list_businesses(query, cursor=cursor)
        )

    def update(
        self,
        business_id: str,
        *,
        idempotency_key: str | None = None,
        **fields: Unpack[BusinessUpdate],
    ) -> ApiObject:
        """PATCH a business; passed fields are sent as given (None sends null)."""
        return self._client._run(
            ep.update_business(business_id, fields, idempotency_key=idempotency_key)
        )

    def delete(self, business_id: str, *, idempotency_key: str | None = None) -> ApiObject:
        """Delete a business."""
        return self._client._run(ep.delete_business(business_id, idempotency_key=idempotency_key))

    def effective_rules(self, business_id: str) -> ApiObject:
        """The business's effective rules, each with its source (account/business)."""
        return self._client._run(ep.effective_rules(business_id))


class MeetingClasses(_Resource):
    """``/v1/meeting-classes`` (addressed by ``name``)."""

    def create(
        self, *, idempotency_key: str | None = None, **fields: Unpack[MeetingClassCreate]
    ) -> ApiObject:
        """Create a meeting class."""
        return self._client._run(ep.create_meeting_class(fields, idempotency_key=idempotency_key))

    def get(self, name: str) -> ApiObject:
        """Fetch a meeting class by name."""
        return self._client._run(ep.get_meeting_class(name))

    def list(self, **query: Unpack[ListQuery]) -> Page[ApiObject]:
        """One page of meeting classes."""
        return self._client._run(ep.list_meeting_classes(query))

    def iter(self, **query: Unpack[ListQuery]) -> Iterator[ApiObject]:
        """Every meeting class, fetching pages as needed."""
        return self._client._paginate(
            ep.list_meeting_classes(query),
            lambda cursor: ep.list_meeting_classes(query, cursor=cursor),
        )

    def update(
        self, name: str, *, idempotency_key: str | None = None, **fields: Unpack[MeetingClassUpdate]
    ) -> ApiObject:
        """PATCH a meeting class; passed fields are sent as given (None sends null)."""
        return self._client._run(
            ep.update_meeting_class(name, fields, idempotency_key=idempotency_key)
        )

    def delete(self, name: str, *, idempotency_key: str | None = None) -> ApiObject:
        """Delete a meeting class."""
        return self._client._run(ep.delete_meeting_class(name, idempotency_key=idempotency_key))


class Rules(_Resource):
    """``/v1/rules/defaults``: the account layer of the rules."""

    def get_defaults(self) -> ApiObject:
        """The account's default rules."""
        return self._client._run(ep.get_rule_defaults())

    def put_defaults(self, **fields: Unpack[RulesFields]) -> ApiObject:
        """Replace the account's default rules with exactly the fields passed."""
        return self._client._run(ep.put_rule_defaults(fields))
