"""``Client``: the blocking executor and its resource namespaces (thin wrappers)."""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Iterator, Mapping
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


class Client:
    """Blocking client for the slotguard HTTP API.

    ``base_url`` is the server root (without ``/v1``). Every POST/PATCH/DELETE gets a fresh
    uuid4 Idempotency-Key per call unless ``idempotency_key=`` is given; retries of that call
    (409 ``idempotency_in_progress``, 429, 5xx other than 501/505, connect errors,
    timeouts, dropped connections — at most ``max_retries`` of them, after the server's
    ``Retry-After`` (capped at ``max_retry_after``) or exponential backoff with jitter,
    all within ``deadline`` seconds per call, which also cuts a hanging attempt) reuse it.
    ``sleep`` is injectable for tests. Any other error
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
        self.agents = Agents(self)
        self.keys = Keys(self)
        self.calendars = Calendars(self)
        self.webhook_endpoints = WebhookEndpoints(self)
        self.audit_log = AuditLog(self)

    def _run(self, call: Call[T]) -> T:
        attempt, started = 0, self._clock()
        while True:
            request = self._core.build_request(self._http, call, elapsed=self._clock() - started)
            try:
                response = self._http.send(request)
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

    def me(self) -> Me:
        """The calling key: account, agent, scopes, businesses and the server's clock."""
        return self._run(ep.me())

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
    """``/v1/availability``: read slots, check one booking, check-and-hold."""

    def get_slots(self, **query: Unpack[SlotsQuery]) -> SlotList:
        """Free slots (GET /v1/availability/slots); returns ``{business_id, slots, …}``."""
        return self._client._run(ep.get_slots(query))

    def check(self, **query: Unpack[CheckQuery]) -> AvailabilityCheck:
        """Would this one-step booking succeed now? (GET /v1/availability/check, no writes)."""
        return self._client._run(ep.check(query))

    def hold(
        self, *, idempotency_key: str | None = None, **request: Unpack[HoldRequest]
    ) -> HoldDecision:
        """Find and hold up to ``max_slots`` slots in the window (POST /v1/availability)."""
        return self._client._run(ep.hold(request, idempotency_key=idempotency_key))


class Holds(_Resource):
    """``/v1/holds``."""

    def get(self, hold_id: str) -> Hold:
        """Fetch a hold and its status."""
        return self._client._run(ep.get_hold(hold_id))

    def release(self, hold_id: str, *, idempotency_key: str | None = None) -> Hold:
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

    list_all = iter

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
    """``/v1/businesses``; busy time under ``.busy``, calendars under ``client.calendars``."""

    def create(
        self, *, idempotency_key: str | None = None, **fields: Unpack[BusinessCreate]
    ) -> Business:
        """Create a business."""
        return self._client._run(ep.create_business(fields, idempotency_key=idempotency_key))

    def get(self, business_id: str) -> Business:
        """Fetch a business."""
        return self._client._run(ep.get_business(business_id))

    def list(self, **query: Unpack[ListQuery]) -> Page[Business]:
        """One page of businesses."""
        return self._client._run(ep.list_businesses(query))

    def iter(self, **query: Unpack[ListQuery]) -> Iterator[Business]:
        """Every business, fetching pages as needed."""
        return self._client._paginate(
            ep.list_businesses(query), lambda cursor: ep.list_businesses(query, cursor=cursor)
        )

    list_all = iter

    def update(
        self,
        business_id: str,
        *,
        idempotency_key: str | None = None,
        **fields: Unpack[BusinessUpdate],
    ) -> Business:
        """PATCH a business; passed fields are sent as given (None sends null)."""
        return self._client._run(
            ep.update_business(business_id, fields, idempotency_key=idempotency_key)
        )

    def delete(self, business_id: str, *, idempotency_key: str | None = None) -> ApiObject:
        """Delete a business."""
        return self._client._run(ep.delete_business(business_id, idempotency_key=idempotency_key))

    def effective_rules(self, business_id: str) -> EffectiveRules:
        """The business's effective rules, each with its source (account/business)."""
        return self._client._run(ep.effective_rules(business_id))

    def add_busy(
        self, business_id: str, *, idempotency_key: str | None = None, **fields: Unpack[BusyCreate]
    ) -> BusyInterval:
        """Post busy time for a calendar the server cannot reach (§2.4)."""
        return self._client._run(
            ep.create_busy(business_id, fields, idempotency_key=idempotency_key)
        )

    def list_busy(self, business_id: str, **query: Unpack[BusyQuery]) -> Page[BusyInterval]:
        """One page of a business's posted busy time."""
        return self._client._run(ep.list_busy(business_id, query))

    def list_all_busy(self, business_id: str, **query: Unpack[BusyQuery]) -> Iterator[BusyInterval]:
        """All of a business's posted busy time, fetching pages as needed."""
        return self._client._paginate(
            ep.list_busy(business_id, query),
            lambda cursor: ep.list_busy(business_id, query, cursor=cursor),
        )

    def delete_busy(
        self, business_id: str, busy_id: str, *, idempotency_key: str | None = None
    ) -> ApiObject:
        """Remove posted busy time."""
        return self._client._run(
            ep.delete_busy(business_id, busy_id, idempotency_key=idempotency_key)
        )


