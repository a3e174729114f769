"""``AsyncClient``: the asyncio executor and its resource namespaces (thin wrappers).

Mirror of ``_sync.py``; only the executor differs (await, ``asyncio.sleep``).
"""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar, Unpack

import httpx

from . import _endpoints as ep
from ._core import DEFAULT_BASE_URL, Call, Core, next_cursor
from ._models import (
    Agent,
    AgentCreate,
    AgentUpdate,
    ApiKey,
    ApiObject,
    ApiResponse,
    AuditEntry,
    AuditFilters,
    AvailabilityCheck,
    Booking,
    BookingCreate,
    BookingFilters,
    BookingUpdate,
    Business,
    BusinessCreate,
    BusinessUpdate,
    BusyCreate,
    BusyInterval,
    BusyQuery,
    Calendar,
    CalendarCreate,
    CalendarUpdate,
    CheckQuery,
    Confirmation,
    DateTimeLike,
    DeliveryQuery,
    EffectiveRules,
    Hold,
    HoldConfirm,
    HoldDecision,
    HoldRequest,
    IfMatch,
    ListQuery,
    Me,
    MeetingClass,
    MeetingClassCreate,
    MeetingClassUpdate,
    Page,
    RulesFields,
    SlotList,
    SlotsQuery,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEndpointCreate,
    WebhookEndpointUpdate,
)

T = TypeVar("T")
ObjT = TypeVar("ObjT", bound=ApiObject)


class AsyncClient:
    """Asyncio client for the slotguard HTTP API.

    ``base_url`` is the server root (without ``/v1``). Every POST/PATCH/DELETE gets a fresh
    uuid4 Idempotency-Key per call unless ``idempotency_key=`` is given; retries of that call
    (409 ``idempotency_in_progress``, 429, 5xx other than 501/505, connect errors,
    timeouts, dropped connections — at most ``max_retries`` of them, after the server's
    ``Retry-After`` (capped at ``max_retry_after``) or exponential backoff with jitter,
    all within ``deadline`` seconds per call, which also cuts a hanging attempt) reuse it.
    ``sleep`` is injectable for tests. Any other error
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
        deadline: float | None = 60.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._core = Core(
            api_key,
            base_url,
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            max_retry_after=max_retry_after,
            deadline=deadline,
        )
        self._clock: Callable[[], float] = clock or time.monotonic
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
        self.agents = AsyncAgents(self)
        self.keys = AsyncKeys(self)
        self.calendars = AsyncCalendars(self)
        self.webhook_endpoints = AsyncWebhookEndpoints(self)
        self.audit_log = AsyncAuditLog(self)

    async def _run(self, call: Call[T]) -> T:
        attempt, started = 0, self._clock()
        while True:
            request = self._core.build_request(self._http, call, elapsed=self._clock() - started)
            try:
                response = await self._http.send(request)
            except httpx.TransportError as exc:
                delay = self._core.retry_delay(
                    call, attempt, error=exc, elapsed=self._clock() - started
                )
                if delay is None:
                    raise self._core.connection_error(call, exc) from exc
            else:
                delay = self._core.retry_delay(
                    call, attempt, response=response, elapsed=self._clock() - started
                )
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

    async def me(self) -> Me:
        """The calling key: account, agent, scopes, businesses and the server's clock."""
        return await self._run(ep.me())

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
    """``/v1/availability``: read slots, check one booking, check-and-hold."""

    async def get_slots(self, **query: Unpack[SlotsQuery]) -> SlotList:
        """Free slots (GET /v1/availability/slots); returns ``{business_id, slots, …}``."""
        return await self._client._run(ep.get_slots(query))

    async def check(self, **query: Unpack[CheckQuery]) -> AvailabilityCheck:
        """Would this one-step booking succeed now? (GET /v1/availability/check, no writes)."""
        return await self._client._run(ep.check(query))

    async def hold(
        self, *, idempotency_key: str | None = None, **request: Unpack[HoldRequest]
    ) -> HoldDecision:
        """Find and hold up to ``max_slots`` slots in the window (POST /v1/availability)."""
        return await self._client._run(ep.hold(request, idempotency_key=idempotency_key))


