"""Kill test: SIGKILL a real `slotguard serve` on PostgreSQL while clients book; lose nothing.

One `slotguard serve` process (API + embedded worker) on a throwaway PostgreSQL database,
a webhook receiver and an SMTP server (aiosmtpd) in this test process. For each kill point:
16 clients book distinct slots as fast as they can, and at a random moment the server is
killed with SIGKILL (no shutdown code runs: in-flight requests, claimed outbox rows, open
SMTP sessions all die). It is then started again. At the end every booking that was
acknowledged with a 201 must have produced its `booking.created` webhook and its
confirmation mails (customer and owner) at least once; duplicates must carry the same
`webhook-id`, and every delivery must verify with the `standardwebhooks` library.

The receiver answers after a short delay, so deliveries are in flight when the kill lands.
The lease is 3 s (`SLOTGUARD_OUTBOX_LEASE_SECONDS`) so rows held by the dead process are
retried quickly. Figures are printed (run with `-s`); `SLOTGUARD_KILL_SEED` fixes the
kill points, `SLOTGUARD_KILL_POINTS` sets how many (default 3).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import os
import random
import signal
import time
from collections import defaultdict
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller
from standardwebhooks import Webhook

from tests.effects.conftest import CollectingHandler, HttpReceiver, free_port
from tests.race.conftest import STORE_PARAMS, ServerProcess, cluster_on, new_race_database

pytestmark = pytest.mark.slow

CLIENTS = 16
KILL_POINTS = int(os.environ.get("SLOTGUARD_KILL_POINTS", "3"))
SEED = int(os.environ.get("SLOTGUARD_KILL_SEED", random.randrange(1_000_000)))
LEASE_S = 3
CONVERGE_TIMEOUT_S = 30.0
SLOT = dt.timedelta(minutes=15)
ALL_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


@dataclass
class Hit:
    at: float
    headers: dict[str, str]
    body: bytes


@dataclass
class SlowReceiver:
    """Records each webhook on arrival, answers 200 after `delay` seconds."""

    delay: float = 0.02
    hits: list[Hit] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # keep-alive: the worker reuses connections
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")[1:]
                headers = {}
                for line in lines:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.hits.append(Hit(time.monotonic(), headers, body))
                await asyncio.sleep(self.delay)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def future_day(days_ahead: int) -> dt.datetime:
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + dt.timedelta(days=days_ahead)


def iso(t: dt.datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


async def _setup(server: ServerProcess, key: str, receiver_port: int) -> tuple[str, str]:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=10) as http:
        r = await http.post(
            "/v1/businesses",
            json={
                "name": "Kill Clinic",
                "timezone": "UTC",
                "email": "owner@clinic.example.com",
                "rules": {
                    "working_hours": [{"days": ALL_DAYS, "start": "00:00", "end": "24:00"}],
                    "max_advance_days": 90,
                },
            },
        )
        assert r.status_code == 201, r.text
        business_id: str = r.json()["data"]["id"]
        r = await http.post(
            "/v1/webhook-endpoints",
            json={"url": f"http://127.0.0.1:{receiver_port}/hook", "events": ["booking.created"]},
        )
        assert r.status_code == 201, r.text
        secret: str = r.json()["data"]["secret"]
    return business_id, secret


async def _clients(
    server: ServerProcess,
    key: str,
    business_id: str,
    slots: itertools.count[int],
    day0: dt.datetime,
    acked: set[str],
) -> int:
    """Book until the server dies; returns how many requests were attempted."""
    attempted = 0
    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(
        base_url=server.base_url, timeout=15, limits=limits,
        headers={"Authorization": f"Bearer {key}"},
    ) as http:  # fmt: skip

        async def one_client() -> None:
            nonlocal attempted
            while True:
                k = next(slots)
                start = day0 + k * SLOT
                body = {
                    "business_id": business_id,
                    "start_time": iso(start),
                    "end_time": iso(start + SLOT),
                    "customer_email": f"c{k}@customer.example.com",
                }
                attempted += 1
                try:
                    r = await http.post(
                        "/v1/bookings", json=body, headers={"Idempotency-Key": f"k{k}"}
                    )
                except httpx.TransportError:
                    return  # the server is gone
                if r.status_code == 201:
                    acked.add(r.json()["data"]["id"])
                else:
                    assert r.status_code < 500, r.text + "\n" + server.tail()

        await asyncio.gather(*(one_client() for _ in range(CLIENTS)))
    return attempted


@pytest.mark.postgres
async def test_sigkill_at_random_moments_loses_no_side_effect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(SEED)
    receiver = SlowReceiver()
    await receiver.start()
    handler = CollectingHandler()
    smtp_port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=smtp_port, ready_timeout=5.0)
    controller.start()
    for name, value in {
        "SLOTGUARD_ALLOW_PRIVATE_WEBHOOKS": "1",
        "SLOTGUARD_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}?starttls=0&timeout=5",
        "SLOTGUARD_EMAIL_FROM": "bookings@slotguard.example.com",
        "SLOTGUARD_OUTBOX_LEASE_SECONDS": str(LEASE_S),
        "SLOTGUARD_LOG_LEVEL": "WARNING",
    }.items():
        monkeypatch.setenv(name, value)
    acked: set[str] = set()
    slots = itertools.count()
    day0 = future_day(1)
    print(f"\n[kill] seed={SEED} kill points={KILL_POINTS}")
    try:
        with new_race_database("postgres", tmp_path) as db, cluster_on(db, tmp_path) as cluster:
            server = (await asyncio.to_thread(cluster.start, 1))[0]
            business_id, secret = await _setup(server, cluster.api_key, receiver.port)
            for point in range(KILL_POINTS):
                before = len(acked)
                kill_after = rng.uniform(0.4, 2.5)
                clients = asyncio.create_task(
                    _clients(server, cluster.api_key, business_id, slots, day0, acked)
                )
                await asyncio.sleep(kill_after)
                server.proc.kill()  # SIGKILL: no shutdown code runs
                await asyncio.to_thread(server.proc.wait, 10)
                attempted = await asyncio.wait_for(clients, 30)
                hooks_now = len(receiver.hits)
                print(
                    f"[kill] point {point + 1}: killed after {kill_after:.2f}s; "
                    f"{len(acked) - before} bookings acknowledged of {attempted} attempted; "
                    f"webhooks received so far {hooks_now}, mails {len(handler.mails)}"
                )
                server = (await asyncio.to_thread(cluster.start, 1))[0]
            restarted = time.monotonic()
            missing = await _wait_for_everything(receiver, handler, acked, restarted)
            elapsed = time.monotonic() - restarted
            _report_and_check(receiver, handler, acked, secret, elapsed)
            assert server.alive(), server.tail()
            assert not missing, f"{len(missing)} side effects never arrived: {sorted(missing)[:5]}"
    finally:
        controller.stop()
        await receiver.stop()


def _webhooks_by_booking(receiver: SlowReceiver) -> dict[str, list[Hit]]:
    found: dict[str, list[Hit]] = defaultdict(list)
    for hit in receiver.hits:
        found[json.loads(hit.body)["data"]["id"]].append(hit)
    return found


def _mails_by_booking(handler: CollectingHandler) -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for mail in list(handler.mails):
        msg = message_from_bytes(mail.content, policy=policy.default)
        found[str(msg["X-Slotguard-Booking-Id"])].update(mail.rcpt_tos)
    return found


def _missing(
    receiver: SlowReceiver, handler: CollectingHandler, acked: set[str]
) -> list[tuple[str, str]]:
    hooks = _webhooks_by_booking(receiver)
    mails = _mails_by_booking(handler)
    missing = []
    for booking_id in acked:
        if booking_id not in hooks:
            missing.append((booking_id, "webhook"))
        rcpts = mails.get(booking_id, set())
        if "owner@clinic.example.com" not in rcpts or not any(
            r.endswith("@customer.example.com") for r in rcpts
        ):
            missing.append((booking_id, "mail"))
    return missing


async def _wait_for_everything(
    receiver: SlowReceiver, handler: CollectingHandler, acked: set[str], since: float
) -> list[tuple[str, str]]:
    while True:
        missing = _missing(receiver, handler, acked)
        if not missing or time.monotonic() - since > CONVERGE_TIMEOUT_S:
            return missing
        await asyncio.sleep(0.2)


def _report_and_check(
    receiver: SlowReceiver,
    handler: CollectingHandler,
    acked: set[str],
    secret: str,
    elapsed: float,
) -> None:
    hooks = _webhooks_by_booking(receiver)
    verifier = Webhook(secret)
    for hits in hooks.values():
        ids = {h.headers["webhook-id"] for h in hits}
        assert len(ids) == 1, f"duplicates with different webhook-ids: {ids}"
        for h in hits:
            verifier.verify(h.body, h.headers)
    duplicates = sum(len(h) - 1 for h in hooks.values())
    unacked = len(set(hooks) - acked)
    print(
        f"[kill] total: {len(acked)} acknowledged bookings; {len(receiver.hits)} webhooks "
        f"({duplicates} duplicates, {unacked} for bookings committed but never acknowledged); "
        f"{len(handler.mails)} mails; all delivered {elapsed:.1f}s after the last restart"
    )


@pytest.mark.parametrize("store", STORE_PARAMS)
async def test_sigterm_releases_what_the_worker_holds(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM: the server stops within the shutdown grace and gives its claimed message
    back unattempted, so the next process delivers it at once instead of after the lease."""
    receiver = HttpReceiver(behaviours=["hang"])
    await receiver.start()
    monkeypatch.setenv("SLOTGUARD_ALLOW_PRIVATE_WEBHOOKS", "1")
    monkeypatch.setenv("SLOTGUARD_OUTBOX_SHUTDOWN_GRACE_SECONDS", "1")
    monkeypatch.setenv("SLOTGUARD_LOG_LEVEL", "WARNING")
    try:
        with new_race_database(store, tmp_path) as db, cluster_on(db, tmp_path) as cluster:
            server = (await asyncio.to_thread(cluster.start, 1))[0]
            business_id, secret = await _setup(server, cluster.api_key, receiver.port)
            async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
                start = future_day(2)
                r = await http.post(
                    "/v1/bookings",
                    json={"business_id": business_id, "start_time": iso(start),
                          "end_time": iso(start + SLOT)},
                    headers={"Authorization": f"Bearer {cluster.api_key}",
                             "Idempotency-Key": "sigterm-1"},
                )  # fmt: skip
                assert r.status_code == 201, r.text + "\n" + server.tail()
            for _ in range(250):
                if receiver.requests:
                    break
                await asyncio.sleep(0.02)
            assert receiver.requests, "the webhook was never sent"
            held = await db.fetch("SELECT locked_by, attempts FROM outbox WHERE kind = 'webhook'")
            assert held[0][0] is not None and held[0][1] == 1
            t0 = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(server.proc.wait, 30)
            stopped = time.monotonic() - t0
            # uvicorn shuts down gracefully, then re-raises the signal it caught: -15.
            assert code in (0, -signal.SIGTERM), server.tail()
            assert stopped < 10, f"took {stopped:.1f}s to stop"
            rows = await db.fetch(
                "SELECT status, locked_by, attempts FROM outbox WHERE kind = 'webhook'"
            )
            assert [tuple(r) for r in rows] == [("pending", None, 0)]
            print(
                f"\n[sigterm {store}] stopped in {stopped:.1f}s; its claimed webhook was released"
            )
            # The next process delivers it right away (not after the 60 s lease).
            receiver.behaviours[:] = []
            t1 = time.monotonic()
            await asyncio.to_thread(cluster.start, 1)
            while len(receiver.requests) < 2:
                assert time.monotonic() - t1 < 30, "not redelivered"
                await asyncio.sleep(0.05)
            first, again = receiver.requests[:2]
            assert first.headers["webhook-id"] == again.headers["webhook-id"]
            Webhook(secret).verify(again.body, again.headers)
    finally:
        await receiver.stop()
