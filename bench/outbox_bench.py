"""Outbox benchmark: how late do webhooks arrive, and how fast does one worker deliver?

    .venv/bin/python bench/outbox_bench.py [--store sqlite|postgres|both] [--seconds 10]
                                           [--messages 5000]

Three runs per store, each against a real `slotguard serve` / `slotguard worker` process
(see harness.py) and a webhook receiver in this process on 127.0.0.1 that answers 200 at once:

1. baseline: 16 clients book as fast as they can with the worker switched off
   (`SLOTGUARD_EMBEDDED_WORKER=0`): the API's booking rate without any delivery work.
2. end to end: the same load with the embedded worker on; for every booking the delay from
   the client receiving its 201 to the receiver getting the `booking.created` webhook
   (p50/p99/max), and the booking rate while the worker delivers. Target p99 <= 1 s.
   `server_request_start_to_send` is the same on the server's clock, but measured from the
   start of the booking request (it includes the request's own processing).
3. worker throughput: `--messages` webhook messages are written straight into the outbox
   (as the booking transactions would), then one `slotguard worker` process alone delivers
   them; webhooks/s between the first and the last arrival.

Figures only: nothing here fails. Output on stdout and in bench/out/outbox.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness

from slotguard.ids import new_id
from slotguard.store.db import Database
from slotguard.store.migrate import upgrade_to_head
from slotguard.store.models import OutboxMessage

CLIENTS = 16
TARGET_P99_MS = 1000.0
ALL_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
OPEN = {
    "working_hours": [{"days": ALL_DAYS, "start": "00:00", "end": "24:00"}],
    "max_advance_days": 3650,
}
SLOT = dt.timedelta(minutes=15)


# --- the receiver ---------------------------------------------------------------------------


@dataclass
class Receiver:
    """Minimal HTTP/1.1 keep-alive server: notes the arrival time of each webhook."""

    arrivals: dict[str, float] = field(default_factory=dict)  # booking id -> first arrival
    count: int = 0
    first: float | None = None
    last: float | None = None
    port: int = 0
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:].strip())
                body = await reader.readexactly(length)
                now = time.monotonic()
                self.count += 1
                self.first = now if self.first is None else self.first
                self.last = now
                booking_id = json.loads(body)["data"].get("id")
                if booking_id:
                    self.arrivals.setdefault(booking_id, now)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


# --- load -----------------------------------------------------------------------------------


async def setup(server: harness.Server, receiver: Receiver, *, with_endpoint: bool) -> list[str]:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=30) as http:
        businesses = []
        for i in range(CLIENTS):
            r = await http.post(
                "/v1/businesses",
                json={"name": f"Bench {i}", "timezone": "UTC", "rules": OPEN},
            )
            r.raise_for_status()
            businesses.append(r.json()["data"]["id"])
        if with_endpoint:
            r = await http.post(
                "/v1/webhook-endpoints",
                json={
                    "url": f"http://127.0.0.1:{receiver.port}/hook",
                    "events": ["booking.created"],
                },
            )
            r.raise_for_status()
    return businesses


async def book_for(
    server: harness.Server, businesses: list[str], seconds: float
) -> tuple[dict[str, float], int, float]:
    """16 clients, one business each, consecutive slots: {booking id: 201 time}, errors."""
    acked: dict[str, float] = {}
    errors = 0
    day0 = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    day0 += dt.timedelta(days=1)
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(
        base_url=server.base_url,
        headers={"Authorization": f"Bearer {server.api_key}"},
        timeout=30,
        limits=limits,
    ) as http:
        start = time.monotonic()
        deadline = start + seconds

        async def client(business_id: str) -> None:
            nonlocal errors
            k = 0
            while time.monotonic() < deadline:
                t = day0 + k * SLOT
                k += 1
                r = await http.post(
                    "/v1/bookings",
                    json={
                        "business_id": business_id,
                        "start_time": t.isoformat(),
                        "end_time": (t + SLOT).isoformat(),
                    },
                    headers={"Idempotency-Key": uuid.uuid4().hex},
                )
                if r.status_code == 201:
                    acked[r.json()["data"]["id"]] = time.monotonic()
                else:
                    errors += 1

        await asyncio.gather(*(client(b) for b in businesses))
        elapsed = time.monotonic() - start
    return acked, errors, elapsed


def _ms(values: list[float]) -> dict[str, float]:
    ns = [int(v * 1e9) for v in values]
    return harness.latency_summary(ns)


@dataclass
class Env:
    values: dict[str, str]

    def __enter__(self) -> None:
        self._old = {k: os.environ.get(k) for k in self.values}
        os.environ.update(self.values)

    def __exit__(self, *exc: object) -> None:
        for k, v in self._old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


async def run_bookings(
    store_name: str, workdir: Path, seconds: float, *, worker: bool
) -> dict[str, Any]:
    receiver = Receiver()
    await receiver.start()
    store = await harness.create_store(store_name, workdir)
    label = "e2e" if worker else "baseline"
    server = harness.Server(store, workdir, harness.OUT_DIR / f"outbox-{store_name}-{label}.log")
    env = {
        "SLOTGUARD_ALLOW_PRIVATE_WEBHOOKS": "1",
        "SLOTGUARD_EMBEDDED_WORKER": "1" if worker else "0",
    }
    try:
        with Env(env):
            server.start()
        await server.wait_ready()
        businesses = await setup(server, receiver, with_endpoint=True)
        assert server.proc is not None
        ps = psutil.Process(server.proc.pid)
        cpu0 = harness.tree_cpu_seconds(ps)
        acked, errors, elapsed = await book_for(server, businesses, seconds)
        cpu = harness.tree_cpu_seconds(ps) - cpu0
        result: dict[str, Any] = {
            "bookings": len(acked),
            "errors": errors,
            "bookings_per_s": round(len(acked) / elapsed, 1),
            "server_cpu_ms_per_booking": round(cpu * 1000 / max(len(acked), 1), 2),
            "server_cpu_util": round(cpu / elapsed, 2),
        }
        if worker:
            drain_deadline = time.monotonic() + 60
            while time.monotonic() < drain_deadline and not set(acked) <= set(receiver.arrivals):
                await asyncio.sleep(0.05)
            delays = [receiver.arrivals[b] - t for b, t in acked.items() if b in receiver.arrivals]
            result["missing_webhooks"] = len(set(acked) - set(receiver.arrivals))
            result["delay_201_to_webhook"] = _ms(delays)
            result["webhooks_before_201"] = sum(1 for d in delays if d < 0)
            result["server_request_start_to_send"] = await server_side_delays(store.url)
        return result
    finally:
        server.stop()
        await receiver.stop()
        await harness.drop_store(store)


async def server_side_delays(url: str) -> dict[str, float]:
    """From the booking request's start (the outbox row's created_at is the request time) to
    the worker sending the webhook, on the server's clock: includes the request itself."""
    from sqlalchemy import text

    db = Database.connect(url, pool_size=1)
    try:
        async with db.read() as s:
            rows = (
                await s.execute(
                    text(
                        "SELECT o.created_at, d.attempted_at FROM outbox o "
                        "JOIN webhook_deliveries d ON d.outbox_id = o.id WHERE d.attempt = 1"
                    )
                )
            ).all()
    finally:
        await db.dispose()

    def instant(v: Any) -> dt.datetime:
        return dt.datetime.fromisoformat(v) if isinstance(v, str) else v

    return _ms([(instant(b) - instant(a)).total_seconds() for a, b in rows])


