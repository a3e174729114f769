"""Model-based: random sequences of remote changes on the Google and Graph fakes (create,
move, cancel an instance, delete a series, free/busy flips, forced 410), each followed by a
sync through the real engine; after every sync the local copy equals the model."""

from __future__ import annotations

import datetime as dt
import random

import httpx
import pytest
from sqlalchemy import update

from slotguard.calendars.credentials import SecretBox
from slotguard.calendars.oauth import OAuthSetup
from slotguard.calendars.sync import CalendarSync, SyncConfig
from slotguard.store import calendar_repo
from slotguard.store.models import Calendar
from tests.conftest import Store
from tests.fakes.google import GoogleFake
from tests.fakes.graph import GraphFake
from tests.oauth import providers
from tests.oauth.conftest import SECRET_KEY, make_calendar

H = dt.timedelta(hours=1)
STEPS = 25
Interval = tuple[dt.datetime, dt.datetime]


def engine(store: Store, http: httpx.AsyncClient) -> CalendarSync:
    config = SyncConfig(
        secret_key=SECRET_KEY,
        request_timeout_s=5.0,
        oauth=OAuthSetup.from_settings(providers.test_settings()),
    )
    return CalendarSync(store.db, config=config, http=http)


async def local_copy(store: Store, calendar_id: str) -> list[Interval]:
    now = dt.datetime.now(dt.UTC)
    async with store.db.read() as s:
        cal = await s.get(Calendar, calendar_id, populate_existing=True)
        assert cal is not None
        rows = await calendar_repo.calendar_busy_between(
            s, cal, start=now - dt.timedelta(days=2), end=now + dt.timedelta(days=90), limit=10000
        )
    return sorted((a, b) for a, b in rows)


def slot(rng: random.Random, base: dt.datetime) -> dt.datetime:
    return base + dt.timedelta(days=rng.randint(1, 40), hours=rng.randint(0, 22))


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_google_local_copy_follows_random_changes(
    store: Store, box: SecretBox, google: GoogleFake, http: httpx.AsyncClient, seed: int
) -> None:
    rng = random.Random(seed)
    user = f"model{seed}@example.com"
    cal = await make_calendar(store, box, provider="google", refresh_token=google.add_user(user))
    sync = engine(store, http)
    base = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    singles: dict[str, Interval] = {}
    series: dict[str, dict[str, Interval]] = {}
    for step in range(STEPS):
        op = rng.choice(["create", "create", "move", "delete", "series", "cancel", "kill", "410"])
        if op == "create" or (op in ("move", "delete") and not singles):
            start = slot(rng, base)
            ev = google.add_event(user, start=start, end=start + H)
            singles[ev["id"]] = (start, start + H)
        elif op == "move":
            eid = rng.choice(sorted(singles))
            start = slot(rng, base)
            google.update_event(user, eid, start=start, end=start + 2 * H)
            singles[eid] = (start, start + 2 * H)
        elif op == "delete":
            eid = rng.choice(sorted(singles))
            google.delete_event(user, eid)
            del singles[eid]
        elif op == "series" or (op in ("cancel", "kill") and not series):
            first = slot(rng, base)
            master, instances = google.add_series(
                user, first_start=first, duration=H, count=rng.randint(2, 5), every=3 * 24 * H
            )
            series[master] = {
                i["id"]: (first + 3 * 24 * H * n, first + 3 * 24 * H * n + H)
                for n, i in enumerate(instances)
            }
        elif op == "cancel":
            master = rng.choice(sorted(series))
            if series[master]:
                iid = rng.choice(sorted(series[master]))
                google.cancel_instance(user, iid)
                del series[master][iid]
        elif op == "kill":
            master = rng.choice(sorted(series))
            google.delete_event(user, master)
            del series[master]
        else:
            google.invalidate_sync_tokens(user)
        assert await sync.sync_one(cal.id) == "synced", (step, op)
        model = sorted([*singles.values(), *(i for s in series.values() for i in s.values())])
        assert await local_copy(store, cal.id) == model, (step, op)


