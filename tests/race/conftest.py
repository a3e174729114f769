"""Real `slotguard serve` processes sharing one database, for the race tests.

Each store (SQLite file, throwaway PostgreSQL database) gets a module-wide cluster of two
server processes: the first is started and must answer `/readyz` before the second starts.
`start_servers(..., together=True)` starts several at the same instant instead (first start
on an empty database). Every process writes stdout and stderr to one log file; the tail of
each is attached to the report of a failing test. Teardown sends SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.pg import pg_admin_url, pg_available, pg_create_database, pg_drop_database

READY_TIMEOUT_S = 40.0
STOP_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 60

STORE_PARAMS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _skip_or_fail_pg() -> None:
    message = (
        "PostgreSQL race tests need a server: none answered at "
        f"{pg_admin_url()} (set SLOTGUARD_TEST_PG_URL)"
    )
    if os.environ.get("SLOTGUARD_REQUIRE_PG") == "1":
        pytest.fail(message)
    pytest.skip(message)


def _serve_command() -> list[str]:
    """The installed `slotguard` script next to this interpreter (the package has no __main__)."""
    script = Path(sys.executable).with_name("slotguard")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from slotguard.cli import app; app()"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class RaceDatabase:
    """One empty database (no migrations run: the servers do that) and direct SQL access."""

    store: str
    url: str

    @property
    def sqlite_path(self) -> str:
        database = make_url(self.url).database
        assert database
        return database

    def _asyncpg_dsn(self) -> str:
        return make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)

    async def fetch(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        """A plain read query. `$1`-style parameters on PostgreSQL, `?` on SQLite."""
        if self.store == "sqlite":
            uri = f"file:{self.sqlite_path}?mode=ro"
            with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=30)) as conn:
                return [tuple(r) for r in conn.execute(sql.replace("$1", "?"), args)]
        conn = await asyncpg.connect(self._asyncpg_dsn(), timeout=5)
        try:
            return [tuple(r) for r in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    async def active_reservations(
        self, business_id: str
    ) -> list[tuple[dt.datetime, dt.datetime, str, str | None]]:
        """(start, end, kind, booking_id) of the business's active reservations, by start."""
        rows = await self.fetch(
            "SELECT start_at, end_at, kind, booking_id FROM reservations "
            "WHERE business_id = $1 AND active ORDER BY start_at",
            business_id,
        )
        return [(_instant(r[0]), _instant(r[1]), str(r[2]), r[3]) for r in rows]  # type: ignore[misc]


def _instant(value: object) -> dt.datetime:
    if isinstance(value, str):  # SQLite stores naive UTC text
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


@contextlib.contextmanager
def new_race_database(store: str, tmp_path: Path) -> Iterator[RaceDatabase]:
    if store == "sqlite":
        yield RaceDatabase(store, f"sqlite:///{tmp_path / 'race.db'}")
        return
    if not pg_available():
        _skip_or_fail_pg()
    name = f"sg_race_{uuid.uuid4().hex[:10]}"
    url = pg_create_database(name)
    try:
        yield RaceDatabase(store, url)
    finally:
        pg_drop_database(name)


@dataclass
class ServerProcess:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        text = "\n".join(self.log().splitlines()[-lines:])
        state = "running" if self.alive() else f"exited with {self.proc.returncode}"
        return f"--- {self.name} (port {self.port}, pid {self.proc.pid}, {state}) ---\n{text}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT_S)


@dataclass
class Cluster:
    """Server processes on one database, all accepting `api_key` (the bootstrap admin key)."""

    db: RaceDatabase
    api_key: str
    workdir: Path
    servers: list[ServerProcess] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    """More environment for the processes started from now on (settings under test)."""

    def tails(self) -> str:
        return "\n".join(s.tail() for s in self.servers)

    def check_alive(self) -> None:
        dead = [s for s in self.servers if not s.alive()]
        assert not dead, "server process died:\n" + "\n".join(s.tail() for s in dead)

    def _spawn(self, name: str) -> ServerProcess:
        env = {
            **os.environ,
            "DATABASE_URL": self.db.url,
            "SLOTGUARD_BOOTSTRAP_API_KEY": self.api_key,
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        port = _free_port()
        log_path = self.workdir / f"{name}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [*_serve_command(), "serve", "--host", "127.0.0.1", "--port", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.workdir,  # no stray .env from the repository
                start_new_session=True,
            )
        server = ServerProcess(name, port, proc, log_path)
        self.servers.append(server)
        return server

    def _wait_ready(self, server: ServerProcess) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        last = "no answer"
        with httpx.Client(timeout=2.0) as http:
            while time.monotonic() < deadline:
                if not server.alive():
                    pytest.fail(f"{server.name} exited before it was ready:\n{server.tail()}")
                try:
                    r = http.get(f"{server.base_url}/readyz")
                    if r.status_code == 200:
                        return
                    last = f"{r.status_code} {r.text}"
                except httpx.TransportError as exc:
                    last = repr(exc)
                time.sleep(0.1)
        pytest.fail(f"{server.name} not ready after {READY_TIMEOUT_S}s ({last}):\n{server.tail()}")

    def start(self, count: int, *, together: bool = False) -> list[ServerProcess]:
        """Start `count` more servers: one by one (each ready first) or all at once."""
        base = len(self.servers)
        names = [f"p{base + i}" for i in range(count)]
        if together:
            started = [self._spawn(n) for n in names]
            for s in started:
                self._wait_ready(s)
            return started
        started = []
        for n in names:
            s = self._spawn(n)
            self._wait_ready(s)
            started.append(s)
        return started

    def stop(self) -> None:
        for s in self.servers:
            with contextlib.suppress(Exception):
                if s.alive():
                    s.proc.send_signal(signal.SIGTERM)
        for s in self.servers:
            s.stop()


@contextlib.contextmanager
def cluster_on(db: RaceDatabase, workdir: Path) -> Iterator[Cluster]:
    cluster = Cluster(db=db, api_key=f"sg_live_race_{uuid.uuid4().hex}", workdir=workdir)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module", params=STORE_PARAMS)
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """Two server processes on one fresh database of the store, started one after the other."""
    store: str = request.param
    workdir = tmp_path_factory.mktemp(f"race_{store}")
    with new_race_database(store, workdir) as db, cluster_on(db, workdir) as c:
        t0 = time.monotonic()
        c.start(2)
        print(
            f"\n[{store}] 2 servers ready in {time.monotonic() - t0:.1f}s "
            f"(ports {[s.port for s in c.servers]})"
        )
        yield c


@pytest.fixture
def fresh_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    """An empty database of the store (`store` param of the test) with no server yet."""
    store: str = request.param
    with new_race_database(store, tmp_path) as db, cluster_on(db, tmp_path) as c:
        yield c


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        for name in ("cluster", "fresh_cluster"):
            c = funcargs.get(name)
            if isinstance(c, Cluster) and c.servers:
                report.sections.append((f"server logs ({name}, {report.when})", c.tails()))
                if item.config.getoption("capture") == "no":
                    print(f"\n=== server log tails ({name}) ===\n{c.tails()}")
    return report
