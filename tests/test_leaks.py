"""The log scan of tests/leaks.py finds each kind of secret it is meant to find.

The planted logs live outside the session's temporary directory, which the real scan reads.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from slotguard.services import accounts
from slotguard.services.keys import hash_key, mint_key
from slotguard.store.db import Database
from slotguard.store.migrate import upgrade_to_head_async
from tests import leaks


@pytest.fixture
def outside() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="slotguard-leaks-") as d:
        yield Path(d)


def kinds(text: str) -> list[str]:
    return [kind for _, kind, _ in leaks.scan_text(text)]


def test_shapes_are_found_anywhere_in_a_line() -> None:
    key = mint_key()
    assert kinds(f'{{"event": "x", "detail": "Bearer {key}"}}') == ["API key"]
    assert kinds("secret=whsec_" + "A" * 43 + "=") == ["webhook secret"]
    assert kinds('{"event": "request", "path": "/v1/bookings", "status": 200}') == []


def test_only_the_announced_first_admin_key_is_allowed() -> None:
    key = mint_key()
    announced = f"slotguard: created account acct_1; admin key (shown once):\n  {key}\n"
    assert kinds(announced) == []
    assert kinds(announced + f"request with {key}\n") == ["API key"]
    assert kinds(f"admin key (shown once): {key}\n") == ["API key"]


def test_registered_secrets_and_key_hashes_are_found(outside: Path) -> None:
    password = leaks.secret(f"pw-{uuid.uuid4().hex}")
    key = leaks.secret(mint_key())
    log = outside / "server.log"
    log.write_text(f"line one\nconnect failed for user:{password}@host\n[{hash_key(key)}]\n")
    hits = leaks.scan_session(outside)
    assert [(h.line, h.kind) for h in hits] == [(3, "API key hash"), (2, "registered secret")]
    assert password not in str(hits[1]) and "server.log:2" in str(hits[1])


async def test_key_hashes_stored_in_a_database_are_harvested(outside: Path) -> None:
    url = f"sqlite:///{outside / 'harvest.db'}"
    await upgrade_to_head_async(url)
    db = Database.connect(url)
    try:
        async with db.write() as s:
            now = dt.datetime.now(dt.UTC)
            account = await accounts.create_account(s, name="h", now=now)
            _, raw = await accounts.create_key(s, account_id=account.id, now=now)
    finally:
        await db.dispose()
    (outside / "other.log").write_text(f"key_hash={hash_key(raw)}\n")
    assert [h.kind for h in leaks.scan_session(outside)] == ["API key hash"]
