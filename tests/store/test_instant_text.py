"""Instants are stored so that every one reads back, and text order is time order (SQLite)."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql, sqlite

from slotguard.ids import new_id
from slotguard.store import repositories as repo
from slotguard.store.models import Business, BusyInterval
from slotguard.store.types import UTCDateTime
from tests.conftest import Store
from tests.store.test_invariant import business

aware = st.datetimes(
    min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=st.just(dt.UTC)
)


@given(a=aware, b=aware)
def test_sqlite_text_is_fixed_width_and_sorts_as_time(a: dt.datetime, b: dt.datetime) -> None:
    column = UTCDateTime()
    dialect = sqlite.dialect()
    ta, tb = column.process_bind_param(a, dialect), column.process_bind_param(b, dialect)
    assert len(ta) == len(tb) == len("2026-01-01 00:00:00.000000")
    assert (ta < tb) == (a < b)
    assert column.process_result_value(ta, dialect) == a
    # PostgreSQL stores timestamptz: the value itself goes to the driver.
    assert column.process_bind_param(a, postgresql.dialect()) == a


async def test_early_and_late_busy_time_reads_back(store: Store) -> None:
    biz = await business(store)
    now = dt.datetime.now(dt.UTC)
    spans = [
        (dt.datetime(999, 3, 1, tzinfo=dt.UTC), dt.datetime(999, 3, 2, tzinfo=dt.UTC)),
        (dt.datetime(2030, 1, 1, tzinfo=dt.UTC), dt.datetime(2030, 1, 2, tzinfo=dt.UTC)),
        (dt.datetime(9999, 1, 1, tzinfo=dt.UTC), dt.datetime(9999, 1, 2, tzinfo=dt.UTC)),
    ]
    async with store.db.write() as s:
        owner = await s.get(Business, biz)
        assert owner is not None
        account_id = owner.account_id
        for start, end in spans:
            s.add(
                BusyInterval(
                    id=new_id("bsy"),
                    account_id=account_id,
                    business_id=biz,
                    start_at=start,
                    end_at=end,
                    title=None,
                    external_id=None,
                    source="api",
                    created_at=now,
                )
            )
    async with store.db.read() as s:
        stored = sorted((b.start_at, b.end_at) for b in await repo.list_busy(s, biz))
        assert stored == spans
        between = await repo.busy_between(
            s, biz, start=dt.datetime(1000, 1, 1, tzinfo=dt.UTC), end=spans[2][0]
        )
        assert list(between) == [spans[1]]
