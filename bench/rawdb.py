"""The SQL of one `POST /v1/bookings`, replayed straight through the driver.

This is the ceiling the API is compared against: the same statements, in the same
transactions, with the same parameters, but no HTTP, no FastAPI, no SQLAlchemy and no
domain code. The statement list was captured from the server (SQLAlchemy
`before_cursor_execute`) for one successful booking and is kept verbatim, so the database
does exactly the work it does for the API:

1. authentication: SELECT api_keys LEFT JOIN agents WHERE key_hash = ?, a read in
   autocommit (no transaction) on both stores
2. idempotency claim (api/idempotency.py `_claim`): INSERT idempotency_keys (state
   in_progress), autocommitted on PostgreSQL (a duplicate is the unique violation), as
   INSERT OR IGNORE in its own `BEGIN IMMEDIATE ... COMMIT` on SQLite
3. the booking (one write transaction, services/bookings.py `book` + `run_write`):
   SELECT businesses JOIN accounts LEFT JOIN meeting_classes ... FOR UPDATE OF businesses
   (no FOR UPDATE on SQLite, where BEGIN IMMEDIATE serialises writers)  (load_scheduling)
   SELECT reservations LEFT JOIN bookings (+-3 days)    (load_occupancy)
   SELECT calendars UNION ALL posted busy_intervals, packed (+-3 days) (load_occupancy)
   INSERT bookings; INSERT reservations (RETURNING id on PostgreSQL only)
   SELECT webhook_endpoints                             (events.booking_event)
   UPDATE idempotency_keys SET state='completed', ...   (complete_idempotency_key)
   INSERT audit_log; INSERT outbox (confirmation mail)  (flush at commit)
   COMMIT
   (the UPDATE that clears expired holds runs only when the read found one; never here)

The server's code moves on: sqlcapture.py compares this list with what the server sends
on every run, and the benchmark prints a WARNING when they differ.

PostgreSQL goes through asyncpg (prepared statements, one connection per worker); SQLite
through the stdlib sqlite3 module with the server's PRAGMAs (WAL, synchronous=FULL), one
connection per worker thread, every write transaction `BEGIN IMMEDIATE`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

UTC = dt.UTC
MARGIN = dt.timedelta(days=3)  # services/scheduling.py BLOCKER_MARGIN
WRITE_ROLES = ("write", "both")


@dataclass(frozen=True)
class RawContext:
    account_id: str
    key_id: str
    key_hash: str
    business_ids: list[str]


@dataclass
class RawResult:
    committed: int = 0
    errors: int = 0
    latencies_ns: list[int] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)


# --- one booking's values -----------------------------------------------------------------


def _ulid_like(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:26]}"


@dataclass(frozen=True)
class BookingValues:
    business_id: str
    start: dt.datetime
    end: dt.datetime
    now: dt.datetime
    booking_id: str
    correlation_id: str
    audit_id: str
    request_id: str
    idem_key: str
    owner_token: str
    fingerprint: str
    response_headers: str
    response_body: bytes
    audit_details: str
    outbox_id: str
    event_id: str
    outbox_payload: str


def booking_values(
    ctx: RawContext, business_id: str, start: dt.datetime, end: dt.datetime
) -> BookingValues:
    now = dt.datetime.now(UTC)
    booking_id = _ulid_like("bk")
    corr = _ulid_like("corr")
    rid = _ulid_like("req")
    body = json.dumps(
        {
            "business_id": business_id,
            "start_time": start.isoformat(),
            "end_time": end.isoformat(),
            "customer_email": "bench@example.com",
        }
    ).encode()
    fingerprint = hashlib.sha256(b"POST /v1/bookings\n" + body).hexdigest()
    state = {
        "status": "confirmed",
        "start_time": start.isoformat(),
        "end_time": end.isoformat(),
        "version": 1,
        "business_id": business_id,
        "meeting_class": "default",
    }
    booking_json = {
        "data": {
            "id": booking_id,
            "business_id": business_id,
            "meeting_class": "default",
            "status": "confirmed",
            "start_time": start.isoformat().replace("+00:00", "Z"),
            "end_time": end.isoformat().replace("+00:00", "Z"),
            "title": "Meeting",
            "description": None,
            "customer_email": "bench@example.com",
            "customer_name": None,
            "attendees": [],
            "metadata": {},
            "hold_id": None,
            "correlation_id": corr,
            "version": 1,
            "calendar_sync_status": "not_applicable",
            "calendar_event_id": None,
            "created_at": now.isoformat(),
            "updated_at": now.isoformat(),
            "cancelled_at": None,
            "cancellation_reason": None,
        },
        "meta": {"request_id": rid},
    }
    mail = {  # services/events.py mail_snapshot
        "booking_id": booking_id,
        "title": "Meeting",
        "start": start.isoformat().replace("+00:00", "Z"),
        "end": end.isoformat().replace("+00:00", "Z"),
        "business_name": "Raw",
        "business_email": "",
        "business_timezone": "UTC",
        "version": 1,
        "status": "confirmed",
        "customer_email": "bench@example.com",
        "customer_name": None,
        "description": None,
        "attendees": [],
    }
    headers = {"etag": '"1"', "location": f"/v1/bookings/{booking_id}", "X-Request-Id": rid}
    return BookingValues(
        business_id=business_id,
        start=start,
        end=end,
        now=now,
        booking_id=booking_id,
        correlation_id=corr,
        audit_id=_ulid_like("aud"),
        request_id=rid,
        idem_key=uuid.uuid4().hex,
        owner_token=uuid.uuid4().hex,
        fingerprint=fingerprint,
        response_headers=json.dumps(headers),
        response_body=json.dumps(booking_json, separators=(",", ":")).encode(),
        audit_details=json.dumps({"state": state}),
        outbox_id=_ulid_like("obx"),
        event_id=_ulid_like("evt"),
        outbox_payload=json.dumps({"kind": "confirmation", "mail": mail}),
    )


# --- PostgreSQL (asyncpg) -----------------------------------------------------------------

PG_KEY = (
    "SELECT api_keys.id, api_keys.account_id, api_keys.agent_id, api_keys.key_hash, "
    "api_keys.revoked_at, agents.scopes AS agent_scopes, agents.allowed_business_ids AS "
    "agent_allowed_business_ids, agents.default_meeting_class AS agent_default_meeting_class, "
    "agents.deleted_at AS agent_deleted_at, agents.id AS agent_row_id FROM api_keys LEFT OUTER "
    "JOIN agents ON agents.id = api_keys.agent_id WHERE api_keys.key_hash = $1::VARCHAR"
)
PG_IDEM_INSERT = (
    "INSERT INTO idempotency_keys (account_id, key, fingerprint, state, owner_token, locked_at, "
    "response_status, response_headers, response_body, created_at, completed_at) VALUES "
    "($1::VARCHAR, $2::VARCHAR, $3::VARCHAR, $4::VARCHAR, $5::VARCHAR, "
    "$6::TIMESTAMP WITH TIME ZONE, $7::INTEGER, $8::JSONB, $9::BYTEA, "
    "$10::TIMESTAMP WITH TIME ZONE, $11::TIMESTAMP WITH TIME ZONE)"
)
PG_LOCK_BUSINESS = (
    "SELECT businesses.id, businesses.account_id, businesses.name, businesses.email, "
    "businesses.timezone, businesses.rules, businesses.created_at, businesses.updated_at, "
    "businesses.deleted_at, accounts.rules AS account_rules, meeting_classes.name AS "
    "class_name, meeting_classes.display_name AS class_display_name, "
    "meeting_classes.duration_minutes AS class_duration_minutes, meeting_classes.priority AS "
    "class_priority, meeting_classes.buffer_before_minutes AS class_buffer_before_minutes, "
    "meeting_classes.buffer_after_minutes AS class_buffer_after_minutes FROM businesses JOIN "
    "accounts ON accounts.id = businesses.account_id LEFT OUTER JOIN meeting_classes ON "
    "meeting_classes.account_id = businesses.account_id AND meeting_classes.name = $1::VARCHAR "
    "WHERE businesses.account_id = $2::VARCHAR AND businesses.id = $3::VARCHAR AND "
    "businesses.deleted_at IS NULL FOR UPDATE OF businesses"
)
PG_RESERVATIONS = (
    "SELECT reservations.id, reservations.business_id, reservations.kind, "
    "reservations.booking_id, reservations.hold_id, reservations.start_at, reservations.end_at, "
    "reservations.priority, reservations.buffer_before_minutes, "
    "reservations.buffer_after_minutes, reservations.expires_at, reservations.active, "
    "bookings.created_at FROM reservations LEFT OUTER JOIN bookings "
    "ON bookings.id = reservations.booking_id WHERE reservations.business_id = $1::VARCHAR "
    "AND reservations.active IS true AND reservations.start_at < $2::TIMESTAMP WITH TIME ZONE "
    "AND reservations.end_at > $3::TIMESTAMP WITH TIME ZONE "
    "ORDER BY reservations.start_at, reservations.id"
)
# Busy time, one statement (store/repositories.py `busy_periods`): the busy calendars' rows
# (packed copies, sync states), then one row with the posted busy time of the window packed
# into one text. SQLite spells the aggregate differently (SQLITE_BUSY).
PG_BUSY = (
    "SELECT calendars.id, calendars.copy_generation, calendars.busy_packed, calendars.status, "
    "calendars.last_synced_at FROM calendars WHERE calendars.business_id = $1::VARCHAR "
    "AND calendars.role IN ('busy', 'both') UNION ALL SELECT NULL AS anon_1, 0, "
    "(SELECT string_agg(CAST(CAST(EXTRACT(epoch FROM busy_intervals.start_at) * 1000000 "
    "AS BIGINT) AS VARCHAR) || '/' || CAST(CAST(EXTRACT(epoch FROM busy_intervals.end_at) "
    "* 1000000 AS BIGINT) AS VARCHAR), ',' ORDER BY busy_intervals.start_at, "
    "busy_intervals.end_at) AS string_agg_1 FROM busy_intervals "
    "WHERE busy_intervals.business_id = $1::VARCHAR "
    "AND busy_intervals.start_at < $2::TIMESTAMP WITH TIME ZONE "
    "AND busy_intervals.end_at > $3::TIMESTAMP WITH TIME ZONE) AS anon_2, "
    "NULL AS anon__1, NULL AS anon__2"
)
SQLITE_BUSY = (
    "SELECT calendars.id, calendars.copy_generation, calendars.busy_packed, calendars.status, "
    "calendars.last_synced_at FROM calendars WHERE calendars.business_id = ? "
    "AND calendars.role IN ('busy', 'both') UNION ALL SELECT NULL AS anon_1, 0, "
    "group_concat(posted.start_at || '/' || posted.end_at, ',') AS group_concat_1, "
    "NULL AS anon__1, NULL AS anon__2 FROM (SELECT busy_intervals.start_at AS start_at, "
    "busy_intervals.end_at AS end_at FROM busy_intervals WHERE busy_intervals.business_id = ? "
    "AND busy_intervals.start_at < ? AND busy_intervals.end_at > ? "
    "ORDER BY busy_intervals.start_at, busy_intervals.end_at) AS posted"
)
PG_WRITE_CALENDAR = (
    "SELECT calendars.id FROM calendars WHERE calendars.business_id = $1::VARCHAR "
    "AND calendars.role IN ($2::VARCHAR, $3::VARCHAR)"
)
PG_INSERT_BOOKING = (
    "INSERT INTO bookings (id, account_id, business_id, meeting_class, priority, "
    "buffer_before_minutes, buffer_after_minutes, status, start_at, end_at, title, description, "
    "customer_email, customer_name, attendees, metadata, hold_id, correlation_id, version, "
    "calendar_sync_status, calendar_event_id, created_at, updated_at, cancelled_at, "
    "cancellation_reason, agent_id, key_id) VALUES ($1::VARCHAR, $2::VARCHAR, $3::VARCHAR, "
    "$4::VARCHAR, $5::INTEGER, $6::INTEGER, $7::INTEGER, $8::VARCHAR, "
    "$9::TIMESTAMP WITH TIME ZONE, $10::TIMESTAMP WITH TIME ZONE, $11::VARCHAR, $12::VARCHAR, "
    "$13::VARCHAR, $14::VARCHAR, $15::JSONB, $16::JSONB, $17::VARCHAR, $18::VARCHAR, "
    "$19::INTEGER, $20::VARCHAR, $21::VARCHAR, $22::TIMESTAMP WITH TIME ZONE, "
    "$23::TIMESTAMP WITH TIME ZONE, $24::TIMESTAMP WITH TIME ZONE, $25::VARCHAR, $26::VARCHAR, "
    "$27::VARCHAR)"
)
PG_INSERT_RESERVATION = (
    "INSERT INTO reservations (business_id, kind, booking_id, hold_id, start_at, end_at, "
    "priority, buffer_before_minutes, buffer_after_minutes, expires_at, active) VALUES "
    "($1::VARCHAR, $2::VARCHAR, $3::VARCHAR, $4::VARCHAR, $5::TIMESTAMP WITH TIME ZONE, "
    "$6::TIMESTAMP WITH TIME ZONE, $7::INTEGER, $8::INTEGER, $9::INTEGER, "
    "$10::TIMESTAMP WITH TIME ZONE, $11::BOOLEAN) RETURNING reservations.id"
)
PG_IDEM_COMPLETE = (
    "UPDATE idempotency_keys SET state=$1::VARCHAR, response_status=$2::INTEGER, "
    "response_headers=$3::JSONB, response_body=$4::BYTEA, "
    "completed_at=$5::TIMESTAMP WITH TIME ZONE WHERE idempotency_keys.account_id = $6::VARCHAR "
    "AND idempotency_keys.key = $7::VARCHAR AND idempotency_keys.owner_token = $8::VARCHAR "
    "AND idempotency_keys.state = $9::VARCHAR"
)
PG_INSERT_AUDIT = (
    "INSERT INTO audit_log (id, account_id, at, action, agent_id, key_id, business_id, hold_id, "
    "booking_id, meeting_class, decision, reason, request_id, correlation_id, details) VALUES "
    "($1::VARCHAR, $2::VARCHAR, $3::TIMESTAMP WITH TIME ZONE, $4::VARCHAR, $5::VARCHAR, "
    "$6::VARCHAR, $7::VARCHAR, $8::VARCHAR, $9::VARCHAR, $10::VARCHAR, $11::VARCHAR, "
    "$12::VARCHAR, $13::VARCHAR, $14::VARCHAR, $15::JSONB)"
)
PG_WEBHOOK_ENDPOINTS = (
    "SELECT webhook_endpoints.id, webhook_endpoints.account_id, webhook_endpoints.url, "
    "webhook_endpoints.description, webhook_endpoints.events, webhook_endpoints.secret, "
    "webhook_endpoints.previous_secret, webhook_endpoints.previous_secret_expires_at, "
    "webhook_endpoints.enabled, webhook_endpoints.disabled_reason, webhook_endpoints.created_at, "
    "webhook_endpoints.updated_at, webhook_endpoints.deleted_at FROM webhook_endpoints "
    "WHERE webhook_endpoints.account_id = $1::VARCHAR AND webhook_endpoints.enabled IS true "
    "AND webhook_endpoints.deleted_at IS NULL ORDER BY webhook_endpoints.id"
)
PG_INSERT_OUTBOX = (
    "INSERT INTO outbox (id, account_id, kind, event_type, event_id, endpoint_id, booking_id, "
    "hold_id, payload, progress, status, attempts, next_attempt_at, locked_by, locked_until, "
    "last_error, created_at, updated_at, delivered_at) VALUES ($1::VARCHAR, $2::VARCHAR, "
    "$3::VARCHAR, $4::VARCHAR, $5::VARCHAR, $6::VARCHAR, $7::VARCHAR, $8::VARCHAR, $9::JSONB, "
    "$10::JSONB, $11::VARCHAR, $12::INTEGER, $13::TIMESTAMP WITH TIME ZONE, $14::VARCHAR, "
    "$15::TIMESTAMP WITH TIME ZONE, $16::VARCHAR, $17::TIMESTAMP WITH TIME ZONE, "
    "$18::TIMESTAMP WITH TIME ZONE, $19::TIMESTAMP WITH TIME ZONE)"
)


async def pg_book(conn: asyncpg.Connection, ctx: RawContext, v: BookingValues) -> None:
    """The statements of one booking request, on one asyncpg connection."""
    acct, biz = ctx.account_id, v.business_id
    # 1. authentication: a read in autocommit (no BEGIN/ROLLBACK)
    await conn.fetchrow(PG_KEY, ctx.key_hash)
    # 2. idempotency claim: one autocommitted INSERT
    status = await conn.execute(
        PG_IDEM_INSERT, acct, v.idem_key, v.fingerprint, "in_progress", v.owner_token,
        v.now, None, "null", None, v.now, None,
    )  # fmt: skip
    if status != "INSERT 0 1":
        raise RuntimeError(f"idempotency claim inserted nothing: {status}")
    # 3. the booking
    lo, hi = v.start - MARGIN, v.end + MARGIN
    async with conn.transaction():
        # business + account rules + meeting class
        await conn.fetchrow(PG_LOCK_BUSINESS, "default", acct, biz)
        # (expired holds are cleared only when the read finds one: none here)
        await conn.fetch(PG_RESERVATIONS, biz, hi, lo)
        await conn.fetch(PG_BUSY, biz, hi, lo)  # busy calendars + posted busy time
        await conn.execute(
            PG_INSERT_BOOKING, v.booking_id, acct, biz, "default", 50, 0, 0, "confirmed",
            v.start, v.end, "Meeting", None, "bench@example.com", None, "[]", "{}", None,
            v.correlation_id, 1, "not_applicable", None, v.now, v.now, None, None, None,
            ctx.key_id,
        )  # fmt: skip
        await conn.fetchval(
            PG_INSERT_RESERVATION, biz, "booking", v.booking_id, None, v.start, v.end, 50, 0, 0,
            None, True,
        )  # fmt: skip
        await conn.fetchval(PG_WRITE_CALENDAR, biz, *WRITE_ROLES)
        await conn.fetch(PG_WEBHOOK_ENDPOINTS, acct)
        status = await conn.execute(
            PG_IDEM_COMPLETE, "completed", 201, v.response_headers, v.response_body,
            dt.datetime.now(UTC), acct, v.idem_key, v.owner_token, "in_progress",
        )  # fmt: skip
        if status != "UPDATE 1":
            raise RuntimeError(f"idempotency completion updated nothing: {status}")
        await conn.execute(
            PG_INSERT_AUDIT, v.audit_id, acct, v.now, "booking_created", None, ctx.key_id, biz,
            None, v.booking_id, "default", "accept", None, v.request_id, v.correlation_id,
            v.audit_details,
        )  # fmt: skip
        await conn.execute(
            PG_INSERT_OUTBOX, v.outbox_id, acct, "email", "booking.created", v.event_id, None,
            v.booking_id, None, v.outbox_payload, "{}", "pending", 0, v.now, None, None, None,
            v.now, v.now, None,
        )  # fmt: skip


async def pg_context(dsn: str, key_hash: str, business_ids: list[str]) -> RawContext:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        row = await conn.fetchrow(
            "SELECT id, account_id FROM api_keys WHERE key_hash = $1", key_hash
        )
    finally:
        await conn.close()
    if row is None:
        raise RuntimeError("bench API key not found in the database")
    return RawContext(row["account_id"], row["id"], key_hash, business_ids)


async def run_pg(
    dsn: str,
    ctx: RawContext,
    *,
    duration_s: float,
    slot_start: Callable[[int], dt.datetime],
    meeting: dt.timedelta,
) -> tuple[RawResult, float]:
    """One asyncpg connection per business/worker, all booking for `duration_s`."""
    result = RawResult()
    conns = [await asyncpg.connect(dsn, timeout=10) for _ in ctx.business_ids]
    try:
        # Warm-up: prepare every statement on every connection (the server's statement
        # cache is just as warm after its own warm-up).
        counters = [0] * len(conns)

        async def one(i: int, record: bool) -> None:
            start = slot_start(counters[i])
            counters[i] += 1
            v = booking_values(ctx, ctx.business_ids[i], start, start + meeting)
            t0 = time.perf_counter_ns()
            try:
                await pg_book(conns[i], ctx, v)
            except (asyncpg.PostgresError, RuntimeError, OSError) as exc:
                if record:
                    result.errors += 1
                    if len(result.error_samples) < 5:
                        result.error_samples.append(repr(exc))
                return
            if record:
                result.latencies_ns.append(time.perf_counter_ns() - t0)
                result.committed += 1

        for _ in range(3):
            await asyncio.gather(*(one(i, False) for i in range(len(conns))))

        deadline = time.perf_counter() + duration_s

        async def worker(i: int) -> None:
            while time.perf_counter() < deadline:
                await one(i, True)

        t0 = time.perf_counter()
        async with asyncio.timeout(duration_s + 60):
            await asyncio.gather(*(worker(i) for i in range(len(conns))))
        elapsed = time.perf_counter() - t0
    finally:
        for c in conns:
            await c.close(timeout=5)
    return result, elapsed


# --- SQLite (sqlite3, BEGIN IMMEDIATE) ----------------------------------------------------


def _pg_to_sqlite(sql: str) -> str:
    """The SQLite spelling of the statements above, as SQLAlchemy renders them there."""
    import re

    out = re.sub(r"\$\d+::(?:TIMESTAMP WITH TIME ZONE|[A-Z]+)", "?", sql)
    out = re.sub(r" FOR UPDATE( OF \w+)?", "", out).replace("IS true", "IS 1")
    return out.replace("(account_id, key,", '(account_id, "key",').replace(
        "idempotency_keys.key =", 'idempotency_keys."key" ='
    )


SQ = {
    name: _pg_to_sqlite(sql)
    for name, sql in {
        "key": PG_KEY,
        # SQLite: INSERT OR IGNORE (a duplicate is no error there); PostgreSQL: plain.
        "idem_insert": PG_IDEM_INSERT.replace("INSERT INTO", "INSERT OR IGNORE INTO", 1),
        "lock_business": PG_LOCK_BUSINESS,
        "reservations": PG_RESERVATIONS,
        "insert_booking": PG_INSERT_BOOKING,
        # A Core INSERT of one row: SQLAlchemy fetches the new id with RETURNING on
        # PostgreSQL and from the cursor's lastrowid on SQLite.
        "insert_reservation": PG_INSERT_RESERVATION.removesuffix(" RETURNING reservations.id"),
        "idem_complete": PG_IDEM_COMPLETE,
        "insert_audit": PG_INSERT_AUDIT,
        "write_calendar": PG_WRITE_CALENDAR,
        "webhook_endpoints": PG_WEBHOOK_ENDPOINTS,
        "insert_outbox": PG_INSERT_OUTBOX,
    }.items()
}
SQ["busy"] = SQLITE_BUSY


def _ts(value: dt.datetime) -> str:
    """store/types.py UTCDateTime on SQLite: naive UTC, SQLAlchemy's fixed-width text."""
    return value.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def sqlite_connect(path: Path, busy_timeout_s: float = 30.0) -> sqlite3.Connection:
    """A connection set up like store/db.py `_sqlite_engine` does."""
    conn = sqlite3.connect(
        path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def _write(conn: sqlite3.Connection, body: Callable[[], None]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        body()
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def sqlite_book(
    reader: sqlite3.Connection,
    writer: sqlite3.Connection,
    writer_lock: threading.Lock | None,
    ctx: RawContext,
    v: BookingValues,
) -> None:
    acct, biz = ctx.account_id, v.business_id
    now = _ts(v.now)
    # 1. authentication, on a read connection, in autocommit
    reader.execute(SQ["key"], (ctx.key_hash,)).fetchall()

    lock = writer_lock or _NO_LOCK

    # 2. idempotency claim
    def claim() -> None:
        cur = writer.execute(
            SQ["idem_insert"],
            (acct, v.idem_key, v.fingerprint, "in_progress", v.owner_token, now, None, "null",
             None, now, None),
        )  # fmt: skip
        if cur.rowcount != 1:
            raise RuntimeError("idempotency claim inserted nothing")

    with lock:
        _write(writer, claim)

    # 3. the booking
    lo, hi = _ts(v.start - MARGIN), _ts(v.end + MARGIN)
    start, end = _ts(v.start), _ts(v.end)

    def book() -> None:
        x = writer.execute
        # business + account rules + meeting class
        x(SQ["lock_business"], ("default", acct, biz)).fetchall()
        x(SQ["reservations"], (biz, hi, lo)).fetchall()
        x(SQ["busy"], (biz, biz, hi, lo)).fetchall()  # busy calendars + posted busy time
        x(
            SQ["insert_booking"],
            (v.booking_id, acct, biz, "default", 50, 0, 0, "confirmed", start, end, "Meeting",
             None, "bench@example.com", None, "[]", "{}", None, v.correlation_id, 1,
             "not_applicable", None, now, now, None, None, None, ctx.key_id),
        )  # fmt: skip
        x(
            SQ["insert_reservation"],
            (biz, "booking", v.booking_id, None, start, end, 50, 0, 0, None, 1),
        )
        x(SQ["write_calendar"], (biz, *WRITE_ROLES)).fetchall()
        x(SQ["webhook_endpoints"], (acct,)).fetchall()
        cur = x(
            SQ["idem_complete"],
            ("completed", 201, v.response_headers, v.response_body,
             _ts(dt.datetime.now(UTC)), acct, v.idem_key, v.owner_token, "in_progress"),
        )  # fmt: skip
        if cur.rowcount != 1:
            raise RuntimeError("idempotency completion updated nothing")
        x(
            SQ["insert_audit"],
            (v.audit_id, acct, now, "booking_created", None, ctx.key_id, biz, None,
             v.booking_id, "default", "accept", None, v.request_id, v.correlation_id,
             v.audit_details),
        )  # fmt: skip
        x(
            SQ["insert_outbox"],
            (v.outbox_id, acct, "email", "booking.created", v.event_id, None, v.booking_id,
             None, v.outbox_payload, "{}", "pending", 0, now, None, None, None, now, now, None),
        )  # fmt: skip

    with lock:
        _write(writer, book)


class _NullLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_LOCK: Any = _NullLock()


def sqlite_context(path: Path, key_hash: str, business_ids: list[str]) -> RawContext:
    conn = sqlite_connect(path)
    try:
        row = conn.execute(
            "SELECT id, account_id FROM api_keys WHERE key_hash = ?", (key_hash,)
        ).fetchone()
    finally:
        conn.close()
    if row is None:
        raise RuntimeError("bench API key not found in the database")
    return RawContext(row[1], row[0], key_hash, business_ids)


def run_sqlite(
    path: Path,
    ctx: RawContext,
    *,
    duration_s: float,
    slot_start: Callable[[int], dt.datetime],
    meeting: dt.timedelta,
    serialise_writers: bool,
) -> tuple[RawResult, float]:
    """One thread per business/worker, each with its own reader and writer connection.

    `serialise_writers`: queue write transactions on an in-process lock, as the server does
    with its single writer connection (store/db.py), instead of leaving it to SQLite's
    sleeping busy handler.
    """
    result = RawResult()
    result_lock = threading.Lock()
    writer_lock = threading.Lock() if serialise_writers else None
    n = len(ctx.business_ids)
    conns = [(sqlite_connect(path), sqlite_connect(path)) for _ in range(n)]
    counters = [0] * n

    def one(i: int, record: bool) -> None:
        start = slot_start(counters[i])
        counters[i] += 1
        v = booking_values(ctx, ctx.business_ids[i], start, start + meeting)
        reader, writer = conns[i]
        t0 = time.perf_counter_ns()
        try:
            sqlite_book(reader, writer, writer_lock, ctx, v)
        except (sqlite3.Error, RuntimeError) as exc:
            if record:
                with result_lock:
                    result.errors += 1
                    if len(result.error_samples) < 5:
                        result.error_samples.append(repr(exc))
            return
        if record:
            elapsed = time.perf_counter_ns() - t0
            with result_lock:
                result.latencies_ns.append(elapsed)
                result.committed += 1

    try:
        for i in range(n):
            for _ in range(3):
                one(i, False)
        deadline = time.perf_counter() + duration_s

        def worker(i: int) -> None:
            while time.perf_counter() < deadline:
                one(i, True)

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=duration_s + 60)
        elapsed = time.perf_counter() - t0
    finally:
        for reader, writer in conns:
            reader.close()
            writer.close()
    return result, elapsed


def replayed_shapes(store: str) -> list[str]:
    """The statement shapes (see sqlcapture.shape) this module replays for one booking."""
    from sqlcapture import shape

    def s(sql: str) -> str:
        if sql is PG_BUSY and store != "postgres":
            sql = SQLITE_BUSY
        out = shape(sql if store == "postgres" else _pg_to_sqlite(sql))
        assert out is not None
        return out

    # PostgreSQL claims the key with one autocommitted INSERT; SQLite in a write transaction.
    claim = [s(PG_IDEM_INSERT)] if store == "postgres" else [s(PG_IDEM_INSERT), "COMMIT"]
    return [
        s(PG_KEY),
        *claim,
        s(PG_LOCK_BUSINESS),
        s(PG_RESERVATIONS), s(PG_BUSY), s(PG_INSERT_BOOKING),
        s(PG_INSERT_RESERVATION),
        s(PG_WRITE_CALENDAR), s(PG_WEBHOOK_ENDPOINTS), s(PG_IDEM_COMPLETE), s(PG_INSERT_AUDIT),
        s(PG_INSERT_OUTBOX),
        "COMMIT",
    ]  # fmt: skip
