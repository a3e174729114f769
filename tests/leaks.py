"""No secret in any log: the secrets a test session creates, and the scan of its logs.

Secrets are known three ways:
- by shape: API keys (`sg_live_…`) and webhook secrets (`whsec_…`), wherever they come from;
- by registration: passwords, passphrases and tokens the tests or their fakes make go through
  `secret()`; an API key registered there also registers its hash;
- by harvest: before a test database is dropped (PostgreSQL) and at the end of the session
  (every SQLite file under the session's temporary directory), the key hashes and webhook
  secrets stored in it are collected, so keys minted inside server processes count too.

Logs are everything the session wrote: what pytest captured from the test process (stdout,
stderr and log records of every phase of every test, appended to `in-process.log`), and every
`*.log` file under the session's temporary directory, where spawned `slotguard serve`
processes write theirs. The scan runs when the session ends and fails the session on a hit.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from slotguard.services.keys import KEY_PREFIX, hash_key

API_KEY = re.compile(re.escape(KEY_PREFIX) + r"[A-Za-z0-9_-]{16,}")
WEBHOOK_SECRET = re.compile(r"whsec_[A-Za-z0-9+/]{16,}")
HEX64 = re.compile(r"(?<![0-9a-fA-F])[0-9a-f]{64}(?![0-9a-fA-F])")

IN_PROCESS_LOG = "in-process.log"
# §10: `serve` on an empty database prints its first admin key once, on the line after this
# one. That console output is the contract; the key anywhere else is a leak.
SHOWN_ONCE = "admin key (shown once):"

_lock = threading.Lock()
_literals: set[str] = set()
_hashes: set[str] = set()


def secret(value: str) -> str:
    """Register a secret a test made (returns it, to wrap the assignment)."""
    with _lock:
        _literals.add(value)
        if value.startswith(KEY_PREFIX):
            _hashes.add(hash_key(value))
    return value


def _remember_stored(hashes: Iterable[object], secrets: Iterable[object]) -> None:
    with _lock:
        _hashes.update(h for h in hashes if isinstance(h, str))
        _literals.update(s for s in secrets if isinstance(s, str) and s)


_HASH_SQL = "SELECT key_hash FROM api_keys"
_SECRET_SQL = "SELECT secret, previous_secret FROM webhook_endpoints"


def harvest_sqlite(path: Path) -> None:
    """Collect stored secrets of one SQLite file (not a slotguard database: nothing)."""
    uri = f"file:{path}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as conn:
            hashes = [r[0] for r in conn.execute(_HASH_SQL)]
            secrets = [v for row in conn.execute(_SECRET_SQL) for v in row]
    except sqlite3.Error:
        return
    _remember_stored(hashes, secrets)


def harvest_pg(dsn: str) -> None:
    """Collect stored secrets of one PostgreSQL database (callable inside an event loop)."""

    async def run() -> None:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            hashes = [r[0] for r in await conn.fetch(_HASH_SQL)]
            secrets = [v for row in await conn.fetch(_SECRET_SQL) for v in row]
        except asyncpg.UndefinedTableError:
            return
        finally:
            await conn.close()
        _remember_stored(hashes, secrets)

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


@dataclass(frozen=True)
class Hit:
    path: Path
    line: int
    kind: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.kind} ({self.excerpt})"


def _redact(value: str) -> str:
    return value[:10] + "…" if len(value) > 10 else "…"


def _shown_once(text: str, index: int) -> bool:
    """Whether the key at `index` is alone on the line after the §10 announcement."""
    start = text.rfind("\n", 0, index) + 1
    end = text.find("\n", index)
    line = text[start : end if end >= 0 else len(text)]
    previous = text[text.rfind("\n", 0, max(start - 1, 0)) + 1 : max(start - 1, 0)]
    return previous.rstrip().endswith(SHOWN_ONCE) and line.strip() == text[index:].split()[0]


def scan_text(text: str) -> Iterator[tuple[int, str, str]]:
    """(line number, kind, redacted secret) of every secret in `text`.

    One pass per shape over the whole text, one substring search per registered secret.
    """
    with _lock:
        literals = set(_literals)
        hashes = set(_hashes)

    def line_of(index: int) -> int:
        return text.count("\n", 0, index) + 1

    for m in API_KEY.finditer(text):
        if not _shown_once(text, m.start()):
            yield line_of(m.start()), "API key", _redact(m.group())
    for m in WEBHOOK_SECRET.finditer(text):
        yield line_of(m.start()), "webhook secret", _redact(m.group())
    for m in HEX64.finditer(text):
        if m.group() in hashes:
            yield line_of(m.start()), "API key hash", _redact(m.group())
    for value in sorted(literals):
        index = text.find(value)
        if index >= 0:
            yield line_of(index), "registered secret", _redact(value)


def log_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.log") if p.is_file())


def scan_session(root: Path) -> list[Hit]:
    """Harvest the SQLite databases under `root`, then scan every log file under it."""
    for db in root.rglob("*.db"):
        harvest_sqlite(db)
    hits = []
    for path in log_files(root):
        text = path.read_text(errors="replace")
        hits.extend(Hit(path, n, kind, excerpt) for n, kind, excerpt in scan_text(text))
    return hits
