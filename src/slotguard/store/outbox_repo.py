"""Queries of the outbox, the webhook endpoints and the delivery log.

Claiming is the part that must be right with several workers on one database:

* PostgreSQL: `SELECT … FOR UPDATE SKIP LOCKED` picks due rows no other transaction holds,
  and the same short transaction stamps the lease on them. Two workers never claim a row at
  once; a row they skip is simply taken by the next poll.
* SQLite: FOR UPDATE does not exist; every write transaction is `BEGIN IMMEDIATE`, which
  holds the database's write lock from the first statement, so select-then-stamp is atomic.

A claim moves `next_attempt_at` to the end of the lease. Only due rows are claimable, so a
leased row is invisible to other workers until its lease runs out, and a row whose worker
died becomes due again by itself at that moment.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, Table, and_, bindparam, case, delete, func, inspect, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.store import deferred
from slotguard.store.models import OutboxMessage, WebhookDelivery, WebhookEndpoint
from slotguard.store.types import JSONType, UTCDateTime

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
KINDS = ("webhook", "email", "calendar")


def _rowcount(result: Any) -> int:
    return int(result.rowcount or 0)


# -- endpoints ---------------------------------------------------------------------------


# Built once: every booking write asks this.
_ENABLED_ENDPOINTS = (
    select(WebhookEndpoint)
    .where(
        WebhookEndpoint.account_id == bindparam("account_id"),
        WebhookEndpoint.enabled.is_(True),
        WebhookEndpoint.deleted_at.is_(None),
    )
    .order_by(WebhookEndpoint.id)
)


async def subscribed_endpoints(
    s: AsyncSession, account_id: str, event_type: str
) -> list[WebhookEndpoint]:
    """Enabled endpoints of the account subscribed to `event_type`, oldest first.

    An account has a handful of endpoints; filtering the `events` list here keeps the query
    the same on both stores (JSON containment differs between them).
    """
    rows = (await s.scalars(_ENABLED_ENDPOINTS, {"account_id": account_id})).all()
    return [e for e in rows if event_type in (e.events or [])]


async def get_endpoint(
    s: AsyncSession, account_id: str, endpoint_id: str, *, for_update: bool = False
) -> WebhookEndpoint | None:
    q: Select[tuple[WebhookEndpoint]] = select(WebhookEndpoint).where(
        WebhookEndpoint.id == endpoint_id,
        WebhookEndpoint.account_id == account_id,
        WebhookEndpoint.deleted_at.is_(None),
    )
    if for_update:
        q = q.with_for_update().execution_options(populate_existing=True)
    endpoint: WebhookEndpoint | None = await s.scalar(q)
    return endpoint


async def list_endpoints(
    s: AsyncSession, account_id: str, *, after: str | None, limit: int
) -> Sequence[WebhookEndpoint]:
    q = select(WebhookEndpoint).where(
        WebhookEndpoint.account_id == account_id, WebhookEndpoint.deleted_at.is_(None)
    )
    if after:
        q = q.where(WebhookEndpoint.id > after)
    return (await s.scalars(q.order_by(WebhookEndpoint.id).limit(limit + 1))).all()


async def disable_endpoint(
    s: AsyncSession, endpoint_id: str, *, reason: str, now: dt.datetime
) -> None:
    await s.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.enabled.is_(True))
        .values(enabled=False, disabled_reason=reason, updated_at=now)
    )


async def abandon_endpoint_messages(
    s: AsyncSession, endpoint_id: str, *, reason: str, now: dt.datetime
) -> int:
    """Mark the endpoint's waiting messages dead (the endpoint was deleted).

    Rows a worker holds right now are left to it: it records their outcome, and a later
    claim finds the endpoint gone and marks them dead then.
    """
    res = await s.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.endpoint_id == endpoint_id,
            OutboxMessage.status == PENDING,
            OutboxMessage.locked_by.is_(None),
        )
        .values(status=DEAD, last_error=reason, updated_at=now)
    )
    return _rowcount(res)


# -- enqueue and claim -------------------------------------------------------------------


_OUTBOX: Table = OutboxMessage.__table__  # type: ignore[assignment]
_OUTBOX_COLUMNS = tuple(
    (attr.key, attr.columns[0].key) for attr in inspect(OutboxMessage).column_attrs
)


def add_messages(s: AsyncSession, rows: Iterable[OutboxMessage]) -> None:
    """Enqueue messages in the caller's transaction: inserted when it commits (`deferred`),
    so they commit or vanish with the change that causes them."""
    for row in rows:
        given = row.__dict__
        deferred.add_row(
            s, _OUTBOX, {col: given[attr] for attr, col in _OUTBOX_COLUMNS if attr in given}
        )


async def due_exists(s: AsyncSession, now: dt.datetime) -> bool:
    """Is anything claimable? A cheap read, so an idle worker never takes the write lock."""
    found = await s.scalar(
        select(OutboxMessage.id)
        .where(OutboxMessage.status == PENDING, OutboxMessage.next_attempt_at <= now)
        .limit(1)
    )
    return found is not None


async def claim_due(
    s: AsyncSession,
    *,
    now: dt.datetime,
    limit: int,
    owner: str,
    lease_until: dt.datetime,
) -> list[tuple[OutboxMessage, WebhookEndpoint | None]]:
    """Lease up to `limit` due messages to `owner` (oldest due first), with their endpoint.

    The attempt is counted at claim time, so a message whose delivery kills its worker
    every time still reaches its last attempt instead of looping forever. Two statements
    whatever the batch size: the locking select (endpoint joined in) and one update.
    """
    rows = (
        await s.execute(
            select(OutboxMessage, WebhookEndpoint)
            .outerjoin(WebhookEndpoint, WebhookEndpoint.id == OutboxMessage.endpoint_id)
            .where(OutboxMessage.status == PENDING, OutboxMessage.next_attempt_at <= now)
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=OutboxMessage)
            .execution_options(populate_existing=True)
        )
    ).all()
    if not rows:
        return []
    await s.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_([message.id for message, _ in rows]))
        .values(
            attempts=OutboxMessage.attempts + 1,
            locked_by=owner,
            locked_until=lease_until,
            next_attempt_at=lease_until,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    claimed = []
    for message, endpoint in rows:
        message.attempts += 1
        message.locked_by, message.locked_until = owner, lease_until
        message.next_attempt_at = lease_until
        claimed.append((message, endpoint))
    return claimed


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to write back for one claimed message."""

    message_id: str
    status: str  # pending (retry later) | delivered | dead
    next_attempt_at: dt.datetime
    last_error: str | None
    progress: dict[str, Any] | None = None
    delivered_at: dt.datetime | None = None


