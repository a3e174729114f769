"""Every query slotguard runs. Services call these; nothing else builds SQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Row,
    Select,
    String,
    Table,
    and_,
    bindparam,
    cast,
    delete,
    func,
    insert,
    inspect,
    literal_column,
    null,
    or_,
    select,
    type_coerce,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached

from slotguard.store import calendar_repo, deferred
from slotguard.store.busy import BusyRead, BusyWindow, posted_periods
from slotguard.store.models import (
    Account,
    Agent,
    ApiKey,
    AuditEntry,
    Base,
    Booking,
    Business,
    BusyInterval,
    Hold,
    IdempotencyKey,
    MeetingClass,
    Reservation,
)

# The booking path's statements are built once, here, with bind parameters: building a
# statement and computing its cache key on every call cost more CPU than running it.
# SQLAlchemy memoizes a statement object's cache key, so these go straight to its
# compiled-statement cache. The SQL sent is the same as before.

EXCLUSION_VIOLATION = "23P01"
UNIQUE_VIOLATION = "23505"


def sqlstate_of(exc: IntegrityError) -> str | None:
    """SQLSTATE of a PostgreSQL integrity error (None on SQLite)."""
    orig: Any = exc.orig
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if code is None and orig is not None:
        code = getattr(getattr(orig, "__cause__", None), "sqlstate", None)
    return code


def is_unique_violation(exc: IntegrityError) -> bool:
    return sqlstate_of(exc) == UNIQUE_VIOLATION or "UNIQUE constraint failed" in str(exc.orig)


# -- accounts and keys -------------------------------------------------------------------


async def count_accounts(s: AsyncSession) -> int:
    return int(await s.scalar(select(func.count()).select_from(Account)) or 0)


async def get_account(s: AsyncSession, account_id: str) -> Account | None:
    return await s.get(Account, account_id)


async def list_accounts(s: AsyncSession) -> Sequence[tuple[Account, int]]:
    """Every account, oldest first, with its number of unrevoked admin (non-agent) keys."""
    live_admin_keys = (
        select(func.count(ApiKey.id))
        .where(
            ApiKey.account_id == Account.id,
            ApiKey.agent_id.is_(None),
            ApiKey.revoked_at.is_(None),
        )
        .correlate(Account)
        .scalar_subquery()
    )
    rows = await s.execute(
        select(Account, live_admin_keys).order_by(Account.created_at, Account.id)
    )
    return [(account, int(count)) for account, count in rows.all()]


# Plain rows, not ORM objects: every request authenticates, and loading two mapped objects
# into a throwaway session cost more than the lookup itself.
_KEY_T: Table = ApiKey.__table__  # type: ignore[assignment]
_AGENT_T: Table = Agent.__table__  # type: ignore[assignment]
_KEY_BY_HASH = (
    select(
        _KEY_T.c.id,
        _KEY_T.c.account_id,
        _KEY_T.c.agent_id,
        _KEY_T.c.key_hash,
        _KEY_T.c.revoked_at,
        _AGENT_T.c.scopes.label("agent_scopes"),
        _AGENT_T.c.allowed_business_ids.label("agent_allowed_business_ids"),
        _AGENT_T.c.default_meeting_class.label("agent_default_meeting_class"),
        _AGENT_T.c.deleted_at.label("agent_deleted_at"),
        _AGENT_T.c.id.label("agent_row_id"),
    )
    .select_from(_KEY_T.outerjoin(_AGENT_T, _AGENT_T.c.id == _KEY_T.c.agent_id))
    .where(_KEY_T.c.key_hash == bindparam("key_hash"))
)


async def find_key_by_hash(s: AsyncSession, key_hash: str) -> Row[Any] | None:
    """The key's row and its agent's (`agent_*` columns, None without an agent)."""
    return (await s.execute(_KEY_BY_HASH, {"key_hash": key_hash})).first()


async def get_key(s: AsyncSession, account_id: str, key_id: str) -> ApiKey | None:
    found: ApiKey | None = await s.scalar(
        select(ApiKey).where(ApiKey.id == key_id, ApiKey.account_id == account_id)
    )
    return found


async def list_agent_keys(s: AsyncSession, account_id: str, agent_id: str) -> Sequence[ApiKey]:
    return (
        await s.scalars(
            select(ApiKey)
            .where(ApiKey.account_id == account_id, ApiKey.agent_id == agent_id)
            .order_by(ApiKey.id)
        )
    ).all()


async def get_agent(s: AsyncSession, account_id: str, agent_id: str) -> Agent | None:
    found: Agent | None = await s.scalar(
        select(Agent).where(
            Agent.id == agent_id, Agent.account_id == account_id, Agent.deleted_at.is_(None)
        )
    )
    return found


async def list_agents(
    s: AsyncSession, account_id: str, *, after: str | None, limit: int
) -> Sequence[Agent]:
    q = select(Agent).where(Agent.account_id == account_id, Agent.deleted_at.is_(None))
    if after:
        q = q.where(Agent.id > after)
    return (await s.scalars(q.order_by(Agent.id).limit(limit + 1))).all()


async def revoke_agent_keys(s: AsyncSession, agent_id: str, now: dt.datetime) -> None:
    await s.execute(
        update(ApiKey)
        .where(ApiKey.agent_id == agent_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
    )


# -- businesses, classes, busy time ------------------------------------------------------


def _live_business(account_id: str) -> Select[tuple[Business]]:
    return select(Business).where(Business.account_id == account_id, Business.deleted_at.is_(None))


async def get_business(s: AsyncSession, account_id: str, business_id: str) -> Business | None:
    found: Business | None = await s.scalar(
        _live_business(account_id).where(Business.id == business_id)
    )
    return found


async def get_business_by_email(s: AsyncSession, account_id: str, email: str) -> Business | None:
    found: Business | None = await s.scalar(
        _live_business(account_id).where(func.lower(Business.email) == email.lower())
    )
    return found


_LOCK_BUSINESS = (
    select(Business)
    .where(
        Business.account_id == bindparam("account_id"),
        Business.deleted_at.is_(None),
        Business.id == bindparam("business_id"),
    )
    .with_for_update()
    .execution_options(populate_existing=True)
)


async def lock_business(s: AsyncSession, account_id: str, business_id: str) -> Business | None:
    """Load a business and lock its row until the transaction ends.

    Every write that reserves time for a business takes this lock first, so buffer and
    daily-cap checks (which the exclusion constraint cannot express) see a stable state.
    On SQLite FOR UPDATE is ignored; BEGIN IMMEDIATE already serialises all writers.
    """
    found: Business | None = await s.scalar(
        _LOCK_BUSINESS, {"account_id": account_id, "business_id": business_id}
    )
    return found


# Reads (no lock) also take the meeting class in the same statement: one round trip fewer
# for every slot listing. Plain rows (table columns, labelled): a read only looks at them.
# NULL class columns: no class of that name.
_b, _a, _mc = (t.__table__.c for t in (Business, Account, MeetingClass))
_CLASS_COLUMNS = (
    _mc.name.label("class_name"),
    _mc.display_name.label("class_display_name"),
    _mc.duration_minutes.label("class_duration_minutes"),
    _mc.priority.label("class_priority"),
    _mc.buffer_before_minutes.label("class_buffer_before_minutes"),
    _mc.buffer_after_minutes.label("class_buffer_after_minutes"),
)
_WITH_CLASS = Business.__table__.join(Account.__table__, _a.id == _b.account_id).outerjoin(
    MeetingClass.__table__,
    and_(_mc.account_id == _b.account_id, _mc.name == bindparam("class_name")),
)
_LIVE_BUSINESS_OF = and_(
    _b.account_id == bindparam("account_id"),
    _b.id == bindparam("business_id"),
    _b.deleted_at.is_(None),
)
_BUSINESS_RULES_CLASS = (
    select(_b.id, _b.name, _b.timezone, _b.rules, _a.rules.label("account_rules"), *_CLASS_COLUMNS)
    .select_from(_WITH_CLASS)
    .where(_LIVE_BUSINESS_OF)
)
# Writers lock the business row and keep it as an ORM object (held in the session, it
# serves the booking's mail snapshot); the class comes in the same statement.
_BUSINESS_AND_ACCOUNT_RULES_LOCKED = (
    select(Business, _a.rules.label("account_rules"), *_CLASS_COLUMNS)
    .select_from(_WITH_CLASS)
    .where(_LIVE_BUSINESS_OF)
    .execution_options(populate_existing=True)
    .with_for_update(of=Business)
)


async def business_rules_and_class(
    s: AsyncSession, account_id: str, business_id: str, class_name: str
) -> Row[Any] | None:
    """A business (not locked: ``id``, ``name``, ``timezone``, ``rules``), its account's
    rule layer (``account_rules``) and the meeting class named `class_name` (``class_*``,
    NULL if there is none), in one statement."""
    return (
        await s.execute(
            _BUSINESS_RULES_CLASS,
            {"account_id": account_id, "business_id": business_id, "class_name": class_name},
        )
    ).first()


async def business_and_account_rules(
    s: AsyncSession, account_id: str, business_id: str, class_name: str
) -> Row[Any] | None:
    """A business, row-locked (see `lock_business`), as an ORM object (``Business``), its
    account's rule layer (``account_rules``) and the meeting class named `class_name`
    (``class_*``, NULL if there is none), in one statement."""
    return (
        await s.execute(
            _BUSINESS_AND_ACCOUNT_RULES_LOCKED,
            {"account_id": account_id, "business_id": business_id, "class_name": class_name},
        )
    ).first()


async def list_businesses(
    s: AsyncSession,
    account_id: str,
    *,
    after: str | None,
    limit: int,
    only_ids: frozenset[str] | None = None,
) -> Sequence[Business]:
    q = _live_business(account_id)
    if only_ids is not None:
        q = q.where(Business.id.in_(only_ids))
    if after:
        q = q.where(Business.id > after)
    return (await s.scalars(q.order_by(Business.id).limit(limit + 1))).all()


_MEETING_CLASS = select(MeetingClass).where(
    MeetingClass.account_id == bindparam("account_id"), MeetingClass.name == bindparam("name")
)


async def get_meeting_class(s: AsyncSession, account_id: str, name: str) -> MeetingClass | None:
    found: MeetingClass | None = await s.scalar(
        _MEETING_CLASS, {"account_id": account_id, "name": name}
    )
    return found


async def list_meeting_classes(
    s: AsyncSession, account_id: str, *, after: str | None, limit: int
) -> Sequence[MeetingClass]:
    q = select(MeetingClass).where(MeetingClass.account_id == account_id)
    if after:
        q = q.where(MeetingClass.name > after)
    return (await s.scalars(q.order_by(MeetingClass.name).limit(limit + 1))).all()


async def list_busy(
    s: AsyncSession,
    business_id: str,
    *,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    after: str | None = None,
    limit: int | None = None,
) -> Sequence[BusyInterval]:
    q = select(BusyInterval).where(BusyInterval.business_id == business_id)
    if start is not None:
        q = q.where(BusyInterval.end_at > start)
    if end is not None:
        q = q.where(BusyInterval.start_at < end)
    if after:
        q = q.where(BusyInterval.id > after)
    q = q.order_by(BusyInterval.id)
    if limit is not None:
        q = q.limit(limit + 1)
    return (await s.scalars(q)).all()


async def get_busy(s: AsyncSession, business_id: str, busy_id: str) -> BusyInterval | None:
    found: BusyInterval | None = await s.scalar(
        select(BusyInterval).where(
            BusyInterval.business_id == business_id, BusyInterval.id == busy_id
        )
    )
    return found


# -- reservations ------------------------------------------------------------------------


async def expire_holds(s: AsyncSession, business_id: str, now: dt.datetime) -> None:
    """Stop expired hold rows from blocking, inside the caller's write transaction.

    The exclusion constraint only sees `active`; a hold past `expires_at` must not keep a
    new reservation out even if no sweeper has run, so each reserving transaction clears
    them first for its business.
    """
    await s.execute(
        update(Reservation)
        .where(
            Reservation.business_id == business_id,
            Reservation.kind == "hold",
            Reservation.active.is_(True),
            Reservation.expires_at <= now,
        )
        .values(active=False)
    )


# Plain rows, not Reservation objects: the callers only read them, and an availability
# read loads hundreds, which the ORM's identity map and instance state would multiply.
_RESERVATIONS: Table = Reservation.__table__  # type: ignore[assignment]
_res = _RESERVATIONS.c
_booking = Booking.__table__.c
_ACTIVE_CLAIMS = (
    select(*Reservation.__table__.c, _booking.created_at)
    .select_from(Reservation.__table__.outerjoin(Booking.__table__, _booking.id == _res.booking_id))
    .where(
        _res.business_id == bindparam("business_id"),
        _res.active.is_(True),
        _res.start_at < bindparam("end"),
        _res.end_at > bindparam("start"),
    )
    .order_by(_res.start_at, _res.id)
)


async def active_claims(
    s: AsyncSession,
    business_id: str,
    *,
    start: dt.datetime,
    end: dt.datetime,
) -> Sequence[tuple[Row[Any], dt.datetime | None]]:
    """Active reservations in [start, end) (as rows with the `reservations` columns) with
    their booking's creation time (or None).

    Hold rows past `expires_at` are included: they no longer block, but the caller must know
    of them to clear them (`expire_holds`) before inserting a reservation over them.
    """
    rows = await s.execute(_ACTIVE_CLAIMS, {"business_id": business_id, "start": start, "end": end})
    return [(r, r[-1]) for r in rows]


_busy = BusyInterval.__table__.c
_POSTED_BUSY_WHERE = (
    _busy.business_id == bindparam("business_id"),
    _busy.start_at < bindparam("end"),
    _busy.end_at > bindparam("start"),
)
# Posted busy time in a window as ONE text value (see `BusyPeriods`): an availability read
# meets hundreds of rows, and turning each row's two instants into objects one at a time cost
# more than the rest of the read. SQLite sends its stored instant text; PostgreSQL epoch
# microseconds (exact, and independent of the session's TimeZone). Both in (start, end)
# order, so the same rows are the same text.
_SLASH: Any = literal_column("'/'")
_COMMA: Any = literal_column("','")
_MICROS: Any = literal_column("1000000")
_posted_rows = (
    select(_busy.start_at, _busy.end_at)
    .where(*_POSTED_BUSY_WHERE)
    .order_by(_busy.start_at, _busy.end_at)
    .subquery("posted")
)


def _pg_micros(column: Any) -> Any:
    return cast(cast(func.extract("epoch", column) * _MICROS, BigInteger), String())


def _with_posted(packed: Any, source: Any = None) -> Any:
    # One statement: the busy calendars' rows, then one row (id NULL) with the posted text.
    posted = select(null(), literal_column("0"), packed, null(), null())
    posted = posted.select_from(source) if source is not None else posted
    return union_all(calendar_repo.BUSY_CALENDARS, posted)


_BUSY_SQLITE = _with_posted(
    func.group_concat(
        type_coerce(_posted_rows.c.start_at, String())
        + _SLASH
        + type_coerce(_posted_rows.c.end_at, String()),
        _COMMA,
        type_=String(),
    ),
    _posted_rows,
)
_BUSY_PG = _with_posted(
    func.string_agg(
        _pg_micros(_busy.start_at) + _SLASH + _pg_micros(_busy.end_at),
        aggregate_order_by(_COMMA, _busy.start_at, _busy.end_at),
        type_=String(),
    )
    .select()
    .where(*_POSTED_BUSY_WHERE)
    .scalar_subquery()
)


async def busy_periods(
    s: AsyncSession, business_id: str, *, start: dt.datetime, end: dt.datetime
) -> BusyRead:
    """Busy time overlapping [start, end): posted over the API and from connected calendars
    (their local copies), which blocks exactly the same way; periods may overlap. One
    statement, unless a calendar's copy is not packed yet."""
    postgres = s.get_bind().dialect.name == "postgresql"
    rows = (
        await s.execute(
            _BUSY_PG if postgres else _BUSY_SQLITE,
            {"business_id": business_id, "start": start, "end": end},
        )
    ).all()
    packed = next((r[2] for r in rows if r[0] is None), None)
    found = await calendar_repo.calendar_busy(
        s, [r for r in rows if r[0] is not None], start=start, end=end
    )
    if packed:
        posted = posted_periods(packed, postgres=postgres)
        found.windows.insert(0, BusyWindow(posted, 0, len(posted.starts)))
    return found


