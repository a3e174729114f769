"""Shared fixtures: real databases (SQLite file and PostgreSQL), the app, accounts."""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from slotguard.api.app import create_app
from slotguard.config import Settings
from slotguard.services import accounts
from slotguard.store.db import Database
from slotguard.store.migrate import upgrade_to_head
from tests import leaks
from tests.pg import pg_admin_url, pg_available, pg_create_database, pg_drop_database

STORES = ("sqlite", "postgres")


@dataclass
class Store:
    name: str
    url: str
    db: Database


def skip_or_fail_pg() -> None:
    message = (
        "PostgreSQL tests need a server: none answered at "
        f"{pg_admin_url()} (set SLOTGUARD_TEST_PG_URL)"
    )
    if os.environ.get("SLOTGUARD_REQUIRE_PG") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("sqlite") / "slotguard.db"
    url = f"sqlite:///{path}"
    upgrade_to_head(url)
    return url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    if not pg_available():
        skip_or_fail_pg()
    name = f"sg_test_{uuid.uuid4().hex[:10]}"
    url = pg_create_database(name)
    upgrade_to_head(url)
    yield url
    pg_drop_database(name)


@pytest.fixture(scope="session", params=STORES)
def store_url(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(store name, migrated database URL), for each store."""
    return request.param, request.getfixturevalue(f"{request.param}_url")


@pytest.fixture(scope="session")
async def store(store_url: tuple[str, str]) -> AsyncIterator[Store]:
    name, url = store_url
    db = Database.connect(url, pool_size=20)
    yield Store(name, url, db)
    await db.dispose()


@dataclass
class Tenant:
    account_id: str
    key: str
    client: httpx.AsyncClient
    store: Store

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", **extra}


async def new_tenant(store: Store, client: httpx.AsyncClient) -> Tenant:
    now = dt.datetime.now(dt.UTC)
    async with store.db.write() as s:
        account = await accounts.create_account(s, name="test", now=now)
        _, raw = await accounts.create_key(s, account_id=account.id, now=now, name="admin")
    return Tenant(account.id, raw, client, store)


@pytest.fixture(scope="session")
async def app_client(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(database_url=store.url, embedded_worker=False), db=store.db)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
async def tenant(store: Store, app_client: httpx.AsyncClient) -> Tenant:
    """A fresh account with an admin key: tests never see each other's objects."""
    return await new_tenant(store, app_client)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    del config
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("store_url") == "postgres":
            item.add_marker(pytest.mark.postgres)


# -- no secret in any log (tests/leaks.py) ---------------------------------------------

_log_root: Path | None = None


@pytest.fixture(scope="session", autouse=True)
def _session_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's temporary directory: every log of the session is written under it."""
    global _log_root
    _log_root = tmp_path_factory.getbasetemp()
    return _log_root


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Keep what the test process logged in each phase (captured by pytest) for the scan."""
    if _log_root is None:
        return
    # Sections accumulate over the phases of a test: keep only this phase's own.
    captured = [
        text
        for name, text in report.sections
        if name.startswith("Captured ") and name.endswith(f" {report.when}")
    ]
    if captured:
        with (_log_root / leaks.IN_PROCESS_LOG).open("a", encoding="utf-8") as out:
            out.write(f"===== {report.nodeid} ({report.when})\n")
            out.writelines(captured)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the session if any log it produced holds a secret it created."""
    del exitstatus
    if _log_root is None:
        return
    started = time.monotonic()
    hits = leaks.scan_session(_log_root)
    files = len(leaks.log_files(_log_root))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        note = (
            ""
            if session.config.getoption("capture") != "no"
            else (" (capture disabled: the test process's own output was not kept)")
        )
        reporter.write_line(
            f"log scan: {files} log files, {len(hits)} secrets found, "
            f"{time.monotonic() - started:.1f}s{note}"
        )
        for hit in hits[:50]:
            reporter.write_line(f"SECRET IN LOG: {hit}", red=True)
    if hits:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
