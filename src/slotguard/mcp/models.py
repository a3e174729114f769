"""What the tools return: each model is a tool's output schema (results are structured).

Instants are given twice: ``*_utc`` (RFC 3339, ``Z``) and ``*_local`` (the business's zone,
with offset), with the zone named next to them, so an agent never converts time itself.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class Instant(BaseModel):
    utc: str = Field(description="RFC 3339 in UTC (Z)")
    local: str = Field(description="The same instant in the business's time zone, with offset")


class TimeRange(BaseModel):
    start: Instant
    end: Instant


class ToolFailure(BaseModel):
    """The structured content of every failed call (``isError: true``)."""

    error: str = Field(description="The API's stable error code (e.g. conflict, forbidden)")
    message: str
    status: int | None = Field(description="HTTP status of the API call; null: no response")
    details: dict[str, Any]
    retryable: bool = Field(
        description="True when the same call (same idempotency_key) may succeed later"
    )
    next_step: str = Field(description="What to do next, in one sentence")
    next_available: TimeRange | None = None
    request_id: str | None = Field(default=None, description="Pass to explain_decision")


class MeetingClassInfo(BaseModel):
    name: str
    display_name: str
    duration_minutes: int | None
    priority: int


class BusinessContext(BaseModel):
    business_id: str
    name: str
    timezone: str = Field(
        description="IANA zone: the only zone to present this business's times in"
    )
    rules: dict[str, Any] = Field(description="Effective rules (working hours are in `timezone`)")
    rule_sources: dict[str, str]


class Context(BaseModel):
    now: Instant = Field(description="The server's clock; `local` is in UTC here")
    account_id: str
    key_id: str | None
    agent_id: str | None
    scopes: list[str]
    allowed_business_ids: str | list[str]
    businesses: list[BusinessContext]
    meeting_classes: list[MeetingClassInfo]
    tools: list[str] = Field(description="The tools this key may use")


class Slots(BaseModel):
    business_id: str
    timezone: str
    duration_minutes: int
    slots: list[TimeRange]
    computed_at: str
    limit_reached: bool = Field(
        description="True when more slots may exist: narrow or page the window"
    )
    warnings: list[dict[str, Any]]


class SlotCheck(BaseModel):
    available: bool
    reason: str | None = Field(
        default=None, description="Why not (a conflict reason such as overlaps_booking)"
    )
    start: Instant
    end: Instant
    timezone: str
    meeting_class: str
    next_available: TimeRange | None = None
    next_step: str


class HoldResult(BaseModel):
    hold_id: str
    business_id: str | None
    status: str = Field(description="active | confirmed | released | expired | preempted")
    slots: list[TimeRange]
    timezone: str
    expires_at: Instant
    expires_in_seconds: int = Field(description="Seconds left (server clock); 0 when not active")
    meeting_class: str
    decision: str | None = None
    preempted_holds: list[str] = Field(default_factory=list)
    booking_id: str | None = None
    replayed: bool = Field(default=False, description="An earlier identical call was replayed")
    request_id: str | None = None
    warnings: list[dict[str, Any]] = Field(default_factory=list)


class BookingResult(BaseModel):
    booking_id: str
    business_id: str
    status: Literal["confirmed", "cancelled", "preempted"]
    start: Instant
    end: Instant
    timezone: str
    meeting_class: str
    title: str | None
    customer_email: str | None
    customer_name: str | None
    attendees: list[dict[str, Any]]
    version: int = Field(description="Pass as expected_version to change it safely")
    hold_id: str | None
    calendar_sync_status: str
    cancellation_reason: str | None = None
    already_confirmed: bool = Field(
        default=False, description="confirm_hold: the hold had been confirmed already"
    )
    replayed: bool = Field(default=False, description="An earlier identical call was replayed")
    request_id: str | None = None


class BookingList(BaseModel):
    bookings: list[BookingResult]
    next_cursor: str | None = Field(description="Pass as cursor for more; null on the last page")
    has_more: bool = Field(description="Follow next_cursor before concluding anything")


class AuditRow(BaseModel):
    id: str
    at: str
    action: str
    decision: str | None
    reason: str | None
    business_id: str | None
    hold_id: str | None
    booking_id: str | None
    meeting_class: str | None
    agent_id: str | None
    request_id: str | None
    details: dict[str, Any]


class Explanation(BaseModel):
    summary: str = Field(description="A short account of what happened and why, for a person")
    rows: list[AuditRow]