async def busy_between(
    s: AsyncSession, business_id: str, *, start: dt.datetime, end: dt.datetime
) -> Sequence[tuple[dt.datetime, dt.datetime]]:
    """`busy_periods` as (start, end) pairs."""
    return [
        pair
        for w in (await busy_periods(s, business_id, start=start, end=end)).windows
        for pair in w.pairs()
    ]


_DEACTIVATE_BY_BOOKING = (
    update(_RESERVATIONS)
    .where(_res.booking_id == bindparam("ref"), _res.active.is_(True))
    .values(active=False)
)
_DEACTIVATE_BY_HOLD = (
    update(_RESERVATIONS)
    .where(_res.hold_id == bindparam("ref"), _res.active.is_(True))
    .values(active=False)
)


# New bookings and holds with their reservations: Core INSERTs of the objects' column
# values instead of the unit of work's flush (its bookkeeping cost more than the two
# statements). The SQL is what the flush sent, without fetching the reservations' ids,
# which nothing reads.
def _column_keys(model: type[Base]) -> tuple[tuple[str, str], ...]:
    return tuple(
        (attr.key, column.key) for attr in inspect(model).column_attrs for column in attr.columns
    )


_RESERVING_COLUMNS = {model: _column_keys(model) for model in (Booking, Hold)}
_RESERVATION_COLUMNS = tuple(kv for kv in _column_keys(Reservation) if kv[0] != "id")
_RESERVING_INSERT = {
    model: insert(model.__table__)  # type: ignore[arg-type]
    for model in (Booking, Hold)
}
_RESERVATION_INSERT = insert(Reservation.__table__)  # type: ignore[arg-type]


