"""Retries of 429 and 5xx (API.md §10) through a real local HTTP proxy in front of a real server.

The proxy (a threaded ``http.server`` in the test process) forwards every request to one
``slotguard serve`` process, except where a rule tells it to answer 429/5xx instead: either
*before* forwarding (nothing executed) or *after* (the server executed the request, its
answer is replaced: a lost response). It records when each attempt arrived and with which
``Idempotency-Key``, so the tests measure the waits the client really made (``Retry-After``,
exponential backoff, the overall deadline) with the client's real sleep and clock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import http.server
import itertools
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from slotguard.client import (
    AsyncClient,
    Client,
    RateLimitedError,
    ServerError,
    SlotguardConnectionError,
)
from tests.client.test_client_integration import ALL_DAY, at
from tests.race.conftest import Cluster, RaceDatabase, cluster_on

pytestmark = pytest.mark.slow

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass
class Rule:
    method: str
    path: str  # regex, full match
    status: int
    times: int = 1
    retry_after: str | None = None
    after: bool = False  # forward first (the server executes), then replace the answer
    delay: float = 0.0  # seconds to wait before answering
    body: bytes | None = None  # default: the API's error body for the status

    def content(self) -> bytes:
        if self.body is not None:
            return self.body
        code = "rate_limited" if self.status == 429 else "internal_error"
        return (
            f'{{"error":"{code}","message":"injected","code":{self.status},'
            '"request_id":"req_injected","details":{}}'
        ).encode()


@dataclass
class Attempt:
    at: float
    method: str
    path: str
    idempotency_key: str | None
    status: int


@dataclass
class Proxy:
    upstream: str
    rules: list[Rule] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take_rule(self, method: str, path: str) -> Rule | None:
        with self.lock:
            for rule in self.rules:
                if rule.times > 0 and method == rule.method and re.fullmatch(rule.path, path):
                    rule.times -= 1
                    return rule
        return None

    def of(self, method: str, path: str) -> list[Attempt]:
        with self.lock:
            return [a for a in self.attempts if a.method == method and a.path == path]


def start_proxy(
    upstream: str,
) -> tuple[Proxy, http.server.ThreadingHTTPServer, httpx.Client]:
    proxy = Proxy(upstream)
    forward = httpx.Client(base_url=upstream, timeout=30.0)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            arrived = time.monotonic()
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path = self.path.split("?", 1)[0]
            rule = proxy.take_rule(self.command, path)
            status, headers, content = 0, {}, b""
            if rule is None or rule.after:
                sent = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                r = forward.request(self.command, self.path, content=body, headers=sent)
                status, content = r.status_code, r.content
                headers = {k: v for k, v in r.headers.items() if k.lower() not in HOP_HEADERS}
            if rule is not None:
                if rule.delay:
                    time.sleep(rule.delay)
                status, content = rule.status, rule.content()
                headers = {"Content-Type": "application/json"}
                if rule.retry_after is not None:
                    headers["Retry-After"] = rule.retry_after
            with proxy.lock:
                proxy.attempts.append(
                    Attempt(
                        arrived, self.command, path, self.headers.get("Idempotency-Key"), status
                    )
                )
            try:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (deadline)
                pass

        do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _handle

        def log_message(self, format: str, *args: Any) -> None:
            del format, args

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return proxy, server, forward


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir: Path = tmp_path_factory.mktemp("client_retries")
    db = RaceDatabase("sqlite", f"sqlite:///{workdir / 'slotguard.db'}")
    with cluster_on(db, workdir) as cluster:
        cluster.start(1)
        yield cluster


@pytest.fixture
def proxy(live: Cluster) -> Iterator[tuple[Proxy, str]]:
    p, server, forward = start_proxy(live.servers[0].base_url)
    yield p, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    forward.close()


@pytest.fixture(params=["sync", "async"])
def flavor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Sg:
    """Client or AsyncClient behind one interface: `await sg.call(lambda c: c.me())`."""

    def __init__(self, flavor: str, key: str, url: str, **options: Any) -> None:
        self.flavor = flavor
        self.client: Any = (Client if flavor == "sync" else AsyncClient)(key, url, **options)

    async def call(self, fn: Any) -> Any:
        if self.flavor == "sync":
            # The blocking client in a thread: the proxy and this loop stay responsive.
            return await asyncio.to_thread(fn, self.client)
        return await fn(self.client)

    async def close(self) -> None:
        if self.flavor == "sync":
            self.client.close()
        else:
            await self.client.aclose()


@pytest.fixture
async def sg(flavor: str, live: Cluster, proxy: tuple[Proxy, str]) -> Any:
    made: list[Sg] = []

    def factory(**options: Any) -> Sg:
        client = Sg(flavor, live.api_key, proxy[1], **options)
        made.append(client)
        return client

    yield factory
    for c in made:
        await c.close()


def gaps(attempts: list[Attempt]) -> list[float]:
    return [b.at - a.at for a, b in itertools.pairwise(attempts)]


async def test_429_waits_retry_after_then_succeeds(sg: Any, proxy: tuple[Proxy, str]) -> None:
    p, _ = proxy
    p.rules.append(Rule("GET", "/v1/me", 429, times=2, retry_after="1"))
    c = sg()
    t0 = time.monotonic()
    me = await c.call(lambda x: x.me())
    elapsed = time.monotonic() - t0
    assert me.account_id
    tries = p.of("GET", "/v1/me")
    assert [a.status for a in tries] == [429, 429, 200]
    assert all(g >= 0.95 for g in gaps(tries)), gaps(tries)
    assert elapsed < 6, elapsed


async def test_5xx_without_retry_after_backs_off_exponentially(
    sg: Any, proxy: tuple[Proxy, str]
) -> None:
    p, _ = proxy
    p.rules.append(Rule("GET", "/v1/me", 503, times=3))
    c = sg(backoff_base=0.4, backoff_max=10.0)
    await c.call(lambda x: x.me())
    tries = p.of("GET", "/v1/me")
    assert [a.status for a in tries] == [503, 503, 503, 200]
    g = gaps(tries)
    # Equal jitter: wait n is in [d/2, d] with d = 0.4 * 2^n; never shorter than d/2.
    for n, wait in enumerate(g):
        ceiling = 0.4 * 2**n
        assert wait >= ceiling / 2 - 0.02, (n, g)
        assert wait <= ceiling + 1.5, (n, g)  # generous: the machine may be busy


async def test_500_and_a_proxy_page_are_retried_501_is_not(
    sg: Any, proxy: tuple[Proxy, str]
) -> None:
    p, _ = proxy
    p.rules.append(Rule("GET", "/v1/me", 500, times=1))
    p.rules.append(Rule("GET", "/v1/me", 502, times=1, body=b"<html>Bad Gateway</html>"))
    c = sg(backoff_base=0.05)
    await c.call(lambda x: x.me())
    assert [a.status for a in p.of("GET", "/v1/me")] == [500, 502, 200]
    p.rules.append(Rule("GET", "/v1/me", 501, times=1))
    with pytest.raises(ServerError) as err:
        await c.call(lambda x: x.me())
    assert err.value.status == 501
    assert [a.status for a in p.of("GET", "/v1/me")][-1] == 501
    assert len(p.of("GET", "/v1/me")) == 4


async def test_lost_write_answer_is_retried_with_its_key_and_replayed(
    sg: Any, live: Cluster, proxy: tuple[Proxy, str]
) -> None:
    p, _ = proxy
    c = sg(backoff_base=0.05)
    biz = await c.call(
        lambda x: x.businesses.create(
            name=f"retry {uuid.uuid4().hex[:6]}", timezone="UTC", rules={"working_hours": ALL_DAY}
        )
    )
    # The server books, then the answer is replaced by a 503; then a 429 before the server.
    p.rules.append(Rule("POST", "/v1/bookings", 503, times=1, after=True))
    p.rules.append(Rule("POST", "/v1/bookings", 429, times=1, retry_after="1"))
    booking = await c.call(
        lambda x: x.bookings.create(business_id=biz["id"], start_time=at(9), end_time=at(10))
    )
    tries = p.of("POST", "/v1/bookings")
    assert [a.status for a in tries] == [503, 429, 201]
    keys = {a.idempotency_key for a in tries}
    assert len(keys) == 1 and None not in keys
    assert booking.replayed is True  # executed once, by the first attempt
    with httpx.Client(base_url=live.servers[0].base_url) as direct:
        r = direct.get(
            "/v1/bookings",
            params={"business_id": biz["id"]},
            headers={"Authorization": f"Bearer {live.api_key}"},
        )
    assert [b["id"] for b in r.json()["data"]] == [booking.id]


async def test_retry_after_forms_and_the_cap(sg: Any, proxy: tuple[Proxy, str]) -> None:
    p, _ = proxy
    when = email.utils.format_datetime(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=6), True)
    p.rules.append(Rule("GET", "/v1/me", 503, times=1, retry_after=when))
    p.rules.append(Rule("GET", "/v1/me", 429, times=1, retry_after="120"))
    c = sg(max_retry_after=0.5, deadline=None)
    await c.call(lambda x: x.me())
    tries = p.of("GET", "/v1/me")
    assert [a.status for a in tries] == [503, 429, 200]
    g = gaps(tries)
    assert 0.45 <= g[0] <= 3.0, g  # an HTTP-date 6 s away, capped at 0.5 s
    assert 0.45 <= g[1] <= 3.0, g  # 120 s, capped at 0.5 s


async def test_deadline_stops_retries_and_cuts_a_hanging_attempt(
    sg: Any, proxy: tuple[Proxy, str]
) -> None:
    p, _ = proxy
    # A wait that would end after the deadline is not taken: the 429 is raised at once.
    p.rules.append(Rule("GET", "/v1/me", 429, times=1, retry_after="30"))
    c = sg(deadline=5.0)
    t0 = time.monotonic()
    with pytest.raises(RateLimitedError) as limited:
        await c.call(lambda x: x.me())
    assert time.monotonic() - t0 < 2
    assert limited.value.retry_after == 30

    # Always 503 after 1 s: retries stop once the next wait would pass the deadline.
    p.rules.append(Rule("GET", "/v1/me", 503, times=100, retry_after="1"))
    c = sg(deadline=2.5, max_retries=20)
    t0 = time.monotonic()
    with pytest.raises(ServerError):
        await c.call(lambda x: x.me())
    elapsed = time.monotonic() - t0
    assert elapsed < 4.5, elapsed
    assert 2 <= len(p.of("GET", "/v1/me")) - 1 <= 4
    p.rules.clear()

    # A server that hangs: the attempt is cut at the deadline, not at the 30 s timeout.
    p.rules.append(Rule("GET", "/v1/me", 503, times=5, delay=4.0))
    c = sg(deadline=1.5, timeout=30.0)
    t0 = time.monotonic()
    with pytest.raises(SlotguardConnectionError) as cut:
        await c.call(lambda x: x.me())
    elapsed = time.monotonic() - t0
    assert cut.value.code == "timeout"
    assert elapsed < 3.8, elapsed  # the attempt hangs 4 s: cut at 1.5 s, plus slack
