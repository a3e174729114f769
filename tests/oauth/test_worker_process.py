"""`slotguard serve --no-worker` and a separate `slotguard worker` process on one database
(SQLite file and PostgreSQL), with the Google and Microsoft fakes served on 127.0.0.1:
a calendar connected with a refresh token is synced by the worker process (the API process
syncs nothing), its events become busy time, a booking is written back to the fake by the
worker's outbox, and cancelling deletes it there."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from slotguard.calendars.base import remote_identity
from slotguard.store.migrate import upgrade_to_head
from tests.conftest import skip_or_fail_pg
from tests.fakes.common import provider_env, serve
from tests.fakes.google import GoogleFake
from tests.fakes.graph import GraphFake
from tests.oauth.conftest import SECRET_KEY
from tests.oauth.test_serve import H, book, business, calendar_synced, day_ahead, iso, slot_starts
from tests.ops.conftest import Server, free_port, slotguard_exe, start_server
from tests.pg import pg_available, pg_create_database, pg_drop_database

pytestmark = pytest.mark.slow

API_KEY = "sg_live_worker_e2e_" + "k" * 24


@dataclass
class Stack:
    server: Server
    worker: subprocess.Popen[bytes]
    worker_log: Path
    google: GoogleFake
    graph: GraphFake

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {API_KEY}"}

    def logs(self) -> str:
        return (
            f"--- serve ---\n{self.server.log()[-3000:]}\n"
            f"--- worker ---\n{self.worker_log.read_text(errors='replace')[-3000:]}"
        )


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp(f"worker-{request.param}")
    pg_name = None
    if request.param == "postgres":
        if not pg_available():
            skip_or_fail_pg()
        pg_name = f"sg_worker_{uuid.uuid4().hex[:10]}"
        database_url = pg_create_database(pg_name)
    else:
        database_url = f"sqlite:///{workdir / 'slotguard.db'}"
    upgrade_to_head(database_url)  # before both processes, so neither races the other
    google, graph = GoogleFake(), GraphFake()
    try:
        with serve(google.app) as google_url, serve(graph.app) as graph_url:
            graph.base_url = graph_url
            port = free_port()
            env = {
                "DATABASE_URL": database_url,
                "SLOTGUARD_DATABASE_URL": database_url,
                "SLOTGUARD_BOOTSTRAP_API_KEY": API_KEY,
                "SLOTGUARD_SECRET_KEY": SECRET_KEY,
                "SLOTGUARD_PUBLIC_URL": f"http://127.0.0.1:{port}",
                **provider_env(google_url, graph_url),
                "SLOTGUARD_CALENDAR_SYNC_SECONDS": "5",
                "SLOTGUARD_CALENDAR_TIMEOUT_SECONDS": "5",
                "SLOTGUARD_LOG_LEVEL": "INFO",
            }
            server = start_server(workdir, "--no-worker", env=env, port=port)
            worker_log = workdir / "worker.log"
            with worker_log.open("wb") as log:
                worker = subprocess.Popen(
                    [slotguard_exe(), "worker"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                    cwd=workdir,
                    start_new_session=True,
                )
            try:
                server.wait_ready()
                yield Stack(server, worker, worker_log, google, graph)
            finally:
                server.stop()
                worker.terminate()
                try:
                    worker.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    worker.wait(timeout=10)
    finally:
        if pg_name is not None:
            pg_drop_database(pg_name)


def wait_for(check: Callable[[], Any], what: str, stack: Stack, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert stack.worker.poll() is None, f"the worker exited:\n{stack.logs()}"
        value = check()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}:\n{stack.logs()}")


def _connect_and_check(
    stack: Any,
    provider: str,
    refresh_token: str,
    day: dt.datetime,
    live_ids: Callable[[], set[str]],
) -> None:
    with httpx.Client(base_url=stack.server.base_url, timeout=20) as c:
        biz_id = business(c, stack)
        r = c.post(
            f"/v1/businesses/{biz_id}/calendars",
            json={"provider": provider, "role": "both", "refresh_token": refresh_token},
            headers=stack.headers,
        )
        assert r.status_code == 201, r.text
        cal_id = r.json()["data"]["id"]
        cal_url = f"/v1/businesses/{biz_id}/calendars/{cal_id}"

        # The worker process syncs it: the remote event becomes busy time.
        wait_for(
            lambda: c.get(cal_url, headers=stack.headers).json()["data"]["status"] == "active",
            f"the worker's first sync of the {provider} calendar",
            stack,
        )
        starts = slot_starts(c, stack, biz_id, day)
        assert iso(day + 9 * H) not in starts, starts
        assert iso(day + 10 * H) in starts

        # A booking is written back by the worker's outbox.
        booking = book(c, stack, biz_id, day + 11 * H)
        written = wait_for(
            lambda: calendar_synced(c, stack, biz_id, booking["id"]),
            f"the write-back to {provider}",
            stack,
        )
        event_id = written["calendar_event_id"]
        assert event_id in live_ids()

        # Cancel: the worker deletes the event.
        r = c.post(
            f"/v1/bookings/{booking['id']}/cancel",
            json={"reason": "changed plans"},
            headers={**stack.headers, "Idempotency-Key": f"cancel-{booking['id']}"},
        )
        assert r.status_code == 200, r.text
        wait_for(
            lambda: event_id not in live_ids(),
            f"the delete at {provider}",
            stack,
        )
        if provider == "google":
            assert event_id == remote_identity(booking["id"], 1).hex


def test_google_through_a_separate_worker(stack: Stack) -> None:
    owner = f"g-{uuid.uuid4().hex[:6]}@example.com"
    refresh = stack.google.add_user(owner)
    day = day_ahead(11)
    stack.google.add_event(owner, start=day + 9 * H, end=day + 10 * H)
    _connect_and_check(
        stack, "google", refresh, day, lambda: {e["id"] for e in stack.google.live_events(owner)}
    )


def test_microsoft_through_a_separate_worker(stack: Stack) -> None:
    owner = f"m-{uuid.uuid4().hex[:6]}@contoso.example"
    refresh = stack.graph.add_user(owner)
    day = day_ahead(13)
    stack.graph.add_event(owner, start=day + 9 * H, end=day + 10 * H)
    _connect_and_check(
        stack, "microsoft", refresh, day, lambda: {e["id"] for e in stack.graph.live_events(owner)}
    )


def test_the_api_process_synced_and_wrote_nothing(stack: Stack) -> None:
    """Everything above was the worker process's doing (`serve --no-worker`)."""
    serve_log = stack.server.log()
    worker_log = stack.worker_log.read_text(errors="replace")
    assert "calendar_sync.done" in worker_log, stack.logs()
    assert "calendar_sync.done" not in serve_log
    for secret in [*stack.graph.refresh_tokens, *stack.graph.access_tokens]:
        assert secret not in serve_log and secret not in worker_log
