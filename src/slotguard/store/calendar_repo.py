"""Queries for connected calendars: the rows, the lease, the local copy, write-back links."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, and_, bindparam, delete, insert, literal_column, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from slotguard.store.busy import (
    BusyPeriods,
    BusyRead,
    BusyWindow,
    CalendarState,
    copy_periods,
)
from slotguard.store.models import (
    Calendar,
    CalendarBusy,
    CalendarEventLink,
    CalendarItem,
)

BUSY_ROLES = ("busy", "both")
WRITE_ROLES = ("write", "both")
# Rows per INSERT statement when a copy is written.
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class ItemRow:
    """One item of a copy to write: its identity and busy periods (UTC)."""

    external_id: str
    etag: str | None
    series_id: str | None
    own_booking_id: str | None
    periods: Sequence[tuple[dt.datetime, dt.datetime]]


# -- calendar rows -----------------------------------------------------------------------


async def get_calendar(
    s: AsyncSession, account_id: str, business_id: str, calendar_id: str
) -> Calendar | None:
    found: Calendar | None = await s.scalar(
        select(Calendar)
        .where(
            Calendar.id == calendar_id,
            Calendar.account_id == account_id,
            Calendar.business_id == business_id,
        )
        .execution_options(populate_existing=True)
    )
    return found


async def calendar_by_id(s: AsyncSession, calendar_id: str) -> Calendar | None:
    found: Calendar | None = await s.scalar(
        select(Calendar).where(Calendar.id == calendar_id).execution_options(populate_existing=True)
    )
    return found


async def list_calendars(
    s: AsyncSession, business_id: str, *, after: str | None, limit: int
) -> Sequence[Calendar]:
    q = select(Calendar).where(Calendar.business_id == business_id)
    if after:
        q = q.where(Calendar.id > after)
    return (await s.scalars(q.order_by(Calendar.id).limit(limit))).all()


async def write_calendar(s: AsyncSession, business_id: str) -> Calendar | None:
    found: Calendar | None = await s.scalar(
        select(Calendar).where(Calendar.business_id == business_id, Calendar.role.in_(WRITE_ROLES))
    )
    return found


_WRITE_CALENDAR_ID = select(Calendar.id).where(
    Calendar.business_id == bindparam("business_id"), Calendar.role.in_(WRITE_ROLES)
)


async def write_calendar_id(s: AsyncSession, business_id: str) -> str | None:
    # Built once: every booking write asks this.
    found: str | None = await s.scalar(_WRITE_CALENDAR_ID, {"business_id": business_id})
    return found


async def delete_calendar(s: AsyncSession, calendar_id: str) -> None:
    """The calendar, its local copy and its write-back links, in the caller's transaction."""
    await s.execute(delete(CalendarBusy).where(CalendarBusy.calendar_id == calendar_id))
    await s.execute(delete(CalendarItem).where(CalendarItem.calendar_id == calendar_id))
    await s.execute(delete(CalendarEventLink).where(CalendarEventLink.calendar_id == calendar_id))
    await s.execute(delete(Calendar).where(Calendar.id == calendar_id))


async def all_credentials(s: AsyncSession) -> Sequence[tuple[str, str]]:
    rows = await s.execute(
        select(Calendar.id, Calendar.credentials).where(Calendar.credentials.is_not(None))
    )
    return [(r[0], r[1]) for r in rows]