class AsyncHolds(_Resource):
    """``/v1/holds``."""

    async def get(self, hold_id: str) -> Hold:
        """Fetch a hold and its status."""
        return await self._client._run(ep.get_hold(hold_id))

    async def release(self, hold_id: str, *, idempotency_key: str | None = None) -> Hold:
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

    list_all = iter

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
    """``/v1/businesses``; busy time under ``.busy``, calendars under ``client.calendars``."""

    async def create(
        self, *, idempotency_key: str | None = None, **fields: Unpack[BusinessCreate]
    ) -> Business:
        """Create a business."""
        return await self._client._run(ep.create_business(fields, idempotency_key=idempotency_key))

    async def get(self, business_id: str) -> Business:
        """Fetch a business."""
        return await self._client._run(ep.get_business(business_id))

    async def list(self, **query: Unpack[ListQuery]) -> Page[Business]:
        """One page of businesses."""
        return await self._client._run(ep.list_businesses(query))

    def iter(self, **query: Unpack[ListQuery]) -> AsyncIterator[Business]:
        """Every business, fetching pages as needed."""
        return self._client._paginate(
            ep.list_businesses(query), lambda cursor: ep.list_businesses(query, cursor=cursor)
        )

    list_all = iter

    async def update(
        self,
        business_id: str,
        *,
        idempotency_key: str | None = None,
        **fields: Unpack[BusinessUpdate],
    ) -> Business:
        """PATCH a business; passed fields are sent as given (None sends null)."""
        return await self._client._run(
            ep.update_business(business_id, fields, idempotency_key=idempotency_key)
        )

    async def delete(self, business_id: str, *, idempotency_key: str | None = None) -> ApiObject:
        """Delete a business."""
        return await self._client._run(
            ep.delete_business(business_id, idempotency_key=idempotency_key)
        )

    async def effective_rules(self, business_id: str) -> EffectiveRules:
        """The business's effective rules, each with its source (account/business)."""
        return await self._client._run(ep.effective_rules(business_id))

    async def add_busy(
        self, business_id: str, *, idempotency_key: str | None = None, **fields: Unpack[BusyCreate]
    ) -> BusyInterval:
        """Post busy time for a calendar the server cannot reach (§2.4)."""
        return await self._client._run(
            ep.create_busy(business_id, fields, idempotency_key=idempotency_key)
        )

    async def list_busy(self, business_id: str, **query: Unpack[BusyQuery]) -> Page[BusyInterval]:
        """One page of a business's posted busy time."""
        return await self._client._run(ep.list_busy(business_id, query))

    def list_all_busy(
        self, business_id: str, **query: Unpack[BusyQuery]
    ) -> AsyncIterator[BusyInterval]:
        """All of a business's posted busy time, fetching pages as needed."""
        return self._client._paginate(
            ep.list_busy(business_id, query),
            lambda cursor: ep.list_busy(business_id, query, cursor=cursor),
        )

    async def delete_busy(
        self, business_id: str, busy_id: str, *, idempotency_key: str | None = None
    ) -> ApiObject:
        """Remove posted busy time."""
        return await self._client._run(
            ep.delete_busy(business_id, busy_id, idempotency_key=idempotency_key)
        )


class AsyncMeetingClasses(_Resource):
    """``/v1/meeting-classes`` (addressed by ``name``)."""

    async def create(
        self, *, idempotency_key: str | None = None, **fields: Unpack[MeetingClassCreate]
    ) -> MeetingClass:
        """Create a meeting class."""
        return await self._client._run(
            ep.create_meeting_class(fields, idempotency_key=idempotency_key)
        )

    async def get(self, name: str) -> MeetingClass:
        """Fetch a meeting class by name."""
        return await self._client._run(ep.get_meeting_class(name))

    async def list(self, **query: Unpack[ListQuery]) -> Page[MeetingClass]:
        """One page of meeting classes."""
        return await self._client._run(ep.list_meeting_classes(query))

    def iter(self, **query: Unpack[ListQuery]) -> AsyncIterator[MeetingClass]:
        """Every meeting class, fetching pages as needed."""
        return self._client._paginate(
            ep.list_meeting_classes(query),
            lambda cursor: ep.list_meeting_classes(query, cursor=cursor),
        )

    list_all = iter

    async def update(
        self, name: str, *, idempotency_key: str | None = None, **fields: Unpack[MeetingClassUpdate]
    ) -> MeetingClass:
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