async def run_worker_throughput(store_name: str, workdir: Path, n: int) -> dict[str, Any]:
    receiver = Receiver()
    await receiver.start()
    store = await harness.create_store(store_name, workdir)
    server = harness.Server(store, workdir, harness.OUT_DIR / f"outbox-{store_name}-api.log")
    log_path = harness.OUT_DIR / f"outbox-{store_name}-worker.log"
    proc: subprocess.Popen[bytes] | None = None
    try:
        with Env({"SLOTGUARD_ALLOW_PRIVATE_WEBHOOKS": "1", "SLOTGUARD_EMBEDDED_WORKER": "0"}):
            server.start()
        await server.wait_ready()
        await setup(server, receiver, with_endpoint=True)
        server.stop()
        await asyncio.to_thread(upgrade_to_head, store.url)
        db = Database.connect(store.url, pool_size=2)
        try:
            async with db.read() as s:
                from sqlalchemy import text

                account_id, endpoint_id = (
                    await s.execute(text("SELECT account_id, id FROM webhook_endpoints"))
                ).one()
            now = dt.datetime.now(dt.UTC)
            rows = []
            for _ in range(n):
                event_id = new_id("evt")
                booking_id = new_id("bk")
                rows.append(
                    OutboxMessage(
                        id=new_id("obx"), account_id=account_id, kind="webhook",
                        event_type="booking.created", event_id=event_id,
                        endpoint_id=endpoint_id, booking_id=booking_id, hold_id=None,
                        payload={"type": "booking.created", "id": event_id,
                                 "created_at": now.isoformat(),
                                 "data": {"id": booking_id, "status": "confirmed",
                                          "title": "Benchmark booking " + "x" * 400}},
                        progress={}, status="pending", attempts=0, next_attempt_at=now,
                        locked_by=None, locked_until=None, last_error=None,
                        created_at=now, updated_at=now, delivered_at=None,
                    )
                )  # fmt: skip
            for i in range(0, n, 1000):
                async with db.write() as s:
                    s.add_all(rows[i : i + 1000])
        finally:
            await db.dispose()
        env = dict(os.environ)
        env.update(
            DATABASE_URL=store.url,
            SLOTGUARD_ALLOW_PRIVATE_WEBHOOKS="1",
            SLOTGUARD_LOG_LEVEL="WARNING",
        )
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [*harness._slotguard_command(), "worker"],
                cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
            deadline = time.monotonic() + 300
            while receiver.count < n and time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError(f"worker exited {proc.returncode}; see {log_path}")
                await asyncio.sleep(0.05)
        assert receiver.first is not None
        assert receiver.last is not None
        span = receiver.last - receiver.first
        return {
            "messages": n,
            "delivered": receiver.count,
            "seconds": round(span, 2),
            "webhooks_per_s": round((receiver.count - 1) / span, 1) if span > 0 else None,
        }
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(30)
        server.stop()
        await receiver.stop()
        await harness.drop_store(store)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--skip", action="append", default=[], help="baseline|e2e|throughput")
    args = parser.parse_args()
    stores = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    harness.OUT_DIR.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"machine": harness.machine_info(), "stores": {}}
    for store in stores:
        out: dict[str, Any] = {}
        with harness.temp_workdir() as workdir:
            if "baseline" not in args.skip:
                out["baseline"] = await run_bookings(store, workdir, args.seconds, worker=False)
                print(f"[{store}] baseline (no worker): {out['baseline']}", flush=True)
        with harness.temp_workdir() as workdir:
            if "e2e" not in args.skip:
                out["e2e"] = await run_bookings(store, workdir, args.seconds, worker=True)
                p99 = out["e2e"]["delay_201_to_webhook"]["p99_ms"]
                verdict = "ok" if p99 <= TARGET_P99_MS else "MISSED"
                print(
                    f"[{store}] end to end (embedded worker): {out['e2e']} "
                    f"target p99 <= {TARGET_P99_MS:.0f} ms: {verdict}",
                    flush=True,
                )
        with harness.temp_workdir() as workdir:
            if "throughput" not in args.skip:
                out["throughput"] = await run_worker_throughput(store, workdir, args.messages)
                print(f"[{store}] one worker alone: {out['throughput']}", flush=True)
        results["stores"][store] = out
    (harness.OUT_DIR / "outbox.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
