"""Real counterparts for calendar providers: a Radicale CalDAV server and an ICS feed server.

Both listen on 127.0.0.1 on a free port. Radicale runs as a subprocess with htpasswd auth
(plain users file) and storage in a temporary directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import importlib.util
import socket
import subprocess
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from slotguard.api.app import create_app
from slotguard.calendars.sync import SyncConfig
from slotguard.config import Settings
from tests.conftest import Store, Tenant, new_tenant
from tests.effects.conftest import free_port
from tests.leaks import secret

RADICALE_USER = "alice"
RADICALE_PASSWORD = secret("s3cret-pw-for-tests")


@dataclass
class Radicale:
    base: str  # http://127.0.0.1:port
    user: str
    password: str

    def auth(self) -> httpx.BasicAuth:
        return httpx.BasicAuth(self.user, self.password)

    def new_calendar(self) -> str:
        """A fresh, empty calendar collection; returns its URL (ending in /)."""
        url = f"{self.base}/{self.user}/{uuid.uuid4().hex}/"
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<c:mkcalendar xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">'
            "<d:set><d:prop><d:displayname>Work</d:displayname></d:prop></d:set>"
            "</c:mkcalendar>"
        )
        r = httpx.request("MKCALENDAR", url, content=body, auth=self.auth())
        assert r.status_code == 201, r.text
        return url

    def put(self, calendar_url: str, name: str, ical: str) -> str:
        r = httpx.put(
            calendar_url + name,
            content=ical.replace("\n", "\r\n").encode(),
            headers={"Content-Type": "text/calendar"},
            auth=self.auth(),
        )
        assert r.status_code in (201, 204), r.text
        return calendar_url + name

    def delete(self, url: str) -> None:
        r = httpx.delete(url, auth=self.auth())
        assert r.status_code in (200, 204), r.text

    def list_events(self, calendar_url: str) -> dict[str, str]:
        """href -> iCalendar text of every resource in the collection."""
        body = (
            '<?xml version="1.0"?><c:calendar-query xmlns:d="DAV:" '
            'xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><c:calendar-data/></d:prop>'
            '<c:filter><c:comp-filter name="VCALENDAR"/></c:filter></c:calendar-query>'
        )
        r = httpx.request(
            "REPORT", calendar_url, content=body, headers={"Depth": "1"}, auth=self.auth()
        )
        assert r.status_code == 207, r.text
        import xml.etree.ElementTree as ET  # trusted: our own test server

        out: dict[str, str] = {}
        for resp in ET.fromstring(r.content).findall("{DAV:}response"):
            href = resp.findtext("{DAV:}href") or ""
            data = resp.findtext(".//{urn:ietf:params:xml:ns:caldav}calendar-data")
            if data is not None:
                out[href] = data
        return out


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"radicale exited with {proc.returncode} (see radicale.log)")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError("radicale did not start")


@pytest.fixture(scope="session")
def radicale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Radicale]:
    if importlib.util.find_spec("radicale") is None:
        pytest.skip("radicale is not installed (it is a dev dependency: run `uv sync`)")
    root = tmp_path_factory.mktemp("radicale")
    users = root / "users"
    users.write_text(f"{RADICALE_USER}:{RADICALE_PASSWORD}\n")
    port = free_port()
    log = (root / "radicale.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "radicale",
            "--server-hosts", f"127.0.0.1:{port}",
            "--auth-type", "htpasswd",
            "--auth-htpasswd-filename", str(users),
            "--auth-htpasswd-encryption", "plain",
            "--storage-filesystem-folder", str(root / "collections"),
            "--logging-level", "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )  # fmt: skip
    try:
        _wait_port(port, proc)
        yield Radicale(f"http://127.0.0.1:{port}", RADICALE_USER, RADICALE_PASSWORD)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


# --- ICS feeds ---------------------------------------------------------------------------


@dataclass
class FeedState:
    body: bytes = b""
    etag: str | None = '"v1"'
    last_modified: str | None = "Tue, 01 Dec 2026 10:00:00 GMT"
    # honour | ignore | always_304 | redirect | gzip | status | slow | oversize
    mode: str = "honour"
    status: int = 200
    # Sent with the `status` mode's answer (e.g. Retry-After).
    status_headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    requests: list[dict[str, str]] = field(default_factory=list)


class FeedServer:
    def __init__(self) -> None:
        self.state = FeedState()
        self.port = free_port()
        state = self.state

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                del format, args

            def do_GET(self) -> None:
                state.requests.append(dict(self.headers.items()))
                if state.mode == "redirect" and self.path == "/feed.ics":
                    self.send_response(302)
                    self.send_header("Location", "/moved.ics")
                    self.end_headers()
                    return
                if state.mode == "slow":
                    time.sleep(state.delay_s)
                if state.mode == "status":
                    self.send_response(state.status)
                    for name, value in state.status_headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if state.mode == "always_304" and (
                    "If-None-Match" in self.headers or "If-Modified-Since" in self.headers
                ):
                    self.send_response(304)
                    self.end_headers()
                    return
                if state.mode == "honour":
                    inm = self.headers.get("If-None-Match")
                    ims = self.headers.get("If-Modified-Since")
                    if (inm and inm == state.etag) or (
                        ims and not inm and ims == state.last_modified
                    ):
                        self.send_response(304)
                        self.end_headers()
                        return
                body = state.body
                if state.mode == "oversize":
                    body = body + b"X" * (2 * 1024 * 1024)
                self.send_response(200)
                self.send_header("Content-Type", "text/calendar; charset=utf-8")
                if state.mode == "gzip":
                    body = gzip.compress(body)
                    self.send_header("Content-Encoding", "gzip")
                if state.etag and state.mode != "ignore":
                    self.send_header("ETag", state.etag)
                if state.last_modified and state.mode != "ignore":
                    self.send_header("Last-Modified", state.last_modified)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/feed.ics"

    def set(self, ical: str, *, etag: str | None = '"v1"') -> None:
        self.state.body = ical.replace("\n", "\r\n").encode()
        self.state.etag = etag

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def feed() -> Iterator[FeedServer]:
    server = FeedServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- the API with calendars enabled --------------------------------------------------------

SECRET_KEY = secret("a long passphrase used only by the calendar tests")


@pytest.fixture(scope="session")
async def cal_client(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        database_url=store.url,
        embedded_worker=False,
        allow_private_calendars=True,
        secret_key=SECRET_KEY,
    )
    app = create_app(settings, db=store.db)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
async def ct(store: Store, cal_client: httpx.AsyncClient) -> Tenant:
    """A fresh account on the calendar-enabled app."""
    return await new_tenant(store, cal_client)


def sync_config(**overrides: object) -> SyncConfig:
    base: dict[str, object] = {
        "allow_private": True,
        "secret_key": SECRET_KEY,
        "request_timeout_s": 5.0,
        "sync_timeout_s": 20.0,
    }
    base.update(overrides)
    return SyncConfig(**base)  # type: ignore[arg-type]


# -- a CalDAV transport for sync tests ----------------------------------------------------


class Gate(httpx.AsyncBaseTransport):
    """A real transport that can hold the multiget requests of a sync until released, and
    can hide sync-collection (a server that only has ctag/etag)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.hold = False
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.hide_sync_collection = False
        self.reports: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = request.content
        if request.method == "REPORT":
            kind = "sync-collection" if b"sync-collection" in body else "multiget"
            self.reports.append(kind)
            if kind == "sync-collection" and self.hide_sync_collection:
                return httpx.Response(403, content=b"<error/>", request=request)
            if kind == "multiget" and self.hold:
                self.entered.set()
                await self.release.wait()
        response = await self.inner.handle_async_request(request)
        if self.hide_sync_collection and request.method == "PROPFIND":
            raw = await response.aread()
            root = ET.fromstring(raw)  # trusted: our own Radicale
            for el in root.iter():
                if el.tag in ("{DAV:}sync-collection", "{DAV:}sync-token"):
                    el.tag = "{DAV:}hidden"
            return httpx.Response(
                response.status_code,
                headers={"Content-Type": "application/xml"},
                content=ET.tostring(root),
                request=request,
            )
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
async def gate() -> AsyncIterator[tuple[Gate, httpx.AsyncClient]]:
    g = Gate()
    async with httpx.AsyncClient(transport=g, timeout=10) as http:
        yield g, http
