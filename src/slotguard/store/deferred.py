"""Rows written at commit, with Core, instead of through the ORM unit of work.

Audit rows and outbox messages are append-only: written once in the caller's transaction,
never read or changed again by it. Tracking them as ORM objects (identity map, instance
state, a flush plan per commit) cost more CPU on the booking path than the inserts. So
they are collected on the session and inserted just before it commits, one executemany per
table (insertmanyvalues batches rows on PostgreSQL). They still commit or vanish with the
transaction: a rollback discards them, and a commit cannot happen without them.

Not for rows inside a savepoint that may be rolled back on its own: a savepoint rollback
does not discard them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, event, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

_KEY = "slotguard.deferred_rows"


def add_row(s: AsyncSession | Session, table: Table, values: dict[str, Any]) -> None:
    """Insert `values` into `table` when the session's transaction commits."""
    sync = s.sync_session if isinstance(s, AsyncSession) else s
    pending: dict[tuple[Table, tuple[str, ...]], list[dict[str, Any]]]
    pending = sync.info.setdefault(_KEY, {})
    # One executemany per table and column set (executemany needs the same keys each row).
    pending.setdefault((table, tuple(values)), []).append(values)


@event.listens_for(Session, "before_commit")
def _write_deferred(session: Session) -> None:
    pending = session.info.pop(_KEY, None)
    if not pending:
        return
    for (table, _columns), rows in pending.items():
        session.execute(insert(table), rows)


@event.listens_for(Session, "after_transaction_end")
def _discard_deferred(session: Session, transaction: SessionTransaction) -> None:
    # The outermost transaction ended (committed: already written; rolled back: dropped).
    if not transaction.nested and transaction.parent is None:
        session.info.pop(_KEY, None)