class AsyncAgents(_Resource):
    """``/v1/agents`` and their keys (§6); scope ``admin``."""

    async def create(
        self, *, idempotency_key: str | None = None, **fields: Unpack[AgentCreate]
    ) -> Agent:
        """Create an agent with scopes and allowed businesses."""
        return await self._client._run(ep.create_agent(fields, idempotency_key=idempotency_key))

    async def get(self, agent_id: str) -> Agent:
        """Fetch an agent."""
        return await self._client._run(ep.get_agent(agent_id))

    async def list(self, **query: Unpack[ListQuery]) -> Page[Agent]:
        """One page of agents."""
        return await self._client._run(ep.list_agents(query))

    def list_all(self, **query: Unpack[ListQuery]) -> AsyncIterator[Agent]:
        """Every agent, fetching pages as needed."""
        return self._client._paginate(
            ep.list_agents(query), lambda cursor: ep.list_agents(query, cursor=cursor)
        )

    async def update(
        self, agent_id: str, *, idempotency_key: str | None = None, **fields: Unpack[AgentUpdate]
    ) -> Agent:
        """PATCH an agent; passed fields are sent as given (None sends null)."""
        return await self._client._run(
            ep.update_agent(agent_id, fields, idempotency_key=idempotency_key)
        )

    async def delete(self, agent_id: str, *, idempotency_key: str | None = None) -> ApiObject:
        """Delete an agent; its keys stop working at once."""
        return await self._client._run(ep.delete_agent(agent_id, idempotency_key=idempotency_key))

    async def create_key(
        self, agent_id: str, *, name: str | None = None, idempotency_key: str | None = None
    ) -> ApiKey:
        """Mint a key for the agent; ``result.key`` is the secret, shown only here."""
        return await self._client._run(
            ep.create_key(agent_id, name=name, idempotency_key=idempotency_key)
        )

    async def list_keys(self, agent_id: str, **query: Unpack[ListQuery]) -> Page[ApiKey]:
        """One page of the agent's keys (no secrets)."""
        return await self._client._run(ep.list_keys(agent_id, query))


class AsyncKeys(_Resource):
    """``/v1/keys/{id}``: read or revoke one key."""

    async def get(self, key_id: str) -> ApiKey:
        """Fetch a key (no secret)."""
        return await self._client._run(ep.get_key(key_id))

    async def revoke(self, key_id: str, *, idempotency_key: str | None = None) -> ApiKey:
        """Revoke a key at once."""
        return await self._client._run(ep.revoke_key(key_id, idempotency_key=idempotency_key))


class AsyncCalendars(_Resource):
    """``/v1/businesses/{id}/calendars`` (§7.1, §7.5); scope ``admin`` for changes."""

    async def create(
        self,
        business_id: str,
        *,
        idempotency_key: str | None = None,
        **fields: Unpack[CalendarCreate],
    ) -> Calendar:
        """Connect a calendar (``ics``, ``caldav``, ``google``, ``microsoft``)."""
        return await self._client._run(
            ep.create_calendar(business_id, fields, idempotency_key=idempotency_key)
        )

    async def list(self, business_id: str, **query: Unpack[ListQuery]) -> Page[Calendar]:
        """One page of the business's calendars."""
        return await self._client._run(ep.list_calendars(business_id, query))

    def list_all(self, business_id: str, **query: Unpack[ListQuery]) -> AsyncIterator[Calendar]:
        """All the business's calendars, fetching pages as needed."""
        return self._client._paginate(
            ep.list_calendars(business_id, query),
            lambda cursor: ep.list_calendars(business_id, query, cursor=cursor),
        )

    async def get(self, business_id: str, calendar_id: str) -> Calendar:
        """Fetch a calendar with its sync status."""
        return await self._client._run(ep.get_calendar(business_id, calendar_id))

    async def update(
        self,
        business_id: str,
        calendar_id: str,
        *,
        idempotency_key: str | None = None,
        **fields: Unpack[CalendarUpdate],
    ) -> Calendar:
        """PATCH name, role or credentials."""
        return await self._client._run(
            ep.update_calendar(business_id, calendar_id, fields, idempotency_key=idempotency_key)
        )

    async def delete(
        self, business_id: str, calendar_id: str, *, idempotency_key: str | None = None
    ) -> ApiObject:
        """Disconnect a calendar and drop its busy time."""
        return await self._client._run(
            ep.delete_calendar(business_id, calendar_id, idempotency_key=idempotency_key)
        )

    async def sync(
        self, business_id: str, calendar_id: str, *, idempotency_key: str | None = None
    ) -> Calendar:
        """Run one sync now."""
        return await self._client._run(
            ep.sync_calendar(business_id, calendar_id, idempotency_key=idempotency_key)
        )

    async def busy(
        self,
        business_id: str,
        calendar_id: str,
        *,
        start: DateTimeLike | None = None,
        end: DateTimeLike | None = None,
    ) -> Page[BusyInterval]:
        """Busy intervals of the local copy (UTC, no titles)."""
        return await self._client._run(
            ep.calendar_busy(business_id, calendar_id, start=start, end=end)
        )

    async def start_oauth(
        self,
        business_id: str,
        provider: str,
        *,
        role: str | None = None,
        calendar_id: str | None = None,
        name: str | None = None,
        idempotency_key: str | None = None,
    ) -> ApiObject:
        """Begin the browser flow; returns ``{authorization_url, expires_at}``."""
        return await self._client._run(
            ep.start_calendar_oauth(
                business_id,
                provider,
                role=role,
                calendar_id=calendar_id,
                name=name,
                idempotency_key=idempotency_key,
            )
        )


