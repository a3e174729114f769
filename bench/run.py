"""slotguard benchmark: availability latency, booking throughput vs. the raw database, RSS.

    .venv/bin/python bench/run.py [--store sqlite|postgres|both] [--quick]
                                  [--workers N] [--wait-quiet SECONDS]

Prints a table per store and writes bench/out/results.json. Reports figures only: a missed
target is printed as MISSED, the exit status stays 0 (it is 1 only if the harness itself
broke, e.g. the server did not start). See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import logging
import math
import os
import random
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
import rawdb
import sqlcapture

from slotguard.domain.availability import Blocker, SlotRequest, compute_slots
from slotguard.domain.rules import RulesPatch, merge_rules
from slotguard.services.keys import hash_key

UTC = dt.UTC
CLIENTS = 16
MEETING = dt.timedelta(minutes=30)

# Targets (printed next to the figures; never enforced).
TARGET_SLOTS_HTTP_P99_MS = 20.0
TARGET_PG_API_RAW_RATIO = 0.40
TARGET_SQLITE_API_RAW_RATIO = 0.30
TARGET_PEAK_RSS_MB = 150.0


def _ratio_target(store: str) -> float:
    return TARGET_PG_API_RAW_RATIO if store == "postgres" else TARGET_SQLITE_API_RAW_RATIO


# Scenario 1: one business with realistic rules and a month of busy time.
AVAIL_TZ = "Europe/Berlin"
AVAIL_RULES: dict[str, Any] = {
    "working_hours": [
        {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00"},
        {"days": ["sat"], "start": "10:00", "end": "14:00"},
    ],
    "slot_interval_minutes": 15,
    "buffer_minutes": 10,
    "max_advance_days": 60,
}
AVAIL_WINDOW_DAYS = 30
BUSY_COUNT = 500

# Scenario 2: businesses open around the clock, bookable ten years ahead (the rules' maximum).
OPEN_RULES: dict[str, Any] = {
    "working_hours": [
        {
            "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            "start": "00:00",
            "end": "24:00",
        }
    ],
    "max_advance_days": 3650,
}


def iso(t: dt.datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


@functools.cache
def tomorrow_utc() -> dt.datetime:
    """Next midnight UTC, fixed for the whole run (slots stay put if it crosses midnight)."""
    now = dt.datetime.now(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0) + dt.timedelta(days=1)


def booking_slot(k: int) -> dt.datetime:
    """The k-th slot a client books in its own business: 24 h 30 min apart, never touching.

    Half-hour aligned (on the default 15-minute grid), one per local day, so every booking
    sees the same handful of neighbours within the +-3-day blocker margin. 3000 bookings per
    business stay within 3650 days.
    """
    return tomorrow_utc() + dt.timedelta(days=1) + k * dt.timedelta(hours=24, minutes=30)


# --- setup through the API ----------------------------------------------------------------


class Api:
    def __init__(self, base_url: str, key: str) -> None:
        self.headers = {"Authorization": f"Bearer {key}"}
        self.client = httpx.AsyncClient(
            base_url=base_url,
            headers=self.headers,
            timeout=httpx.Timeout(30.0),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=32),
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def post(self, path: str, body: dict[str, Any], expect: int = 201) -> dict[str, Any]:
        r = await self.client.post(path, json=body)
        if r.status_code != expect:
            raise RuntimeError(f"POST {path} -> {r.status_code}: {r.text[:500]}")
        data: dict[str, Any] = r.json()["data"]
        return data

    async def business(self, name: str, tz: str, rules: dict[str, Any]) -> str:
        data = await self.post("/v1/businesses", {"name": name, "timezone": tz, "rules": rules})
        return str(data["id"])


def busy_intervals(
    window_start: dt.datetime, n: int, seed: int = 7
) -> list[tuple[dt.datetime, dt.datetime]]:
    """`n` busy intervals at uniformly random 5-minute marks over the window (seeded).

    Each lasts 15-60 minutes; they may overlap. Placed evenly instead (one every 86 minutes),
    500 of them would leave almost no 30-minute slot with 10-minute buffers on either side;
    at random, about a third of the candidate starts stay free, like a busy calendar.
    """
    rng = random.Random(seed)
    marks = AVAIL_WINDOW_DAYS * 24 * 12
    out = []
    for _ in range(n):
        start = window_start + dt.timedelta(minutes=5 * rng.randrange(marks))
        out.append((start, start + dt.timedelta(minutes=15 * rng.randint(1, 4))))
    out.sort()
    return out


async def post_busy(
    api: Api, business_id: str, intervals: list[tuple[dt.datetime, dt.datetime]]
) -> None:
    sem = asyncio.Semaphore(8)

    async def one(i: int, start: dt.datetime, end: dt.datetime) -> None:
        async with sem:
            await api.post(
                f"/v1/businesses/{business_id}/busy",
                {"start": iso(start), "end": iso(end), "title": f"busy {i}"},
            )

    await asyncio.gather(*(one(i, s, e) for i, (s, e) in enumerate(intervals)))


# --- scenario 1: availability ---------------------------------------------------------------


def pure_slots(
    intervals: list[tuple[dt.datetime, dt.datetime]],
    window_start: dt.datetime,
    window_end: dt.datetime,
    *,
    runs: int,
    limit: int,
) -> dict[str, Any]:
    """compute_slots in-process, with the request the server builds for this business."""
    rules, _ = merge_rules(None, RulesPatch.model_validate(AVAIL_RULES))
    blockers = [Blocker(start=s, end=e, kind="busy") for s, e in intervals]
    buffer = dt.timedelta(minutes=AVAIL_RULES["buffer_minutes"])
    req = SlotRequest(
        tz=ZoneInfo(AVAIL_TZ),
        rules=rules,
        duration=MEETING,
        now=dt.datetime.now(UTC),
        buffer_before=buffer,
        buffer_after=buffer,
        interval_minutes=rules.slot_interval_for(30),
    )

    def call() -> int:
        return len(
            compute_slots(
                req,
                window_start=window_start,
                window_end=window_end,
                blockers=blockers,
                bookings_per_day={},
                limit=limit,
            )
        )

    for _ in range(20):
        count = call()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - t0)
    return {
        "slots": count,
        "blockers": len(blockers),
        "limit": limit,
        **harness.latency_summary(samples),
    }


async def http_slots(
    base_url: str,
    key: str,
    business_id: str,
    window_start: dt.datetime,
    window_end: dt.datetime,
    *,
    runs: int,
    warmup: int,
    server_pid: int,
) -> dict[str, Any]:
    """Sequential GETs on one keep-alive connection; only the timed `runs` are reported."""
    params = {"business_id": business_id, "start": iso(window_start), "end": iso(window_end)}
    samples: list[int] = []
    errors = 0
    count = 0
    async with httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {key}"},
        timeout=httpx.Timeout(30.0),
    ) as client:
        for _ in range(warmup):
            r = await client.get("/v1/availability/slots", params=params)
            if r.status_code != 200:
                raise RuntimeError(f"GET /v1/availability/slots -> {r.status_code}: {r.text[:300]}")
            count = len(r.json()["data"]["slots"])
        with harness.CpuMeter(server_pid) as cpu:
            for _ in range(runs):
                t0 = time.perf_counter_ns()
                r = await client.get("/v1/availability/slots", params=params)
                elapsed = time.perf_counter_ns() - t0
                if r.status_code != 200:
                    errors += 1
                    continue
                samples.append(elapsed)
    return {
        "slots": count,
        "errors": errors,
        "cpu": cpu.result,
        "server_cpu_ms_per_request": round(1000 * cpu.result["server_cpu_s"] / max(1, runs), 2),
        **harness.latency_summary(samples),
    }


# --- scenario 2: direct bookings ------------------------------------------------------------


async def booking_load(
    base_url: str,
    key: str,
    business_ids: list[str],
    *,
    duration_s: float,
    server_pid: int,
    pg_dsn: str | None = None,
) -> dict[str, Any]:
    """One keep-alive client per business, booking back to back for `duration_s`."""
    counters = [0] * len(business_ids)
    latencies: list[int] = []
    statuses: dict[str, int] = {}
    samples: list[str] = []
    clients = [
        httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=httpx.Timeout(30.0),
        )
        for _ in business_ids
    ]

    async def one(i: int, record: bool) -> None:
        start = booking_slot(counters[i])
        counters[i] += 1
        body = {
            "business_id": business_ids[i],
            "start_time": iso(start),
            "end_time": iso(start + MEETING),
            "customer_email": "bench@example.com",
        }
        t0 = time.perf_counter_ns()
        try:
            r = await clients[i].post(
                "/v1/bookings", json=body, headers={"Idempotency-Key": uuid.uuid4().hex}
            )
            status = str(r.status_code)
        except httpx.HTTPError as exc:
            status, r = type(exc).__name__, None
        elapsed = time.perf_counter_ns() - t0
        if not record:
            return
        statuses[status] = statuses.get(status, 0) + 1
        if status == "201":
            latencies.append(elapsed)
        elif len(samples) < 5:
            samples.append(f"{status}: {r.text[:300] if r is not None else ''}")

    try:
        for _ in range(3):  # warm-up: connections, pools, statement caches
            await asyncio.gather(*(one(i, False) for i in range(len(clients))))
        deadline = math.inf

        async def worker(i: int) -> None:
            while time.perf_counter() < deadline:
                await one(i, True)

        sessions0 = await harness.pg_sessions(pg_dsn) if pg_dsn else None
        with harness.CpuMeter(server_pid) as cpu, harness.RssSampler(server_pid, 0.05) as rss:
            t0 = time.perf_counter()
            deadline = t0 + duration_s
            async with asyncio.timeout(duration_s + 120):
                await asyncio.gather(*(worker(i) for i in range(len(clients))))
            elapsed = time.perf_counter() - t0
        sessions1 = await harness.pg_sessions(pg_dsn) if pg_dsn else None
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    ok = statuses.get("201", 0)
    return {
        "clients": len(clients),
        "duration_s": round(elapsed, 3),
        "bookings": ok,
        "bookings_per_s": round(ok / elapsed, 1),
        "non_201": sum(v for k, v in statuses.items() if k != "201"),
        "statuses": statuses,
        "error_samples": samples,
        "cpu": cpu.result,
        # PostgreSQL sessions opened during the load (by anyone, i.e. the server's pool).
        "pg_new_connections": (
            sessions1 - sessions0 - 1 if sessions0 is not None and sessions1 is not None else None
        ),
        "server_cpu_ms_per_booking": (
            round(1000 * cpu.result["server_cpu_s"] / ok, 2) if ok else None
        ),
        "peak_rss_mb": round(rss.peak / 2**20, 1),
        "rss_samples": rss.samples,
        **harness.latency_summary(latencies),
    }


async def raw_rate(
    store: harness.StoreHandle, key: str, business_ids: list[str], duration_s: float
) -> dict[str, Any]:
    key_hash = hash_key(key)
    with harness.CpuMeter() as cpu:
        res, elapsed, driver = await _raw_run(store, key_hash, business_ids, duration_s)
    return {
        "driver": driver,
        "workers": len(business_ids),
        "duration_s": round(elapsed, 3),
        "bookings": res.committed,
        "bookings_per_s": round(res.committed / elapsed, 1),
        "errors": res.errors,
        "error_samples": res.error_samples,
        "cpu": cpu.result,
        **harness.latency_summary(res.latencies_ns),
    }


async def _raw_run(
    store: harness.StoreHandle, key_hash: str, business_ids: list[str], duration_s: float
) -> tuple[rawdb.RawResult, float, str]:
    if store.name == "postgres":
        ctx = await rawdb.pg_context(store.pg_dsn, key_hash, business_ids)
        res, elapsed = await rawdb.run_pg(
            store.pg_dsn, ctx, duration_s=duration_s, slot_start=booking_slot, meeting=MEETING
        )
        return res, elapsed, "asyncpg"
    assert store.sqlite_path is not None
    path = store.sqlite_path
    ctx = rawdb.sqlite_context(path, key_hash, business_ids)
    res, elapsed = await asyncio.to_thread(
        rawdb.run_sqlite, path, ctx, duration_s=duration_s, slot_start=booking_slot,
        meeting=MEETING, serialise_writers=True,
    )  # fmt: skip
    return res, elapsed, "sqlite3, BEGIN IMMEDIATE, writers queued on one lock"


async def sql_check(store: harness.StoreHandle, key: str, business_id: str) -> dict[str, Any]:
    """Does rawdb.py still replay what the server sends for one booking? (see sqlcapture.py)"""
    try:
        got = await sqlcapture.capture_booking(store.url, key, business_id, booking_slot(3400))
    except Exception as exc:
        return {"match": None, "error": repr(exc)}
    replayed = rawdb.replayed_shapes(store.name)
    diff = sqlcapture.compare(got["shapes"], replayed)
    return {
        "match": got["status"] == 201 and not diff,
        "status": got["status"],
        # statements and COMMITs (ROLLBACK events are not compared, see sqlcapture.compare)
        "server_statements": len([x for x in got["shapes"] if x != "ROLLBACK"]),
        "replayed_statements": len([x for x in replayed if x != "ROLLBACK"]),
        "diff": diff,
    }


# --- one store --------------------------------------------------------------------------------


async def bench_store(name: str, *, quick: bool, workers: int = 1) -> dict[str, Any]:
    runs = 300
    duration = 3.0 if quick else 10.0
    out: dict[str, Any] = {"store": name, "loadavg_at_start": os.getloadavg()}
    with harness.temp_workdir() as workdir:
        store = await harness.create_store(name, workdir)
        try:
            await _bench_on(store, workdir, out, runs=runs, duration=duration, workers=workers)
        finally:
            await harness.drop_store(store)
    return out


async def _bench_on(
    store: harness.StoreHandle,
    workdir: Path,
    out: dict[str, Any],
    *,
    runs: int,
    duration: float,
    workers: int,
) -> None:
    name = store.name
    server = harness.Server(store, workdir, harness.OUT_DIR / f"server-{name}.log", workers=workers)
    out["server_workers"] = workers
    try:
        t0 = time.perf_counter()
        server.start()
        await server.wait_ready()
        assert server.proc is not None
        pid = server.proc.pid
        out["startup_s"] = round(time.perf_counter() - t0, 2)
        out["idle_rss_mb"] = round(harness.tree_rss(psutil.Process(pid)) / 2**20, 1)
        api = Api(server.base_url, server.api_key)
        try:
            print(f"[{name}] setup: businesses and {BUSY_COUNT} busy intervals", flush=True)
            avail_biz = await api.business("Bench Berlin", AVAIL_TZ, AVAIL_RULES)
            window_start = tomorrow_utc()
            window_end = window_start + dt.timedelta(days=AVAIL_WINDOW_DAYS)
            intervals = busy_intervals(window_start, BUSY_COUNT)
            await post_busy(api, avail_biz, intervals)
            api_biz = [await api.business(f"Open {i}", "UTC", OPEN_RULES) for i in range(CLIENTS)]
            raw_biz = [await api.business(f"Raw {i}", "UTC", OPEN_RULES) for i in range(CLIENTS)]
        finally:
            await api.close()

        print(f"[{name}] availability: compute_slots in-process", flush=True)
        out["slots_pure"] = pure_slots(intervals, window_start, window_end, runs=runs, limit=500)
        print(f"[{name}] availability: GET /v1/availability/slots x {runs}", flush=True)
        out["slots_http"] = await http_slots(
            server.base_url, server.api_key, avail_biz, window_start, window_end,
            runs=runs, warmup=30, server_pid=pid,
        )  # fmt: skip
        out["rss_after_availability_mb"] = round(harness.tree_rss(psutil.Process(pid)) / 2**20, 1)

        print(f"[{name}] bookings: {CLIENTS} clients for {duration:.0f} s", flush=True)
        out["bookings_api"] = await booking_load(
            server.base_url, server.api_key, api_biz, duration_s=duration, server_pid=pid,
            pg_dsn=store.pg_dsn if store.pg_database else None,
        )  # fmt: skip
        out["rss_after_bookings_mb"] = round(harness.tree_rss(psutil.Process(pid)) / 2**20, 1)
    finally:
        out["server_exit_code"] = server.stop()
    # The server is stopped: the raw run has the database to itself, as the API had.
    out["sql_check"] = await sql_check(store, server.api_key, raw_biz[0])
    if not out["sql_check"].get("match"):
        print(
            f"[{name}] WARNING: the raw replay no longer matches the server's SQL: "
            f"{out['sql_check']}",
            flush=True,
        )
    print(f"[{name}] raw database: {CLIENTS} workers for {duration:.0f} s", flush=True)
    out["bookings_raw"] = await raw_rate(store, server.api_key, raw_biz, duration)
    api_rate = out["bookings_api"]["bookings_per_s"]
    raw = out["bookings_raw"]["bookings_per_s"]
    out["api_raw_ratio"] = round(api_rate / raw, 3) if raw else None


# --- report -----------------------------------------------------------------------------------


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "MISSED")


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    p99 = res["slots_http"]["p99_ms"]
    out.append(
        {
            "what": "availability HTTP p99",
            "target": f"<= {TARGET_SLOTS_HTTP_P99_MS:.0f} ms",
            "value": f"{p99:.2f} ms",
            "met": p99 <= TARGET_SLOTS_HTTP_P99_MS,
        }
    )
    ratio = res.get("api_raw_ratio")
    wanted = _ratio_target(res["store"])
    out.append(
        {
            "what": "API / raw booking rate",
            "target": f">= {wanted:.0%}",
            "value": "n/a" if ratio is None else f"{ratio:.0%}",
            "met": None if ratio is None else ratio >= wanted,
        }
    )
    rss = res["bookings_api"]["peak_rss_mb"]
    out.append(
        {
            "what": "peak server RSS under booking load",
            "target": f"<= {TARGET_PEAK_RSS_MB:.0f} MB",
            "value": f"{rss:.1f} MB",
            "met": rss <= TARGET_PEAK_RSS_MB,
        }
    )
    return out


def _cpu(c: dict[str, Any]) -> str:
    return (
        f"CPU-s: server {c['server_cpu_s']}, bench {c['bench_cpu_s']}, "
        f"postgres {c['postgres_cpu_s']}, other {c['other_cpu_s']} "
        f"(machine {c['machine_busy_pct']}% busy)"
    )


def table(res: dict[str, Any]) -> str:
    sp, sh = res["slots_pure"], res["slots_http"]
    ba, br = res["bookings_api"], res["bookings_raw"]
    ratio = res["api_raw_ratio"]
    rows = [
        (f"Availability: 30 days, {sp['blockers']} busy, {sh['slots']} slots", "", ""),
        (
            "  compute_slots in-process",
            f"p50 {sp['p50_ms']:.2f} ms  p99 {sp['p99_ms']:.2f} ms",
            f"n={sp['n']}",
        ),
        (
            "  GET /v1/availability/slots",
            f"p50 {sh['p50_ms']:.2f} ms  p99 {sh['p99_ms']:.2f} ms",
            f"n={sh['n']}, errors {sh['errors']}, "
            f"server CPU {sh['server_cpu_ms_per_request']} ms/request; "
            f"target p99 <= {TARGET_SLOTS_HTTP_P99_MS:.0f} ms",
        ),
        (f"Direct bookings: {ba['clients']} concurrent clients, {ba['duration_s']:.1f} s", "", ""),
        (
            "  POST /v1/bookings",
            f"{ba['bookings_per_s']:.1f} /s  p50 {ba['p50_ms']:.1f} ms  p99 {ba['p99_ms']:.1f} ms",
            f"{ba['bookings']} booked, non-201: {ba['non_201']}, "
            f"server CPU {ba['server_cpu_ms_per_booking']} ms/booking",
        ),
        ("", "", _cpu(ba["cpu"])),
        *(
            [("", "", f"new PostgreSQL connections during the load: {ba['pg_new_connections']}")]
            if ba.get("pg_new_connections") is not None
            else []
        ),
        (
            f"  raw SQL, same statements ({br['driver'].split(',')[0]})",
            f"{br['bookings_per_s']:.1f} /s  p50 {br['p50_ms']:.1f} ms  p99 {br['p99_ms']:.1f} ms",
            f"{br['bookings']} booked, errors: {br['errors']}",
        ),
        ("", "", _cpu(br["cpu"])),
        (
            "  API / raw",
            "n/a" if ratio is None else f"{ratio:.0%}",
            f"target >= {_ratio_target(res['store']):.0%}",
        ),
        ("Memory", "", ""),
        (
            "  peak server RSS during booking load",
            f"{ba['peak_rss_mb']:.1f} MB",
            f"idle {res['idle_rss_mb']} MB, {ba['rss_samples']} samples; "
            f"target <= {TARGET_PEAK_RSS_MB:.0f} MB",
        ),
    ]
    w1 = max(len(r[0]) for r in rows)
    w2 = max(len(r[1]) for r in rows)
    lines = [f"== {res['store']} " + "=" * (w1 + w2 + 40)]
    lines += [f"{a:<{w1}}  {b:<{w2}}  {c}".rstrip() for a, b, c in rows]
    check = res.get("sql_check", {})
    if check.get("match") is False or check.get("error"):
        lines.append(f"WARNING: raw replay differs from the server's SQL: {check}")
    lines.append("Targets:")
    for t in res["targets"]:
        lines.append(f"  {t['what']:<36} {t['target']:<28} {t['value']:>10}  {_verdict(t['met'])}")
    return "\n".join(lines)


def source_info() -> dict[str, Any]:
    """Which code was measured: HEAD, and whether src/ had uncommitted changes."""
    import subprocess

    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    dirty = [line for line in git("status", "--porcelain", "--", "src").splitlines() if line]
    return {"head": git("rev-parse", "--short", "HEAD"), "src_uncommitted_files": len(dirty)}


async def main() -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # SIGTERM (and Ctrl-C, which asyncio.run handles) cancel the run; the `finally` blocks
    # then stop the server and drop the database.
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="3 s booking runs instead of 10 s")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="`slotguard serve --workers N` (default 1, the server's default)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each store, wait up to this long for the machine to be < 20%% busy",
    )
    args = parser.parse_args()
    stores = ["sqlite", "postgres"] if args.store == "both" else [args.store]

    machine = harness.machine_info()
    machine["postgres_server"] = await harness.pg_server_version()
    import sqlite3

    machine["sqlite"] = sqlite3.sqlite_version
    report_source = source_info()
    print(
        f"source: {report_source['head']} (+{report_source['src_uncommitted_files']} "
        "uncommitted files under src/)"
    )
    print(
        f"machine: {machine['nproc']} CPUs, {machine['cpu_model']}, {machine['memory_gb']} GB RAM, "
        f"Python {machine['python']}, PostgreSQL {machine['postgres_server']}, "
        f"SQLite {machine['sqlite']}",
        flush=True,
    )
    report: dict[str, Any] = {
        "source": report_source,
        "started_at": dt.datetime.now(UTC).isoformat(),
        "quick": args.quick,
        "server_workers": args.workers,
        "server_env": {k: v for k, v in os.environ.items() if k.startswith("SLOTGUARD_")},
        "machine": machine,
        "stores": {},
    }

    async def one(name: str) -> dict[str, Any]:
        if args.wait_quiet > 0:
            busy = harness.wait_for_quiet(args.wait_quiet)
            print(f"[{name}] machine {busy:.0f}% busy before starting", flush=True)
        res = await bench_store(name, quick=args.quick, workers=args.workers)
        res["targets"] = targets(res)
        return res

    return await harness.run_stores(stores, one, table, report, "results.json")


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: server stopped, throwaway database dropped", file=sys.stderr)
        sys.exit(130)
