"""Google Calendar sync: a full sync of a 5,000-event calendar beside an incremental sync
with one change. Prints the requests made and the time of each.

    .venv/bin/python bench/google_sync_bench.py [--events 5000] [--store sqlite|postgres]

The Google fake of the test suite (tests/fakes/google.py) answers in-process (no network),
and the real sync engine writes the local copy into a throwaway database, so the figures
are slotguard's own work: paging, parsing, the busy rule and the copy's transactions.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakes.common import FakeTransport  # noqa: E402
from tests.fakes.google import GoogleFake  # noqa: E402

from slotguard.calendars.credentials import SecretBox  # noqa: E402
from slotguard.calendars.oauth import OAuthSetup  # noqa: E402
from slotguard.calendars.sync import CalendarSync, SyncConfig  # noqa: E402
from slotguard.config import Settings  # noqa: E402
from slotguard.ids import new_id  # noqa: E402
from slotguard.logs import configure_logging  # noqa: E402
from slotguard.store.db import Database  # noqa: E402
from slotguard.store.migrate import upgrade_to_head  # noqa: E402
from slotguard.store.models import Account, Business, Calendar  # noqa: E402

SECRET = "bench passphrase for calendar credentials, long enough"
BASE = "http://google.bench"
USER = "owner@example.com"


async def seed(db: Database, refresh_token: str) -> str:
    now = dt.datetime.now(dt.UTC)
    box = SecretBox(SECRET)
    account_id, business_id, calendar_id = new_id("acct"), new_id("biz"), new_id("cal")
    async with db.write() as s:
        s.add(Account(id=account_id, name="bench", rules={}, created_at=now))
        await s.flush()
        s.add(
            Business(
                id=business_id, account_id=account_id, name="b", email=None, timezone="UTC",
                rules={"max_advance_days": 365}, created_at=now, updated_at=now,
            )
        )  # fmt: skip
        await s.flush()
        s.add(
            Calendar(
                id=calendar_id, account_id=account_id, business_id=business_id,
                provider="google", role="busy", name=None, url=None, provider_calendar_id=None,
                settings={}, credentials=box.seal(calendar_id, {"refresh_token": refresh_token}),
                credentials_version=1, timezone=None, status="pending", last_synced_at=None,
                last_error=None, busy_count=0, copy_generation=0, cursor=None, failures=0,
                next_sync_at=now, created_at=now, updated_at=now,
            )
        )  # fmt: skip
    return calendar_id


async def run(url: str, events: int) -> list[tuple[str, str, int, float]]:
    rows: list[tuple[str, str, int, float]] = []
    db = Database.connect(url, pool_size=4)
    google = GoogleFake()
    refresh = google.add_user(USER)
    start = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    for i in range(events):
        at = start + dt.timedelta(hours=2 + i * 1.5)
        google.add_event(USER, start=at, end=at + dt.timedelta(minutes=45))
    settings = Settings(
        google_client_id="google-client",
        google_client_secret="google-secret",
        google_api_url=f"{BASE}/calendar/v3",
        google_token_url=f"{BASE}/token",
    )
    config = SyncConfig(secret_key=SECRET, oauth=OAuthSetup.from_settings(settings))
    async with httpx.AsyncClient(mounts={BASE: FakeTransport(google.app)}) as http:
        engine = CalendarSync(db, config=config, http=http)
        calendar_id = await seed(db, refresh)
        rows = []
        for label in ("full sync", "incremental, one change", "incremental, no change"):
            if label.startswith("incremental, one"):
                at = start + dt.timedelta(hours=1)
                google.add_event(USER, start=at, end=at + dt.timedelta(minutes=30))
            before = len([r for r in google.requests if r.route == "list"])
            began = time.perf_counter()
            outcome = await engine.sync_one(calendar_id)
            elapsed = time.perf_counter() - began
            made = len([r for r in google.requests if r.route == "list"]) - before
            rows.append((label, outcome, made, elapsed))
    await db.dispose()
    return rows


def bench(events: int, store: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        name = f"sg_bench_{uuid.uuid4().hex[:10]}"
        if store == "postgres":
            from tests.pg import pg_create_database

            url = pg_create_database(name)
        else:
            url = f"sqlite:///{tmp}/bench.db"
        try:
            upgrade_to_head(url)
            rows = asyncio.run(run(url, events))
        finally:
            if store == "postgres":
                from tests.pg import pg_drop_database

                pg_drop_database(name)
    print(f"Google Calendar sync, {events} events, {store}")
    print(f"{'run':<26} {'outcome':<8} {'list requests':>13} {'time':>10}")
    for label, outcome, made, elapsed in rows:
        print(f"{label:<26} {outcome:<8} {made:>13} {elapsed * 1000:>8.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()
    configure_logging("WARNING")
    bench(args.events, args.store)


if __name__ == "__main__":
    main()