async def insert_reserving(
    s: AsyncSession, row: Booking | Hold, reservations: Sequence[Reservation]
) -> None:
    """INSERT a new booking or hold (every column set) and its reservations, then attach
    the object to the session as persistent, so later changes to it are flushed as UPDATEs.

    Pending ORM changes are flushed first: displaced claims free their time before the new
    reservations are checked by the exclusion constraint.
    """
    await s.flush()
    values = row.__dict__
    columns = _RESERVING_COLUMNS[type(row)]
    missing = [attr for attr, _ in columns if attr not in values]
    if missing:
        raise ValueError(f"new {type(row).__name__} without {missing}")
    await s.execute(_RESERVING_INSERT[type(row)], {col: values[attr] for attr, col in columns})
    params = [{col: r.__dict__[attr] for attr, col in _RESERVATION_COLUMNS} for r in reservations]
    if params:
        await s.execute(_RESERVATION_INSERT, params)
    make_transient_to_detached(row)
    s.add(row)


async def deactivate_booking_reservation(s: AsyncSession, booking_id: str) -> None:
    await s.execute(_DEACTIVATE_BY_BOOKING, {"ref": booking_id})


async def deactivate_hold_reservations(s: AsyncSession, hold_id: str) -> None:
    await s.execute(_DEACTIVATE_BY_HOLD, {"ref": hold_id})


