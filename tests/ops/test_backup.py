"""The README's SQLite backups, taken while the server runs, restore into a working server."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import httpx
import pytest

from tests.ops.conftest import start_server

pytestmark = pytest.mark.slow

KEY = "sg_live_backup_test_key_0123456789"


def _book(base_url: str) -> str:
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=10) as c:
        biz = c.post(
            "/v1/businesses", json={"name": "Backup", "timezone": "UTC"}
        ).raise_for_status()
        biz_id = biz.json()["data"]["id"]
        slots = c.get(
            "/v1/availability/slots", params={"business_id": biz_id, "limit": 1}
        ).raise_for_status()
        start = slots.json()["data"]["slots"][0]["start"]
        booking = c.post(
            "/v1/bookings",
            json={"business_id": biz_id, "start_time": start, "customer_email": "b@example.com"},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        ).raise_for_status()
        return str(booking.json()["data"]["id"])


@pytest.mark.parametrize("method", ["vacuum_into", "backup_api"])
def test_online_backup_restores(tmp_path: Path, method: str) -> None:
    live = tmp_path / "live"
    live.mkdir()
    srv = start_server(live, "--no-worker", env={"SLOTGUARD_BOOTSTRAP_API_KEY": KEY})
    restored = tmp_path / "restored"
    restored.mkdir()
    try:
        srv.wait_ready()
        booking_id = _book(srv.base_url)
        # Taken while the server runs (its WAL holds the latest writes).
        with sqlite3.connect(live / "slotguard.db") as conn:
            if method == "vacuum_into":
                conn.execute("VACUUM INTO ?", (str(restored / "slotguard.db"),))
            else:
                with sqlite3.connect(restored / "slotguard.db") as target:
                    conn.backup(target)
        conn.close()
    finally:
        srv.stop()

    again = start_server(restored, "--no-worker")
    try:
        again.wait_ready()
        r = httpx.get(
            f"{again.base_url}/v1/bookings/{booking_id}",
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        assert r.json()["data"]["status"] == "confirmed"
    finally:
        again.stop()
    # The restored database was not empty: no new account, no new admin key printed.
    assert "sg_live_" not in again.log()
