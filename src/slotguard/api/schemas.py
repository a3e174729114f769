"""Request and response bodies of the HTTP API."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic import Strict as StrictType

from slotguard.domain.errors import ValidationFailed
from slotguard.domain.limits import check_instant
from slotguard.domain.rules import EffectiveRules, RuleSource, RulesPatch
from slotguard.domain.scopes import Scope
from slotguard.domain.timezones import check_zone_name

ZoneName = Annotated[
    str, AfterValidator(check_zone_name), Field(description="IANA time zone, e.g. Europe/Paris")
]
Slug = Annotated[str, StringConstraints(max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
MetaKey = Annotated[str, StringConstraints(min_length=1, max_length=40)]
MetaValue = Annotated[str, StringConstraints(max_length=500)]
Text200 = Annotated[str, StringConstraints(min_length=1, max_length=200)]


_RFC3339_START = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _instant_text(value: object) -> object:
    """Only RFC 3339 text reaches pydantic's datetime parser, in a query or a body: on its own
    it reads a number (0.5, "1700000000") as Unix time, and a number is not a time here."""
    if isinstance(value, dt.datetime) or (isinstance(value, str) and _RFC3339_START.match(value)):
        return value
    raise ValueError("must be an RFC 3339 date-time with an offset, e.g. 2026-04-01T09:00:00Z")


# Every instant the API accepts (query or body) is parsed here: RFC 3339 text only, bounded,
# then UTC.
Instant = Annotated[
    AwareDatetime, BeforeValidator(_instant_text), StrictType(False), AfterValidator(check_instant)
]
_INSTANT: TypeAdapter[dt.datetime] = TypeAdapter(Instant)


def _whole_number_text(value: object) -> object:
    # Query integers are digits: pydantic alone would read "1.0", "1_000" or " 5" as numbers.
    if isinstance(value, str) and not re.fullmatch(r"-?[0-9]{1,18}", value):
        raise ValueError("must be a whole number written in digits")
    return value


QueryInt = Annotated[int, BeforeValidator(_whole_number_text)]
"""An integer query parameter: digits only."""


def _boolean_text(value: object) -> object:
    # Query booleans are `true` or `false`: pydantic alone would also read 1, "on", "yes"...
    if isinstance(value, str) and value not in ("true", "false"):
        raise ValueError("must be true or false")
    return value


QueryBool = Annotated[bool, BeforeValidator(_boolean_text)]
"""A boolean query parameter: `true` or `false`."""


def parse_instant(text: str) -> dt.datetime:
    """An instant written in text elsewhere (cursors), by the same rules; ValueError if bad."""
    try:
        return _INSTANT.validate_strings(text)
    except ValidationError as exc:
        raise ValueError(str(exc)) from None


class Strict(BaseModel):
    """Base of every request body: unknown fields refused, and strict types (a boolean is not
    an integer, a number is not a string); instants and dates parse from their text forms."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)


def set_fields(
    body: BaseModel, *, nullable: frozenset[str] | set[str] = frozenset()
) -> dict[str, Any]:
    """The fields a PATCH body actually sent; null is refused where it means nothing."""
    changes = {k: getattr(body, k) for k in body.model_fields_set}
    bad = [k for k, v in changes.items() if v is None and k not in nullable]
    if bad:
        raise ValidationFailed(
            "These fields may not be null.",
            fields=[{"field": k, "message": "may not be null"} for k in bad],
        )
    return changes


