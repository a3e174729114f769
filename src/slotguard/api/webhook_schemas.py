"""Request and response bodies of webhook endpoints and the outbox (§8)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from slotguard.services.events import EVENT_TYPES

EventType = Literal[
    "booking.created",
    "booking.confirmed",
    "booking.cancelled",
    "booking.rescheduled",
    "booking.updated",
    "booking.preempted",
    "hold.expired",
]
assert set(get_args(EventType)) == set(EVENT_TYPES)

WebhookUrl = Annotated[
    str,
    StringConstraints(min_length=1, max_length=2000, strip_whitespace=True),
    Field(description="http:// or https:// URL; private and loopback targets are refused"),
]
Description = Annotated[str, StringConstraints(max_length=500)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class WebhookEndpointCreate(_Strict):
    url: WebhookUrl
    events: list[EventType] = Field(
        min_length=1, max_length=len(EVENT_TYPES), description="Event types to receive"
    )
    description: Description | None = None


class WebhookEndpointUpdate(_Strict):
    url: WebhookUrl | None = None
    events: list[EventType] | None = Field(default=None, min_length=1, max_length=len(EVENT_TYPES))
    description: Description | None = None
    enabled: bool | None = Field(
        default=None,
        description="false pauses deliveries (new events are not queued); true resumes, "
        "also after the receiver disabled it with 410 Gone",
    )


class RotateSecret(_Strict):
    grace_period_seconds: int = Field(
        default=86_400,
        ge=0,
        le=7 * 86_400,
        description="How long the previous secret keeps signing deliveries (as a second "
        "signature) so receivers can switch; 0 retires it at once",
    )


class WebhookEndpointRead(BaseModel):
    id: str
    url: str
    events: list[str]
    description: str | None
    enabled: bool
    disabled_reason: str | None = Field(
        description="Why deliveries stopped, e.g. the receiver answered 410 Gone"
    )
    previous_secret_expires_at: dt.datetime | None = Field(
        description="Until when the secret before the last rotation still signs"
    )
    created_at: dt.datetime
    updated_at: dt.datetime


class WebhookEndpointWithSecret(WebhookEndpointRead):
    secret: str = Field(description="whsec_…: shown only in this response")


class WebhookDeliveryRead(BaseModel):
    id: int
    endpoint_id: str
    event_id: str = Field(description="The webhook-id header; the same on every retry")
    event_type: str
    outbox_id: str | None
    attempt: int
    succeeded: bool
    status_code: int | None
    error: str | None
    duration_ms: int
    response_snippet: str | None = Field(description="Start of the receiver's answer")
    attempted_at: dt.datetime


class WebhookTestRead(BaseModel):
    event_id: str
    succeeded: bool
    status_code: int | None
    error: str | None
    duration_ms: int
    delivery: WebhookDeliveryRead


class OutboxKindStats(BaseModel):
    pending: int = Field(description="Waiting for their first attempt")
    retrying: int = Field(description="Failed at least once; another attempt is scheduled")
    dead: int = Field(description="Gave up after the last attempt (see `outbox retry-dead`)")
    in_flight: int = Field(description="Being delivered right now (part of pending/retrying)")
    oldest_due_at: dt.datetime | None = Field(
        description="Due time of the oldest message waiting for a worker (lag indicator)"
    )


class OutboxStatsRead(BaseModel):
    webhook: OutboxKindStats
    email: OutboxKindStats
    computed_at: dt.datetime
