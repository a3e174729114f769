"""A real `slotguard serve` process (API plus its embedded worker) with every provider base
URL set to the Google and Microsoft fakes served on 127.0.0.1: the browser flow, sync into
availability and write-back, all over real HTTP."""

from __future__ import annotations

import datetime as dt
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from slotguard.calendars.base import remote_identity
from tests.fakes.common import provider_env, serve
from tests.fakes.google import GoogleFake
from tests.fakes.graph import GraphFake
from tests.oauth.conftest import SECRET_KEY
from tests.ops.conftest import Server, free_port, start_server

pytestmark = pytest.mark.slow

API_KEY = "sg_live_oauth_e2e_" + "k" * 24
H = dt.timedelta(hours=1)


@dataclass
class Stack:
    server: Server
    google: GoogleFake
    graph: GraphFake

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    google, graph = GoogleFake(), GraphFake()
    with serve(google.app) as google_url, serve(graph.app) as graph_url:
        graph.base_url = graph_url
        port = free_port()
        env = {
            "SLOTGUARD_BOOTSTRAP_API_KEY": API_KEY,
            "SLOTGUARD_SECRET_KEY": SECRET_KEY,
            "SLOTGUARD_PUBLIC_URL": f"http://127.0.0.1:{port}",
            **provider_env(google_url, graph_url),
            "SLOTGUARD_CALENDAR_SYNC_SECONDS": "5",
            "SLOTGUARD_CALENDAR_TIMEOUT_SECONDS": "5",
            "SLOTGUARD_LOG_LEVEL": "INFO",
        }
        server = start_server(tmp_path_factory.mktemp("oauth-serve"), env=env, port=port)
        try:
            server.wait_ready()
            yield Stack(server, google, graph)
        finally:
            server.stop()


def wait_for(check: Any, what: str, stack: Stack, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}:\n{stack.server.log()[-4000:]}")


def day_ahead(days: int = 10) -> dt.datetime:
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + dt.timedelta(days=days)


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def business(c: httpx.Client, stack: Stack) -> str:
    r = c.post(
        "/v1/businesses",
        json={
            "name": "Dr. Served",
            "timezone": "UTC",
            "rules": {
                "working_hours": [
                    {
                        "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                        "start": "00:00",
                        "end": "24:00",
                    }
                ]
            },
        },
        headers=stack.headers,
    )
    assert r.status_code == 201, r.text
    biz_id: str = r.json()["data"]["id"]
    return biz_id


def slot_starts(c: httpx.Client, stack: Stack, biz_id: str, day: dt.datetime) -> list[str]:
    r = c.get(
        "/v1/availability/slots",
        params={
            "business_id": biz_id,
            "start": iso(day + 8 * H),
            "end": iso(day + 13 * H),
            "duration_minutes": 60,
            "slot_interval_minutes": 60,
        },
        headers=stack.headers,
    )
    assert r.status_code == 200, r.text
    return [s["start"] for s in r.json()["data"]["slots"]]


def book(c: httpx.Client, stack: Stack, biz_id: str, start: dt.datetime) -> dict[str, Any]:
    r = c.post(
        "/v1/bookings",
        json={
            "business_id": biz_id,
            "start_time": iso(start),
            "end_time": iso(start + H),
            "title": "Served consultation",
        },
        headers={**stack.headers, "Idempotency-Key": f"served-{start.timestamp()}"},
    )
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


def calendar_synced(c: httpx.Client, stack: Stack, biz_id: str, booking_id: str) -> Any:
    r = c.get(f"/v1/bookings/{booking_id}", headers=stack.headers)
    data = r.json()["data"]
    return data if data["calendar_sync_status"] == "synced" else None