def _check_metadata(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None and len(value) > 50:
        raise ValueError("metadata may hold at most 50 keys")
    return value


Metadata = Annotated[dict[MetaKey, MetaValue], AfterValidator(_check_metadata)]
MetadataPatch = Annotated[dict[MetaKey, MetaValue | None], AfterValidator(_check_metadata)]


# -- businesses and rules ----------------------------------------------------------------


class BusinessCreate(Strict):
    name: Text200
    email: EmailStr | None = Field(default=None, description="Owner email, unique per account")
    timezone: ZoneName
    rules: RulesPatch | None = Field(default=None, description="Business-level rule overrides")


class BusinessUpdate(Strict):
    name: Text200 | None = None
    email: EmailStr | None = None
    timezone: ZoneName | None = None
    rules: RulesPatch | None = None


class BusinessRead(BaseModel):
    id: str
    name: str
    email: str | None
    timezone: str
    rules: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime


class EffectiveRulesRead(BaseModel):
    business_id: str
    rules: EffectiveRules
    sources: dict[str, RuleSource]


class RulesDefaultsRead(BaseModel):
    rules: dict[str, Any] = Field(description="The account layer as set (unset fields omitted)")
    effective: EffectiveRules = Field(description="Account layer merged with built-in defaults")


# -- meeting classes ---------------------------------------------------------------------


class MeetingClassCreate(Strict):
    name: Slug
    display_name: Text200
    duration_minutes: int | None = Field(default=None, ge=1, le=24 * 60)
    priority: int = Field(default=50, ge=0, le=100)
    buffer_before_minutes: int = Field(default=0, ge=0, le=24 * 60)
    buffer_after_minutes: int = Field(default=0, ge=0, le=24 * 60)


class MeetingClassUpdate(Strict):
    display_name: Text200 | None = None
    duration_minutes: int | None = Field(default=None, ge=1, le=24 * 60)
    priority: int | None = Field(default=None, ge=0, le=100)
    buffer_before_minutes: int | None = Field(default=None, ge=0, le=24 * 60)
    buffer_after_minutes: int | None = Field(default=None, ge=0, le=24 * 60)


class MeetingClassRead(BaseModel):
    name: str
    display_name: str
    duration_minutes: int | None
    priority: int
    buffer_before_minutes: int
    buffer_after_minutes: int
    created_at: dt.datetime
    updated_at: dt.datetime


# -- busy time ---------------------------------------------------------------------------


class BusyCreate(Strict):
    start: Instant
    end: Instant
    title: Annotated[str, StringConstraints(max_length=500)] | None = None
    external_id: Annotated[str, StringConstraints(max_length=500)] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> BusyCreate:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class BusyRead(BaseModel):
    id: str
    business_id: str
    start: dt.datetime
    end: dt.datetime
    title: str | None
    external_id: str | None
    source: str
    created_at: dt.datetime


# -- availability ------------------------------------------------------------------------


class Slot(BaseModel):
    start: dt.datetime
    end: dt.datetime


class SlotsRead(BaseModel):
    business_id: str
    timezone: str
    duration_minutes: int
    slots: list[Slot]
    computed_at: dt.datetime
    warnings: list[dict[str, Any]] = Field(
        default_factory=list, description='e.g. {"code": "calendar_stale", "calendar_id": …}'
    )


# -- bookings ----------------------------------------------------------------------------


class Attendee(Strict):
    email: EmailStr
    display_name: Annotated[str, StringConstraints(max_length=200)] | None = None


class BookingCreate(Strict):
    business_id: str | None = None
    owner_email: EmailStr | None = None
    start_time: Instant = Field(validation_alias=AliasChoices("start_time", "start"))
    end_time: Instant | None = Field(
        default=None,
        validation_alias=AliasChoices("end_time", "end"),
        description="Optional when the meeting class gives a duration",
    )
    meeting_class: str | None = None
    customer_email: EmailStr | None = None
    customer_name: Annotated[str, StringConstraints(max_length=200)] | None = None
    title: Annotated[str, StringConstraints(max_length=500)] | None = None
    description: Annotated[str, StringConstraints(max_length=10_000)] | None = None
    attendees: list[Attendee] = Field(default_factory=list, max_length=100)
    metadata: Metadata = Field(default_factory=dict)

    @model_validator(mode="after")
    def _target(self) -> BookingCreate:
        if not self.business_id and not self.owner_email:
            raise ValueError("business_id or owner_email is required")
        if self.end_time is not None and self.end_time <= self.start_time:
            raise ValueError("end_time must be after start_time")
        return self


class BookingCancel(Strict):
    reason: Annotated[str, StringConstraints(max_length=1000)] | None = None


class BookingReschedule(Strict):
    start_time: Instant = Field(validation_alias=AliasChoices("start_time", "start"))
    end_time: Instant | None = Field(default=None, validation_alias=AliasChoices("end_time", "end"))

    @model_validator(mode="after")
    def _ordered(self) -> BookingReschedule:
        if self.end_time is not None and self.end_time <= self.start_time:
            raise ValueError("end_time must be after start_time")
        return self


class BookingUpdate(Strict):
    title: Annotated[str, StringConstraints(max_length=500)] | None = None
    description: Annotated[str, StringConstraints(max_length=10_000)] | None = None
    attendees: list[Attendee] | None = Field(default=None, max_length=100)
    metadata: MetadataPatch | None = None
    customer_name: Annotated[str, StringConstraints(max_length=200)] | None = None


# Fields of the booking object a PATCH may not touch (422 field_immutable, not 422 unknown).
IMMUTABLE_BOOKING_FIELDS = frozenset(
    {
        "id",
        "business_id",
        "owner_email",
        "meeting_class",
        "status",
        "start_time",
        "end_time",
        "start",
        "end",
        "customer_email",
        "hold_id",
        "correlation_id",
        "version",
        "calendar_sync_status",
        "calendar_event_id",
        "created_at",
        "updated_at",
        "cancelled_at",
        "cancellation_reason",
    }
)


class BookingRead(BaseModel):
    id: str
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
    version: int
    calendar_sync_status: str
    calendar_event_id: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    cancelled_at: dt.datetime | None
    cancellation_reason: str | None


# -- audit -------------------------------------------------------------------------------


class AuditActor(BaseModel):
    agent_id: str | None
    key_id: str | None


class AuditRead(BaseModel):
    id: str
    at: dt.datetime
    action: str
    actor: AuditActor
    business_id: str | None
    hold_id: str | None
    booking_id: str | None
    meeting_class: str | None
    decision: str | None
    reason: str | None
    request_id: str | None
    correlation_id: str | None
    details: dict[str, Any]


# -- agents and keys ---------------------------------------------------------------------

BusinessId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
AllowedBusinesses = Annotated[
    Literal["*"] | list[BusinessId],
    Field(description='"*" for every business of the account, or a list of business ids'),
]


class AgentCreate(Strict):
    name: Text200
    scopes: list[Scope] = Field(max_length=50, description="Scopes granted to the agent's keys")
    allowed_business_ids: AllowedBusinesses
    default_meeting_class: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None, description="Class used when a request names none"
    )


