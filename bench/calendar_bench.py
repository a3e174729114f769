"""Calendar benchmark: slot listings with connected calendars, full vs incremental CalDAV sync.

    .venv/bin/python bench/calendar_bench.py [--store sqlite|postgres|both] [--requests 300]

Against a real `slotguard serve` process (see harness.py) and a real Radicale CalDAV server
on 127.0.0.1 (a dev dependency), per store:

1. Three CalDAV calendars holding 2,000 events between them (1,000 / 600 / 400; one in
   ten is a weekly series of 4 occurrences), at seeded random times over the next 30
   days, are connected to business A and synced by the server's embedded worker. Business
   B has the same rules and no calendar. `GET /v1/availability/slots` over the same 30
   days, A and B interleaved on one keep-alive connection each, after 30 warm-up requests;
   p50/p99 of each. Target: p99(A) <= 1.10 x p99(B). Then the same with `limit` at the
   smaller slot count of the two, so both render as many slots (A's calendars leave
   fewer free ones): the stricter comparison, printed beside the first.
   Once synced, a calendar's busy time is its packed copy, read the same way for every
   provider; provider_listing_bench.py measures Google and Microsoft calendars.
2. A fourth calendar of 2,000 events (business C): a full sync (no cursor: every resource
   listed, fetched and written as a new copy that replaces the old one) and an incremental
   sync after one event changed (sync-collection from the stored token, one resource
   fetched, merged), each run 5 times with the sync engine in this process on the same
   database; the medians are printed. Target: incremental at least 10x cheaper.

Figures only: nothing here fails. Output on stdout and in bench/out/calendars.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import logging
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness

from slotguard.calendars.sync import CalendarSync, SyncConfig
from slotguard.store.db import Database
from slotguard.store.models import Calendar

TARGET_RATIO = 1.10
# What a listing reads is provider-independent; provider_listing_bench.py measures the same
# listing with Google and Microsoft calendars (issue 10).
PROVIDER_NOTE = (
    "busy time is provider-independent once stored: a listing reads each busy calendar's "
    "packed copy (calendars.busy_packed, one statement with the posted busy time), whatever "
    "its provider; Google/Microsoft calendars: bench/provider_listing_bench.py"
)
TARGET_SPEEDUP = 10.0
SECRET_KEY = "bench calendar key " + uuid.uuid4().hex
USER, PASSWORD = "bench", "bench-" + uuid.uuid4().hex[:12]
SPLIT = (1000, 600, 400)
BIG = 2000
DAYS = 30
ALL_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
RULES = {
    "working_hours": [{"days": ALL_DAYS, "start": "07:00", "end": "21:00"}],
    "slot_interval_minutes": 15,
    "max_advance_days": 60,
}


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def stamp(t: dt.datetime) -> str:
    return t.strftime("%Y%m%dT%H%M%SZ")


# -- Radicale -----------------------------------------------------------------------------


@contextlib.contextmanager
def radicale(workdir: Path) -> Iterator[str]:
    users = workdir / "radicale-users"
    users.write_text(f"{USER}:{PASSWORD}\n")
    port = harness.free_port()
    log = (workdir / "radicale.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "radicale",
            "--server-hosts", f"127.0.0.1:{port}",
            "--auth-type", "htpasswd",
            "--auth-htpasswd-filename", str(users),
            "--auth-htpasswd-encryption", "plain",
            "--storage-filesystem-folder", str(workdir / "radicale"),
            "--logging-level", "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError("radicale exited; see radicale.log")
            try:
                with socket.create_connection(("127.0.0.1", port), 0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("radicale did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def vevent(uid: str, start: dt.datetime, minutes: int, rrule: str | None = None) -> str:
    lines = [
        "BEGIN:VEVENT",
        f"UID:{uid}",
        "DTSTAMP:20260101T000000Z",
        f"DTSTART:{stamp(start)}",
        f"DTEND:{stamp(start + dt.timedelta(minutes=minutes))}",
        "SUMMARY:busy",
    ]
    if rrule:
        lines.append(rrule)
    lines.append("END:VEVENT")
    return "\r\n".join(lines) + "\r\n"


def vcalendar(*events: str) -> str:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bench//EN\r\n"
        + "".join(events)
        + ("END:VCALENDAR\r\n")
    )


async def seed(dav: httpx.AsyncClient, base: str, count: int, rng: random.Random) -> str:
    """A new calendar of ``count`` events, uploaded in one PUT of the whole collection
    (Radicale stores each event as its own resource, ``<uid>.ics``)."""
    url = f"{base}/{USER}/{uuid.uuid4().hex}/"
    day0 = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    events = []
    for i in range(count):
        start = day0 + dt.timedelta(days=1 + rng.randrange(DAYS), minutes=5 * rng.randrange(288))
        rrule = "RRULE:FREQ=WEEKLY;COUNT=4" if i % 10 == 0 else None
        events.append(vevent(f"ev-{i}", start, rng.choice((15, 30, 45, 60)), rrule))
    r = await dav.put(url, content=vcalendar(*events), headers={"Content-Type": "text/calendar"})
    r.raise_for_status()
    return url


# -- the figures ----------------------------------------------------------------------------


async def make_business(c: httpx.AsyncClient, name: str) -> str:
    r = await c.post("/v1/businesses", json={"name": name, "timezone": "UTC", "rules": RULES})
    r.raise_for_status()
    return str(r.json()["data"]["id"])


async def connect(c: httpx.AsyncClient, business_id: str, url: str) -> str:
    r = await c.post(
        f"/v1/businesses/{business_id}/calendars",
        json={"provider": "caldav", "url": url, "username": USER, "password": PASSWORD},
    )
    r.raise_for_status()
    return str(r.json()["data"]["id"])


async def wait_synced(c: httpx.AsyncClient, business_id: str, ids: list[str]) -> list[int]:
    deadline = time.monotonic() + 300
    while True:
        counts = []
        for cid in ids:
            r = await c.get(f"/v1/businesses/{business_id}/calendars/{cid}")
            data = r.json()["data"]
            if data["status"] == "error":
                raise RuntimeError(f"calendar sync failed: {data['last_error']}")
            counts.append(data["busy_intervals"] if data["status"] == "active" else -1)
        if all(n >= 0 for n in counts):
            return counts
        if time.monotonic() > deadline:
            raise TimeoutError("calendars not synced after 300 s")
        await asyncio.sleep(0.5)


async def slot_latency(
    server: harness.Server, a: str, b: str, requests: int, *, limit: int | None = None
) -> dict[str, Any]:
    """A and B in alternating blocks of 10 requests: client-side latency of each request,
    and the server's CPU time per request of each block (less sensitive to a busy machine
    than the latency tail). With `limit`, both listings ask for at most that many slots."""
    assert server.proc is not None
    proc = psutil.Process(server.proc.pid)
    headers = {"Authorization": f"Bearer {server.api_key}"}
    start = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) + dt.timedelta(
        hours=1
    )
    params = {"start": iso(start), "end": iso(start + dt.timedelta(days=DAYS))}
    if limit is not None:
        params["limit"] = str(limit)
    out: dict[str, Any] = {}
    block = 10
    async with (
        httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=30) as ca,
        httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=30) as cb,
    ):
        samples: dict[str, list[int]] = {"with": [], "without": []}
        cpu: dict[str, float] = {"with": 0.0, "without": 0.0}
        slots: dict[str, int] = {}
        warm = 30
        for i in range(0, warm + requests, block):
            for label, client, biz in (("with", ca, a), ("without", cb, b)):
                cpu0 = harness.tree_cpu_seconds(proc)
                for j in range(block):
                    t0 = time.perf_counter_ns()
                    r = await client.get(
                        "/v1/availability/slots", params={"business_id": biz, **params}
                    )
                    elapsed = time.perf_counter_ns() - t0
                    r.raise_for_status()
                    if i + j >= warm:
                        samples[label].append(elapsed)
                    slots[label] = len(r.json()["data"]["slots"])
                if i >= warm:
                    cpu[label] += harness.tree_cpu_seconds(proc) - cpu0
        for label in samples:
            out[label] = {
                **harness.latency_summary(samples[label]),
                "slots": slots[label],
                "server_cpu_ms_per_request": round(cpu[label] * 1000 / len(samples[label]), 2),
            }
    out["p99_ratio"] = round(out["with"]["p99_ms"] / out["without"]["p99_ms"], 3)
    out["cpu_ratio"] = round(
        out["with"]["server_cpu_ms_per_request"] / out["without"]["server_cpu_ms_per_request"], 3
    )
    out["target"] = f"p99 with <= {TARGET_RATIO:.2f} x p99 without"
    out["met"] = out["p99_ratio"] <= TARGET_RATIO
    return out


async def slot_latency_both(
    server: harness.Server, a: str, b: str, requests: int
) -> dict[str, Any]:
    """The listing as a client sends it, then again with `limit` at the smaller of the two
    slot counts. Busy calendars leave fewer free slots, so the first comparison also
    renders fewer slots with calendars; the second returns as many slots on both sides
    (without calendars the engine then stops earlier in the window: the stricter test)."""
    plain = await slot_latency(server, a, b, requests)
    same = min(plain["with"]["slots"], plain["without"]["slots"])
    plain["same_count"] = await slot_latency(server, a, b, requests, limit=same)
    plain["same_count"]["limit"] = same
    return plain


def same_count_line(s: dict[str, Any]) -> str:
    e = s["same_count"]
    return (
        f"  same slot count (limit={e['limit']}): p99 {e['with']['p99_ms']} ms with, "
        f"{e['without']['p99_ms']} ms without: ratio {e['p99_ratio']}; server CPU "
        f"{e['with']['server_cpu_ms_per_request']} / {e['without']['server_cpu_ms_per_request']}"
        f" ms, ratio {e['cpu_ratio']} (no verdict: without calendars the engine stops that much "
        "earlier in the window, so this is the calendars' busy time at its most visible)"
    )


async def sync_timings(
    store: harness.StoreHandle, dav_base: str, calendar_id: str, big_url: str, runs: int
) -> dict[str, Any]:
    db = Database.connect(store.url, pool_size=4)
    config = SyncConfig(allow_private=True, secret_key=SECRET_KEY, sync_timeout_s=600)
    engine = CalendarSync(db, config=config)
    full: list[float] = []
    incremental: list[float] = []
    day0 = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    try:
        async with httpx.AsyncClient(auth=(USER, PASSWORD), timeout=30) as dav:
            for i in range(runs):
                async with db.write() as s:
                    cal = await s.get(Calendar, calendar_id)
                    assert cal is not None
                    cal.cursor = None  # the next sync is a full copy
                t0 = time.perf_counter()
                outcome = await engine.sync_one(calendar_id)
                full.append(time.perf_counter() - t0)
                if outcome != "synced":
                    raise RuntimeError(f"full sync: {outcome}")
                moved = vcalendar(vevent("ev-1", day0 + dt.timedelta(days=2, hours=8 + i), 30))
                r = await dav.put(
                    f"{big_url}ev-1.ics", content=moved, headers={"Content-Type": "text/calendar"}
                )
                r.raise_for_status()
                t0 = time.perf_counter()
                outcome = await engine.sync_one(calendar_id)
                incremental.append(time.perf_counter() - t0)
                if outcome != "synced":
                    raise RuntimeError(f"incremental sync: {outcome}")
        async with db.read() as s:
            cal = await s.get(Calendar, calendar_id)
            assert cal is not None
            busy, generation = cal.busy_count, cal.copy_generation
    finally:
        await db.dispose()
    f, inc = statistics.median(full), statistics.median(incremental)
    return {
        "events": BIG,
        "busy_intervals": busy,
        "copy_generation": generation,
        "runs": runs,
        "full_median_ms": round(f * 1000, 1),
        "full_ms": [round(x * 1000, 1) for x in full],
        "incremental_median_ms": round(inc * 1000, 1),
        "incremental_ms": [round(x * 1000, 1) for x in incremental],
        "speedup": round(f / inc, 1),
        "target": f"incremental >= {TARGET_SPEEDUP:.0f}x cheaper",
        "met": f / inc >= TARGET_SPEEDUP,
    }


async def bench_store(name: str, *, requests: int, runs: int) -> dict[str, Any]:
    with harness.temp_workdir() as workdir, radicale(workdir) as dav_base:
        store = await harness.create_store(name, workdir)
        server = harness.Server(store, workdir, harness.OUT_DIR / f"server-calendars-{name}.log")
        try:
            os.environ.update(
                SLOTGUARD_ALLOW_PRIVATE_CALENDARS="1",
                SLOTGUARD_SECRET_KEY=SECRET_KEY,
                # One sync at connect; the figures below control every later one.
                SLOTGUARD_CALENDAR_SYNC_SECONDS="3600",
            )
            server.start()
            await server.wait_ready()
            rng = random.Random(20261202)
            t0 = time.monotonic()
            async with httpx.AsyncClient(auth=(USER, PASSWORD), timeout=60) as dav:
                urls = [await seed(dav, dav_base, n, rng) for n in SPLIT]
                big_url = await seed(dav, dav_base, BIG, rng)
            seeded_s = time.monotonic() - t0
            headers = {"Authorization": f"Bearer {server.api_key}"}
            async with httpx.AsyncClient(
                base_url=server.base_url, headers=headers, timeout=60
            ) as c:
                a = await make_business(c, "with calendars")
                b = await make_business(c, "without")
                cal_ids = [await connect(c, a, u) for u in urls]
                counts = await wait_synced(c, a, cal_ids)
                big_biz = await make_business(c, "big calendar")
                big_id = await connect(c, big_biz, big_url)
                await wait_synced(c, big_biz, [big_id])
            print(
                f"[{name}] seeded {sum(SPLIT) + BIG} events in {seeded_s:.1f} s; "
                f"busy intervals of the three calendars: {counts}",
                flush=True,
            )
            slots = await slot_latency_both(server, a, b, requests)
            sync = await sync_timings(store, dav_base, big_id, big_url, runs)
            return {
                "store": name,
                "busy_intervals": counts,
                "slots": slots,
                "sync": sync,
                "providers": PROVIDER_NOTE,
            }
        finally:
            server.stop()
            await harness.drop_store(store)


def table(res: dict[str, Any]) -> str:
    s, y = res["slots"], res["sync"]

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    return "\n".join(
        [
            f"[{res['store']}] GET /v1/availability/slots, {DAYS} days, "
            f"{s['with']['n']} requests each",
            f"  with 3 calendars ({sum(res['busy_intervals'])} busy intervals): "
            f"p50 {s['with']['p50_ms']} ms, p99 {s['with']['p99_ms']} ms, "
            f"{s['with']['slots']} slots, server CPU {s['with']['server_cpu_ms_per_request']} ms",
            f"  without calendars: p50 {s['without']['p50_ms']} ms, "
            f"p99 {s['without']['p99_ms']} ms, {s['without']['slots']} slots, "
            f"server CPU {s['without']['server_cpu_ms_per_request']} ms",
            f"  p99 ratio {s['p99_ratio']} ({s['target']}): {verdict(s['met'])}; "
            f"server CPU ratio {s['cpu_ratio']}",
            same_count_line(s),
            f"  {PROVIDER_NOTE}",
            f"[{res['store']}] CalDAV sync of {y['events']} events ({y['busy_intervals']} busy "
            f"intervals), {y['runs']} runs",
            f"  full: median {y['full_median_ms']} ms {y['full_ms']}",
            f"  incremental (one change): median {y['incremental_median_ms']} ms "
            f"{y['incremental_ms']}",
            f"  {y['speedup']}x cheaper ({y['target']}): {verdict(y['met'])}",
        ]
    )


async def main() -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    stores = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    report: dict[str, Any] = {
        "started_at": dt.datetime.now(dt.UTC).isoformat(),
        "machine": harness.machine_info(),
        "stores": {},
    }

    async def one(name: str) -> dict[str, Any]:
        return await bench_store(name, requests=args.requests, runs=args.runs)

    return await harness.run_stores(stores, one, table, report, "calendars.json")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
