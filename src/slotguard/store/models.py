"""Tables. The only module (with repositories) that knows SQL exists."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from slotguard.store.types import JSONType, UTCDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: UTCDateTime(),
        dict[str, Any]: JSONType,
    }


class Account(Base):
    __tablename__ = "accounts"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    rules: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[dt.datetime]


class Agent(Base):
    __tablename__ = "agents"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    scopes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # ["*"] or a list of business ids
    allowed_business_ids: Mapped[list[str]] = mapped_column(JSONType, default=list)
    default_meeting_class: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    deleted_at: Mapped[dt.datetime | None]


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    agent_id: Mapped[str | None] = mapped_column(ForeignKey("agents.id"), index=True)
    # SHA-256 of the raw key: keys are 256-bit random, so a fast hash is enough and lets us
    # look a key up by its hash; the raw key is never stored.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(24))
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None]


class Business(Base):
    __tablename__ = "businesses"
    __table_args__ = (
        Index(
            "uq_businesses_account_email_live",
            "account_id",
            "email",
            unique=True,
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    timezone: Mapped[str] = mapped_column(String(64))
    rules: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    deleted_at: Mapped[dt.datetime | None]


class MeetingClass(Base):
    __tablename__ = "meeting_classes"
    __table_args__ = (UniqueConstraint("account_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    name: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(200))
    duration_minutes: Mapped[int | None] = mapped_column(Integer)
    priority: Mapped[int] = mapped_column(Integer, default=50)
    buffer_before_minutes: Mapped[int] = mapped_column(Integer, default=0)
    buffer_after_minutes: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


class BusyInterval(Base):
    __tablename__ = "busy_intervals"
    __table_args__ = (Index("ix_busy_business_time", "business_id", "start_at", "end_at"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    business_id: Mapped[str] = mapped_column(ForeignKey("businesses.id"))
    start_at: Mapped[dt.datetime]
    end_at: Mapped[dt.datetime]
    title: Mapped[str | None] = mapped_column(String(500))
    external_id: Mapped[str | None] = mapped_column(String(500))
    # "api" for busy time posted over HTTP; a calendar id for synced busy time.
    source: Mapped[str] = mapped_column(String(40), default="api")
    created_at: Mapped[dt.datetime]


class Hold(Base):
    __tablename__ = "holds"
    __table_args__ = (Index("ix_holds_sweep", "status", "expires_at"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    business_id: Mapped[str] = mapped_column(ForeignKey("businesses.id"), index=True)
    meeting_class: Mapped[str] = mapped_column(String(64))
    priority: Mapped[int] = mapped_column(Integer)
    # active | confirmed | released | preempted | expired (expired is written by the sweeper;
    # readers treat an active hold past expires_at as expired)
    status: Mapped[str] = mapped_column(String(16))
    slots: Mapped[list[dict[str, str]]] = mapped_column(JSONType)
    expires_at: Mapped[dt.datetime]
    booking_id: Mapped[str | None] = mapped_column(String(40))
    agent_id: Mapped[str | None] = mapped_column(String(40))
    key_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


class Booking(Base):
    __tablename__ = "bookings"
    __table_args__ = (
        Index("ix_bookings_business_start", "business_id", "start_at"),
        Index("ix_bookings_account_start", "account_id", "start_at", "id"),
        Index("ix_bookings_account_updated", "account_id", "updated_at", "id"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    business_id: Mapped[str] = mapped_column(ForeignKey("businesses.id"))
    meeting_class: Mapped[str] = mapped_column(String(64))
    priority: Mapped[int] = mapped_column(Integer)
    buffer_before_minutes: Mapped[int] = mapped_column(Integer, default=0)
    buffer_after_minutes: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16))
    start_at: Mapped[dt.datetime]
    end_at: Mapped[dt.datetime]
    title: Mapped[str | None] = mapped_column(String(500))
    description: Mapped[str | None] = mapped_column(Text)
    customer_email: Mapped[str | None] = mapped_column(String(320))
    customer_name: Mapped[str | None] = mapped_column(String(200))
    attendees: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    hold_id: Mapped[str | None] = mapped_column(String(40))
    correlation_id: Mapped[str] = mapped_column(String(40))
    version: Mapped[int] = mapped_column(Integer, default=1)
    calendar_sync_status: Mapped[str] = mapped_column(String(20), default="not_applicable")
    calendar_event_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    cancelled_at: Mapped[dt.datetime | None]
    cancellation_reason: Mapped[str | None] = mapped_column(Text)
    agent_id: Mapped[str | None] = mapped_column(String(40))
    key_id: Mapped[str | None] = mapped_column(String(40))


class Reservation(Base):
    """Time a booking or a hold occupies. The no-double-booking invariant lives here.

    One row per confirmed booking and per held slot. On PostgreSQL an exclusion constraint
    forbids two *active* rows of one business from overlapping ([start, end) half-open), so
    holds and bookings share one invariant. A hold row past `expires_at` stays active until
    a writer of that business deactivates it inside its own transaction (a constraint's
    predicate cannot use now()), which is what every reserving transaction does first.
    """

    __tablename__ = "reservations"
    __table_args__ = (
        Index("ix_reservations_business_active", "business_id", "active", "start_at"),
        Index("ix_reservations_hold", "hold_id"),
        Index("ix_reservations_booking", "booking_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    business_id: Mapped[str] = mapped_column(ForeignKey("businesses.id"))
    kind: Mapped[str] = mapped_column(String(8))  # booking | hold
    booking_id: Mapped[str | None] = mapped_column(String(40))
    hold_id: Mapped[str | None] = mapped_column(String(40))
    start_at: Mapped[dt.datetime]
    end_at: Mapped[dt.datetime]
    priority: Mapped[int] = mapped_column(Integer)
    buffer_before_minutes: Mapped[int] = mapped_column(Integer, default=0)
    buffer_after_minutes: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[dt.datetime | None]
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"
    account_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(12))  # in_progress | completed
    owner_token: Mapped[str] = mapped_column(String(40))
    locked_at: Mapped[dt.datetime]
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_headers: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime]
    completed_at: Mapped[dt.datetime | None] = mapped_column(index=True)


class AuditEntry(Base):
    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_account_id", "account_id", "id"),
        Index("ix_audit_account_booking", "account_id", "booking_id"),
        # explain_decision and the audit filters (issue 11)
        Index("ix_audit_account_hold", "account_id", "hold_id"),
        Index("ix_audit_account_request", "account_id", "request_id"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(40))
    at: Mapped[dt.datetime]
    action: Mapped[str] = mapped_column(String(40))
    agent_id: Mapped[str | None] = mapped_column(String(40))
    key_id: Mapped[str | None] = mapped_column(String(40))
    business_id: Mapped[str | None] = mapped_column(String(40))
    hold_id: Mapped[str | None] = mapped_column(String(40))
    booking_id: Mapped[str | None] = mapped_column(String(40))
    meeting_class: Mapped[str | None] = mapped_column(String(64))
    decision: Mapped[str | None] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(String(1000))
    request_id: Mapped[str | None] = mapped_column(String(40))
    correlation_id: Mapped[str | None] = mapped_column(String(40))
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


# -- side effects: webhook endpoints, the outbox, the delivery log -----------------------


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_account", "account_id", "id"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str | None] = mapped_column(String(500))
    events: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # Standard Webhooks secret (whsec_…). Stored as is: the worker must sign with it.
    secret: Mapped[str] = mapped_column(String(100))
    # After a rotation the old secret keeps signing too (two signatures) until this instant,
    # so receivers can switch without rejecting deliveries in between.
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret_expires_at: Mapped[dt.datetime | None]
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    deleted_at: Mapped[dt.datetime | None]


class OutboxMessage(Base):
    """One side effect to deliver at least once: a webhook to one endpoint, or one email.

    Written in the transaction of the change that causes it. ``next_attempt_at`` is when it
    may be claimed next; claiming pushes it to the end of the lease, so a row whose worker
    died becomes claimable again when the lease runs out, with no separate recovery step.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        Index(
            "ix_outbox_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index("ix_outbox_account_status", "account_id", "status", "kind"),
        Index("ix_outbox_booking", "booking_id"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(16))  # webhook | email
    event_type: Mapped[str] = mapped_column(String(40))
    # The Standard Webhooks `webhook-id`: the same for every attempt and every endpoint.
    event_id: Mapped[str] = mapped_column(String(40))
    endpoint_id: Mapped[str | None] = mapped_column(String(40))
    booking_id: Mapped[str | None] = mapped_column(String(40))
    hold_id: Mapped[str | None] = mapped_column(String(40))
    # Snapshot taken at enqueue time: the webhook event body, or the mail's booking facts.
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # Email only: recipients already handled, so a retry does not mail them again.
    progress: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(12))  # pending | delivered | dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime]
    locked_by: Mapped[str | None] = mapped_column(String(40))
    locked_until: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    delivered_at: Mapped[dt.datetime | None]


