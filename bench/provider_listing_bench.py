"""Slot listings of a business with connected Google and Microsoft calendars, next to the same
listing of a business without calendars.

    .venv/bin/python bench/provider_listing_bench.py [--store sqlite|postgres|both] [--requests 300]

Against a real `slotguard serve` process (see harness.py), per store. The Google and
Microsoft Graph fakes of the test suite (tests/fakes/google.py, tests/fakes/graph.py) run
as real HTTP servers on 127.0.0.1 (uvicorn in threads of this process, as tests/oauth
starts them), and the server is configured for them through its ordinary settings
(`SLOTGUARD_GOOGLE_*_URL`, `SLOTGUARD_MICROSOFT_*_URL`). Nothing is written into the
database behind the server's back:

1. The Google account holds 1,200 events and the Microsoft mailbox 800, at seeded random
   5-minute marks over the next 30 days, 15-60 minutes each; one in ten is a weekly series
   of 4 occurrences (Google: instances of a recurring event as `singleEvents=true` lists
   them; Graph: occurrences sharing a `seriesMasterId`), so 2,600 busy intervals in all,
   as in calendar_bench.py.
2. Business A connects both through the API (`POST /v1/businesses/{id}/calendars` with a
   refresh token) and the server's embedded worker syncs them (the real sync engine,
   talking HTTP to the fakes). Business B has the same rules and no calendar.
3. `GET /v1/availability/slots` over 30 days, A and B in alternating blocks of 10 requests
   on one keep-alive connection each, after 30 warm-up requests: p50/p99 of each and the
   server's CPU per request (calendar_bench.slot_latency, the same measurement as for the
   CalDAV calendars). Target (issue 10, as part 1): p99(A) <= 1.10 x p99(B).

The fakes are idle while the listings run (the sync interval is an hour), so they cost the
measured phase nothing; the CPU-s line says what every process used meanwhile.

Figures only: a missed target prints MISSED and the exit status stays 0; it is 1 only when
the harness broke. Output on stdout and in bench/out/provider_listing.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import logging
import os
import random
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

import calendar_bench  # noqa: E402
import harness  # noqa: E402
from tests.fakes.common import provider_env, serve  # noqa: E402
from tests.fakes.google import GoogleFake  # noqa: E402
from tests.fakes.graph import GraphFake  # noqa: E402

TARGET_RATIO = calendar_bench.TARGET_RATIO
SECRET_KEY = "bench provider key " + uuid.uuid4().hex
GOOGLE_USER = "owner@example.com"
MS_USER = "owner@contoso.example"
GOOGLE_EVENTS, MS_EVENTS = 1200, 800
SERIES_EVERY, SERIES_COUNT = 10, 4  # one event in ten is a weekly series of 4 occurrences
DAYS = calendar_bench.DAYS
WEEK = dt.timedelta(days=7)


def expected_busy(events: int) -> int:
    series = len(range(0, events, SERIES_EVERY))
    return events - series + series * SERIES_COUNT


def seed_fakes(google: GoogleFake, graph: GraphFake, rng: random.Random) -> tuple[str, str]:
    """The owners' calendars; returns the refresh tokens (Google, Microsoft)."""
    g_refresh, m_refresh = google.add_user(GOOGLE_USER), graph.add_user(MS_USER)
    day0 = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)

    def when() -> tuple[dt.datetime, dt.timedelta]:
        start = day0 + dt.timedelta(days=1 + rng.randrange(DAYS), minutes=5 * rng.randrange(288))
        return start, dt.timedelta(minutes=rng.choice((15, 30, 45, 60)))

    for i in range(GOOGLE_EVENTS):
        start, length = when()
        if i % SERIES_EVERY == 0:
            google.add_series(
                GOOGLE_USER, first_start=start, duration=length, count=SERIES_COUNT, every=WEEK
            )
        else:
            google.add_event(GOOGLE_USER, start=start, end=start + length)
    for i in range(MS_EVENTS):
        start, length = when()
        if i % SERIES_EVERY == 0:
            master = f"AAMkseries{i:05d}"
            for k in range(SERIES_COUNT):
                at = start + k * WEEK
                graph.add_event(MS_USER, start=at, end=at + length, series_master_id=master)
        else:
            graph.add_event(MS_USER, start=start, end=start + length)
    return g_refresh, m_refresh


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """`values` in os.environ (which harness.Server passes on) for the block only."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def server_env(google_url: str, graph_url: str) -> dict[str, str]:
    return {
        "SLOTGUARD_SECRET_KEY": SECRET_KEY,
        **provider_env(google_url, graph_url),
        # One sync at connect by the embedded worker; none while the listings run.
        "SLOTGUARD_CALENDAR_SYNC_SECONDS": "3600",
    }


async def connect(c: httpx.AsyncClient, business_id: str, provider: str, refresh: str) -> str:
    r = await c.post(
        f"/v1/businesses/{business_id}/calendars",
        json={"provider": provider, "role": "busy", "refresh_token": refresh},
    )
    if r.status_code != 201:
        raise RuntimeError(f"connecting {provider}: {r.status_code} {r.text}")
    return str(r.json()["data"]["id"])


async def bench_store(name: str, *, requests: int) -> dict[str, Any]:
    google, graph = GoogleFake(), GraphFake()
    g_refresh, m_refresh = seed_fakes(google, graph, random.Random(20261203))
    with (
        harness.temp_workdir() as workdir,
        serve(google.app) as google_url,
        serve(graph.app) as graph_url,
        environment(server_env(google_url, graph_url)),
    ):
        graph.base_url = graph_url  # the fake's nextLink/deltaLink point at itself
        store = await harness.create_store(name, workdir)
        server = harness.Server(store, workdir, harness.OUT_DIR / f"server-providers-{name}.log")
        try:
            server.start()
            await server.wait_ready()
            assert server.proc is not None
            headers = {"Authorization": f"Bearer {server.api_key}"}
            async with httpx.AsyncClient(
                base_url=server.base_url, headers=headers, timeout=60
            ) as c:
                a = await calendar_bench.make_business(c, "with Google and Microsoft")
                b = await calendar_bench.make_business(c, "without")
                ids = [
                    await connect(c, a, "google", g_refresh),
                    await connect(c, a, "microsoft", m_refresh),
                ]
                t0 = time.monotonic()
                counts = await calendar_bench.wait_synced(c, a, ids)
                synced_s = time.monotonic() - t0
            expected = [expected_busy(GOOGLE_EVENTS), expected_busy(MS_EVENTS)]
            requests_made = {
                "google_events_list": len(google.calls("list")),
                "graph_delta": len(graph.calls("delta")),
            }
            print(
                f"[{name}] synced by the server's worker: Google {counts[0]}, Microsoft "
                f"{counts[1]} busy intervals (expected {expected}) in {synced_s:.1f} s; "
                f"requests: {requests_made}",
                flush=True,
            )
            with harness.CpuMeter(server.proc.pid) as meter:
                slots = await calendar_bench.slot_latency_both(server, a, b, requests)
            return {
                "store": name,
                "events": {"google": GOOGLE_EVENTS, "microsoft": MS_EVENTS},
                "busy_intervals": counts,
                "busy_intervals_expected": expected,
                "sync_requests": requests_made,
                "synced_s": round(synced_s, 2),
                "slots": slots,
                "cpu": meter.result,
            }
        finally:
            server.stop()
            await harness.drop_store(store)


def table(res: dict[str, Any]) -> str:
    s, cpu = res["slots"], res["cpu"]
    g, m = res["busy_intervals"]
    note = ""
    if res["busy_intervals"] != res["busy_intervals_expected"]:
        note = f", WARNING: expected {res['busy_intervals_expected']}"
    return "\n".join(
        [
            f"[{res['store']}] GET /v1/availability/slots, {DAYS} days, "
            f"{s['with']['n']} requests each",
            f"  with Google + Microsoft ({g} + {m} busy intervals{note}): "
            f"p50 {s['with']['p50_ms']} ms, p99 {s['with']['p99_ms']} ms, "
            f"{s['with']['slots']} slots, server CPU {s['with']['server_cpu_ms_per_request']} ms",
            f"  without calendars: p50 {s['without']['p50_ms']} ms, "
            f"p99 {s['without']['p99_ms']} ms, {s['without']['slots']} slots, "
            f"server CPU {s['without']['server_cpu_ms_per_request']} ms",
            f"  p99 ratio {s['p99_ratio']} ({s['target']}): "
            f"{'met' if s['met'] else 'MISSED'}; server CPU ratio {s['cpu_ratio']}",
            calendar_bench.same_count_line(s),
            f"  CPU-s: server {cpu['server_cpu_s']}, bench {cpu['bench_cpu_s']}, "
            f"postgres {cpu['postgres_cpu_s']}, other {cpu['other_cpu_s']} "
            f"in {cpu['wall_s']} s (machine {cpu['machine_busy_pct']} % busy)",
        ]
    )


async def main() -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    stores = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    report: dict[str, Any] = {
        "started_at": dt.datetime.now(dt.UTC).isoformat(),
        "machine": harness.machine_info(),
        "stores": {},
    }

    async def one(name: str) -> dict[str, Any]:
        return await bench_store(name, requests=args.requests)

    return await harness.run_stores(stores, one, table, report, "provider_listing.json")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