_RECORD = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id == bindparam("b_id"), _OUTBOX.c.locked_by == bindparam("b_owner"))
    .values(
        status=bindparam("b_status"),
        next_attempt_at=bindparam("b_next", type_=UTCDateTime()),
        locked_by=None,
        locked_until=None,
        last_error=bindparam("b_error"),
        progress=bindparam("b_progress", type_=JSONType),
        updated_at=bindparam("b_now", type_=UTCDateTime()),
        delivered_at=bindparam("b_delivered", type_=UTCDateTime()),
    )
)


async def record_outcomes(
    s: AsyncSession,
    outcomes: Sequence[tuple[Outcome, dict[str, Any]]],
    *,
    owner: str,
    now: dt.datetime,
) -> None:
    """Write back outcomes in one batched statement, each only where `owner` still holds
    the lease (a message whose lease ran out belongs to whoever claimed it next).

    Each outcome comes with the message's current `progress`, kept when it has none.
    """
    if not outcomes:
        return
    params = [
        {
            "b_id": o.message_id,
            "b_owner": owner,
            "b_status": o.status,
            "b_next": o.next_attempt_at,
            "b_error": o.last_error,
            "b_progress": o.progress if o.progress is not None else progress,
            "b_now": now,
            "b_delivered": o.delivered_at,
        }
        for o, progress in outcomes
    ]
    conn = await s.connection()
    await conn.execute(_RECORD, params)


