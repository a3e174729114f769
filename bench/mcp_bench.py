"""MCP benchmark: `find_slots` and `hold_slot` through `/mcp` next to the same calls over HTTP.

    .venv/bin/python bench/mcp_bench.py [--store sqlite|postgres|both] [--requests 200]

Against a real `slotguard serve` process (see harness.py), per store, on one business open
every day with 100 busy intervals over the next 7 days:

1. `GET /v1/availability/slots` (7-day window, limit 50) with `httpx`, then the `find_slots`
   tool with the same arguments through the MCP SDK's own client over streamable HTTP
   (`/mcp` of the same server, bearer key); sequential, keep-alive, after warm-up calls.
2. `POST /v1/availability` (one 30-minute slot in a 9-hour window), then the `hold_slot`
   tool; each call with a fresh idempotency key so nothing is replayed, each hold released
   again (not timed) so every call sees the same state.

Printed: p50/p99 of each and the difference (the MCP layer's cost: JSON-RPC framing, the
in-process API call it makes, and for `hold_slot` the hold's re-read that reports its live
status). Target: the MCP layer adds no more than a few milliseconds (p50 ≤ 5 ms more).
Figures only: nothing here fails. Output on stdout and in bench/out/mcp.json.
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
import httpx2
from mcp.client.streamable_http import streamable_http_client

from mcp import Client

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness

TARGET_EXTRA_P50_MS = 5.0
ALL_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
OPEN = {
    "working_hours": [{"days": ALL_DAYS, "start": "00:00", "end": "24:00"}],
    "max_advance_days": 3650,
}
OUT = Path(__file__).resolve().parent / "out"
WARMUP = 20


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


async def setup(server: harness.Server) -> tuple[str, dt.datetime]:
    day0 = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    headers = {"Authorization": f"Bearer {server.api_key}"}
    rng = random.Random(7)
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=30) as c:
        r = await c.post("/v1/businesses", json={"name": "mcp", "timezone": "UTC", "rules": OPEN})
        r.raise_for_status()
        biz = str(r.json()["data"]["id"])
        for _ in range(100):
            start = day0 + dt.timedelta(minutes=5 * rng.randrange(7 * 24 * 12))
            end = start + dt.timedelta(minutes=rng.choice([15, 30, 45, 60]))
            r = await c.post(
                f"/v1/businesses/{biz}/busy", json={"start": iso(start), "end": iso(end)}
            )
            r.raise_for_status()
    return biz, day0


def summary(samples: list[int]) -> dict[str, Any]:
    return harness.latency_summary(samples[WARMUP:])


async def timed(n: int, call: Any) -> list[int]:
    samples = []
    for i in range(n + WARMUP):
        t0 = time.perf_counter_ns()
        await call(i)
        samples.append(time.perf_counter_ns() - t0)
    return samples


async def run_store(name: str, n: int) -> dict[str, Any]:
    with harness.temp_workdir() as workdir:
        store = await harness.create_store(name, workdir)
        server = harness.Server(store, workdir, OUT / f"mcp-{name}.log")
        try:
            server.start()
            await server.wait_ready()
            return await measure(server, n) | {"store": name}
        finally:
            server.stop()
            await harness.drop_store(store)


async def measure(server: harness.Server, n: int) -> dict[str, Any]:
    biz, day0 = await setup(server)
    headers = {"Authorization": f"Bearer {server.api_key}"}
    slots_args = {
        "business_id": biz,
        "start": iso(day0),
        "end": iso(day0 + dt.timedelta(days=7)),
        "duration_minutes": 30,
        "limit": 50,
    }
    window = (iso(day0 + dt.timedelta(hours=9)), iso(day0 + dt.timedelta(hours=18)))
    out: dict[str, Any] = {}
    async with (
        httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=30) as c,
        httpx2.AsyncClient(headers=headers, timeout=30) as h2,
        Client(streamable_http_client(f"{server.base_url}/mcp", http_client=h2)) as mc,
    ):

        async def http_slots(_: int) -> None:
            r = await c.get("/v1/availability/slots", params=slots_args)
            r.raise_for_status()

        async def mcp_slots(_: int) -> None:
            r = await mc.call_tool("find_slots", slots_args)
            if r.is_error:
                raise RuntimeError(f"find_slots failed: {r.content}")

        async def http_hold(_: int) -> None:
            body = {
                "business_id": biz,
                "duration_minutes": 30,
                "window": {"start": window[0], "end": window[1]},
            }
            t0 = time.perf_counter_ns()
            r = await c.post(
                "/v1/availability", json=body, headers={"Idempotency-Key": uuid.uuid4().hex}
            )
            r.raise_for_status()
            hold_samples.append(time.perf_counter_ns() - t0)
            (await c.delete(f"/v1/holds/{r.json()['data']['hold_id']}")).raise_for_status()

        async def mcp_hold(_: int) -> None:
            args = {
                "business_id": biz,
                "window_start": window[0],
                "window_end": window[1],
                "duration_minutes": 30,
                "idempotency_key": uuid.uuid4().hex,
            }
            t0 = time.perf_counter_ns()
            r = await mc.call_tool("hold_slot", args)
            hold_samples.append(time.perf_counter_ns() - t0)
            if r.is_error or not r.structured_content:
                raise RuntimeError(f"hold_slot failed: {r.content}")
            (await c.delete(f"/v1/holds/{r.structured_content['hold_id']}")).raise_for_status()

        out["find_slots_http"] = summary(await timed(n, http_slots))
        out["find_slots_mcp"] = summary(await timed(n, mcp_slots))
        hold_samples: list[int] = []
        await timed(n, http_hold)
        out["hold_http"] = summary(hold_samples)
        hold_samples = []
        await timed(n, mcp_hold)
        out["hold_mcp"] = summary(hold_samples)
    return out


def line(store: str, what: str, http: dict[str, Any], mcp: dict[str, Any]) -> str:
    extra = round(mcp["p50_ms"] - http["p50_ms"], 2)
    verdict = "met" if extra <= TARGET_EXTRA_P50_MS else "MISSED"
    return (
        f"[{store}] {what}: HTTP p50 {http['p50_ms']} ms / p99 {http['p99_ms']} ms; "
        f"MCP p50 {mcp['p50_ms']} ms / p99 {mcp['p99_ms']} ms; MCP adds {extra} ms at p50 "
        f"(target <= {TARGET_EXTRA_P50_MS} ms: {verdict})"
    )


async def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    stores = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    results: dict[str, Any] = {"machine": harness.machine_info(), "stores": {}}
    for name in stores:
        res = await run_store(name, args.requests)
        results["stores"][name] = res
        slots = (res["find_slots_http"], res["find_slots_mcp"])
        print(line(name, "find_slots (7 days, 50 slots)", *slots))
        print(line(name, "hold_slot (9 h window)", res["hold_http"], res["hold_mcp"]))
    OUT.mkdir(exist_ok=True)
    (OUT / "mcp.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