class MeetingClasses(_Resource):
    """``/v1/meeting-classes`` (addressed by ``name``)."""

    def create(
        self, *, idempotency_key: str | None = None, **fields: Unpack[MeetingClassCreate]
    ) -> MeetingClass:
        """Create a meeting class."""
        return self._client._run(ep.create_meeting_class(fields, idempotency_key=idempotency_key))

    def get(self, name: str) -> MeetingClass:
        """Fetch a meeting class by name."""
        return self._client._run(ep.get_meeting_class(name))

    def list(self, **query: Unpack[ListQuery]) -> Page[MeetingClass]:
        """One page of meeting classes."""
        return self._client._run(ep.list_meeting_classes(query))

    def iter(self, **query: Unpack[ListQuery]) -> Iterator[MeetingClass]:
        """Every meeting class, fetching pages as needed."""
        return self._client._paginate(
            ep.list_meeting_classes(query),
            lambda cursor: ep.list_meeting_classes(query, cursor=cursor),
        )

    list_all = iter

    def update(
        self, name: str, *, idempotency_key: str | None = None, **fields: Unpack[MeetingClassUpdate]
    ) -> MeetingClass:
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


class Agents(_Resource):
    """``/v1/agents`` and their keys (§6); scope ``admin``."""

    def create(self, *, idempotency_key: str | None = None, **fields: Unpack[AgentCreate]) -> Agent:
        """Create an agent with scopes and allowed businesses."""
        return self._client._run(ep.create_agent(fields, idempotency_key=idempotency_key))

    def get(self, agent_id: str) -> Agent:
        """Fetch an agent."""
        return self._client._run(ep.get_agent(agent_id))

    def list(self, **query: Unpack[ListQuery]) -> Page[Agent]:
        """One page of agents."""
        return self._client._run(ep.list_agents(query))

    def list_all(self, **query: Unpack[ListQuery]) -> Iterator[Agent]:
        """Every agent, fetching pages as needed."""
        return self._client._paginate(
            ep.list_agents(query), lambda cursor: ep.list_agents(query, cursor=cursor)
        )

    def update(
        self, agent_id: str, *, idempotency_key: str | None = None, **fields: Unpack[AgentUpdate]
    ) -> Agent:
        """PATCH an agent; passed fields are sent as given (None sends null)."""
        return self._client._run(ep.update_agent(agent_id, fields, idempotency_key=idempotency_key))

    def delete(self, agent_id: str, *, idempotency_key: str | None = None) -> ApiObject:
        """Delete an agent; its keys stop working at once."""
        return self._client._run(ep.delete_agent(agent_id, idempotency_key=idempotency_key))

    def create_key(
        self, agent_id: str, *, name: str | None = None, idempotency_key: str | None = None
    ) -> ApiKey:
        """Mint a key for the agent; ``result.key`` is the secret, shown only here."""
        return self._client._run(
            ep.create_key(agent_id, name=name, idempotency_key=idempotency_key)
        )

    def list_keys(self, agent_id: str, **query: Unpack[ListQuery]) -> Page[ApiKey]:
        """One page of the agent's keys (no secrets)."""
        return self._client._run(ep.list_keys(agent_id, query))


class Keys(_Resource):
    """``/v1/keys/{id}``: read or revoke one key."""

    def get(self, key_id: str) -> ApiKey:
        """Fetch a key (no secret)."""
        return self._client._run(ep.get_key(key_id))

    def revoke(self, key_id: str, *, idempotency_key: str | None = None) -> ApiKey:
        """Revoke a key at once."""
        return self._client._run(ep.revoke_key(key_id, idempotency_key=idempotency_key))