# -- bookings ----------------------------------------------------------------------------


_BOOKING = select(Booking).where(
    Booking.id == bindparam("booking_id"), Booking.account_id == bindparam("account_id")
)
_BOOKING_LOCKED = _BOOKING.with_for_update().execution_options(populate_existing=True)


async def get_booking(
    s: AsyncSession, account_id: str, booking_id: str, *, for_update: bool = False
) -> Booking | None:
    found: Booking | None = await s.scalar(
        _BOOKING_LOCKED if for_update else _BOOKING,
        {"booking_id": booking_id, "account_id": account_id},
    )
    return found


async def list_bookings(
    s: AsyncSession,
    account_id: str,
    *,
    business_ids: frozenset[str] | None,
    statuses: Sequence[str] | None,
    start: dt.datetime | None,
    end: dt.datetime | None,
    customer_email: str | None,
    updated_since: dt.datetime | None,
    sort: str,
    after: tuple[dt.datetime, str] | None,
    limit: int,
) -> Sequence[Booking]:
    q = select(Booking).where(Booking.account_id == account_id)
    if business_ids is not None:
        q = q.where(Booking.business_id.in_(business_ids))
    if statuses:
        q = q.where(Booking.status.in_(statuses))
    if start is not None:
        q = q.where(Booking.start_at >= start)
    if end is not None:
        q = q.where(Booking.start_at < end)
    if customer_email:
        q = q.where(func.lower(Booking.customer_email) == customer_email.lower())
    if updated_since is not None:
        q = q.where(Booking.updated_at >= updated_since)
    col = Booking.updated_at if sort == "updated_at" else Booking.start_at
    if after is not None:
        q = q.where(or_(col > after[0], and_(col == after[0], Booking.id > after[1])))
    return (await s.scalars(q.order_by(col, Booking.id).limit(limit + 1))).all()