@pytest.mark.parametrize("seed", [4, 5, 6])
async def test_graph_local_copy_follows_random_changes(
    store: Store, box: SecretBox, graph: GraphFake, http: httpx.AsyncClient, seed: int
) -> None:
    rng = random.Random(seed)
    user = f"model{seed}@contoso.example"
    cal = await make_calendar(store, box, provider="microsoft", refresh_token=graph.add_user(user))
    sync = engine(store, http)
    base = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    events: dict[str, Interval] = {}
    free: set[str] = set()
    for step in range(STEPS):
        op = rng.choice(["create", "create", "move", "delete", "cancel", "free", "410"])
        if op == "create" or not events:
            start = slot(rng, base)
            ev = graph.add_event(user, start=start, end=start + H)
            events[ev["id"]] = (start, start + H)
        elif op == "move":
            eid = rng.choice(sorted(events))
            start = slot(rng, base)
            graph.update_event(eid, start=start, end=start + 2 * H)
            events[eid] = (start, start + 2 * H)
        elif op == "delete":
            eid = rng.choice(sorted(events))
            graph.delete_event(eid)
            del events[eid]
            free.discard(eid)
        elif op == "cancel":
            eid = rng.choice(sorted(events))
            graph.update_event(eid, isCancelled=True)
            del events[eid]
            free.discard(eid)
        elif op == "free":
            eid = rng.choice(sorted(events))
            now_free = eid not in free
            graph.update_event(eid, showAs="free" if now_free else "busy")
            if now_free:
                free.add(eid)
            else:
                free.discard(eid)
        else:
            graph.invalidate_delta_tokens()
        assert await sync.sync_one(cal.id) == "synced", (step, op)
        model = sorted(v for k, v in events.items() if k not in free)
        assert await local_copy(store, cal.id) == model, (step, op)


async def copy_of_one_event(
    store: Store, box: SecretBox, google: GoogleFake, http: httpx.AsyncClient, user: str
) -> tuple[Calendar, CalendarSync, dt.datetime]:
    """A Google calendar synced with one event, an hour at `first` (returned), 3 days on."""
    cal = await make_calendar(store, box, provider="google", refresh_token=google.add_user(user))
    sync = engine(store, http)
    first = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) + 3 * 24 * H
    google.add_event(user, start=first, end=first + H)
    assert await sync.sync_one(cal.id) == "synced"
    return cal, sync, first


async def resync_with_a_second_event(
    google: GoogleFake, sync: CalendarSync, cal: Calendar, user: str, first: dt.datetime
) -> list[Interval]:
    """A second event two hours after the first, then a full copy (a new generation): the
    two intervals the current copy holds."""
    google.add_event(user, start=first + 2 * H, end=first + 3 * H)
    google.invalidate_sync_tokens(user)
    assert await sync.sync_one(cal.id) == "synced"
    return [(first, first + H), (first + 2 * H, first + 3 * H)]


async def test_a_generation_read_before_a_resync_still_finds_the_current_copy(
    store: Store, box: SecretBox, google: GoogleFake, http: httpx.AsyncClient
) -> None:
    # The busy endpoint reads the calendar, then its rows. Reads run in autocommit on
    # PostgreSQL, so a resync may swap copies between the two: the rows must still be the
    # current copy's, never the purged old generation's (an empty calendar).
    user = "swap@example.com"
    cal, sync, first = await copy_of_one_event(store, box, google, http, user)
    async with store.db.read() as s:
        before = await s.get(Calendar, cal.id, populate_existing=True)
        assert before is not None
    current = await resync_with_a_second_event(google, sync, cal, user, first)
    async with store.db.read() as s:
        after = await s.get(Calendar, cal.id, populate_existing=True)
        assert after is not None
        assert after.copy_generation != before.copy_generation
        rows = await calendar_repo.calendar_busy_between(
            s, before, start=first - 3 * 24 * H, end=first + 7 * 24 * H, limit=100
        )
    assert sorted(rows) == current


async def test_an_unpacked_copy_read_before_a_resync_still_finds_the_current_copy(
    store: Store, box: SecretBox, google: GoogleFake, http: httpx.AsyncClient
) -> None:
    # The same for the slot path's rows of a copy not packed yet (one written before
    # copies were packed): its calendar row is read first, its rows by a second statement.
    user = "swap-unpacked@example.com"
    cal, sync, first = await copy_of_one_event(store, box, google, http, user)
    async with store.db.write() as s:
        await s.execute(update(Calendar).where(Calendar.id == cal.id).values(busy_packed=None))
    async with store.db.read() as s:
        stale = (
            await s.execute(calendar_repo.BUSY_CALENDARS, {"business_id": cal.business_id})
        ).all()
    assert [r[2] for r in stale] == [None]
    current = await resync_with_a_second_event(google, sync, cal, user, first)
    async with store.db.read() as s:
        found = await calendar_repo.calendar_busy(
            s, stale, start=first - 3 * 24 * H, end=first + 7 * 24 * H
        )
    assert sorted(p for w in found.windows for p in w.pairs()) == current
