"""Queries of the per-mailbox request permits (``models.MailboxPermit``).

Each permit is one row; taking it is ``UPDATE … WHERE holder IS NULL OR held_until < now``
on one slot, so exactly one caller wins it on either store (on PostgreSQL a concurrent
UPDATE of the same row waits for the first and then re-checks the condition, which no
longer holds). The rows of a mailbox are created on first use.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.store.models import MailboxPermit


def _free(now: dt.datetime) -> Any:
    return or_(MailboxPermit.holder.is_(None), MailboxPermit.held_until < now)


async def ensure_permits(s: AsyncSession, *, mailbox: str, count: int) -> None:
    rows = [{"mailbox": mailbox, "slot": n} for n in range(count)]
    stmt: Any
    if s.bind.dialect.name == "postgresql":
        stmt = pg_insert(MailboxPermit).values(rows).on_conflict_do_nothing()
    else:
        stmt = sqlite_insert(MailboxPermit).values(rows).on_conflict_do_nothing()
    await s.execute(stmt)


async def take_permit(
    s: AsyncSession,
    *,
    mailbox: str,
    slots: list[int],
    holder: str,
    now: dt.datetime,
    until: dt.datetime,
) -> int | None:
    """Take the first free permit among `slots` (tried in that order); its slot or None."""
    for slot in slots:
        result = await s.execute(
            update(MailboxPermit)
            .where(MailboxPermit.mailbox == mailbox, MailboxPermit.slot == slot, _free(now))
            .values(holder=holder, held_until=until)
            .execution_options(synchronize_session=False)
        )
        if int(getattr(result, "rowcount", 0) or 0) == 1:
            return slot
    return None


async def free_slots(
    s: AsyncSession, *, mailbox: str, count: int, now: dt.datetime
) -> tuple[list[int], int]:
    """(the free slots below `count`, how many rows the mailbox has): a read, for waiting
    without writing."""
    rows = (
        await s.execute(
            select(MailboxPermit.slot, _free(now)).where(MailboxPermit.mailbox == mailbox)
        )
    ).all()
    return [int(slot) for slot, free in rows if free and slot < count], len(rows)


async def give_back(s: AsyncSession, *, mailbox: str, slot: int, holder: str) -> None:
    await s.execute(
        update(MailboxPermit)
        .where(
            MailboxPermit.mailbox == mailbox,
            MailboxPermit.slot == slot,
            MailboxPermit.holder == holder,
        )
        .values(holder=None, held_until=None)
        .execution_options(synchronize_session=False)
    )


async def held(s: AsyncSession, *, mailbox: str, now: dt.datetime) -> int:
    """Permits of a mailbox held right now (tests, diagnostics)."""
    n = await s.scalar(
        select(func.count())
        .select_from(MailboxPermit)
        .where(
            MailboxPermit.mailbox == mailbox,
            MailboxPermit.holder.is_not(None),
            MailboxPermit.held_until >= now,
        )
    )
    return int(n or 0)