class AgentUpdate(Strict):
    name: Text200 | None = None
    scopes: list[Scope] | None = Field(default=None, max_length=50)
    allowed_business_ids: AllowedBusinesses | None = None
    default_meeting_class: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None, description="null clears it (requests then fall back to `default`)"
    )


class AgentRead(BaseModel):
    id: str
    name: str
    scopes: list[str]
    allowed_business_ids: Literal["*"] | list[str]
    default_meeting_class: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


class ApiKeyCreate(Strict):
    name: Text200 | None = None


class ApiKeyRead(BaseModel):
    id: str
    agent_id: str | None = Field(description="null for an account (admin) key")
    name: str | None
    prefix: str = Field(description="The first characters of the key, to recognise it")
    created_at: dt.datetime
    revoked_at: dt.datetime | None


class ApiKeyCreated(ApiKeyRead):
    key: str | None = Field(
        description="The secret, in this response only (null in an idempotent replay: "
        "only a hash of it is stored)"
    )


# -- holds -------------------------------------------------------------------------------


class Window(Strict):
    start: Instant
    end: Instant

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class HoldCreate(Strict):
    business_id: str | None = None
    owner_email: EmailStr | None = None
    meeting_class: str | None = None
    duration_minutes: int | None = Field(default=None, ge=1, le=24 * 60)
    window: Window | None = Field(
        default=None, description="Where to look; default now to now + 14 days"
    )
    ttl_seconds: int | None = Field(
        default=None, ge=30, le=3600, description="Hold lifetime; default from the rules"
    )
    max_slots: int = Field(default=1, ge=1, le=10)
    next_available_lookahead_hours: int = Field(default=24, ge=1, le=72, strict=True)

    @model_validator(mode="after")
    def _target(self) -> HoldCreate:
        if not self.business_id and not self.owner_email:
            raise ValueError("business_id or owner_email is required")
        return self


class HoldDecisionRead(BaseModel):
    hold_id: str
    expires_at: dt.datetime
    slots: list[Slot]
    meeting_class: str
    decision: Literal["accept", "preempt"]
    preempted_holds: list[str]
    preempted_bookings: list[str]
    warnings: list[dict[str, Any]]


class HoldRead(BaseModel):
    hold_id: str
    status: Literal["active", "confirmed", "released", "expired", "preempted"]
    slots: list[Slot]
    expires_at: dt.datetime
    meeting_class: str
    business_id: str
    booking_id: str | None


class HoldConfirm(Strict):
    start: Instant | None = Field(default=None, description="Which held slot; default the first")
    title: Annotated[str, StringConstraints(max_length=500)] | None = None
    description: Annotated[str, StringConstraints(max_length=10_000)] | None = None
    attendees: list[Attendee] = Field(default_factory=list, max_length=100)
    customer_email: EmailStr | None = None
    customer_name: Annotated[str, StringConstraints(max_length=200)] | None = None
    metadata: Metadata = Field(default_factory=dict)


class ConfirmRead(BaseModel):
    booking_id: str
    correlation_id: str
    booking: BookingRead
