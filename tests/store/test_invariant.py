"""The no-double-booking invariant as the database itself enforces it."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.exc import IntegrityError

from slotguard.ids import new_id
from slotguard.services import accounts
from slotguard.store import repositories as repo
from slotguard.store.db import Database
from slotguard.store.models import Business, Reservation
from tests.conftest import Store

T0 = dt.datetime(2030, 1, 7, 9, 0, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)


def reservation(
    business_id: str, start: dt.datetime, end: dt.datetime, *, active: bool = True
) -> Reservation:
    return Reservation(
        business_id=business_id,
        kind="booking",
        booking_id=new_id("bk"),
        hold_id=None,
        start_at=start,
        end_at=end,
        priority=50,
        buffer_before_minutes=0,
        buffer_after_minutes=0,
        expires_at=None,
        active=active,
    )


async def business(store: Store) -> str:
    now = dt.datetime.now(dt.UTC)
    async with store.db.write() as s:
        account = await accounts.create_account(s, name="inv", now=now)
        biz = Business(
            id=new_id("biz"),
            account_id=account.id,
            name="b",
            email=None,
            timezone="UTC",
            rules={},
            created_at=now,
            updated_at=now,
            deleted_at=None,
        )
        s.add(biz)
    return biz.id


@pytest.fixture
async def pg_store(postgres_url: str) -> AsyncIterator[Store]:
    db = Database.connect(postgres_url)
    yield Store("postgres", postgres_url, db)
    await db.dispose()


@pytest.fixture
async def sqlite_store(sqlite_url: str) -> AsyncIterator[Store]:
    db = Database.connect(sqlite_url)
    yield Store("sqlite", sqlite_url, db)
    await db.dispose()


async def test_exclusion_constraint_refuses_overlaps(pg_store: Store) -> None:
    """PostgreSQL: the exclusion constraint itself refuses overlapping active rows."""
    store = pg_store
    biz = await business(store)
    other = await business(store)
    async with store.db.write() as s:
        s.add_all(
            [
                reservation(biz, T0, T0 + H),
                reservation(biz, T0 + H, T0 + 2 * H),
                reservation(other, T0, T0 + H),
                reservation(biz, T0, T0 + H, active=False),
            ]
        )
    with pytest.raises(IntegrityError) as caught:
        async with store.db.write() as s:
            s.add(
                reservation(
                    biz, T0 + 30 * dt.timedelta(minutes=1), T0 + 90 * dt.timedelta(minutes=1)
                )
            )
    assert repo.sqlstate_of(caught.value) == repo.EXCLUSION_VIOLATION


async def test_sqlite_writers_hold_the_write_lock_from_begin(sqlite_store: Store) -> None:
    """SQLite: BEGIN IMMEDIATE, so a second writer cannot even start while one is open."""
    store = sqlite_store
    import sqlite3

    from sqlalchemy.engine import make_url

    path = make_url(store.url).database
    assert path
    async with store.db.write() as s:
        await repo.count_accounts(s)  # the transaction has begun (BEGIN IMMEDIATE)
        other = sqlite3.connect(path, timeout=0.1, isolation_level=None)
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        finally:
            other.close()
