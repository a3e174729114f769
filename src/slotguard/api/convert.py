"""Table rows to response bodies."""

from __future__ import annotations

from slotguard.api.schemas import (
    AgentRead,
    ApiKeyCreated,
    ApiKeyRead,
    AuditActor,
    AuditRead,
    BookingCreate,
    BookingRead,
    BusinessRead,
    BusyRead,
    HoldConfirm,
    MeetingClassRead,
)
from slotguard.services.bookings_state import BookingDetails
from slotguard.store.models import (
    Agent,
    ApiKey,
    AuditEntry,
    Booking,
    Business,
    BusyInterval,
    MeetingClass,
)


def business(b: Business) -> BusinessRead:
    return BusinessRead(
        id=b.id,
        name=b.name,
        email=b.email,
        timezone=b.timezone,
        rules=b.rules or {},
        created_at=b.created_at,
        updated_at=b.updated_at,
    )


def meeting_class(m: MeetingClass) -> MeetingClassRead:
    return MeetingClassRead(
        name=m.name,
        display_name=m.display_name,
        duration_minutes=m.duration_minutes,
        priority=m.priority,
        buffer_before_minutes=m.buffer_before_minutes,
        buffer_after_minutes=m.buffer_after_minutes,
        created_at=m.created_at,
        updated_at=m.updated_at,
    )


def busy(b: BusyInterval) -> BusyRead:
    return BusyRead(
        id=b.id,
        business_id=b.business_id,
        start=b.start_at,
        end=b.end_at,
        title=b.title,
        external_id=b.external_id,
        source=b.source,
        created_at=b.created_at,
    )


def booking(b: Booking) -> BookingRead:
    return BookingRead(
        id=b.id,
        business_id=b.business_id,
        meeting_class=b.meeting_class,
        status=b.status,
        start_time=b.start_at,
        end_time=b.end_at,
        title=b.title,
        description=b.description,
        customer_email=b.customer_email,
        customer_name=b.customer_name,
        attendees=list(b.attendees or []),
        metadata=dict(b.metadata_ or {}),
        hold_id=b.hold_id,
        correlation_id=b.correlation_id,
        version=b.version,
        calendar_sync_status=b.calendar_sync_status,
        calendar_event_id=b.calendar_event_id,
        created_at=b.created_at,
        updated_at=b.updated_at,
        cancelled_at=b.cancelled_at,
        cancellation_reason=b.cancellation_reason,
    )


def audit(a: AuditEntry) -> AuditRead:
    return AuditRead(
        id=a.id,
        at=a.at,
        action=a.action,
        actor=AuditActor(agent_id=a.agent_id, key_id=a.key_id),
        business_id=a.business_id,
        hold_id=a.hold_id,
        booking_id=a.booking_id,
        meeting_class=a.meeting_class,
        decision=a.decision,
        reason=a.reason,
        request_id=a.request_id,
        correlation_id=a.correlation_id,
        details=a.details or {},
    )


def etag(version: int) -> str:
    return f'"{version}"'


def agent(a: Agent) -> AgentRead:
    allowed = list(a.allowed_business_ids or [])
    return AgentRead(
        id=a.id,
        name=a.name,
        scopes=list(a.scopes or []),
        allowed_business_ids="*" if "*" in allowed else allowed,
        default_meeting_class=a.default_meeting_class,
        created_at=a.created_at,
        updated_at=a.updated_at,
    )


def api_key(k: ApiKey) -> ApiKeyRead:
    return ApiKeyRead(
        id=k.id,
        agent_id=k.agent_id,
        name=k.name,
        prefix=k.prefix,
        created_at=k.created_at,
        revoked_at=k.revoked_at,
    )


def api_key_created(k: ApiKey, secret: str | None) -> ApiKeyCreated:
    return ApiKeyCreated(**api_key(k).model_dump(), key=secret)


def booking_details(body: BookingCreate | HoldConfirm) -> BookingDetails:
    """The descriptive fields a new booking takes from a create or confirm body."""
    return BookingDetails(
        title=body.title,
        description=body.description,
        customer_email=body.customer_email,
        customer_name=body.customer_name,
        attendees=[a.model_dump(exclude_none=True) for a in body.attendees],
        metadata=body.metadata,
    )