class Calendars(_Resource):
    """``/v1/businesses/{id}/calendars`` (§7.1, §7.5); scope ``admin`` for changes."""

    def create(
        self,
        business_id: str,
        *,
        idempotency_key: str | None = None,
        **fields: Unpack[CalendarCreate],
    ) -> Calendar:
        """Connect a calendar (``ics``, ``caldav``, ``google``, ``microsoft``)."""
        return self._client._run(
            ep.create_calendar(business_id, fields, idempotency_key=idempotency_key)
        )

    def list(self, business_id: str, **query: Unpack[ListQuery]) -> Page[Calendar]:
        """One page of the business's calendars."""
        return self._client._run(ep.list_calendars(business_id, query))

    def list_all(self, business_id: str, **query: Unpack[ListQuery]) -> Iterator[Calendar]:
        """All the business's calendars, fetching pages as needed."""
        return self._client._paginate(
            ep.list_calendars(business_id, query),
            lambda cursor: ep.list_calendars(business_id, query, cursor=cursor),
        )

    def get(self, business_id: str, calendar_id: str) -> Calendar:
        """Fetch a calendar with its sync status."""
        return self._client._run(ep.get_calendar(business_id, calendar_id))

    def update(
        self,
        business_id: str,
        calendar_id: str,
        *,
        idempotency_key: str | None = None,
        **fields: Unpack[CalendarUpdate],
    ) -> Calendar:
        """PATCH name, role or credentials."""
        return self._client._run(
            ep.update_calendar(business_id, calendar_id, fields, idempotency_key=idempotency_key)
        )

    def delete(
        self, business_id: str, calendar_id: str, *, idempotency_key: str | None = None
    ) -> ApiObject:
        """Disconnect a calendar and drop its busy time."""
        return self._client._run(
            ep.delete_calendar(business_id, calendar_id, idempotency_key=idempotency_key)
        )

    def sync(
        self, business_id: str, calendar_id: str, *, idempotency_key: str | None = None
    ) -> Calendar:
        """Run one sync now."""
        return self._client._run(
            ep.sync_calendar(business_id, calendar_id, idempotency_key=idempotency_key)
        )

    def busy(
        self,
        business_id: str,
        calendar_id: str,
        *,
        start: DateTimeLike | None = None,
        end: DateTimeLike | None = None,
    ) -> Page[BusyInterval]:
        """Busy intervals of the local copy (UTC, no titles)."""
        return self._client._run(ep.calendar_busy(business_id, calendar_id, start=start, end=end))

    def start_oauth(
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
        return self._client._run(
            ep.start_calendar_oauth(
                business_id,
                provider,
                role=role,
                calendar_id=calendar_id,
                name=name,
                idempotency_key=idempotency_key,
            )
        )


class WebhookEndpoints(_Resource):
    """``/v1/webhook-endpoints`` (§8); verify deliveries with ``slotguard.webhooks.verify``."""

    def create(
        self, *, idempotency_key: str | None = None, **fields: Unpack[WebhookEndpointCreate]
    ) -> WebhookEndpoint:
        """Register an endpoint; ``result.secret`` (``whsec_…``) is shown only here."""
        return self._client._run(ep.create_endpoint(fields, idempotency_key=idempotency_key))

    def get(self, endpoint_id: str) -> WebhookEndpoint:
        """Fetch an endpoint (no secret)."""
        return self._client._run(ep.get_endpoint(endpoint_id))

    def list(self, **query: Unpack[ListQuery]) -> Page[WebhookEndpoint]:
        """One page of endpoints."""
        return self._client._run(ep.list_endpoints(query))

    def list_all(self, **query: Unpack[ListQuery]) -> Iterator[WebhookEndpoint]:
        """Every endpoint, fetching pages as needed."""
        return self._client._paginate(
            ep.list_endpoints(query), lambda cursor: ep.list_endpoints(query, cursor=cursor)
        )

    def update(
        self,
        endpoint_id: str,
        *,
        idempotency_key: str | None = None,
        **fields: Unpack[WebhookEndpointUpdate],
    ) -> WebhookEndpoint:
        """PATCH url, events, description or enabled."""
        return self._client._run(
            ep.update_endpoint(endpoint_id, fields, idempotency_key=idempotency_key)
        )

    def delete(self, endpoint_id: str, *, idempotency_key: str | None = None) -> ApiObject:
        """Delete an endpoint."""
        return self._client._run(ep.delete_endpoint(endpoint_id, idempotency_key=idempotency_key))

    def rotate_secret(
        self,
        endpoint_id: str,
        *,
        grace_period_seconds: int | None = None,
        idempotency_key: str | None = None,
    ) -> WebhookEndpoint:
        """New signing secret (shown once); the old one co-signs during the grace period."""
        return self._client._run(
            ep.rotate_endpoint_secret(
                endpoint_id,
                grace_period_seconds=grace_period_seconds,
                idempotency_key=idempotency_key,
            )
        )

    def test(self, endpoint_id: str, *, idempotency_key: str | None = None) -> ApiObject:
        """Send a signed test event now and report what the receiver answered."""
        return self._client._run(ep.test_endpoint(endpoint_id, idempotency_key=idempotency_key))

    def deliveries(self, endpoint_id: str, **query: Unpack[DeliveryQuery]) -> Page[WebhookDelivery]:
        """One page of delivery attempts, newest first."""
        return self._client._run(ep.list_deliveries(endpoint_id, query))


class AuditLog(_Resource):
    """``/v1/audit-log`` (§8); scope ``audit:read``."""

    def list(self, **filters: Unpack[AuditFilters]) -> Page[AuditEntry]:
        """One page of audit rows, oldest first."""
        return self._client._run(ep.list_audit(filters))

    def list_all(self, **filters: Unpack[AuditFilters]) -> Iterator[AuditEntry]:
        """Every matching audit row, fetching pages as needed."""
        return self._client._paginate(
            ep.list_audit(filters), lambda cursor: ep.list_audit(filters, cursor=cursor)
        )

    def export(self, **filters: Unpack[AuditFilters]) -> builtins.list[AuditEntry]:
        """Every matching row from the JSONL export, in one response."""
        return self._client._run(ep.export_audit(filters))
