"""Real counterparts for the side-effect senders: an HTTP receiver, an SMTP server, a cert.

Everything listens on 127.0.0.1 on a free port and is started by the test that needs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from tests.leaks import secret


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- a self-signed certificate for localhost / 127.0.0.1 ------------------------------------


@dataclass(frozen=True)
class SelfSignedCert:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture(scope="session")
def test_cert(tmp_path_factory: pytest.TempPathFactory) -> SelfSignedCert:
    # The `cryptography` package is not installed; the openssl CLI does the same job.
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl CLI not available to make a self-signed certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return SelfSignedCert(cert=cert, key=key)


# --- HTTP receiver --------------------------------------------------------------------------


@dataclass
class ReceivedRequest:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


Behaviour = int | tuple[int, bytes] | tuple[int, bytes, dict[str, str]] | str
"""A status code; (status, body[, headers]); or "hang" (never answer)."""


@dataclass
class HttpReceiver:
    """A tiny HTTP/1.1 server on asyncio streams: records requests, answers from a script."""

    behaviours: list[Behaviour] = field(default_factory=list)
    ssl_context: ssl.SSLContext | None = None
    requests: list[ReceivedRequest] = field(default_factory=list)
    connections: int = 0
    sni: list[str | None] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context else "http"

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    async def start(self) -> None:
        if self.ssl_context is not None:

            def remember_sni(_obj: Any, name: str | None, _ctx: Any) -> None:
                self.sni.append(name)

            self.ssl_context.sni_callback = remember_sni
        self._server = await asyncio.start_server(
            self._on_connect, "127.0.0.1", 0, ssl=self.ssl_context
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self._release.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._handle(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, target, _version = request_line.split(" ", 2)
            headers: dict[str, str] = {}
            for line in header_lines:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(ReceivedRequest(method, target, headers, body))

            behaviour = self.behaviours.pop(0) if self.behaviours else 200
            if behaviour == "hang":
                await self._release.wait()
                return
            extra: dict[str, str] = {}
            if isinstance(behaviour, int):
                status, payload = behaviour, b"ok"
            elif isinstance(behaviour, tuple) and len(behaviour) == 2:
                status, payload = behaviour
            elif isinstance(behaviour, tuple):
                status, payload, extra = behaviour
            else:
                raise AssertionError(f"unknown behaviour {behaviour!r}")
            head_out = f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
            for name, value in {
                "Content-Type": "text/plain",
                "Content-Length": str(len(payload)),
                "Connection": "close",
                **extra,
            }.items():
                head_out += f"{name}: {value}\r\n"
            writer.write(head_out.encode("latin-1") + b"\r\n" + payload)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()


@pytest.fixture
async def http_receiver() -> AsyncIterator[Callable[..., Any]]:
    """``await make(behaviours, ssl_context=None)`` starts a receiver, stopped at teardown."""
    started: list[HttpReceiver] = []

    async def make(
        behaviours: list[Behaviour] | None = None, *, ssl_context: ssl.SSLContext | None = None
    ) -> HttpReceiver:
        receiver = HttpReceiver(behaviours=list(behaviours or []), ssl_context=ssl_context)
        await receiver.start()
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        await receiver.stop()


# --- SMTP server ----------------------------------------------------------------------------


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    login: str | None
    tls: bool


class CollectingHandler:
    """aiosmtpd handler: keeps every message; refuses bounce@… (550) and later@… (451)."""

    def __init__(self) -> None:
        self.mails: list[ReceivedMail] = []

    async def handle_RCPT(
        self,
        server: SMTPServer,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.startswith("bounce@"):
            return "550 5.1.1 No such user"
        if address.startswith("later@"):
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        auth = session.auth_data
        login = auth.login.decode() if isinstance(auth, LoginPassword) else None
        transport = server.transport
        implicit_tls = transport is not None and transport.get_extra_info("ssl_object") is not None
        self.mails.append(
            ReceivedMail(
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                content=bytes(envelope.original_content or b""),
                login=login,
                tls=session.ssl is not None or implicit_tls,
            )
        )
        return "250 Message accepted"


# The one SMTP password of the tests, and the form it takes inside an smtp:// URL.
SMTP_PASSWORD = secret("s3cr:et@")
secret("s3cr%3Aet%40")


def _authenticator(
    server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (
        auth_data.login == b"mailer" and auth_data.password == SMTP_PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


@dataclass
class SmtpServer:
    handler: CollectingHandler
    port: int


@pytest.fixture
def smtp_server() -> Iterator[Callable[..., SmtpServer]]:
    """``make(auth=False, starttls=None, implicit_tls=None)`` starts an aiosmtpd server."""
    controllers: list[Controller] = []

    def make(
        *,
        auth: bool = False,
        starttls: ssl.SSLContext | None = None,
        implicit_tls: ssl.SSLContext | None = None,
    ) -> SmtpServer:
        handler = CollectingHandler()
        port = free_port()
        kwargs: dict[str, Any] = {}
        if auth:
            kwargs.update(authenticator=_authenticator, auth_require_tls=False)
        if starttls is not None:
            kwargs.update(tls_context=starttls, require_starttls=True)
        controller = Controller(
            handler,
            hostname="127.0.0.1",
            port=port,
            ssl_context=implicit_tls,
            server_hostname="smtp.test",
            ready_timeout=5.0,
            **kwargs,
        )
        controller.start()
        controllers.append(controller)
        return SmtpServer(handler=handler, port=port)

    yield make
    for controller in controllers:
        controller.stop()
