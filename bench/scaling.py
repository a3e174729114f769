"""Booking throughput with more processes: `serve --workers N` and the standalone worker.

    .venv/bin/python bench/scaling.py [--store postgres|sqlite] [--seconds 10]
                                      [--configs 1,2,1+w,2+w]

Each configuration gets its own throwaway database and the booking load of bench/run.py
(16 clients, each on its own business, back to back). Configurations:

* `1`   `slotguard serve` (one process, embedded worker: the default)
* `2`   `slotguard serve --workers 2` (two API processes, each with an embedded worker)
* `1+w` `slotguard serve --no-worker` and one `slotguard worker` process
* `2+w` `slotguard serve --workers 2 --no-worker` and one `slotguard worker`

Printed per configuration: bookings/s and its ratio to `1` from the same run, latency, the
CPU-seconds of the API processes, of the worker process and of everything else on the
machine, peak RSS of all slotguard processes, and how long the outbox took to drain after
the load stopped (every booking queues a confirmation mail; a worker that falls behind shows
here). Figures only: nothing fails. Results also go to bench/out/scaling.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
import run

CONFIGS = {
    "1": (1, False),
    "2": (2, False),
    "1+w": (1, True),
    "2+w": (2, True),
}


async def pending_outbox(store: harness.StoreHandle) -> int:
    sql = "SELECT count(*) FROM outbox WHERE status = 'pending'"
    if store.sqlite_path is not None:
        with contextlib.closing(sqlite3.connect(store.sqlite_path, timeout=30)) as conn:
            return int(conn.execute(sql).fetchone()[0])
    conn = await asyncpg.connect(store.pg_dsn, timeout=10)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def drain_time(store: harness.StoreHandle, limit_s: float = 120.0) -> float | None:
    """Seconds until no outbox message is pending (None: still pending after `limit_s`)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit_s:
        if await pending_outbox(store) == 0:
            return round(time.perf_counter() - t0, 2)
        await asyncio.sleep(0.1)
    return None


async def settled(proc: psutil.Process, limit_s: float = 60.0) -> None:
    """Wait until a freshly started process is done starting (migrations, imports): less
    than 50 ms of CPU in half a second. Its start-up is not part of the load."""
    t0 = time.perf_counter()
    last = harness.tree_cpu_seconds(proc)
    while time.perf_counter() - t0 < limit_s:
        await asyncio.sleep(0.5)
        now = harness.tree_cpu_seconds(proc)
        if now - last < 0.05:
            return
        last = now


def _cpu(procs: list[psutil.Process]) -> float:
    return sum(harness.tree_cpu_seconds(p) for p in procs)


async def one_config(store_name: str, label: str, seconds: float) -> dict[str, Any]:
    workers, standalone = CONFIGS[label]
    out: dict[str, Any] = {"config": label, "api_processes": workers, "standalone": standalone}
    with harness.temp_workdir() as workdir:
        store = await harness.create_store(store_name, workdir)
        server = harness.Server(
            store,
            workdir,
            harness.OUT_DIR / f"scaling-{store_name}-{label}-serve.log",
            workers=workers,
            extra_args=["--no-worker"] if standalone else [],
        )
        worker: harness.Server | None = None
        try:
            server.start()
            await server.wait_ready()
            if standalone:
                worker = harness.Server(
                    store,
                    workdir,
                    harness.OUT_DIR / f"scaling-{store_name}-{label}-worker.log",
                    command="worker",
                )
                worker.start()
            assert server.proc is not None
            api_proc = psutil.Process(server.proc.pid)
            worker_proc = psutil.Process(worker.proc.pid) if worker and worker.proc else None
            api = run.Api(server.base_url, server.api_key)
            try:
                biz = [
                    await api.business(f"Open {i}", "UTC", run.OPEN_RULES)
                    for i in range(run.CLIENTS)
                ]
            finally:
                await api.close()
            if worker_proc is not None:
                await settled(worker_proc)
            procs = [api_proc] + ([worker_proc] if worker_proc else [])
            api0, worker0 = _cpu([api_proc]), _cpu([worker_proc]) if worker_proc else 0.0
            peak = 0.0

            async def sample_rss() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, sum(harness.tree_rss(p) for p in procs) / 2**20)
                    await asyncio.sleep(0.05)

            sampler = asyncio.create_task(sample_rss())
            try:
                load = await run.booking_load(
                    server.base_url, server.api_key, biz, duration_s=seconds,
                    server_pid=server.proc.pid,
                    pg_dsn=store.pg_dsn if store.pg_database else None,
                )  # fmt: skip
                out["drain_s"] = await drain_time(store)
            finally:
                sampler.cancel()
            out["api_cpu_s"] = round(_cpu([api_proc]) - api0, 2)
            out["worker_cpu_s"] = round(_cpu([worker_proc]) - worker0, 2) if worker_proc else 0.0
            out["peak_rss_mb"] = round(peak, 1)
            c = load["cpu"]
            # CpuMeter counts the standalone worker as "other": take it back out.
            out["other_cpu_s"] = round(max(0.0, c["other_cpu_s"] - out["worker_cpu_s"]), 2)
            out["postgres_cpu_s"] = c["postgres_cpu_s"]
            out["bench_cpu_s"] = c["bench_cpu_s"]
            for k in ("bookings_per_s", "bookings", "non_201", "p50_ms", "p99_ms", "duration_s"):
                out[k] = load[k]
        finally:
            if worker is not None:
                out["worker_exit_code"] = worker.stop()
            out["server_exit_code"] = server.stop()
            await harness.drop_store(store)
    return out


def line(r: dict[str, Any], base: float | None) -> str:
    ratio = f"{r['bookings_per_s'] / base:.2f}x" if base else "-"
    drain = f"{r['drain_s']} s" if r["drain_s"] is not None else "> 120 s"
    return (
        f"  {r['config']:<4} {r['bookings_per_s']:7.1f} /s  {ratio:>6}  "
        f"p50 {r['p50_ms']:6.1f} ms  p99 {r['p99_ms']:6.1f} ms  non-201 {r['non_201']}  "
        f"CPU-s api {r['api_cpu_s']}, worker {r['worker_cpu_s']}, postgres "
        f"{r['postgres_cpu_s']}, bench {r['bench_cpu_s']}, other {r['other_cpu_s']}  "
        f"peak RSS {r['peak_rss_mb']} MB  outbox drained {drain} after the load"
    )


async def main() -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--configs", default="1,2,1+w,2+w")
    args = parser.parse_args()
    labels = [x.strip() for x in args.configs.split(",") if x.strip()]
    unknown = [x for x in labels if x not in CONFIGS]
    if unknown:
        parser.error(f"unknown configuration(s): {unknown}; known: {list(CONFIGS)}")
    machine = harness.machine_info()
    print(
        f"source: {run.source_info()['head']}; {machine['nproc']} CPUs, {machine['cpu_model']}; "
        f"{args.store}, {run.CLIENTS} clients, {args.seconds:.0f} s per configuration",
        flush=True,
    )
    results = []
    for label in labels:
        print(f"[{label}] running", flush=True)
        results.append(await one_config(args.store, label, args.seconds))
    base = next((r["bookings_per_s"] for r in results if r["config"] == "1"), None)
    print(f"== scaling, {args.store} (ratio: bookings/s against `1` in this run) ==")
    for r in results:
        print(line(r, base))
    harness.OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = harness.OUT_DIR / "scaling.json"
    report = {"store": args.store, "machine": machine, "source": run.source_info()}
    report["env"] = {k: v for k, v in os.environ.items() if k.startswith("SLOTGUARD_")}
    report["results"] = results
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