# -- holds -------------------------------------------------------------------------------


_HOLD = select(Hold).where(
    Hold.id == bindparam("hold_id"), Hold.account_id == bindparam("account_id")
)
_HOLD_LOCKED = _HOLD.with_for_update().execution_options(populate_existing=True)


async def get_hold(
    s: AsyncSession, account_id: str, hold_id: str, *, for_update: bool = False
) -> Hold | None:
    found: Hold | None = await s.scalar(
        _HOLD_LOCKED if for_update else _HOLD, {"hold_id": hold_id, "account_id": account_id}
    )
    return found


# -- idempotency -------------------------------------------------------------------------


async def get_idempotency_key(s: AsyncSession, account_id: str, key: str) -> IdempotencyKey | None:
    found: IdempotencyKey | None = await s.scalar(
        select(IdempotencyKey)
        .where(IdempotencyKey.account_id == account_id, IdempotencyKey.key == key)
        .execution_options(populate_existing=True)
    )
    return found


# Core statements on the table (not the mapped class): executed with a parameter dict, an
# ORM-enabled INSERT/UPDATE would become an ORM bulk operation with no rowcount.
_IDEM: Table = IdempotencyKey.__table__  # type: ignore[assignment]
_IDEM_KEY_COLUMNS = [_IDEM.c.account_id, _IDEM.c.key]
# PostgreSQL's and SQLite's INSERT ... ON CONFLICT constructs have no cache key in
# SQLAlchemy 2.0: they are compiled again on every execution. The common paths use
# statements that are cached instead: a plain INSERT in autocommit on PostgreSQL (a
# duplicate is the unique violation, which aborts nothing outside a transaction) and
# INSERT OR IGNORE on SQLite. ON CONFLICT remains for the rare PostgreSQL retry inside a
# transaction, where a failed statement would abort the transaction.
_IDEM_INSERT = insert(_IDEM)
_IDEM_INSERT_OR_IGNORE = insert(_IDEM).prefix_with("OR IGNORE", dialect="sqlite")
_IDEM_INSERT_PG = pg_insert(_IDEM).on_conflict_do_nothing(index_elements=_IDEM_KEY_COLUMNS)


