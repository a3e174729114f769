"""Request and response bodies of the calendar routes (§7.1)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from slotguard.api.schemas import Strict, Text200, ZoneName
from slotguard.calendars.registry import get_spec
from slotguard.store.models import Calendar

Role = Literal["busy", "write", "both"]
Secret = Annotated[str, StringConstraints(min_length=1, max_length=4000)]
Url = Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class CalendarCreate(Strict):
    provider: Annotated[str, StringConstraints(min_length=1, max_length=16)] = Field(
        description="ics | caldav | google | microsoft"
    )
    role: Role = Field(
        default="busy",
        description="busy: its events block availability; write: bookings are written to it; both",
    )
    name: Text200 | None = None
    url: Url | None = Field(default=None, description="ics/caldav: feed or collection URL")
    username: Annotated[str, StringConstraints(max_length=320)] | None = None
    password: Secret | None = Field(default=None, description="Stored encrypted, never returned")
    calendar_id: Annotated[str, StringConstraints(min_length=1, max_length=500)] | None = None
    refresh_token: Secret | None = Field(default=None, description="Stored encrypted")
    timezone: ZoneName | None = Field(
        default=None,
        description="The calendar's zone for all-day events (default: the "
        "zone the calendar states, else the business zone)",
    )

    def provider_fields(self) -> dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in ("url", "username", "password", "calendar_id", "refresh_token", "timezone")
        }


class CalendarUpdate(Strict):
    name: Text200 | None = None
    role: Role | None = None
    url: Url | None = None
    username: Annotated[str, StringConstraints(max_length=320)] | None = None
    password: Secret | None = None
    refresh_token: Secret | None = None
    timezone: ZoneName | None = None


class CalendarError(BaseModel):
    code: str
    message: str
    at: dt.datetime


class CalendarRead(BaseModel):
    id: str
    business_id: str
    provider: str
    role: str
    name: str | None
    url: str | None = Field(description="Without any user-info part")
    calendar_id: str | None
    status: Literal["pending", "active", "error", "auth_failed"]
    last_synced_at: dt.datetime | None
    last_error: CalendarError | None
    busy_intervals: int = Field(description="Busy intervals in the local copy")
    created_at: dt.datetime
    updated_at: dt.datetime


class CalendarBusyRead(BaseModel):
    start: dt.datetime
    end: dt.datetime


def _default_calendar_id(provider: str) -> str | None:
    # Calendars connected before the default was stored (Google: ``primary``, §7.1).
    spec = get_spec(provider)
    return spec.setting_defaults.get("calendar_id") if spec is not None else None


def calendar_read(c: Calendar) -> CalendarRead:
    err = c.last_error or None
    return CalendarRead(
        id=c.id,
        business_id=c.business_id,
        provider=c.provider,
        role=c.role,
        name=c.name,
        url=c.url,
        calendar_id=c.provider_calendar_id or _default_calendar_id(c.provider),
        status=c.status,
        last_synced_at=c.last_synced_at,
        last_error=CalendarError(code=err["code"], message=err["message"], at=err["at"])
        if err
        else None,
        busy_intervals=c.busy_count,
        created_at=c.created_at,
        updated_at=c.updated_at,
    )
