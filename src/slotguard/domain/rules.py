"""Scheduling rules: the two layers (account defaults -> business overrides) and their merge.

This module is the one source of truth for rule fields and their defaults. The API, the docs
and the slot engine all read from here.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    model_validator,
)

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
RuleSource = Literal["account", "business"]


def _check_local_time(value: str) -> str:
    # "24:00" is allowed as an end of day so a range can run to midnight.
    if value == "24:00":
        return value
    if len(value) != 5 or value[2] != ":":
        raise ValueError("time must be HH:MM")
    try:
        hh, mm = int(value[:2]), int(value[3:])
    except ValueError:
        raise ValueError("time must be HH:MM") from None
    if not (0 <= hh <= 23 and 0 <= mm <= 59):
        raise ValueError("time must be HH:MM between 00:00 and 24:00")
    return value


LocalTime = Annotated[
    str,
    AfterValidator(_check_local_time),
    Field(description="Wall-clock time HH:MM in the business time zone (24:00 = end of day)"),
]


def minutes_of(value: str) -> int:
    """Minutes since local midnight of an `HH:MM` string (24:00 -> 1440)."""
    return int(value[:2]) * 60 + int(value[3:])


class _Strict(BaseModel):
    # Strict types: `buffer_minutes: true` or `"15"` is refused, not read as 1 or 15.
    model_config = ConfigDict(extra="forbid", strict=True)


def _date_text(value: object) -> object:
    # Dates come as YYYY-MM-DD text (JSON, stored rules) or as dates from Python callers; a
    # number is not a date (the lenient parser would read it as Unix time).
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str) and len(value) == 10:
        return value
    raise ValueError("must be a date YYYY-MM-DD")


LocalDate = Annotated[dt.date, BeforeValidator(_date_text), Strict(False)]


class TimeRange(_Strict):
    start: LocalTime
    end: LocalTime

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if minutes_of(self.end) <= minutes_of(self.start):
            raise ValueError("end must be after start")
        return self


class WorkingHours(TimeRange):
    days: list[Weekday] = Field(min_length=1, description="Days this range applies to")


class DateOverride(_Strict):
    date: LocalDate
    hours: list[TimeRange] = Field(
        default_factory=list, description="Open hours that day; empty = closed"
    )


class RulesPatch(_Strict):
    """One rule layer. A field left unset (None) inherits from the layer below."""

    working_hours: list[WorkingHours] | None = None
    date_overrides: list[DateOverride] | None = None
    buffer_minutes: int | None = Field(default=None, ge=0, le=24 * 60)
    slot_interval_minutes: int | None = Field(default=None, ge=1, le=24 * 60)
    min_notice_minutes: int | None = Field(default=None, ge=0, le=365 * 24 * 60)
    max_advance_days: int | None = Field(default=None, ge=0, le=3650)
    max_meetings_per_day: int | None = Field(default=None, ge=1, le=1000)
    hold_ttl_seconds: int | None = Field(default=None, ge=30, le=3600)
    sacred_meeting_age_hours: int | None = Field(default=None, ge=0, le=24 * 3650)

    def set_fields(self) -> dict[str, Any]:
        return {k: v for k, v in self if v is not None}


class EffectiveRules(_Strict):
    """The rules in force for one business after merging both layers."""

    working_hours: list[WorkingHours]
    date_overrides: list[DateOverride]
    buffer_minutes: int
    # None means "min(duration, 15)", resolved per request by `slot_interval_for`.
    slot_interval_minutes: int | None
    min_notice_minutes: int
    max_advance_days: int
    max_meetings_per_day: int | None
    hold_ttl_seconds: int
    sacred_meeting_age_hours: int

    def slot_interval_for(self, duration_minutes: int) -> int:
        if self.slot_interval_minutes is not None:
            return self.slot_interval_minutes
        return min(duration_minutes, 15)


DEFAULT_RULES = EffectiveRules(
    working_hours=[
        WorkingHours(days=["mon", "tue", "wed", "thu", "fri"], start="09:00", end="17:00")
    ],
    date_overrides=[],
    buffer_minutes=0,
    slot_interval_minutes=None,
    min_notice_minutes=0,
    max_advance_days=60,
    max_meetings_per_day=None,
    hold_ttl_seconds=300,
    sacred_meeting_age_hours=24,
)

RULE_FIELDS: tuple[str, ...] = tuple(EffectiveRules.model_fields)


def merge_rules(
    account: RulesPatch | None, business: RulesPatch | None
) -> tuple[EffectiveRules, dict[str, RuleSource]]:
    """Merge account defaults and business overrides field by field.

    Returns the effective rules and, per field, the layer its value came from. Built-in
    defaults count as the account layer: they are what the account inherits until it sets
    its own.
    """
    values: dict[str, Any] = DEFAULT_RULES.model_dump()
    sources: dict[str, RuleSource] = dict.fromkeys(RULE_FIELDS, "account")
    if account is not None:
        values.update(account.model_dump(exclude_none=True))
    if business is not None:
        for name, value in business.model_dump(exclude_none=True).items():
            values[name] = value
            sources[name] = "business"
    return EffectiveRules.model_validate(values), sources
