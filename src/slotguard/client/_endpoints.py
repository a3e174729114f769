"""One builder per API endpoint: arguments in, ``Call`` out (no I/O).

The sync and async resource classes are thin wrappers that forward their arguments here and
run the returned ``Call``; the endpoint's path, body shape, None-handling and response type
are therefore written exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ._core import Call, check_kwargs, drop_none, make_call, path_segment
from ._errors import SlotguardError
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
        )

    return parse


parse_object = _object(ApiObject)
parse_booking = _object(Booking)


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


# --- availability and holds (§3) ----------------------------------------------------------


def get_slots(query: SlotsQuery) -> Call[ApiObject]:
    check_kwargs("get_slots", query, SlotsQuery)
    return make_call("GET", "/v1/availability/slots", parse_object, params=dict(query))


def hold(request: HoldRequest, *, idempotency_key: str | None) -> Call[ApiObject]:
    check_kwargs("hold", request, HoldRequest)
    fields: dict[str, Any] = dict(request)
    window = {"start": fields.pop("window_start"), "end": fields.pop("window_end")}
    body = drop_none(fields) | {"window": window}
    return make_call(
        "POST", "/v1/availability", parse_object, body=body, idempotency_key=idempotency_key
    )


def get_hold(hold_id: str) -> Call[ApiObject]:
    return make_call("GET", f"/v1/holds/{path_segment(hold_id, what='hold_id')}", parse_object)


def release_hold(hold_id: str, *, idempotency_key: str | None) -> Call[ApiObject]:
    path = f"/v1/holds/{path_segment(hold_id, what='hold_id')}"
    return make_call("DELETE", path, parse_object, idempotency_key=idempotency_key)


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


def create_business(fields: BusinessCreate, *, idempotency_key: str | None) -> Call[ApiObject]:
    check_kwargs("create", fields, BusinessCreate)
    return make_call(
        "POST",
        "/v1/businesses",
        parse_object,
        body=drop_none(fields),
        idempotency_key=idempotency_key,
    )


def get_business(business_id: str) -> Call[ApiObject]:
    return make_call("GET", _business_path(business_id), parse_object)


def list_businesses(query: ListQuery, *, cursor: str | None = None) -> Call[Page[ApiObject]]:
    check_kwargs("list", query, ListQuery)
    params: dict[str, Any] = dict(query)
    if cursor is not None:
        params["cursor"] = cursor
    return make_call("GET", "/v1/businesses", parse_object_page, params=params)


def update_business(
    business_id: str, fields: BusinessUpdate, *, idempotency_key: str | None
) -> Call[ApiObject]:
    check_kwargs("update", fields, BusinessUpdate)
    return make_call(
        "PATCH",
        _business_path(business_id),
        parse_object,
        body=dict(fields),
        idempotency_key=idempotency_key,
    )


def delete_business(business_id: str, *, idempotency_key: str | None) -> Call[ApiObject]:
    return make_call(
        "DELETE", _business_path(business_id), parse_object, idempotency_key=idempotency_key
    )


def effective_rules(business_id: str) -> Call[ApiObject]:
    return make_call("GET", _business_path(business_id, "/rules"), parse_object)


def _class_path(name: str) -> str:
    return f"/v1/meeting-classes/{path_segment(name, what='name')}"


def create_meeting_class(
    fields: MeetingClassCreate, *, idempotency_key: str | None
) -> Call[ApiObject]:
    check_kwargs("create", fields, MeetingClassCreate)
    return make_call(
        "POST",
        "/v1/meeting-classes",
        parse_object,
        body=drop_none(fields),
        idempotency_key=idempotency_key,
    )


def get_meeting_class(name: str) -> Call[ApiObject]:
    return make_call("GET", _class_path(name), parse_object)


def list_meeting_classes(query: ListQuery, *, cursor: str | None = None) -> Call[Page[ApiObject]]:
    check_kwargs("list", query, ListQuery)
    params: dict[str, Any] = dict(query)
    if cursor is not None:
        params["cursor"] = cursor
    return make_call("GET", "/v1/meeting-classes", parse_object_page, params=params)


def update_meeting_class(
    name: str, fields: MeetingClassUpdate, *, idempotency_key: str | None
) -> Call[ApiObject]:
    check_kwargs("update", fields, MeetingClassUpdate)
    return make_call(
        "PATCH", _class_path(name), parse_object, body=dict(fields), idempotency_key=idempotency_key
    )


def delete_meeting_class(name: str, *, idempotency_key: str | None) -> Call[ApiObject]:
    return make_call("DELETE", _class_path(name), parse_object, idempotency_key=idempotency_key)


def get_rule_defaults() -> Call[ApiObject]:
    return make_call("GET", "/v1/rules/defaults", parse_object)


def put_rule_defaults(fields: RulesFields) -> Call[ApiObject]:
    check_kwargs("put_defaults", fields, RulesFields)
    # PUT replaces the account layer with exactly what was passed (None → null).
    return make_call("PUT", "/v1/rules/defaults", parse_object, body=dict(fields))


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
