"""``AsyncClient``: the asyncio executor and its resource namespaces (thin wrappers).

Mirror of ``_sync.py``; only the executor differs (await, ``asyncio.sleep``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
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


class AsyncClient:
    """Asyncio client for the slotguard HTTP API.

    ``base_url`` is the server root (without ``/v1``). Every POST/PATCH/DELETE gets a fresh
    uuid4 Idempotency-Key per call unless ``idempotency_key=`` is given; retries of that call
    (409 ``idempotency_in_progress``, 502/503/504, connect errors, timeouts, dropped
    connections — at most ``max_retries`` of them, exponential backoff with jitter, or the
    server's ``Retry-After``) reuse it. ``sleep`` is injectable for tests. Any other error
    raises a ``SlotguardError`` subclass. Same surface as ``Client``, with ``await``;
    ``iter()`` returns an async iterator. Use ``async with`` or ``await client.aclose()``.
    """

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        timeout: float | httpx.Timeout = 10.0,
        max_retries: int = 5,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[object]] | None = None,
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
        self._http = httpx.AsyncClient(
            base_url=self._core.base_url,
            headers=self._core.headers,
            timeout=timeout,
            transport=transport,
        )
        self._sleep: Callable[[float], Awaitable[object]] = sleep or asyncio.sleep
        self.availability = AsyncAvailability(self)
        self.holds = AsyncHolds(self)
        self.bookings = AsyncBookings(self)
        self.businesses = AsyncBusinesses(self)
        self.meeting_classes = AsyncMeetingClasses(self)
        self.rules = AsyncRules(self)

    async def _run(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            request = self._core.build_request(self._http, call)
            try:
                response = await self._http.send(request)
            except httpx.TransportError as exc:
                delay = self._core.retry_delay(call, attempt, error=exc)
                if delay is None:
                    raise self._core.connection_error(call, exc) from exc
            else:
                delay = self._core.retry_delay(call, attempt, response=response)
                if delay is None:
                    return self._core.finish(call, response)
            await self._sleep(delay)
            attempt += 1

    async def _paginate(
        self, first: Call[Page[ObjT]], then: Callable[[str], Call[Page[ObjT]]]
    ) -> AsyncIterator[ObjT]:
        call, cursor = first, first.params.get("cursor")
        while True:
            page = await self._run(call)
            for item in page.items:
                yield item
            cursor = next_cursor(cursor, page.next_cursor, page.has_more)
            if cursor is None:
                return
            call = then(cursor)

    async def request(
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
        return await self._run(
            ep.raw(
                method,
                path,
                params=params,
                json=json,
                idempotency_key=idempotency_key,
                if_match=if_match,
            )
        )

    async def aclose(self) -> None:
        """Close the underlying connection pool."""
        await self._http.aclose()

    async def close(self) -> None:
        """Close the underlying connection pool (alias of ``aclose``)."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class _Resource:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client


class AsyncAvailability(_Resource):
    """``/v1/availability``: read slots, check-and-hold."""

    async def get_slots(self, **query: Unpack[SlotsQuery]) -> ApiObject:
        """Free slots (GET /v1/availability/slots); returns ``{business_id, slots, …}``."""
        return await self._client._run(ep.get_slots(query))

    async def hold(
        self, *, idempotency_key: str | None = None, **request: Unpack[HoldRequest]
    ) -> ApiObject:
        """Find and hold up to ``max_slots`` slots in the window (POST /v1/availability)."""
        return await self._client._run(ep.hold(request, idempotency_key=idempotency_key))


class AsyncHolds(_Resource):
    """``/v1/holds``."""

    async def get(self, hold_id: str) -> ApiObject:
        """Fetch a hold and its status."""
        return await self._client._run(ep.get_hold(hold_id))

    async def release(self, hold_id: str, *, idempotency_key: str | None = None) -> ApiObject:
        """Release a hold (releasing twice is fine)."""
        return await self._client._run(ep.release_hold(hold_id, idempotency_key=idempotency_key))


class AsyncBookings(_Resource):
    """``/v1/bookings``. Returned bookings are ``Booking`` dicts with ``.etag``/``.version``."""

    async def create(
        self, *, idempotency_key: str | None = None, **fields: Unpack[BookingCreate]
    ) -> Booking:
        """Book a slot in one step (POST /v1/bookings)."""
        return await self._client._run(ep.create_booking(fields, idempotency_key=idempotency_key))

    async def confirm(
        self, hold_id: str, *, idempotency_key: str | None = None, **fields: Unpack[HoldConfirm]
    ) -> Confirmation:
        """Turn a hold into a booking; returns ``{booking_id, correlation_id, booking}``."""
        return await self._client._run(
            ep.confirm_hold(hold_id, fields, idempotency_key=idempotency_key)
        )

    async def get(self, booking_id: str) -> Booking:
        """Fetch a booking (with its ETag)."""
        return await self._client._run(ep.get_booking(booking_id))

    async def list(self, **filters: Unpack[BookingFilters]) -> Page[Booking]:
        """One page of bookings; pass ``cursor=page.next_cursor`` for the next."""
        return await self._client._run(ep.list_bookings(filters))

    def iter(self, **filters: Unpack[BookingFilters]) -> AsyncIterator[Booking]:
        """Every booking matching the filters, fetching pages as needed."""
        return self._client._paginate(
            ep.list_bookings(filters), lambda cursor: ep.list_bookings(filters, cursor=cursor)
        )

    async def cancel(
        self,
        booking_id: str,
        reason: str | None = None,
        if_match: IfMatch | None = None,
        idempotency_key: str | None = None,
    ) -> Booking:
        """Cancel a booking (cancelling twice returns it unchanged)."""
        return await self._client._run(
            ep.cancel_booking(
                booking_id, reason=reason, if_match=if_match, idempotency_key=idempotency_key
            )
        )

    async def reschedule(
        self,
        booking_id: str,
        start_time: DateTimeLike,
        end_time: DateTimeLike | None = None,
        if_match: IfMatch | None = None,
        idempotency_key: str | None = None,
    ) -> Booking:
        """Move a booking to a new time (same id, version + 1)."""
        return await self._client._run(
            ep.reschedule_booking(
                booking_id,
                start_time=start_time,
                end_time=end_time,
                if_match=if_match,
                idempotency_key=idempotency_key,
            )
        )

    async def update(
        self,
        booking_id: str,
        *,
        if_match: IfMatch,
        idempotency_key: str | None = None,
        **fields: Unpack[BookingUpdate],
    ) -> Booking:
        """PATCH title/description/attendees/metadata/customer_name; None sends null."""
        return await self._client._run(
            ep.update_booking(
                booking_id, fields, if_match=if_match, idempotency_key=idempotency_key
            )
        )


class AsyncBusinesses(_Resource):
    """``/v1/businesses``."""

    async def create(
        self, *, idempotency_key: str | None = None, **fields: Unpack[BusinessCreate]
    ) -> ApiObject:
        """Create a business."""
        return await self._client._run(ep.create_business(fields, idempotency_key=idempotency_key))

    async def get(self, business_id: str) -> ApiObject:
        """Fetch a business."""
        return await self._client._run(ep.get_business(business_id))

    async def list(self, **query: Unpack[ListQuery]) -> Page[ApiObject]:
        """One page of businesses."""
        return await self._client._run(ep.list_businesses(query))

    def iter(self, **query: Unpack[ListQuery]) -> AsyncIterator[ApiObject]:
        """Every business, fetching pages as needed."""
        return self._client._paginate(
            ep.list_businesses(query), lambda cursor: ep.list_businesses(query, cursor=cursor)
        )

    async def update(
        self,
        business_id: str,
        *,
        idempotency_key: str | None = None,
        **fields: Unpack[BusinessUpdate],
    ) -> ApiObject:
        """PATCH a business; passed fields are sent as given (None sends null)."""
        return await self._client._run(
            ep.update_business(business_id, fields, idempotency_key=idempotency_key)
        )

    async def delete(self, business_id: str, *, idempotency_key: str | None = None) -> ApiObject:
        """Delete a business."""
        return await self._client._run(
            ep.delete_business(business_id, idempotency_key=idempotency_key)
        )

    async def effective_rules(self, business_id: str) -> ApiObject:
        """The business's effective rules, each with its source (account/business)."""
        return await self._client._run(ep.effective_rules(business_id))


class AsyncMeetingClasses(_Resource):
    """``/v1/meeting-classes`` (addressed by ``name``)."""

    async def create(
        self, *, idempotency_key: str | None = None, **fields: Unpack[MeetingClassCreate]
    ) -> ApiObject:
        """Create a meeting class."""
        return await self._client._run(
            ep.create_meeting_class(fields, idempotency_key=idempotency_key)
        )

    async def get(self, name: str) -> ApiObject:
        """Fetch a meeting class by name."""
        return await self._client._run(ep.get_meeting_class(name))

    async def list(self, **query: Unpack[ListQuery]) -> Page[ApiObject]:
        """One page of meeting classes."""
        return await self._client._run(ep.list_meeting_classes(query))

    def iter(self, **query: Unpack[ListQuery]) -> AsyncIterator[ApiObject]:
        """Every meeting class, fetching pages as needed."""
        return self._client._paginate(
            ep.list_meeting_classes(query),
            lambda cursor: ep.list_meeting_classes(query, cursor=cursor),
        )

    async def update(
        self, name: str, *, idempotency_key: str | None = None, **fields: Unpack[MeetingClassUpdate]
    ) -> ApiObject:
        """PATCH a meeting class; passed fields are sent as given (None sends null)."""
        return await self._client._run(
            ep.update_meeting_class(name, fields, idempotency_key=idempotency_key)
        )

    async def delete(self, name: str, *, idempotency_key: str | None = None) -> ApiObject:
        """Delete a meeting class."""
        return await self._client._run(
            ep.delete_meeting_class(name, idempotency_key=idempotency_key)
        )


class AsyncRules(_Resource):
    """``/v1/rules/defaults``: the account layer of the rules."""

    async def get_defaults(self) -> ApiObject:
        """The account's default rules."""
        return await self._client._run(ep.get_rule_defaults())

    async def put_defaults(self, **fields: Unpack[RulesFields]) -> ApiObject:
        """Replace the account's default rules with exactly the fields passed."""
        return await self._client._run(ep.put_rule_defaults(fields))
