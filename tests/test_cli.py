"""The `slotguard` command: migrate, admin create-account / create-key, keys that work."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from slotguard.api.app import create_app
from slotguard.config import Settings
from slotguard.store.db import Database


def slotguard(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "slotguard"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "SLOTGUARD_LOG_LEVEL": "WARNING",
    }
    return subprocess.run(
        [str(exe), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )


async def test_admin_commands_create_working_keys(tmp_path: Path) -> None:
    assert slotguard(tmp_path, "migrate").returncode == 0
    made = slotguard(tmp_path, "admin", "create-account", "--name", "acme")
    assert made.returncode == 0, made.stderr
    account = re.search(r"account: (acct_\w+)", made.stdout)
    first = re.search(r"(sg_live_[\w-]+)", made.stdout)
    assert account and first
    more = slotguard(tmp_path, "admin", "create-key", "--account", account.group(1))
    assert more.returncode == 0, more.stderr
    second = re.search(r"(sg_live_[\w-]+)", more.stdout)
    assert second and second.group(1) != first.group(1)
    missing = slotguard(tmp_path, "admin", "create-key", "--account", "acct_nope")
    assert missing.returncode == 1
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    db = Database.connect(url)
    app = create_app(Settings(database_url=url, embedded_worker=False), db=db)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as c:
            for key in (first.group(1), second.group(1)):
                r = await c.get(
                    "/v1/meeting-classes/default", headers={"Authorization": f"Bearer {key}"}
                )
                assert r.status_code == 200, r.text
    finally:
        await db.dispose()
    # Keys are stored only as hashes.
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("cli.db*"))
    assert first.group(1).encode() not in raw and second.group(1).encode() not in raw
