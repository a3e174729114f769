"""CPU per booking and per hold+confirm round trip, in-process: robust on a busy machine.

    .venv/bin/python bench/inproc.py [--store postgres|sqlite] [--scenario bookings|holds]
                                     [-n 300]

The ASGI app runs in this process behind `httpx.ASGITransport` (no uvicorn, no embedded
worker, so no mail; the client's own CPU is included). After 30 warm-up operations on one
business, `n` sequential operations are timed with `time.process_time()`. CPU time moves
much less with other load on the machine than rates do, so A/B comparisons of two commits
(e.g. `PYTHONPATH=<export of the old src>`) alternated a few times are meaningful even
when `run.py`'s ratios are not. `--profile FILE` writes a cProfile of the timed operations
(its own overhead inflates the CPU figure of that run). Figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime as dt
import sys
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
from run import (
    AVAIL_RULES,
    AVAIL_TZ,
    AVAIL_WINDOW_DAYS,
    BUSY_COUNT,
    OPEN_RULES,
    booking_slot,
    busy_intervals,
    iso,
    tomorrow_utc,
)
from sqlcapture import _settings


async def main() -> None:
    from slotguard.api.app import create_app
    from slotguard.services import accounts
    from slotguard.store.db import Database
    from slotguard.store.migrate import upgrade_to_head

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument(
        "--scenario", choices=["bookings", "holds", "me", "health", "slots"], default="bookings"
    )
    parser.add_argument("-n", type=int, default=300)
    parser.add_argument(
        "--profile", metavar="FILE", help="cProfile the timed operations into FILE (pstats)"
    )
    args = parser.parse_args()
    with harness.temp_workdir() as workdir:
        store = await harness.create_store(args.store, workdir)
        try:
            await asyncio.to_thread(upgrade_to_head, store.url)
            db = Database.connect(store.url, pool_size=4)
            now = dt.datetime.now(dt.UTC)
            async with db.write() as s:
                account = await accounts.create_account(s, name="bench", now=now)
                _, raw = await accounts.create_key(s, account_id=account.id, now=now, name="a")
            app = create_app(_settings(store.url), db=db)
            auth = {"Authorization": f"Bearer {raw}"}
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as c:
                r = await c.post(
                    "/v1/businesses",
                    json={"name": "b", "email": "owner@example.com", "timezone": "UTC",
                          "rules": OPEN_RULES},
                    headers=auth,
                )  # fmt: skip
                business_id = r.json()["data"]["id"]
                if args.scenario == "slots":
                    # run.py's listing: 30 days in Berlin, 500 busy intervals.
                    r = await c.post(
                        "/v1/businesses",
                        json={"name": "s", "timezone": AVAIL_TZ, "rules": AVAIL_RULES},
                        headers=auth,
                    )
                    business_id = r.json()["data"]["id"]
                    window_start = tomorrow_utc()
                    window_end = window_start + dt.timedelta(days=AVAIL_WINDOW_DAYS)
                    for i, (bs, be) in enumerate(busy_intervals(window_start, BUSY_COUNT)):
                        r = await c.post(
                            f"/v1/businesses/{business_id}/busy",
                            json={"start": iso(bs), "end": iso(be), "title": f"busy {i}"},
                            headers=auth,
                        )
                        assert r.status_code == 201, r.text
                    slot_params = {"business_id": business_id, "start": iso(window_start),
                                   "end": iso(window_end)}  # fmt: skip

                async def one(k: int) -> None:
                    start = booking_slot(k)
                    end = start + dt.timedelta(minutes=30)
                    idem = {**auth, "Idempotency-Key": uuid.uuid4().hex}
                    if args.scenario == "slots":
                        r = await c.get("/v1/availability/slots", params=slot_params,
                                        headers=auth)  # fmt: skip
                        assert r.status_code == 200, r.text
                        return
                    if args.scenario in ("me", "health"):
                        # The floor every request pays: HTTP in and out of the ASGI stack,
                        # the middleware, and for /v1/me the key check.
                        r = await c.get("/v1/me" if args.scenario == "me" else "/healthz",
                                        headers=auth)  # fmt: skip
                        assert r.status_code == 200, r.text
                        return
                    if args.scenario == "bookings":
                        r = await c.post(
                            "/v1/bookings",
                            json={"business_id": business_id, "start_time": start.isoformat(),
                                  "end_time": end.isoformat(),
                                  "customer_email": "bench@example.com"},
                            headers=idem,
                        )  # fmt: skip
                        assert r.status_code == 201, r.text
                        return
                    r = await c.post(
                        "/v1/availability",
                        json={"business_id": business_id, "duration_minutes": 30,
                              "ttl_seconds": 300,
                              "window": {"start": start.isoformat(), "end": end.isoformat()}},
                        headers=auth,
                    )  # fmt: skip
                    assert r.status_code == 200, r.text
                    hold_id = r.json()["data"]["hold_id"]
                    r = await c.post(
                        f"/v1/bookings/{hold_id}/confirm", json={"title": "bench"}, headers=idem
                    )
                    assert r.status_code == 200, r.text

                for k in range(30):
                    await one(k)
                profiler = cProfile.Profile() if args.profile else None
                cpu0, wall0 = time.process_time(), time.perf_counter()
                if profiler is not None:
                    profiler.enable()
                for k in range(30, 30 + args.n):
                    await one(k)
                if profiler is not None:
                    profiler.disable()
                cpu = (time.process_time() - cpu0) / args.n * 1000
                wall = (time.perf_counter() - wall0) / args.n * 1000
                if profiler is not None:
                    profiler.dump_stats(args.profile)
            await db.dispose()
        finally:
            await harness.drop_store(store)
    print(
        f"{args.store} {args.scenario}: {cpu:.2f} ms CPU per operation in-process "
        f"(client included), wall {wall:.2f} ms, n={args.n}"
    )


if __name__ == "__main__":
    asyncio.run(main())