async def insert_idempotency_key(s: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert a fresh in-progress key in a transaction; False if it exists (any state).

    No savepoint, one statement. On PostgreSQL a concurrent insert of the same key waits for
    the other transaction and then reports the conflict.
    """
    dialect = s.get_bind().dialect.name
    stmt = _IDEM_INSERT_PG if dialect == "postgresql" else _IDEM_INSERT_OR_IGNORE
    res = await s.execute(stmt, values)
    return bool(res.rowcount)  # type: ignore[attr-defined]


async def try_insert_idempotency_key(s: AsyncSession, values: dict[str, Any]) -> bool:
    """`insert_idempotency_key` for an autocommit session on PostgreSQL only."""
    try:
        await s.execute(_IDEM_INSERT, values)
    except IntegrityError as exc:
        if is_unique_violation(exc):
            return False
        raise
    return True


async def take_over_idempotency_key(
    s: AsyncSession,
    account_id: str,
    key: str,
    *,
    expected_token: str,
    values: dict[str, Any],
) -> bool:
    """Compare-and-swap the owner of a key (reclaiming a stale or expired one)."""
    res = await s.execute(
        update(IdempotencyKey)
        .where(
            IdempotencyKey.account_id == account_id,
            IdempotencyKey.key == key,
            IdempotencyKey.owner_token == expected_token,
        )
        .values(**values)
    )
    return bool(res.rowcount)  # type: ignore[attr-defined]


# (Bind names differ from the column names: those are reserved for the SET clause.)
_IDEM_COMPLETE = (
    update(_IDEM)
    .where(
        _IDEM.c.account_id == bindparam("w_account_id"),
        _IDEM.c.key == bindparam("w_key"),
        _IDEM.c.owner_token == bindparam("w_token"),
        _IDEM.c.state == bindparam("w_state"),
    )
    .values(
        state=bindparam("new_state"),
        response_status=bindparam("new_status"),
        response_headers=bindparam("new_headers"),
        response_body=bindparam("new_body"),
        completed_at=bindparam("new_completed_at"),
    )
)


async def complete_idempotency_key(
    s: AsyncSession,
    account_id: str,
    key: str,
    *,
    token: str,
    status: int,
    headers: dict[str, str],
    body: bytes,
    now: dt.datetime,
) -> bool:
    res = await s.execute(
        _IDEM_COMPLETE,
        {
            "new_state": "completed",
            "new_status": status,
            "new_headers": headers,
            "new_body": body,
            "new_completed_at": now,
            "w_account_id": account_id,
            "w_key": key,
            "w_token": token,
            "w_state": "in_progress",
        },
    )
    return bool(res.rowcount)  # type: ignore[attr-defined]


async def release_idempotency_key(s: AsyncSession, account_id: str, key: str, token: str) -> None:
    await s.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.account_id == account_id,
            IdempotencyKey.key == key,
            IdempotencyKey.owner_token == token,
            IdempotencyKey.state == "in_progress",
        )
    )


async def purge_idempotency_keys(s: AsyncSession, *, completed_before: dt.datetime) -> int:
    res = await s.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.state == "completed",
            IdempotencyKey.completed_at < completed_before,
        )
    )
    return int(res.rowcount)  # type: ignore[attr-defined]


# -- audit -------------------------------------------------------------------------------


def add_audit_row(s: AsyncSession, values: dict[str, Any]) -> None:
    """An `audit_log` row, inserted when the caller's transaction commits (`deferred`)."""
    deferred.add_row(s, _AUDIT_LOG, values)


_AUDIT_LOG: Table = AuditEntry.__table__  # type: ignore[assignment]


def _audit_query(
    account_id: str,
    *,
    business_ids: frozenset[str] | None,
    business_id: str | None,
    action: str | None,
    agent_id: str | None,
    booking_id: str | None,
    hold_id: str | None,
    request_id: str | None = None,
    since: dt.datetime | None,
    until: dt.datetime | None,
) -> Select[tuple[AuditEntry]]:
    q = select(AuditEntry).where(AuditEntry.account_id == account_id)
    if business_ids is not None:
        q = q.where(AuditEntry.business_id.in_(business_ids))
    if business_id:
        q = q.where(AuditEntry.business_id == business_id)
    if action:
        q = q.where(AuditEntry.action.in_(action.split(",")))
    if agent_id:
        q = q.where(AuditEntry.agent_id == agent_id)
    if booking_id:
        q = q.where(AuditEntry.booking_id == booking_id)
    if hold_id:
        q = q.where(AuditEntry.hold_id == hold_id)
    if request_id:
        q = q.where(AuditEntry.request_id == request_id)
    if since is not None:
        q = q.where(AuditEntry.at >= since)
    if until is not None:
        q = q.where(AuditEntry.at < until)
    return q


async def list_audit(
    s: AsyncSession, account_id: str, *, after: str | None, limit: int, **filters: Any
) -> Sequence[AuditEntry]:
    q = _audit_query(account_id, **filters)
    if after:
        q = q.where(AuditEntry.id > after)
    return (await s.scalars(q.order_by(AuditEntry.id).limit(limit + 1))).all()


async def stream_audit(
    s: AsyncSession, account_id: str, *, batch: int = 500, **filters: Any
) -> AsyncIterator[AuditEntry]:
    """Every matching row in id order, fetched in keyset pages so memory stays flat."""
    after: str | None = None
    while True:
        q = _audit_query(account_id, **filters)
        if after:
            q = q.where(AuditEntry.id > after)
        rows = (await s.scalars(q.order_by(AuditEntry.id).limit(batch))).all()
        for row in rows:
            yield row
        if len(rows) < batch:
            return
        after = rows[-1].id
        s.expunge_all()