class WebhookDelivery(Base):
    """One webhook attempt, for the endpoint's delivery log."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_endpoint", "endpoint_id", "id"),
        Index("ix_webhook_deliveries_at", "attempted_at"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(40))
    endpoint_id: Mapped[str] = mapped_column(String(40))
    outbox_id: Mapped[str | None] = mapped_column(String(40))
    event_id: Mapped[str] = mapped_column(String(40))
    event_type: Mapped[str] = mapped_column(String(40))
    attempt: Mapped[int] = mapped_column(Integer)
    succeeded: Mapped[bool] = mapped_column(Boolean)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)
    response_snippet: Mapped[str | None] = mapped_column(Text)
    attempted_at: Mapped[dt.datetime]


# -- calendars: connections, the local busy copy, write-back links ----------------------


class Calendar(Base):
    """A connected calendar and its sync state.

    The local copy is versioned: ``copy_generation`` names the complete copy availability
    reads (0 = none yet). A full resync writes generation + 1 beside it and flips this
    pointer in the same transaction, so no reader sees a half-loaded calendar. The lease
    (``lease_owner``/``lease_until``) is taken with a conditional UPDATE, so two workers
    never sync one calendar at once, on either store.
    """

    __tablename__ = "calendars"
    __table_args__ = (
        Index("ix_calendars_business", "business_id", "id"),
        Index("ix_calendars_due", "next_sync_at"),
        # At most one calendar that bookings are written to, per business (§7.1).
        Index(
            "uq_calendars_one_write_per_business",
            "business_id",
            unique=True,
            sqlite_where=text("role IN ('write', 'both')"),
            postgresql_where=text("role IN ('write', 'both')"),
        ),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    business_id: Mapped[str] = mapped_column(ForeignKey("businesses.id"))
    provider: Mapped[str] = mapped_column(String(16))  # ics | caldav | google | microsoft
    role: Mapped[str] = mapped_column(String(8))  # busy | write | both
    name: Mapped[str | None] = mapped_column(String(200))
    # Without any user-info part: credentials live only in `credentials`.
    url: Mapped[str | None] = mapped_column(String(2000))
    provider_calendar_id: Mapped[str | None] = mapped_column(String(500))
    # Non-secret provider settings (returned by the API).
    settings: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Fernet token of {"calendar_id": …, "secrets": {…}} (§7.4); never returned or logged.
    credentials: Mapped[str | None] = mapped_column(Text)
    # Bumped on every credential write, so concurrent writers (a token refresh racing a
    # PATCH) can update conditionally.
    credentials_version: Mapped[int] = mapped_column(Integer, default=0)
    # The calendar's own zone when the source says (all-day events); None = business zone.
    timezone: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # pending | active | error | auth_failed
    last_synced_at: Mapped[dt.datetime | None]
    last_error: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    busy_count: Mapped[int] = mapped_column(Integer, default=0)
    copy_generation: Mapped[int] = mapped_column(Integer, default=0)
    # The current copy's busy time, merged and packed (JSON [[start, end], …] in epoch
    # seconds, by start), written with the copy: availability reads one value per calendar
    # instead of decoding every row. NULL = not packed yet (the rows are read instead).
    busy_packed: Mapped[str | None] = mapped_column(Text)
    cursor: Mapped[str | None] = mapped_column(Text)
    window_start: Mapped[dt.datetime | None]
    window_end: Mapped[dt.datetime | None]
    last_full_sync_at: Mapped[dt.datetime | None]
    next_sync_at: Mapped[dt.datetime]
    failures: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(40))
    lease_until: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


class CalendarItem(Base):
    """One remote object of a calendar's local copy (a CalDAV resource, an ICS event
    series, a Google/Graph event), kept to merge deltas and diff etags."""

    __tablename__ = "calendar_items"
    __table_args__ = (
        UniqueConstraint("calendar_id", "generation", "external_id"),
        Index("ix_calendar_items_series", "calendar_id", "generation", "series_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    calendar_id: Mapped[str] = mapped_column(ForeignKey("calendars.id"))
    generation: Mapped[int] = mapped_column(Integer)
    external_id: Mapped[str] = mapped_column(String(1000))
    etag: Mapped[str | None] = mapped_column(String(500))
    series_id: Mapped[str | None] = mapped_column(String(1000))
    own_booking_id: Mapped[str | None] = mapped_column(String(40))


class CalendarBusy(Base):
    """Busy time of one calendar item (after the busy rule and recurrence expansion).
    Availability reads the rows of each calendar's current ``copy_generation`` only."""

    __tablename__ = "calendar_busy"
    __table_args__ = (
        Index("ix_calendar_busy_business_time", "business_id", "start_at", "end_at"),
        Index("ix_calendar_busy_item", "item_id"),
        Index("ix_calendar_busy_calendar_gen", "calendar_id", "generation"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    calendar_id: Mapped[str] = mapped_column(ForeignKey("calendars.id"))
    business_id: Mapped[str] = mapped_column(String(40))
    generation: Mapped[int] = mapped_column(Integer)
    item_id: Mapped[int] = mapped_column(Integer)
    start_at: Mapped[dt.datetime]
    end_at: Mapped[dt.datetime]


class CalendarEventLink(Base):
    """Where a booking's event was written (§7.3): the write calendar, the identity
    generation (``remote_identity(booking_id, generation)``), remote id and etag."""

    __tablename__ = "calendar_event_links"
    __table_args__ = (Index("ix_calendar_event_links_calendar", "calendar_id"),)
    booking_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    calendar_id: Mapped[str] = mapped_column(String(40))
    generation: Mapped[int] = mapped_column(Integer, default=1)
    remote_id: Mapped[str | None] = mapped_column(String(1000))
    etag: Mapped[str | None] = mapped_column(String(500))
    # written | deleted
    state: Mapped[str] = mapped_column(String(12))
    updated_at: Mapped[dt.datetime]


# -- calendar OAuth (Google, Microsoft): browser-flow states, access tokens, refresh lease


class OAuthState(Base):
    """One browser connect flow (§7.5) between the authorization URL and the callback.

    ``id`` is the SHA-256 of the ``state`` sent to the provider (the raw value is a bearer
    secret and is not stored). Single use is a conditional UPDATE of ``used_at``, so two
    callbacks racing with one state cannot both create a calendar, on either store.
    """

    __tablename__ = "oauth_states"
    __table_args__ = (Index("ix_oauth_states_expires", "expires_at"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    business_id: Mapped[str] = mapped_column(ForeignKey("businesses.id"))
    provider: Mapped[str] = mapped_column(String(16))
    role: Mapped[str] = mapped_column(String(8))
    provider_calendar_id: Mapped[str | None] = mapped_column(String(500))
    name: Mapped[str | None] = mapped_column(String(200))
    redirect_uri: Mapped[str] = mapped_column(String(2000))
    # Fernet token of the PKCE code verifier (short-lived: not re-encrypted on key rotation).
    verifier: Mapped[str] = mapped_column(Text)
    key_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]
    calendar_id: Mapped[str | None] = mapped_column(String(40))


class CalendarOAuthToken(Base):
    """The cached access token of a Google/Microsoft calendar and its refresh lease.

    The refresh token itself lives in ``calendars.credentials``. A worker refreshes only
    while it holds the lease (a conditional UPDATE of ``lease_owner``/``lease_until``), so
    one credential is refreshed once at a time across every worker process; the others
    wait for the new access token. ``refused_version`` remembers the credentials version
    the provider refused (``invalid_grant``): no further refresh is tried until the
    credentials change, so a dead grant never turns into a retry loop.
    """

    __tablename__ = "calendar_oauth_tokens"
    calendar_id: Mapped[str] = mapped_column(
        ForeignKey("calendars.id", ondelete="CASCADE"), primary_key=True
    )
    # Fernet token of the access token (short-lived: not re-encrypted on key rotation;
    # one that no longer decrypts is refreshed).
    access_token: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[dt.datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(40))
    lease_until: Mapped[dt.datetime | None]
    refreshed_at: Mapped[dt.datetime | None]
    refresh_count: Mapped[int] = mapped_column(Integer, default=0)
    refused_version: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime]


class MailboxPermit(Base):
    """One of the permits of a Microsoft mailbox: a request to Graph for that mailbox is
    sent only while its sender holds one, so at most ``MAILBOX_CONCURRENCY`` are in flight
    per mailbox across every process sharing the database. A permit is taken and given back
    by single conditional UPDATEs; one whose holder died frees itself at ``held_until``.
    ``mailbox`` is a digest of the mailbox's address, not the address itself."""

    __tablename__ = "mailbox_permits"
    mailbox: Mapped[str] = mapped_column(String(64), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(40))
    held_until: Mapped[dt.datetime | None]


# -- booking pages (§12) ----------------------------------------------------------------


class BookingPage(Base):
    __tablename__ = "booking_pages"
    __table_args__ = (Index("ix_booking_pages_account_id", "account_id", "id"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    business_id: Mapped[str] = mapped_column(ForeignKey("businesses.id"))
    meeting_class: Mapped[str | None] = mapped_column(String(64))
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    duration_minutes: Mapped[int | None] = mapped_column(Integer)
    days_ahead: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


class PageHold(Base):
    """A hold taken from a public page, with who took it (for the abuse limits)."""

    __tablename__ = "page_holds"
    __table_args__ = (
        Index("ix_page_holds_visitor", "page_id", "visitor", "expires_at"),
        Index("ix_page_holds_addr", "client_addr", "expires_at"),
    )
    hold_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    page_id: Mapped[str] = mapped_column(String(40))
    visitor: Mapped[str] = mapped_column(String(64))
    client_addr: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[dt.datetime]
    created_at: Mapped[dt.datetime]


class ManageToken(Base):
    """SHA-256 of an invitee's manage link token; the raw token is never stored."""

    __tablename__ = "manage_tokens"
    __table_args__ = (Index("ix_manage_tokens_booking", "booking_id"),)
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(40))
    booking_id: Mapped[str] = mapped_column(String(40))
    page_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[dt.datetime]


class DashboardToken(Base):
    """A one-time login link (`login`) or the session it opened (`session`), hashed."""

    __tablename__ = "dashboard_tokens"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    account_id: Mapped[str] = mapped_column(String(40))
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime]
