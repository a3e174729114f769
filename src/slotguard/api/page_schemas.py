"""Request and response bodies of the booking-pages admin API (§12)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from slotguard.api.schemas import Strict

PageSlug = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9](?:[a-z0-9-]{1,62}[a-z0-9])$"),
    Field(description="3-64 characters: lower-case letters, digits, inner hyphens"),
]
PageTitle = Annotated[str, StringConstraints(min_length=1, max_length=200)]
PageText = Annotated[str, StringConstraints(max_length=2000)]
Duration = Annotated[int, Field(ge=5, le=24 * 60, description="Meeting length in minutes")]
DaysAhead = Annotated[int, Field(ge=1, le=90, description="Days of free time the page shows")]


class BookingPageCreate(Strict):
    business_id: str = Field(description="The business whose time the page offers")
    meeting_class: str | None = Field(
        default=None, description="Class of the holds and bookings made (default `default`)"
    )
    slug: PageSlug | None = Field(default=None, description="URL part; generated when omitted")
    title: PageTitle | None = Field(default=None, description="Default: the class's display name")
    description: PageText | None = None
    duration_minutes: Duration | None = Field(
        default=None, description="Default: the class's duration, else 30"
    )
    days_ahead: DaysAhead | None = Field(default=None, description="Default 14")


class BookingPageUpdate(Strict):
    business_id: str | None = None
    meeting_class: str | None = None
    slug: PageSlug | None = None
    title: PageTitle | None = None
    description: PageText | None = None
    duration_minutes: Duration | None = None
    days_ahead: DaysAhead | None = None


class BookingPageRead(BaseModel):
    id: str
    business_id: str
    meeting_class: str | None
    slug: str
    url: str = Field(description="`{SLOTGUARD_PUBLIC_URL}/book/{slug}`")
    title: str | None
    description: str | None
    duration_minutes: int | None
    days_ahead: int
    created_at: dt.datetime
    updated_at: dt.datetime
