"""How fast and how heavy are the booking pages? Prints figures; never fails a build.

    .venv/bin/python bench/pages_bench.py                 # SQLite and PostgreSQL
    .venv/bin/python bench/pages_bench.py --store sqlite  # or postgres
    .venv/bin/python bench/pages_bench.py --runs 200

Per store: a business in Europe/Berlin open Mon-Fri 09:00-17:00 and Sat 10:00-14:00 (15-min
grid), a booking page showing 14 days, and 500 busy intervals (seeded random 5-minute marks
inside that window, 15-60 minutes each). Then `GET /book/{slug}` is rendered `--runs`
times in-process (the ASGI app, no network) and its server time is measured around the
app call: from the request entering the app to the last body byte leaving it. Also
measured: the hold form page and the manage page. Targets (§12): under 50 ms, under 50 KB
(the pages have no images). A missed target prints MISSED; the exit status stays 0.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from slotguard.api.app import create_app  # noqa: E402
from slotguard.config import Settings  # noqa: E402
from slotguard.services import accounts  # noqa: E402
from slotguard.store.db import Database  # noqa: E402
from slotguard.store.migrate import upgrade_to_head  # noqa: E402

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
TARGET_MS = 50.0
TARGET_BYTES = 50_000
BUSY = 500


class Timed:
    """ASGI wrapper: wall time from the request entering the app to its last body byte."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.last_ms = 0.0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        started = time.perf_counter()

        async def timed_send(message: Any) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.last_ms = (time.perf_counter() - started) * 1000

        await self.app(scope, receive, timed_send)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


async def setup(client: httpx.AsyncClient, key: str) -> tuple[str, str]:
    h = {"Authorization": f"Bearer {key}"}
    rules = {
        "working_hours": [
            {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00"},
            {"days": ["sat"], "start": "10:00", "end": "14:00"},
        ],
        "slot_interval_minutes": 15,
    }
    r = await client.post(
        "/v1/businesses",
        json={"name": "Dr. Bench", "timezone": "Europe/Berlin", "rules": rules},
        headers=h,
    )
    r.raise_for_status()
    biz = r.json()["data"]["id"]
    r = await client.post(
        "/v1/booking-pages", json={"business_id": biz, "title": "Consultation"}, headers=h
    )
    r.raise_for_status()
    slug = r.json()["data"]["slug"]
    rng = random.Random(13)
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    for _ in range(BUSY):
        start = now + dt.timedelta(minutes=5 * rng.randrange(12, 14 * 24 * 12))
        end = start + dt.timedelta(minutes=rng.choice((15, 30, 45, 60)))
        r = await client.post(
            f"/v1/businesses/{biz}/busy",
            json={"start": start.isoformat(), "end": end.isoformat(), "title": "busy"},
            headers=h,
        )
        r.raise_for_status()
    return biz, slug


def report(name: str, times: list[float], size: int) -> None:
    p50, p95 = statistics.median(times), pct(times, 95)
    ok_t = "ok" if p95 < TARGET_MS else "MISSED"
    ok_s = "ok" if size < TARGET_BYTES else "MISSED"
    print(
        f"  {name:<12} p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  max {max(times):6.1f} ms "
        f"[{ok_t}]   {size / 1000:5.1f} KB [{ok_s}]"
    )


async def bench_store(name: str, url: str, runs: int) -> None:
    await asyncio.to_thread(upgrade_to_head, url)  # Alembic runs its own event loop
    db = Database.connect(url, pool_size=5)
    try:
        now = dt.datetime.now(dt.UTC)
        async with db.write() as s:
            account = await accounts.create_account(s, name="bench", now=now)
            _, key = await accounts.create_key(s, account_id=account.id, now=now, name="admin")
        settings = Settings(
            database_url=url,
            embedded_worker=False,
            log_level="WARNING",
            public_url="https://book.example.com",
            public_holds_per_address=1000,
        )
        timed = Timed(create_app(settings, db=db))
        transport = httpx.ASGITransport(app=timed)
        async with httpx.AsyncClient(transport=transport, base_url="https://bench") as c:
            _, slug = await setup(c, key)
            url_page = f"/book/{slug}"
            first = await c.get(url_page)
            first.raise_for_status()
            buttons = first.text.count('name="start"')
            days = first.text.count("day=")
            times: list[float] = []
            for _ in range(runs):
                r = await c.get(url_page)
                r.raise_for_status()
                times.append(timed.last_ms)
            print(
                f"{name}: {BUSY} busy intervals over 14 days, {days} days listed, "
                f"{buttons} slot buttons on the first day"
            )
            report("book page", times, len(first.content))

            start = first.text.split('name="start" value="', 1)[1].split('"', 1)[0]
            csrf = first.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            held = await c.post(f"{url_page}/hold", data={"csrf": csrf, "start": start})
            hold_url = held.headers["location"]
            hold_times: list[float] = []
            for _ in range(max(10, runs // 4)):
                r = await c.get(hold_url)
                r.raise_for_status()
                hold_times.append(timed.last_ms)
            report("hold form", hold_times, len(r.content))

            hold_id = hold_url.split("/hold/")[1].split("?")[0]
            done = await c.post(
                f"{url_page}/confirm",
                data={"csrf": csrf, "hold_id": hold_id, "name": "Bench", "email": "b@example.com"},
            )
            manage_url = done.headers["location"]
            manage_times: list[float] = []
            for _ in range(max(10, runs // 4)):
                r = await c.get(manage_url)
                r.raise_for_status()
                manage_times.append(timed.last_ms)
            report("manage page", manage_times, len(r.content))
    finally:
        await db.dispose()


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    if args.store in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            await bench_store("sqlite", f"sqlite:///{tmp}/bench.db", args.runs)
    if args.store in ("postgres", "both"):
        name = f"sg_bench_{uuid.uuid4().hex[:8]}"
        try:
            conn = await asyncpg.connect(
                PG_ADMIN.replace("postgresql://", "postgres://"), timeout=3
            )
        except (OSError, asyncpg.PostgresError) as exc:
            print(f"postgres: skipped, no server at {PG_ADMIN} ({exc})")
            return 0
        await conn.execute(f'CREATE DATABASE "{name}"')
        try:
            await bench_store("postgres", PG_ADMIN.rsplit("/", 1)[0] + f"/{name}", args.runs)
        finally:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