def test_microsoft_browser_flow_sync_and_write_back(stack: Stack) -> None:
    graph = stack.graph
    graph.add_user("owner@contoso.example")
    day = day_ahead()
    graph.add_event("owner@contoso.example", start=day + 9 * H, end=day + 10 * H)
    with httpx.Client(base_url=stack.server.base_url, timeout=20) as c:
        biz_id = business(c, stack)
        r = c.post(
            f"/v1/businesses/{biz_id}/calendars/oauth/microsoft",
            json={"role": "both"},
            headers=stack.headers,
        )
        assert r.status_code == 200, r.text
        # The owner's browser: the consent screen redirects back to the served callback.
        with httpx.Client(follow_redirects=True, timeout=20) as browser:
            page = browser.get(r.json()["data"]["authorization_url"])
        assert page.status_code == 200, page.text
        assert page.url.path == "/v1/oauth/microsoft/callback"
        assert "connected" in page.text

        (cal,) = c.get(f"/v1/businesses/{biz_id}/calendars", headers=stack.headers).json()["data"]
        # The embedded worker syncs it; the Graph event then blocks its slot.
        wait_for(
            lambda: (
                c.get(
                    f"/v1/businesses/{biz_id}/calendars/{cal['id']}", headers=stack.headers
                ).json()["data"]["status"]
                == "active"
            ),
            "the first sync",
            stack,
        )
        starts = slot_starts(c, stack, biz_id, day)
        assert iso(day + 9 * H) not in starts and iso(day + 10 * H) in starts

        booking = book(c, stack, biz_id, day + 11 * H)
        written = wait_for(
            lambda: calendar_synced(c, stack, biz_id, booking["id"]), "the write-back", stack
        )
        mine = [
            e
            for e in graph.live_events("owner@contoso.example")
            if e.get("transactionId") == str(remote_identity(booking["id"], 1))
        ]
        assert len(mine) == 1 and mine[0]["id"] == written["calendar_event_id"]
    log = stack.server.log()
    for secret in [*graph.refresh_tokens, *graph.access_tokens]:
        assert secret not in log


def test_google_refresh_token_connect_and_sync(stack: Stack) -> None:
    google = stack.google
    refresh = google.add_user("owner@example.com")
    day = day_ahead(12)
    google.add_event("owner@example.com", start=day + 10 * H, end=day + 11 * H)
    with httpx.Client(base_url=stack.server.base_url, timeout=20) as c:
        biz_id = business(c, stack)
        r = c.post(
            f"/v1/businesses/{biz_id}/calendars",
            json={"provider": "google", "role": "both", "refresh_token": refresh},
            headers=stack.headers,
        )
        assert r.status_code == 201, r.text
        cal_id = r.json()["data"]["id"]
        synced = c.post(f"/v1/businesses/{biz_id}/calendars/{cal_id}/sync", headers=stack.headers)
        assert synced.status_code == 200 and synced.json()["data"]["status"] == "active"
        starts = slot_starts(c, stack, biz_id, day)
        assert iso(day + 10 * H) not in starts and iso(day + 9 * H) in starts
        booking = book(c, stack, biz_id, day + 12 * H)
        written = wait_for(
            lambda: calendar_synced(c, stack, biz_id, booking["id"]), "the write-back", stack
        )
        assert written["calendar_event_id"] == remote_identity(booking["id"], 1).hex
        assert written["calendar_event_id"] in {
            e["id"] for e in google.live_events("owner@example.com")
        }
    assert refresh not in stack.server.log()


def test_callback_state_is_single_use_over_http(stack: Stack) -> None:
    stack.google.add_user("second@example.com")
    stack.google.consent_user = "second@example.com"
    with httpx.Client(base_url=stack.server.base_url, timeout=20) as c:
        biz_id = business(c, stack)
        r = c.post(
            f"/v1/businesses/{biz_id}/calendars/oauth/google", json={}, headers=stack.headers
        )
        with httpx.Client(timeout=20) as browser:
            consent = browser.get(r.json()["data"]["authorization_url"])
            back = consent.headers["location"]
            assert urllib.parse.urlsplit(back).path == "/v1/oauth/google/callback"
            first = browser.get(back)
            second = browser.get(back)
        assert first.status_code == 200, first.text
        assert second.status_code == 409
    assert Path(stack.server.log_path).exists()