class AsyncWebhookEndpoints(_Resource):
    """``/v1/webhook-endpoints`` (§8); verify deliveries with ``slotguard.webhooks.verify``."""

    async def create(
        self, *, idempotency_key: str | None = None, **fields: Unpack[WebhookEndpointCreate]
    ) -> WebhookEndpoint:
        """Register an endpoint; ``result.secret`` (``whsec_…``) is shown only here."""
        return await self._client._run(ep.create_endpoint(fields, idempotency_key=idempotency_key))

    async def get(self, endpoint_id: str) -> WebhookEndpoint:
        """Fetch an endpoint (no secret)."""
        return await self._client._run(ep.get_endpoint(endpoint_id))

    async def list(self, **query: Unpack[ListQuery]) -> Page[WebhookEndpoint]:
        """One page of endpoints."""
        return await self._client._run(ep.list_endpoints(query))

    def list_all(self, **query: Unpack[ListQuery]) -> AsyncIterator[WebhookEndpoint]:
        """Every endpoint, fetching pages as needed."""
        return self._client._paginate(
            ep.list_endpoints(query), lambda cursor: ep.list_endpoints(query, cursor=cursor)
        )

    async def update(
        self,
        endpoint_id: str,
        *,
        idempotency_key: str | None = None,
        **fields: Unpack[WebhookEndpointUpdate],
    ) -> WebhookEndpoint:
        """PATCH url, events, description or enabled."""
        return await self._client._run(
            ep.update_endpoint(endpoint_id, fields, idempotency_key=idempotency_key)
        )

    async def delete(self, endpoint_id: str, *, idempotency_key: str | None = None) -> ApiObject:
        """Delete an endpoint."""
        return await self._client._run(
            ep.delete_endpoint(endpoint_id, idempotency_key=idempotency_key)
        )

    async def rotate_secret(
        self,
        endpoint_id: str,
        *,
        grace_period_seconds: int | None = None,
        idempotency_key: str | None = None,
    ) -> WebhookEndpoint:
        """New signing secret (shown once); the old one co-signs during the grace period."""
        return await self._client._run(
            ep.rotate_endpoint_secret(
                endpoint_id,
                grace_period_seconds=grace_period_seconds,
                idempotency_key=idempotency_key,
            )
        )

    async def test(self, endpoint_id: str, *, idempotency_key: str | None = None) -> ApiObject:
        """Send a signed test event now and report what the receiver answered."""
        return await self._client._run(
            ep.test_endpoint(endpoint_id, idempotency_key=idempotency_key)
        )

    async def deliveries(
        self, endpoint_id: str, **query: Unpack[DeliveryQuery]
    ) -> Page[WebhookDelivery]:
        """One page of delivery attempts, newest first."""
        return await self._client._run(ep.list_deliveries(endpoint_id, query))


class AsyncAuditLog(_Resource):
    """``/v1/audit-log`` (§8); scope ``audit:read``."""

    async def list(self, **filters: Unpack[AuditFilters]) -> Page[AuditEntry]:
        """One page of audit rows, oldest first."""
        return await self._client._run(ep.list_audit(filters))

    def list_all(self, **filters: Unpack[AuditFilters]) -> AsyncIterator[AuditEntry]:
        """Every matching audit row, fetching pages as needed."""
        return self._client._paginate(
            ep.list_audit(filters), lambda cursor: ep.list_audit(filters, cursor=cursor)
        )

    async def export(self, **filters: Unpack[AuditFilters]) -> builtins.list[AuditEntry]:
        """Every matching row from the JSONL export, in one response."""
        return await self._client._run(ep.export_audit(filters))