async def write_back(
    s: AsyncSession,
    *,
    deliveries: Sequence[WebhookDelivery],
    gone_endpoint_ids: Sequence[str],
    reason_gone: str,
    outcomes: Sequence[tuple[Outcome, dict[str, Any]]],
    owner: str,
    now: dt.datetime,
) -> None:
    """Everything a worker learned from a batch of deliveries, in the caller's transaction:
    the delivery log rows, endpoints that answered 410 Gone, and the outcomes."""
    if deliveries:
        s.add_all(list(deliveries))
        await s.flush()
    for endpoint_id in dict.fromkeys(gone_endpoint_ids):
        await disable_endpoint(s, endpoint_id, reason=reason_gone, now=now)
    await record_outcomes(s, outcomes, owner=owner, now=now)


async def record_outcome(
    s: AsyncSession, outcome: Outcome, *, owner: str, now: dt.datetime
) -> bool:
    """Write back one outcome, only if `owner` still holds the lease (False otherwise)."""
    values: dict[str, Any] = {
        "status": outcome.status,
        "next_attempt_at": outcome.next_attempt_at,
        "locked_by": None,
        "locked_until": None,
        "last_error": outcome.last_error,
        "updated_at": now,
        "delivered_at": outcome.delivered_at,
    }
    if outcome.progress is not None:
        values["progress"] = outcome.progress
    res = await s.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == outcome.message_id, OutboxMessage.locked_by == owner)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(res) == 1


async def release(
    s: AsyncSession, message_ids: Sequence[str], *, owner: str, now: dt.datetime
) -> int:
    """Give leased messages back unattempted (shutdown): due now, the attempt not counted."""
    if not message_ids:
        return 0
    res = await s.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(list(message_ids)), OutboxMessage.locked_by == owner)
        .values(
            attempts=case((OutboxMessage.attempts > 0, OutboxMessage.attempts - 1), else_=0),
            locked_by=None,
            locked_until=None,
            next_attempt_at=now,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return _rowcount(res)


def add_delivery(s: AsyncSession, row: WebhookDelivery) -> None:
    s.add(row)


# -- reads and operations ----------------------------------------------------------------


async def list_deliveries(
    s: AsyncSession,
    account_id: str,
    endpoint_id: str,
    *,
    before: int | None,
    limit: int,
    event_id: str | None = None,
    succeeded: bool | None = None,
) -> Sequence[WebhookDelivery]:
    """Newest first."""
    q = select(WebhookDelivery).where(
        WebhookDelivery.account_id == account_id, WebhookDelivery.endpoint_id == endpoint_id
    )
    if before is not None:
        q = q.where(WebhookDelivery.id < before)
    if event_id:
        q = q.where(WebhookDelivery.event_id == event_id)
    if succeeded is not None:
        q = q.where(WebhookDelivery.succeeded.is_(succeeded))
    return (await s.scalars(q.order_by(WebhookDelivery.id.desc()).limit(limit + 1))).all()


async def list_messages(
    s: AsyncSession,
    *,
    account_id: str | None = None,
    booking_id: str | None = None,
    hold_id: str | None = None,
    status: str | None = None,
    kind: str | None = None,
) -> Sequence[OutboxMessage]:
    q = select(OutboxMessage)
    if account_id is not None:
        q = q.where(OutboxMessage.account_id == account_id)
    if booking_id is not None:
        q = q.where(OutboxMessage.booking_id == booking_id)
    if hold_id is not None:
        q = q.where(OutboxMessage.hold_id == hold_id)
    if status is not None:
        q = q.where(OutboxMessage.status == status)
    if kind is not None:
        q = q.where(OutboxMessage.kind == kind)
    return (await s.scalars(q.order_by(OutboxMessage.id))).all()


@dataclass(frozen=True, slots=True)
class KindStats:
    pending: int = 0
    """Waiting for their first attempt (including ones being attempted right now)."""
    retrying: int = 0
    """Attempted at least once and failed; another attempt is scheduled."""
    dead: int = 0
    in_flight: int = 0
    """Leased by a worker at this moment (a subset of pending + retrying)."""
    oldest_due_at: dt.datetime | None = None


async def stats(
    s: AsyncSession, *, account_id: str | None, now: dt.datetime
) -> dict[str, KindStats]:
    """Counts per kind: pending, retrying, dead, in flight; and the oldest due message."""
    leased = and_(OutboxMessage.locked_by.is_not(None), OutboxMessage.locked_until > now)
    # A message being attempted for the first time has attempts = 1 already (counted at claim).
    retrying = and_(
        OutboxMessage.attempts > case((leased, 1), else_=0), OutboxMessage.status == PENDING
    )
    q = (
        select(
            OutboxMessage.kind,
            func.sum(case((and_(OutboxMessage.status == PENDING, ~retrying), 1), else_=0)),
            func.sum(case((retrying, 1), else_=0)),
            func.sum(case((OutboxMessage.status == DEAD, 1), else_=0)),
            func.sum(case((and_(OutboxMessage.status == PENDING, leased), 1), else_=0)),
            func.min(
                case(
                    (
                        and_(
                            OutboxMessage.status == PENDING,
                            OutboxMessage.next_attempt_at <= now,
                            OutboxMessage.locked_by.is_(None),
                        ),
                        OutboxMessage.next_attempt_at,
                    ),
                    else_=None,
                )
            ),
        )
        .where(OutboxMessage.status.in_((PENDING, DEAD)))
        .group_by(OutboxMessage.kind)
    )
    if account_id is not None:
        q = q.where(OutboxMessage.account_id == account_id)
    result = {kind: KindStats() for kind in KINDS}
    for kind, pending, retry, dead, in_flight, oldest in (await s.execute(q)).all():
        if isinstance(oldest, str):  # SQLite hands min() of the text column back as text
            oldest = dt.datetime.fromisoformat(oldest).replace(tzinfo=dt.UTC)
        elif isinstance(oldest, dt.datetime) and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=dt.UTC)
        result[kind] = KindStats(
            pending=int(pending or 0),
            retrying=int(retry or 0),
            dead=int(dead or 0),
            in_flight=int(in_flight or 0),
            oldest_due_at=oldest,
        )
    return result


