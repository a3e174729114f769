"""Holds benchmark: two-phase round trips and the hold call's latency.

    .venv/bin/python bench/holds_bench.py [--store sqlite|postgres|both] [--seconds 10]

Against a real `slotguard serve` process (see harness.py), per store:

1. hold + confirm round trips: 16 concurrent agents, each on its own business, loop
   `POST /v1/availability` (one 30-minute slot, ttl 300 s) then
   `POST /v1/bookings/{hold_id}/confirm`; round trips/s and p50/p99 of a whole round trip.
2. `POST /v1/availability` latency for a 9-hour window on a business with 200 busy
   intervals (sequential, keep-alive, each hold released again so the state stays the same);
   p50/p99. Target: p99 <= 25 ms.

Figures only: nothing here fails. Output on stdout and in bench/out/holds.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness

AGENTS = 16
TARGET_P99_MS = 25.0
ALL_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
OPEN = {
    "working_hours": [{"days": ALL_DAYS, "start": "00:00", "end": "24:00"}],
    "max_advance_days": 3650,
    "slot_interval_minutes": 30,
}
OUT = Path(__file__).resolve().parent / "out"


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


async def make_business(c: httpx.AsyncClient, rules: dict[str, Any], tz: str = "UTC") -> str:
    r = await c.post("/v1/businesses", json={"name": "bench", "timezone": tz, "rules": rules})
    r.raise_for_status()
    return str(r.json()["data"]["id"])


async def round_trips(server: harness.Server, seconds: float) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    day0 = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=30) as c:
        businesses = [await make_business(c, OPEN) for _ in range(AGENTS)]
    latencies: list[int] = []
    failures: dict[str, int] = {}
    stop_at = time.monotonic() + seconds

    async def agent(business_id: str) -> None:
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=30) as c:
            i = 0
            while time.monotonic() < stop_at:
                start = day0 + dt.timedelta(minutes=30 * i)
                i += 1
                t0 = time.perf_counter_ns()
                r = await c.post(
                    "/v1/availability",
                    json={
                        "business_id": business_id,
                        "duration_minutes": 30,
                        "ttl_seconds": 300,
                        "window": {
                            "start": iso(start),
                            "end": iso(start + dt.timedelta(minutes=30)),
                        },
                    },
                )
                if r.status_code != 200:
                    failures[f"hold {r.status_code}"] = failures.get(f"hold {r.status_code}", 0) + 1
                    continue
                hold_id = r.json()["data"]["hold_id"]
                r = await c.post(
                    f"/v1/bookings/{hold_id}/confirm",
                    json={"title": "bench"},
                    headers={"Idempotency-Key": uuid.uuid4().hex},
                )
                if r.status_code != 200:
                    key = f"confirm {r.status_code}"
                    failures[key] = failures.get(key, 0) + 1
                    continue
                latencies.append(time.perf_counter_ns() - t0)

    t0 = time.monotonic()
    await asyncio.gather(*(agent(b) for b in businesses))
    elapsed = time.monotonic() - t0
    return {
        "agents": AGENTS,
        "seconds": round(elapsed, 2),
        "round_trips": len(latencies),
        "round_trips_per_s": round(len(latencies) / elapsed, 1),
        "failures": failures,
        **harness.latency_summary(latencies),
    }


async def hold_latency(server: harness.Server, n: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    rng = random.Random(3)
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=30) as c:
        biz = await make_business(
            c,
            {
                "working_hours": [{"days": ALL_DAYS, "start": "08:00", "end": "17:00"}],
                "buffer_minutes": 5,
                "slot_interval_minutes": 15,
            },
            tz="Europe/Berlin",
        )
        day = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).replace(
            hour=7, minute=0, second=0, microsecond=0
        )  # 08:00 Berlin (CET)
        window = {"start": iso(day), "end": iso(day + dt.timedelta(hours=9))}
        # 200 busy intervals: most of the window is taken, a few gaps stay free.
        for _ in range(200):
            s = day + dt.timedelta(minutes=rng.randrange(-12 * 60, 21 * 60, 5))
            r = await c.post(
                f"/v1/businesses/{biz}/busy",
                json={
                    "start": iso(s),
                    "end": iso(s + dt.timedelta(minutes=rng.choice([5, 10, 15]))),
                },
            )
            r.raise_for_status()
        body = {"business_id": biz, "duration_minutes": 30, "window": window}
        for _ in range(20):  # warm-up
            r = await c.post("/v1/availability", json=body)
            if r.status_code == 200:
                await c.delete(f"/v1/holds/{r.json()['data']['hold_id']}")
        samples: list[int] = []
        statuses: dict[int, int] = {}
        for _ in range(n):
            t0 = time.perf_counter_ns()
            r = await c.post("/v1/availability", json=body)
            samples.append(time.perf_counter_ns() - t0)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if r.status_code == 200:
                await c.delete(f"/v1/holds/{r.json()['data']['hold_id']}")
    return {
        "busy_intervals": 200,
        "window_hours": 9,
        "statuses": statuses,
        **harness.latency_summary(samples),
    }


async def run_store(name: str, seconds: float, n: int) -> dict[str, Any]:
    with harness.temp_workdir() as workdir:
        store = await harness.create_store(name, workdir)
        server = harness.Server(store, workdir, OUT / f"holds-{name}.log")
        try:
            server.start()
            await server.wait_ready()
            assert server.proc is not None
            with harness.CpuMeter(server.proc.pid) as cpu:
                hold_confirm = await round_trips(server, seconds)
            hold_confirm["cpu"] = cpu.result
            result = {
                "store": name,
                "hold_confirm": hold_confirm,
                "hold_latency": await hold_latency(server, n),
            }
        finally:
            server.stop()
            await harness.drop_store(store)
    return result


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    stores = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    results = {"machine": harness.machine_info(), "stores": {}}
    for name in stores:
        res = await run_store(name, args.seconds, args.requests)
        results["stores"][name] = res
        hc, hl = res["hold_confirm"], res["hold_latency"]
        met = "met" if hl["p99_ms"] <= TARGET_P99_MS else "NOT met"
        print(
            f"[{name}] hold+confirm: {hc['round_trips_per_s']} round trips/s with {AGENTS} "
            f"agents (p50 {hc['p50_ms']} ms, p99 {hc['p99_ms']} ms, failures {hc['failures']})"
        )
        c = hc["cpu"]
        print(
            f"[{name}]   CPU-s during the round trips: server {c['server_cpu_s']}, bench "
            f"{c['bench_cpu_s']}, postgres {c['postgres_cpu_s']}, other {c['other_cpu_s']} "
            f"(machine {c['machine_busy_pct']}% busy)"
        )
        print(
            f"[{name}] POST /v1/availability, 9 h window, 200 busy: p50 {hl['p50_ms']} ms, "
            f"p99 {hl['p99_ms']} ms (target <= {TARGET_P99_MS} ms: {met}); "
            f"statuses {hl['statuses']}"
        )
    OUT.mkdir(exist_ok=True)
    (OUT / "holds.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
