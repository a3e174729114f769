"""What the Google and Microsoft fakes share: a clock, fault injection, a request log, a
transport for in-process use and a uvicorn runner for real servers on 127.0.0.1.

Fault injection is first-class: a test queues faults per route (or for every route with
"*"), each answering once or `times` times:

* ``respond``            answer with ``status``/``json``/``body``/``headers`` instead;
* ``commit_then_respond``  do the work (the write happens), then answer the fault anyway;
* ``commit_then_drop``   do the work, then cut the connection mid-response (lost answer);
* ``drop``               cut the connection without doing anything;
* ``hang``               never answer (the client's read timeout must fire);
* ``malformed``          answer 200 with a body that is not JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

Action = Literal["respond", "commit_then_respond", "commit_then_drop", "drop", "hang", "malformed"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeClock:
    """Real time plus an offset the test moves forward (token expiry, Retry-After)."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += dt.timedelta(seconds=seconds)


@dataclass
class Fault:
    status: int = 500
    json: Any = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    action: Action = "respond"
    times: int = 1
    delay_s: float = 0.0


class ConnectionDropped(Exception):
    """Raised by a fake after it started a response: the connection is cut."""


class DropResponse(Response):
    """Sends the status line and headers promising a body, part of it, then dies: uvicorn
    closes the connection, `FakeTransport` raises `httpx.RemoteProtocolError`."""

    def __init__(self) -> None:
        super().__init__(b'{"partial": ', status_code=200, media_type="application/json")
        self.headers["content-length"] = "4096"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body, "more_body": True})
        raise ConnectionDropped("the fake dropped the connection")


@dataclass
class LoggedRequest:
    route: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    url: str


class FaultPlan:
    def __init__(self) -> None:
        self._queues: dict[str, deque[Fault]] = {}
        self._lock = threading.Lock()

    def add(self, route: str, fault: Fault) -> None:
        with self._lock:
            self._queues.setdefault(route, deque()).append(fault)

    def clear(self) -> None:
        with self._lock:
            self._queues.clear()

    def take(self, route: str) -> Fault | None:
        with self._lock:
            for name in (route, "*"):
                queue = self._queues.get(name)
                if queue:
                    fault = queue[0]
                    fault.times -= 1
                    if fault.times <= 0:
                        queue.popleft()
                    return fault
        return None


Handler = Callable[[], Awaitable[Response]]


class FakeBase:
    """Request log, faults and the per-request wrapper both fakes use."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock or FakeClock()
        self.faults = FaultPlan()
        self.requests: list[LoggedRequest] = []
        self.lock = threading.RLock()
        self.latency_s = 0.0

    # -- fault helpers ------------------------------------------------------------------

    def fail_next(
        self,
        route: str,
        status: int = 500,
        json: Any = None,
        *,
        headers: dict[str, str] | None = None,
        times: int = 1,
        body: bytes | None = None,
    ) -> None:
        self.faults.add(
            route, Fault(status=status, json=json, body=body, headers=headers or {}, times=times)
        )

    def inject(self, route: str, action: Action, *, times: int = 1, **kw: Any) -> None:
        self.faults.add(route, Fault(action=action, times=times, **kw))

    def calls(self, route: str) -> list[LoggedRequest]:
        return [r for r in self.requests if r.route == route]

    # -- the wrapper --------------------------------------------------------------------

    async def handle(self, route: str, request: Request, work: Handler) -> Response:
        body = await request.body()
        self.requests.append(
            LoggedRequest(
                route=route,
                method=request.method,
                path=request.url.path,
                query=dict(request.query_params),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
                url=str(request.url),
            )
        )
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        fault = self.faults.take(route)
        if fault is not None and fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        if fault is None:
            return await work()
        if fault.action == "hang":
            await asyncio.sleep(3600)
        if fault.action == "drop":
            return DropResponse()
        if fault.action == "malformed":
            return Response(b'{"items": [{"id": ', 200, media_type="application/json")
        if fault.action in ("commit_then_respond", "commit_then_drop"):
            await work()
            if fault.action == "commit_then_drop":
                return DropResponse()
        return fault_response(fault)


def fault_response(fault: Fault) -> Response:
    if fault.body is not None:
        return Response(fault.body, fault.status, headers=fault.headers)
    if fault.json is not None:
        return JSONResponse(fault.json, fault.status, headers=fault.headers)
    return Response(b"", fault.status, headers=fault.headers)


class FakeTransport(httpx.AsyncBaseTransport):
    """`httpx.ASGITransport` plus what a network gives for free: the read timeout fires on
    a hanging fake, and a dropped connection is a transport error, not an app exception."""

    def __init__(self, app: Any) -> None:
        self._asgi = httpx.ASGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {}).get("read")
        try:
            return await asyncio.wait_for(self._asgi.handle_async_request(request), timeout)
        except TimeoutError:
            raise httpx.ReadTimeout("the fake did not answer in time", request=request) from None
        except ConnectionDropped:
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body",
                request=request,
            ) from None


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run `app` under uvicorn on 127.0.0.1 in a thread; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="critical", lifespan="off", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"fake-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("fake server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def parse_rfc3339(value: str) -> dt.datetime | None:
    """RFC 3339 with an offset, else None (Google refuses times without one)."""
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(dt.UTC)


def provider_env(google_url: str, graph_url: str) -> dict[str, str]:
    """The settings that point a real `slotguard serve` or `slotguard worker` at the Google
    and Graph fakes served on 127.0.0.1 (``google_url``, ``graph_url`` as `serve` gave)."""
    return {
        "SLOTGUARD_GOOGLE_CLIENT_ID": "google-client",
        "SLOTGUARD_GOOGLE_CLIENT_SECRET": "google-secret",
        "SLOTGUARD_GOOGLE_API_URL": f"{google_url}/calendar/v3",
        "SLOTGUARD_GOOGLE_AUTH_URL": f"{google_url}/auth",
        "SLOTGUARD_GOOGLE_TOKEN_URL": f"{google_url}/token",
        "SLOTGUARD_MICROSOFT_CLIENT_ID": "ms-client",
        "SLOTGUARD_MICROSOFT_CLIENT_SECRET": "ms-secret",
        "SLOTGUARD_MICROSOFT_GRAPH_URL": f"{graph_url}/v1.0",
        "SLOTGUARD_MICROSOFT_LOGIN_URL": graph_url,
    }