async def retry_dead(
    s: AsyncSession,
    *,
    now: dt.datetime,
    account_id: str | None = None,
    kind: str | None = None,
    endpoint_id: str | None = None,
) -> int:
    """Give dead messages a fresh set of attempts, due now. Returns how many."""
    q = update(OutboxMessage).where(OutboxMessage.status == DEAD)
    if account_id is not None:
        q = q.where(OutboxMessage.account_id == account_id)
    if kind is not None:
        q = q.where(OutboxMessage.kind == kind)
    if endpoint_id is not None:
        q = q.where(OutboxMessage.endpoint_id == endpoint_id)
    res = await s.execute(
        q.values(
            status=PENDING,
            attempts=0,
            next_attempt_at=now,
            locked_by=None,
            locked_until=None,
            updated_at=now,
        ).execution_options(synchronize_session=False)
    )
    return _rowcount(res)


async def purge_delivered(s: AsyncSession, *, before: dt.datetime, limit: int = 5000) -> int:
    """Delete delivered messages older than `before`, a bounded batch at a time."""
    ids = select(OutboxMessage.id).where(
        OutboxMessage.status == DELIVERED, OutboxMessage.delivered_at < before
    )
    res = await s.execute(
        delete(OutboxMessage)
        .where(OutboxMessage.id.in_(ids.limit(limit).scalar_subquery()))
        .execution_options(synchronize_session=False)
    )
    return _rowcount(res)


async def purge_deliveries(s: AsyncSession, *, before: dt.datetime, limit: int = 5000) -> int:
    ids = select(WebhookDelivery.id).where(WebhookDelivery.attempted_at < before)
    res = await s.execute(
        delete(WebhookDelivery)
        .where(WebhookDelivery.id.in_(ids.limit(limit).scalar_subquery()))
        .execution_options(synchronize_session=False)
    )
    return _rowcount(res)