async def replace_sealed_credentials(
    s: AsyncSession, calendar_id: str, *, old: str, new: str
) -> bool:
    """Swap one sealed credential for its re-encryption, only if it is still ``old`` (a
    credential changed meanwhile wins). The version stays: the secret did not change."""
    result = await s.execute(
        update(Calendar)
        .where(Calendar.id == calendar_id, Calendar.credentials == old)
        .values(credentials=new)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


async def set_credentials(s: AsyncSession, calendar_id: str, token: str | None) -> None:
    await s.execute(
        update(Calendar)
        .where(Calendar.id == calendar_id)
        .values(credentials=token, credentials_version=Calendar.credentials_version + 1)
    )


async def add_settings(s: AsyncSession, calendar_id: str, values: dict[str, str]) -> None:
    """Merge settings the provider told us (a Microsoft mailbox) into the stored ones."""
    cal = await s.get(Calendar, calendar_id, populate_existing=True, with_for_update=True)
    if cal is not None:
        cal.settings = {**(cal.settings or {}), **values}


# -- the lease ---------------------------------------------------------------------------


async def due_calendar_ids(s: AsyncSession, now: dt.datetime, limit: int) -> list[str]:
    rows = await s.scalars(
        select(Calendar.id)
        .where(
            Calendar.next_sync_at <= now,
            or_(Calendar.lease_until.is_(None), Calendar.lease_until < now),
        )
        .order_by(Calendar.next_sync_at)
        .limit(limit)
    )
    return list(rows)


async def take_lease(
    s: AsyncSession, calendar_id: str, *, owner: str, now: dt.datetime, until: dt.datetime
) -> bool:
    """Take the sync lease if nobody holds it: one conditional UPDATE, atomic on both stores
    (PostgreSQL re-checks the WHERE on the locked row; SQLite writers are serialised)."""
    result = await s.execute(
        update(Calendar)
        .where(
            Calendar.id == calendar_id,
            or_(Calendar.lease_until.is_(None), Calendar.lease_until < now),
        )
        .values(lease_owner=owner, lease_until=until)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


async def holds_lease(s: AsyncSession, calendar_id: str, owner: str) -> Calendar | None:
    """The calendar row, locked, if ``owner`` still holds its lease (else None)."""
    found: Calendar | None = await s.scalar(
        select(Calendar)
        .where(Calendar.id == calendar_id, Calendar.lease_owner == owner)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return found


# -- the local copy ----------------------------------------------------------------------


async def _insert_items(
    s: AsyncSession, cal: Calendar, generation: int, items: Sequence[ItemRow]
) -> None:
    for i in range(0, len(items), _CHUNK):
        chunk = items[i : i + _CHUNK]
        ids = (
            await s.scalars(
                insert(CalendarItem).returning(CalendarItem.id, sort_by_parameter_order=True),
                [
                    {
                        "calendar_id": cal.id,
                        "generation": generation,
                        "external_id": it.external_id,
                        "etag": it.etag,
                        "series_id": it.series_id,
                        "own_booking_id": it.own_booking_id,
                    }
                    for it in chunk
                ],
            )
        ).all()
        busy = [
            {
                "calendar_id": cal.id,
                "business_id": cal.business_id,
                "generation": generation,
                "item_id": item_id,
                "start_at": start,
                "end_at": end,
            }
            for item_id, it in zip(ids, chunk, strict=True)
            for start, end in it.periods
        ]
        for j in range(0, len(busy), _CHUNK):
            await s.execute(insert(CalendarBusy), busy[j : j + _CHUNK])


async def replace_copy(s: AsyncSession, cal: Calendar, items: Sequence[ItemRow]) -> int:
    """Write a complete copy as a new generation and make it current, in the caller's
    transaction: readers see the old copy until commit, then the new one, never a mix."""
    generation = cal.copy_generation + 1
    # Leftovers of a crashed earlier attempt at this generation.
    await s.execute(
        delete(CalendarBusy).where(
            CalendarBusy.calendar_id == cal.id, CalendarBusy.generation >= generation
        )
    )
    await s.execute(
        delete(CalendarItem).where(
            CalendarItem.calendar_id == cal.id, CalendarItem.generation >= generation
        )
    )
    await _insert_items(s, cal, generation, _dedupe(items))
    cal.copy_generation = generation
    await s.execute(
        delete(CalendarBusy).where(
            CalendarBusy.calendar_id == cal.id, CalendarBusy.generation < generation
        )
    )
    await s.execute(
        delete(CalendarItem).where(
            CalendarItem.calendar_id == cal.id, CalendarItem.generation < generation
        )
    )
    return generation


def _dedupe(items: Iterable[ItemRow]) -> list[ItemRow]:
    by_id: dict[str, ItemRow] = {}
    for it in items:
        by_id[it.external_id] = it  # the last one wins, like a delta would
    return list(by_id.values())


async def merge_delta(
    s: AsyncSession, cal: Calendar, items: Sequence[ItemRow], deleted: Sequence[str]
) -> None:
    """Merge a delta into the current copy: changed items replace theirs, deleted ones (and
    the instances of a deleted series) go; everything else stays."""
    generation = cal.copy_generation
    items = _dedupe(items)
    gone = {it.external_id for it in items} | set(deleted)
    if gone:
        names = sorted(gone)
        doomed: list[int] = []
        for i in range(0, len(names), _CHUNK):
            chunk = names[i : i + _CHUNK]
            doomed += list(
                await s.scalars(
                    select(CalendarItem.id).where(
                        CalendarItem.calendar_id == cal.id,
                        CalendarItem.generation == generation,
                        or_(
                            CalendarItem.external_id.in_(chunk),
                            and_(
                                CalendarItem.series_id.is_not(None),
                                CalendarItem.series_id.in_([d for d in chunk if d in deleted]),
                            ),
                        ),
                    )
                )
            )
        for i in range(0, len(doomed), _CHUNK):
            chunk_ids = doomed[i : i + _CHUNK]
            await s.execute(delete(CalendarBusy).where(CalendarBusy.item_id.in_(chunk_ids)))
            await s.execute(delete(CalendarItem).where(CalendarItem.id.in_(chunk_ids)))
    await _insert_items(s, cal, generation, items)


def pack_periods(periods: Iterable[tuple[dt.datetime, dt.datetime]]) -> str:
    """Busy periods merged (overlapping or touching ones become one: the same time is
    blocked) and packed as JSON ``[[start, end], …]`` in epoch seconds, by start. Starts
    are rounded down and ends up, so packing never frees a moment."""
    merged: list[list[int]] = []
    for start, end in sorted(periods):
        a, b = math.floor(start.timestamp()), math.ceil(end.timestamp())
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return json.dumps(merged, separators=(",", ":"))


def unpack_periods(
    packed: str, *, start: dt.datetime, end: dt.datetime
) -> list[tuple[dt.datetime, dt.datetime]]:
    """The packed periods that overlap ``[start, end)``."""
    return copy_periods(packed).window(start, end).pairs()


async def refresh_summary(s: AsyncSession, cal: Calendar) -> None:
    """After the copy changed, in the same transaction: its size and packed busy time."""
    rows = (
        await s.execute(
            select(CalendarBusy.start_at, CalendarBusy.end_at).where(
                CalendarBusy.calendar_id == cal.id,
                CalendarBusy.generation == cal.copy_generation,
            )
        )
    ).all()
    cal.busy_count = len(rows)
    cal.busy_packed = pack_periods((r[0], r[1]) for r in rows)


# The rows of the calendar's current copy, its generation read in the same statement:
# reads run in autocommit on PostgreSQL (and each statement of a READ COMMITTED transaction
# has its own snapshot), so a generation read by an earlier statement would let a resync
# that swaps copies in between answer with the old generation's rows already purged (none).
def _current_copy(calendar_id: Any) -> ColumnElement[bool]:
    return and_(
        CalendarBusy.calendar_id == calendar_id,
        CalendarBusy.generation
        == select(Calendar.copy_generation).where(Calendar.id == calendar_id).scalar_subquery(),
    )


async def calendar_busy_between(
    s: AsyncSession, calendar: Calendar, *, start: dt.datetime, end: dt.datetime, limit: int
) -> Sequence[tuple[dt.datetime, dt.datetime]]:
    rows = await s.execute(
        select(CalendarBusy.start_at, CalendarBusy.end_at)
        .where(
            _current_copy(calendar.id),
            CalendarBusy.start_at < end,
            CalendarBusy.end_at > start,
        )
        .order_by(CalendarBusy.start_at, CalendarBusy.end_at)
        .limit(limit)
    )
    return [(r[0], r[1]) for r in rows]


_calendars = Calendar.__table__.c
# The busy calendars of a business: what their busy time and staleness need. Table columns
# (plain rows): `repositories.busy_periods` sends it in one statement with the posted busy
# time, as its first part.
BUSY_CALENDARS = select(
    _calendars.id,
    _calendars.copy_generation,
    _calendars.busy_packed,
    _calendars.status,
    _calendars.last_synced_at,
).where(
    _calendars.business_id == bindparam("business_id"),
    # The roles as literals: an IN of bound values would be expanded on every execution.
    _calendars.role.in_([literal_column(f"'{role}'") for role in BUSY_ROLES]),
)
_COPY_ROWS = select(CalendarBusy.start_at, CalendarBusy.end_at).where(
    _current_copy(bindparam("calendar_id")),
    CalendarBusy.start_at < bindparam("end"),
    CalendarBusy.end_at > bindparam("start"),
)


async def calendar_busy(
    s: AsyncSession, rows: Sequence[Row[Any]], *, start: dt.datetime, end: dt.datetime
) -> BusyRead:
    """Busy time in ``[start, end)`` of the calendars in ``rows`` (`BUSY_CALENDARS`), from
    their current copies: the packed value (rows are read only for a copy not packed yet),
    and their sync states for staleness warnings."""
    out: list[BusyWindow] = []
    for calendar_id, generation, packed, _, _ in rows:
        if packed is not None:
            out.append(copy_periods(packed).window(start, end))
        elif generation > 0:
            found = sorted(
                (r[0], r[1])
                for r in await s.execute(
                    _COPY_ROWS,
                    {"calendar_id": calendar_id, "start": start, "end": end},
                )
            )
            periods = BusyPeriods(
                tuple(a for a, _ in found), tuple(b for _, b in found), disjoint=False
            )
            out.append(BusyWindow(periods, 0, len(found)))
    return BusyRead(windows=out, calendars=[CalendarState(r[0], r[3], r[4]) for r in rows])


async def business_calendar_busy(
    s: AsyncSession, business_id: str, *, start: dt.datetime, end: dt.datetime
) -> BusyRead:
    """`calendar_busy` of a business's busy calendars."""
    rows = (await s.execute(BUSY_CALENDARS, {"business_id": business_id})).all()
    return await calendar_busy(s, rows, start=start, end=end)


# -- write-back links --------------------------------------------------------------------


async def get_link(s: AsyncSession, booking_id: str) -> CalendarEventLink | None:
    return await s.get(CalendarEventLink, booking_id, populate_existing=True)
