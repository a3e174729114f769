"""Calendar credentials (§7.4): encrypted at rest, bound to their calendar, key rotation with
`slotguard admin rotate-secret-key`, and never in a log of a real server process."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from slotguard.api.app import create_app
from slotguard.calendars.credentials import CredentialError, SecretBox, secret_box
from slotguard.calendars.sync import CalendarSync
from slotguard.config import Settings
from slotguard.store.db import Database
from slotguard.store.migrate import upgrade_to_head
from slotguard.store.models import Calendar
from tests.api.helpers import book, future_day, make_business
from tests.calendars.conftest import Radicale, sync_config
from tests.conftest import Store, Tenant, new_tenant
from tests.race.conftest import cluster_on, new_race_database

H = dt.timedelta(hours=1)


# -- the box ----------------------------------------------------------------------------


def test_passphrase_and_fernet_keys_both_work_and_are_distinct() -> None:
    fernet_key = Fernet.generate_key().decode()
    for key in ("a long passphrase, not a Fernet key", fernet_key):
        box = SecretBox(key)
        token = box.seal("cal_1", {"password": "pw-123"})
        assert "pw-123" not in token
        assert box.open("cal_1", token) == {"password": "pw-123"}
    # A Fernet key is used as it is, so the token opens with plain Fernet too.
    token = SecretBox(fernet_key).seal("cal_1", {"password": "x"})
    assert b"cal_1" in Fernet(fernet_key.encode()).decrypt(token.encode())
    with pytest.raises(CredentialError):
        SecretBox("another passphrase").open("cal_1", token)
    assert secret_box(None) is None and secret_box("  ") is None


def test_a_token_is_bound_to_its_calendar() -> None:
    box = SecretBox("k")
    token = box.seal("cal_1", {"password": "pw"})
    with pytest.raises(CredentialError, match="another calendar"):
        box.open("cal_2", token)
    with pytest.raises(CredentialError):
        box.open("cal_1", "not a token")


def test_a_key_list_encrypts_with_the_first_and_decrypts_with_all() -> None:
    old = SecretBox("old key")
    token = old.seal("cal_1", {"password": "pw"})
    both = SecretBox("new key, old key")
    assert both.open("cal_1", token) == {"password": "pw"}
    rotated = both.rotate(token)
    assert SecretBox("new key").open("cal_1", rotated) == {"password": "pw"}
    with pytest.raises(CredentialError):
        old.open("cal_1", rotated)
    with pytest.raises(CredentialError):
        SecretBox("unrelated").rotate(token)


# -- rotate-secret-key ---------------------------------------------------------------------


def run_cli(db_url: str, secret_key: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "slotguard"
    env = {k: v for k, v in os.environ.items() if k != "SLOTGUARD_SECRET_KEY"}
    env.update({"DATABASE_URL": db_url, "SLOTGUARD_LOG_LEVEL": "WARNING"})
    if secret_key is not None:
        env["SLOTGUARD_SECRET_KEY"] = secret_key
    return subprocess.run(
        [str(exe), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(db_url.removeprefix("sqlite:///")).parent,
        timeout=60,
        check=False,
    )


@pytest.mark.slow
async def test_rotate_secret_key_reencrypts_every_credential(
    tmp_path: Path, radicale: Radicale
) -> None:
    url = f"sqlite:///{tmp_path / 'rotate.db'}"
    await asyncio.to_thread(upgrade_to_head, url)
    db = Database.connect(url, pool_size=2)
    old_key, new_key = "the old calendar key", "the new calendar key"
    settings = Settings(
        database_url=url, embedded_worker=False, allow_private_calendars=True, secret_key=old_key
    )
    app = create_app(settings, db=db)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as client:
            t = await new_tenant(Store("sqlite", url, db), client)
            biz = await make_business(t)
            ids: list[str] = []
            for _ in range(2):
                r = await client.post(
                    f"/v1/businesses/{biz['id']}/calendars",
                    json={
                        "provider": "caldav",
                        "url": radicale.new_calendar(),
                        "username": radicale.user,
                        "password": radicale.password,
                    },
                    headers=t.headers(),
                )
                assert r.status_code == 201, r.text
                ids.append(r.json()["data"]["id"])
        good, lost = ids
        # The second one was sealed with a key nobody has any more.
        async with db.write() as s:
            row = await s.get(Calendar, lost)
            assert row is not None
            row.credentials = SecretBox("a key that was thrown away").seal(lost, {"password": "x"})
        async with db.read() as s:
            before = {c.id: (c.credentials, c.credentials_version) for c in await _rows(s, ids)}

        assert run_cli(url, None, "admin", "rotate-secret-key").returncode == 2
        done = run_cli(url, f"{new_key},{old_key}", "admin", "rotate-secret-key")
        assert done.returncode == 1, done.stdout + done.stderr
        assert "1 calendar credential(s) re-encrypted" in done.stdout
        assert lost in done.stderr and good not in done.stderr

        async with db.read() as s:
            after = {c.id: (c.credentials, c.credentials_version) for c in await _rows(s, ids)}
        assert after[lost] == before[lost]  # left alone
        token, version = after[good]
        assert token is not None and token != before[good][0]
        assert version == before[good][1]  # the secret itself did not change
        assert SecretBox(new_key).open(good, token)["password"] == radicale.password
        with pytest.raises(CredentialError):
            SecretBox(old_key).open(good, token)

        # The old key can go now: a worker with only the new key syncs the calendar.
        engine = CalendarSync(db, config=sync_config(secret_key=new_key))
        assert await engine.sync_one(good) == "synced"
        assert await engine.sync_one(lost) == "failed"
        async with db.read() as s:
            row = await s.get(Calendar, lost)
            assert row is not None and row.status == "error"
            assert row.last_error is not None
            assert "SLOTGUARD_SECRET_KEY" in row.last_error["message"]
    finally:
        await db.dispose()


async def _rows(s: Any, ids: list[str]) -> list[Calendar]:
    return [c for c in [await s.get(Calendar, i, populate_existing=True) for i in ids] if c]


# -- never in a log -----------------------------------------------------------------------


@pytest.mark.slow
async def test_calendar_passwords_never_reach_a_server_log(
    tmp_path: Path, radicale: Radicale
) -> None:
    """A real `slotguard serve` at DEBUG, with its embedded worker syncing and writing back:
    neither the password nor its Basic-auth form appears anywhere in its output."""
    basic = base64.b64encode(f"{radicale.user}:{radicale.password}".encode()).decode()
    with new_race_database("sqlite", tmp_path) as rdb, cluster_on(rdb, tmp_path) as cluster:
        cluster.env.update(
            {
                "SLOTGUARD_LOG_LEVEL": "DEBUG",
                "SLOTGUARD_SECRET_KEY": "a passphrase for the log test",
                "SLOTGUARD_ALLOW_PRIVATE_CALENDARS": "1",
                "SLOTGUARD_CALENDAR_SYNC_SECONDS": "5",
            }
        )
        (server,) = cluster.start(1)
        async with httpx.AsyncClient(
            base_url=server.base_url,
            headers={"Authorization": f"Bearer {cluster.api_key}"},
            timeout=30,
        ) as client:
            t = Tenant("", cluster.api_key, client, None)  # type: ignore[arg-type]
            biz = await make_business(t)
            base = f"/v1/businesses/{biz['id']}/calendars"
            collection = radicale.new_calendar()
            wrong = await client.post(
                base,
                json={
                    "provider": "caldav",
                    "url": collection,
                    "username": radicale.user,
                    "password": radicale.password + "-wrong",
                },
            )
            assert wrong.status_code == 422
            userinfo = collection.replace("http://", f"http://{radicale.user}:{radicale.password}@")
            r = await client.post(
                base, json={"provider": "caldav", "url": userinfo, "role": "both"}
            )
            assert r.status_code == 201, r.text
            cal_id = r.json()["data"]["id"]
            assert (await client.post(f"{base}/{cal_id}/sync")).status_code == 200
            day = future_day()
            made = await book(t, biz["id"], day + 9 * H, 30)
            assert made.status_code == 201, made.text
            booking_id = made.json()["data"]["id"]
            status = ""
            for _ in range(100):  # the embedded worker writes the event back
                got = await client.get(f"/v1/bookings/{booking_id}")
                status = got.json()["data"]["calendar_sync_status"]
                if status == "synced":
                    break
                await asyncio.sleep(0.1)
            assert status == "synced"
            # A failing sync logs its error too.
            direct = Database.connect(rdb.url, pool_size=1)
            try:
                async with direct.write() as s:
                    row = await s.get(Calendar, cal_id)
                    assert row is not None
                    row.url = collection + "missing/"
                    row.next_sync_at = dt.datetime.now(dt.UTC)
            finally:
                await direct.dispose()
            for _ in range(100):
                got = await client.get(f"{base}/{cal_id}")
                if got.json()["data"]["status"] == "error":
                    break
                await asyncio.sleep(0.1)
            assert got.json()["data"]["status"] == "error"
            assert radicale.password not in got.text
        cluster.stop()
        log = server.log()
    assert "calendar_sync" in log and "HTTP Request" in log  # the log is really there
    assert radicale.password not in log
    assert basic not in log
