"""One builder per API endpoint: arguments in, ``Call`` out (no I/O).

The sync and async resource classes are thin wrappers that forward their arguments here and
run the returned ``Call``; the endpoint's path, body shape, None-handling and response type
are therefore written exactly once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ._core import Call, check_kwargs, drop_none, make_call, path_segment
from ._errors import SlotguardError
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

ObjT = TypeVar("ObjT", bound=ApiObject)


# --- parsers ------------------------------------------------------------------------------


def _invalid(response: ApiResponse, what: str) -> SlotguardError:
    return SlotguardError(
        f"Expected {what} in the response data.",
        status=response.status,
        code="invalid_response",
        request_id=response.request_id,
        body=response.data,
        headers=response.headers,
    )


def _object(cls: type[ObjT]) -> Callable[[ApiResponse], ObjT]:
    def parse(response: ApiResponse) -> ObjT:
        data = response.data
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise _invalid(response, "an object")
        return cls(
            data,
            request_id=response.request_id,
            etag=response.etag,
            location=response.location,
            replayed=response.replayed,
            date=response.date,
        )

    return parse


parse_object = _object(ApiObject)
parse_booking = _object(Booking)
parse_business = _object(Business)
parse_meeting_class = _object(MeetingClass)
parse_rules = _object(EffectiveRules)
parse_slots = _object(SlotList)
parse_check = _object(AvailabilityCheck)
parse_hold_decision = _object(HoldDecision)
parse_hold = _object(Hold)
parse_me = _object(Me)
parse_agent = _object(Agent)
parse_key = _object(ApiKey)
parse_audit = _object(AuditEntry)
parse_endpoint = _object(WebhookEndpoint)
parse_calendar = _object(Calendar)
parse_busy = _object(BusyInterval)


def parse_confirmation(response: ApiResponse) -> Confirmation:
    confirmation = _object(Confirmation)(response)
    booking = confirmation.get("booking")
    if isinstance(booking, Mapping):
        # The response's ETag (if any) is the new booking's.
        confirmation["booking"] = Booking(
            booking,
            request_id=response.request_id,
            etag=response.etag,
            location=response.location,
            replayed=response.replayed,
            date=response.date,
        )
    return confirmation


def _page(item: type[ObjT]) -> Callable[[ApiResponse], Page[ObjT]]:
    def parse(response: ApiResponse) -> Page[ObjT]:
        data = response.data
        if isinstance(data, Mapping) and isinstance(data.get("items"), list):
            data = data["items"]
        if not isinstance(data, list) or not all(isinstance(x, Mapping) for x in data):
            raise _invalid(response, "a list of objects")
        cursor = response.meta.get("next_cursor")
        cursor = cursor if isinstance(cursor, str) and cursor else None
        has_more = response.meta.get("has_more")
        return Page(
            items=[item(x, request_id=response.request_id) for x in data],
            next_cursor=cursor,
            has_more=bool(has_more) if isinstance(has_more, bool) else cursor is not None,
            request_id=response.request_id,
        )

    return parse


parse_object_page = _page(ApiObject)
parse_booking_page = _page(Booking)
parse_business_page = _page(Business)
parse_meeting_class_page = _page(MeetingClass)
parse_agent_page = _page(Agent)
parse_key_page = _page(ApiKey)
parse_audit_page = _page(AuditEntry)
parse_endpoint_page = _page(WebhookEndpoint)
parse_delivery_page = _page(WebhookDelivery)
parse_calendar_page = _page(Calendar)
parse_busy_page = _page(BusyInterval)


# --- availability and holds (§3) ----------------------------------------------------------


def get_slots(query: SlotsQuery) -> Call[SlotList]:
    check_kwargs("get_slots", query, SlotsQuery)
    return make_call("GET", "/v1/availability/slots", parse_slots, params=dict(query))


def hold(request: HoldRequest, *, idempotency_key: str | None) -> Call[HoldDecision]:
    check_kwargs("hold", request, HoldRequest)
    fields: dict[str, Any] = dict(request)
    window = {"start": fields.pop("window_start"), "end": fields.pop("window_end")}
    body = drop_none(fields) | {"window": window}
    return make_call(
        "POST", "/v1/availability", parse_hold_decision, body=body, idempotency_key=idempotency_key
    )


def get_hold(hold_id: str) -> Call[Hold]:
    return make_call("GET", f"/v1/holds/{path_segment(hold_id, what='hold_id')}", parse_hold)


def release_hold(hold_id: str, *, idempotency_key: str | None) -> Call[Hold]:
    path = f"/v1/holds/{path_segment(hold_id, what='hold_id')}"
    return make_call("DELETE", path, parse_hold, idempotency_key=idempotency_key)


# --- bookings (§4) ------------------------------------------------------------------------


def _booking_path(booking_id: str, suffix: str = "") -> str:
    return f"/v1/bookings/{path_segment(booking_id, what='booking_id')}{suffix}"


def create_booking(fields: BookingCreate, *, idempotency_key: str | None) -> Call[Booking]:
    check_kwargs("create", fields, BookingCreate)
    return make_call(
        "POST",
        "/v1/bookings",
        parse_booking,
        body=drop_none(fields),
        idempotency_key=idempotency_key,
    )


def confirm_hold(
    hold_id: str, fields: HoldConfirm, *, idempotency_key: str | None
) -> Call[Confirmation]:
    check_kwargs("confirm", fields, HoldConfirm)
    path = f"/v1/bookings/{path_segment(hold_id, what='hold_id')}/confirm"
    return make_call(
        "POST", path, parse_confirmation, body=drop_none(fields), idempotency_key=idempotency_key
    )


def get_booking(booking_id: str) -> Call[Booking]:
    return make_call("GET", _booking_path(booking_id), parse_booking)


def list_bookings(filters: BookingFilters, *, cursor: str | None = None) -> Call[Page[Booking]]:
    check_kwargs("list", filters, BookingFilters)
    params: dict[str, Any] = dict(filters)
    if cursor is not None:
        params["cursor"] = cursor
    return make_call("GET", "/v1/bookings", parse_booking_page, params=params)


def cancel_booking(
    booking_id: str,
    *,
    reason: str | None,
    if_match: IfMatch | None,
    idempotency_key: str | None,
) -> Call[Booking]:
    return make_call(
        "POST",
        _booking_path(booking_id, "/cancel"),
        parse_booking,
        body=drop_none({"reason": reason}),
        if_match=if_match,
        idempotency_key=idempotency_key,
    )


def reschedule_booking(
    booking_id: str,
    *,
    start_time: DateTimeLike,
    end_time: DateTimeLike | None,
    if_match: IfMatch | None,
    idempotency_key: str | None,
) -> Call[Booking]:
    if start_time is None:
        raise TypeError("reschedule() requires start_time")
    return make_call(
        "POST",
        _booking_path(booking_id, "/reschedule"),
        parse_booking,
        body=drop_none({"start_time": start_time, "end_time": end_time}),
        if_match=if_match,
        idempotency_key=idempotency_key,
    )


def update_booking(
    booking_id: str,
    fields: BookingUpdate,
    *,
    if_match: IfMatch,
    idempotency_key: str | None,
) -> Call[Booking]:
    check_kwargs("update", fields, BookingUpdate)
    if if_match is None:
        raise TypeError("update() requires if_match (the booking's version or ETag)")
    if not fields:
        raise ValueError("update() needs at least one field to change")
    # PATCH sends exactly what was passed: None becomes null (clears the field).
    return make_call(
        "PATCH",
        _booking_path(booking_id),
        parse_booking,
        body=dict(fields),
        if_match=if_match,
        idempotency_key=idempotency_key,
    )


# --- businesses, meeting classes, rules (§2) ----------------------------------------------


def _business_path(business_id: str, suffix: str = "") -> str:
    return f"/v1/businesses/{path_segment(business_id, what='business_id')}{suffix}"


def create_business(fields: BusinessCreate, *, idempotency_key: str | None) -> Call[Business]:
    check_kwargs("create", fields, BusinessCreate)
    return make_call(
        "POST",
        "/v1/businesses",
        parse_business,
        body=drop_none(fields),
        idempotency_key=idempotency_key,
    )


def get_business(business_id: str) -> Call[Business]:
    return make_call("GET", _business_path(business_id), parse_business)


def list_businesses(query: ListQuery, *, cursor: str | None = None) -> Call[Page[Business]]:
    check_kwargs("list", query, ListQuery)
    params: dict[str, Any] = dict(query)
    if cursor is not None:
        params["cursor"] = cursor
    return make_call("GET", "/v1/businesses", parse_business_page, params=params)


def update_business(
    business_id: str, fields: BusinessUpdate, *, idempotency_key: str | None
) -> Call[Business]:
    check_kwargs("update", fields, BusinessUpdate)
    return make_call(
        "PATCH",
        _business_path(business_id),
        parse_business,
        body=dict(fields),
        idempotency_key=idempotency_key,
    )


def delete_business(business_id: str, *, idempotency_key: str | None) -> Call[ApiObject]:
    return make_call(
        "DELETE", _business_path(business_id), parse_object, idempotency_key=idempotency_key
    )


def effective_rules(business_id: str) -> Call[EffectiveRules]:
    return make_call("GET", _business_path(business_id, "/rules"), parse_rules)


def _class_path(name: str) -> str:
    return f"/v1/meeting-classes/{path_segment(name, what='name')}"


def create_meeting_class(
    fields: MeetingClassCreate, *, idempotency_key: str | None
) -> Call[MeetingClass]:
    check_kwargs("create", fields, MeetingClassCreate)
    return make_call(
        "POST",
        "/v1/meeting-classes",
        parse_meeting_class,
        body=drop_none(fields),
        idempotency_key=idempotency_key,
    )


def get_meeting_class(name: str) -> Call[MeetingClass]:
    return make_call("GET", _class_path(name), parse_meeting_class)


def list_meeting_classes(
    query: ListQuery, *, cursor: str | None = None
) -> Call[Page[MeetingClass]]:
    check_kwargs("list", query, ListQuery)
    params: dict[str, Any] = dict(query)
    if cursor is not None:
        params["cursor"] = cursor
    return make_call("GET", "/v1/meeting-classes", parse_meeting_class_page, params=params)


def update_meeting_class(
    name: str, fields: MeetingClassUpdate, *, idempotency_key: str | None
) -> Call[MeetingClass]:
    check_kwargs("update", fields, MeetingClassUpdate)
    return make_call(
        "PATCH",
        _class_path(name),
        parse_meeting_class,
        body=dict(fields),
        idempotency_key=idempotency_key,
    )


def delete_meeting_class(name: str, *, idempotency_key: str | None) -> Call[ApiObject]:
    return make_call("DELETE", _class_path(name), parse_object, idempotency_key=idempotency_key)


def get_rule_defaults() -> Call[ApiObject]:
    return make_call("GET", "/v1/rules/defaults", parse_object)


def put_rule_defaults(fields: RulesFields) -> Call[ApiObject]:
    check_kwargs("put_defaults", fields, RulesFields)
    # PUT replaces the account layer with exactly what was passed (None → null).
    return make_call("PUT", "/v1/rules/defaults", parse_object, body=dict(fields))


# --- availability check and the caller (§3.4, §3.5) ---------------------------------------


def check(query: CheckQuery) -> Call[AvailabilityCheck]:
    check_kwargs("check", query, CheckQuery)
    return make_call("GET", "/v1/availability/check", parse_check, params=dict(query))


def me() -> Call[Me]:
    return make_call("GET", "/v1/me", parse_me)


# --- generic shapes -----------------------------------------------------------------------


def _listing(
    path: str,
    parse: Callable[[ApiResponse], Page[ObjT]],
    query: Mapping[str, Any],
    cursor: str | None,
) -> Call[Page[ObjT]]:
    params: dict[str, Any] = dict(query)
    if cursor is not None:
        params["cursor"] = cursor
    return make_call("GET", path, parse, params=params)


def _write(
    method: str,
    path: str,
    parse: Callable[[ApiResponse], ObjT],
    body: Mapping[str, Any] | None,
    idempotency_key: str | None,
) -> Call[ObjT]:
    return make_call(method, path, parse, body=body, idempotency_key=idempotency_key)


# --- agents and keys (§6) -----------------------------------------------------------------


def _agent_path(agent_id: str, suffix: str = "") -> str:
    return f"/v1/agents/{path_segment(agent_id, what='agent_id')}{suffix}"


def create_agent(fields: AgentCreate, *, idempotency_key: str | None) -> Call[Agent]:
    check_kwargs("create", fields, AgentCreate)
    return _write("POST", "/v1/agents", parse_agent, drop_none(fields), idempotency_key)


def get_agent(agent_id: str) -> Call[Agent]:
    return make_call("GET", _agent_path(agent_id), parse_agent)


def list_agents(query: ListQuery, *, cursor: str | None = None) -> Call[Page[Agent]]:
    check_kwargs("list", query, ListQuery)
    return _listing("/v1/agents", parse_agent_page, query, cursor)


def update_agent(agent_id: str, fields: AgentUpdate, *, idempotency_key: str | None) -> Call[Agent]:
    check_kwargs("update", fields, AgentUpdate)
    return _write("PATCH", _agent_path(agent_id), parse_agent, dict(fields), idempotency_key)


def delete_agent(agent_id: str, *, idempotency_key: str | None) -> Call[ApiObject]:
    return _write("DELETE", _agent_path(agent_id), parse_object, None, idempotency_key)


def create_key(agent_id: str, *, name: str | None, idempotency_key: str | None) -> Call[ApiKey]:
    body = drop_none({"name": name})
    return _write("POST", _agent_path(agent_id, "/keys"), parse_key, body, idempotency_key)


def list_keys(agent_id: str, query: ListQuery, *, cursor: str | None = None) -> Call[Page[ApiKey]]:
    check_kwargs("list_keys", query, ListQuery)
    return _listing(_agent_path(agent_id, "/keys"), parse_key_page, query, cursor)


def _key_path(key_id: str) -> str:
    return f"/v1/keys/{path_segment(key_id, what='key_id')}"


def get_key(key_id: str) -> Call[ApiKey]:
    return make_call("GET", _key_path(key_id), parse_key)


def revoke_key(key_id: str, *, idempotency_key: str | None) -> Call[ApiKey]:
    return _write("DELETE", _key_path(key_id), parse_key, None, idempotency_key)


# --- busy time (§2.4) ---------------------------------------------------------------------


def create_busy(
    business_id: str, fields: BusyCreate, *, idempotency_key: str | None
) -> Call[BusyInterval]:
    check_kwargs("create", fields, BusyCreate)
    path = _business_path(business_id, "/busy")
    return _write("POST", path, parse_busy, drop_none(fields), idempotency_key)


def list_busy(
    business_id: str, query: BusyQuery, *, cursor: str | None = None
) -> Call[Page[BusyInterval]]:
    check_kwargs("list", query, BusyQuery)
    return _listing(_business_path(business_id, "/busy"), parse_busy_page, query, cursor)


def delete_busy(business_id: str, busy_id: str, *, idempotency_key: str | None) -> Call[ApiObject]:
    path = _business_path(business_id, f"/busy/{path_segment(busy_id, what='busy_id')}")
    return _write("DELETE", path, parse_object, None, idempotency_key)


# --- calendars (§7.1, §7.5) ---------------------------------------------------------------


def _calendar_path(business_id: str, calendar_id: str | None = None, suffix: str = "") -> str:
    base = _business_path(business_id, "/calendars")
    if calendar_id is None:
        return base + suffix
    return f"{base}/{path_segment(calendar_id, what='calendar_id')}{suffix}"


def create_calendar(
    business_id: str, fields: CalendarCreate, *, idempotency_key: str | None
) -> Call[Calendar]:
    check_kwargs("create", fields, CalendarCreate)
    path = _calendar_path(business_id)
    return _write("POST", path, parse_calendar, drop_none(fields), idempotency_key)


def list_calendars(
    business_id: str, query: ListQuery, *, cursor: str | None = None
) -> Call[Page[Calendar]]:
    check_kwargs("list", query, ListQuery)
    return _listing(_calendar_path(business_id), parse_calendar_page, query, cursor)


def get_calendar(business_id: str, calendar_id: str) -> Call[Calendar]:
    return make_call("GET", _calendar_path(business_id, calendar_id), parse_calendar)


def update_calendar(
    business_id: str, calendar_id: str, fields: CalendarUpdate, *, idempotency_key: str | None
) -> Call[Calendar]:
    check_kwargs("update", fields, CalendarUpdate)
    path = _calendar_path(business_id, calendar_id)
    return _write("PATCH", path, parse_calendar, dict(fields), idempotency_key)


def delete_calendar(
    business_id: str, calendar_id: str, *, idempotency_key: str | None
) -> Call[ApiObject]:
    path = _calendar_path(business_id, calendar_id)
    return _write("DELETE", path, parse_object, None, idempotency_key)


def sync_calendar(
    business_id: str, calendar_id: str, *, idempotency_key: str | None
) -> Call[Calendar]:
    path = _calendar_path(business_id, calendar_id, "/sync")
    return _write("POST", path, parse_calendar, None, idempotency_key)


def calendar_busy(
    business_id: str,
    calendar_id: str,
    *,
    start: DateTimeLike | None,
    end: DateTimeLike | None,
    cursor: str | None = None,
) -> Call[Page[BusyInterval]]:
    path = _calendar_path(business_id, calendar_id, "/busy")
    return _listing(path, parse_busy_page, drop_none({"start": start, "end": end}), cursor)


def start_calendar_oauth(
    business_id: str,
    provider: str,
    *,
    role: str | None,
    calendar_id: str | None,
    name: str | None,
    idempotency_key: str | None,
) -> Call[ApiObject]:
    if provider not in ("google", "microsoft"):
        raise ValueError("provider must be 'google' or 'microsoft'")
    path = _calendar_path(business_id, suffix=f"/oauth/{provider}")
    body = drop_none({"role": role, "calendar_id": calendar_id, "name": name})
    return _write("POST", path, parse_object, body, idempotency_key)


# --- webhook endpoints (§8) ---------------------------------------------------------------


def _endpoint_path(endpoint_id: str, suffix: str = "") -> str:
    return f"/v1/webhook-endpoints/{path_segment(endpoint_id, what='endpoint_id')}{suffix}"


def create_endpoint(
    fields: WebhookEndpointCreate, *, idempotency_key: str | None
) -> Call[WebhookEndpoint]:
    check_kwargs("create", fields, WebhookEndpointCreate)
    return _write(
        "POST", "/v1/webhook-endpoints", parse_endpoint, drop_none(fields), idempotency_key
    )


def get_endpoint(endpoint_id: str) -> Call[WebhookEndpoint]:
    return make_call("GET", _endpoint_path(endpoint_id), parse_endpoint)


def list_endpoints(query: ListQuery, *, cursor: str | None = None) -> Call[Page[WebhookEndpoint]]:
    check_kwargs("list", query, ListQuery)
    return _listing("/v1/webhook-endpoints", parse_endpoint_page, query, cursor)


def update_endpoint(
    endpoint_id: str, fields: WebhookEndpointUpdate, *, idempotency_key: str | None
) -> Call[WebhookEndpoint]:
    check_kwargs("update", fields, WebhookEndpointUpdate)
    return _write(
        "PATCH", _endpoint_path(endpoint_id), parse_endpoint, dict(fields), idempotency_key
    )


def delete_endpoint(endpoint_id: str, *, idempotency_key: str | None) -> Call[ApiObject]:
    return _write("DELETE", _endpoint_path(endpoint_id), parse_object, None, idempotency_key)


def rotate_endpoint_secret(
    endpoint_id: str, *, grace_period_seconds: int | None, idempotency_key: str | None
) -> Call[WebhookEndpoint]:
    body = drop_none({"grace_period_seconds": grace_period_seconds})
    path = _endpoint_path(endpoint_id, "/rotate-secret")
    return _write("POST", path, parse_endpoint, body or None, idempotency_key)


def test_endpoint(endpoint_id: str, *, idempotency_key: str | None) -> Call[ApiObject]:
    path = _endpoint_path(endpoint_id, "/test")
    return _write("POST", path, parse_object, None, idempotency_key)


def list_deliveries(
    endpoint_id: str, query: DeliveryQuery, *, cursor: str | None = None
) -> Call[Page[WebhookDelivery]]:
    check_kwargs("deliveries", query, DeliveryQuery)
    path = _endpoint_path(endpoint_id, "/deliveries")
    return _listing(path, parse_delivery_page, query, cursor)


# --- audit log (§8) -----------------------------------------------------------------------


def list_audit(filters: AuditFilters, *, cursor: str | None = None) -> Call[Page[AuditEntry]]:
    check_kwargs("list", filters, AuditFilters)
    return _listing("/v1/audit-log", parse_audit_page, filters, cursor)


def _audit_lines(response: ApiResponse) -> list[AuditEntry]:
    text = response.data if isinstance(response.data, str) else ""
    return [
        AuditEntry(json.loads(line), request_id=response.request_id)
        for line in text.splitlines()
        if line.strip()
    ]


def export_audit(filters: AuditFilters) -> Call[list[AuditEntry]]:
    check_kwargs("export", filters, AuditFilters)
    params = {k: v for k, v in filters.items() if k not in ("limit", "cursor")}
    return make_call("GET", "/v1/audit-log/export", _audit_lines, params=params, raw_body=True)


def raw(
    method: str,
    path: str,
    *,
    params: Mapping[str, Any] | None,
    json: Mapping[str, Any] | None,
    idempotency_key: str | None,
    if_match: IfMatch | None,
) -> Call[ApiResponse]:
    if not path.startswith("/"):
        raise ValueError("path must start with '/', e.g. '/v1/agents'")
    return make_call(
        method,
        path,
        lambda response: response,
        params=params,
        body=json,
        idempotency_key=idempotency_key,
        if_match=if_match,
    )
