"""The owner's dashboard (§12) without JavaScript: sign-in by one-time link, sessions,
bookings with cancel, live holds, calendars, outbox health, the audit log."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import update

from slotguard.api.app import create_app
from slotguard.services import booking_pages
from slotguard.services.booking_pages import token_hash
from slotguard.store import pages_repo
from slotguard.store.db import Database
from slotguard.store.models import Calendar, DashboardToken, PageHold
from tests.api.helpers import book, future_day, iso, key
from tests.conftest import Tenant
from tests.pages.conftest import Site, browser, page_settings
from tests.pages.html import read


async def login_link(t: Tenant) -> str:
    async with t.store.db.write() as s:
        return await booking_pages.create_login_link(s, t.account_id, now=dt.datetime.now(dt.UTC))


async def sign_in(client: httpx.AsyncClient, t: Tenant) -> httpx.Response:
    raw = await login_link(t)
    page = read((await client.get(f"/dashboard/login/{raw}")).text)
    form = page.form("/dashboard/login/")
    return await client.post(form.action, data=form.fields)


async def test_sign_in_once_and_out(site: Site, pages_app: Any) -> None:
    t = site.tenant
    async with browser(pages_app) as client:
        r = await client.get("/dashboard")
        assert r.status_code == 401
        assert "slotguard admin login-link" in r.text
        raw = await login_link(t)
        # Fetching the link (a mail client's preview) spends nothing.
        first = read((await client.get(f"/dashboard/login/{raw}")).text).form("/dashboard/login/")
        await client.get(f"/dashboard/login/{raw}")
        signed = await client.post(first.action, data=first.fields)
        assert signed.status_code == 303
        cookie = next(
            v for k, v in signed.headers.multi_items() if k == "set-cookie" and "sg_session" in v
        )
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/dashboard" in cookie
        assert "Secure" in cookie
        assert (await client.get("/dashboard")).status_code == 200
        # The link is spent: a second use (another browser) is refused.
        async with browser(pages_app) as other:
            await other.get(f"/dashboard/login/{raw}")
            again = read((await other.get(f"/dashboard/login/{raw}")).text)
            form = again.form("/dashboard/login/")
            refused = await other.post(form.action, data=form.fields)
            assert refused.status_code == 401
            assert "already used or has expired" in refused.text
            assert (await other.get("/dashboard")).status_code == 401
        # Only hashes are stored.
        async with t.store.db.read() as s:
            assert await s.get(DashboardToken, raw) is None
            assert (await s.get(DashboardToken, token_hash(raw))) is not None
        page = read((await client.get("/dashboard")).text)
        out = page.form("/dashboard/logout")
        assert (await client.post(out.action, data=out.fields)).status_code == 303
        assert (await client.get("/dashboard")).status_code == 401


async def test_expired_link_is_refused(site: Site, pages_app: Any) -> None:
    t = site.tenant
    raw = await login_link(t)
    async with t.store.db.write() as s:
        await s.execute(
            update(DashboardToken)
            .where(DashboardToken.token_hash == token_hash(raw))
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    async with browser(pages_app) as client:
        form = read((await client.get(f"/dashboard/login/{raw}")).text).form("/dashboard/login/")
        assert (await client.post(form.action, data=form.fields)).status_code == 401


async def test_bookings_holds_outbox_and_cancel(site: Site, pages_app: Any) -> None:
    t = site.tenant
    start = future_day(3).replace(hour=10)
    made = await book(
        t, site.business["id"], start, customer_email="cy@example.com", customer_name="Cy Young"
    )
    assert made.status_code == 201, made.text
    booking_id = made.json()["data"]["id"]
    held = await t.client.post(
        "/v1/availability",
        json={
            "business_id": site.business["id"],
            "window": {
                "start": iso(start + dt.timedelta(hours=2)),
                "end": iso(start + dt.timedelta(hours=4)),
            },
        },
        headers=t.headers(),
    )
    assert held.status_code == 200, held.text
    hold_id = held.json()["data"]["hold_id"]
    async with browser(pages_app) as client:
        assert (await sign_in(client, t)).status_code == 303
        r = await client.get("/dashboard")
        assert r.status_code == 200
        assert "sg_live_" not in r.text
        page = read(r.text)
        assert "Dr. Test" in page.text and "Cy Young" in page.text
        assert hold_id in page.text
        assert "No calendars connected" in page.text
        assert "Outbox" in page.text and "email" in page.text
        cancel = page.form(f"/dashboard/bookings/{booking_id}/cancel")
        # Without the CSRF token nothing happens.
        bad = await client.post(cancel.action, data={})
        assert bad.status_code == 403
        done = await client.post(cancel.action, data=cancel.fields)
        assert done.status_code == 303
        after = read((await client.get(done.headers["location"])).text)
        assert "The booking is cancelled" in after.text
        assert "Cy Young" not in after.text
    got = await t.client.get(f"/v1/bookings/{booking_id}", headers=t.headers())
    assert got.json()["data"]["status"] == "cancelled"


async def test_cancel_needs_a_session_and_the_own_account(site: Site, pages_app: Any) -> None:
    t = site.tenant
    made = await book(t, site.business["id"], future_day(4).replace(hour=9))
    booking_id = made.json()["data"]["id"]
    async with browser(pages_app) as client:
        page = read((await client.get("/dashboard")).text)  # a visitor cookie, no session
        csrf = page.forms[0].fields.get("csrf", "") if page.forms else ""
        r = await client.post(f"/dashboard/bookings/{booking_id}/cancel", data={"csrf": csrf})
        assert r.status_code in (401, 403)
    async with browser(pages_app) as client:
        from tests.conftest import new_tenant

        other = await new_tenant(t.store, client)
        await sign_in(client, other)
        page = read((await client.get("/dashboard")).text)
        csrf = page.form("/dashboard/logout").fields["csrf"]
        r = await client.post(f"/dashboard/bookings/{booking_id}/cancel", data={"csrf": csrf})
        assert r.status_code == 404
    got = await t.client.get(f"/v1/bookings/{booking_id}", headers=t.headers())
    assert got.json()["data"]["status"] == "confirmed"


async def test_audit_log_filters(site: Site, pages_app: Any) -> None:
    t = site.tenant
    made = await book(t, site.business["id"], future_day(5).replace(hour=11))
    booking_id = made.json()["data"]["id"]
    await t.client.post(
        f"/v1/bookings/{booking_id}/cancel",
        json={},
        headers=t.headers(**{"Idempotency-Key": key()}),
    )
    async with browser(pages_app) as client:
        await sign_in(client, t)
        every = read((await client.get("/dashboard/audit")).text)
        assert "booking_created" in every.text and "booking_cancelled" in every.text
        only = read(
            (await client.get("/dashboard/audit", params={"action": "booking_cancelled"})).text
        )
        assert "booking_cancelled" in only.text and "booking_created" not in only.text
        by_booking = await client.get("/dashboard/audit", params={"booking_id": "bk_nope"})
        assert "No entries match" in by_booking.text
        bad = await client.get("/dashboard/audit", params={"since": "yesterday"})
        assert bad.status_code == 422
        bad = await client.get("/dashboard/audit", params={"cursor": "!!"})
        assert bad.status_code == 422


def test_cli_prints_a_working_login_link(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "SLOTGUARD_LOG_LEVEL": "WARNING",
        "SLOTGUARD_PUBLIC_URL": "https://sched.example.com",
    }
    exe = str(Path(sys.executable).parent / "slotguard")
    run = lambda *a: subprocess.run(  # noqa: E731
        [exe, *a], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=False
    )
    assert run("admin", "login-link").returncode == 1  # no account yet
    made = run("admin", "create-account", "--name", "acme")
    assert made.returncode == 0, made.stderr
    out = run("admin", "login-link")
    assert out.returncode == 0, out.stderr
    m = re.search(r"https://sched\.example\.com/dashboard/login/([\w-]{40,})", out.stdout)
    assert m, out.stdout
    assert run("admin", "login-link", "--account", "acct_nope").returncode == 1

    import asyncio

    async def use() -> int:
        url = f"sqlite:///{tmp_path / 'cli.db'}"
        db = Database.connect(url)
        app = create_app(page_settings(url), db=db)
        try:
            async with browser(app) as client:
                page = read((await client.get(f"/dashboard/login/{m.group(1)}")).text)
                form = page.form("/dashboard/login/")
                await client.post(form.action, data=form.fields)
                return (await client.get("/dashboard")).status_code
        finally:
            await db.dispose()

    assert asyncio.run(use()) == 200


async def test_calendar_status_and_last_error_are_shown(site: Site, pages_app: Any) -> None:
    t = site.tenant
    now = dt.datetime.now(dt.UTC)
    async with t.store.db.write() as s:
        s.add(
            Calendar(
                id=f"cal_{key()[:20]}",
                account_id=t.account_id,
                business_id=site.business["id"],
                provider="caldav",
                role="busy",
                name="Team calendar",
                url="https://user:secret-password@cal.example.com/dav/",
                settings={},
                credentials=None,
                credentials_version=0,
                status="error",
                last_synced_at=now - dt.timedelta(hours=1),
                last_error={"code": "calendar_unreachable", "message": "timed out"},
                busy_count=0,
                copy_generation=0,
                next_sync_at=now,
                failures=3,
                created_at=now,
                updated_at=now,
            )
        )
    async with browser(pages_app) as client:
        await sign_in(client, t)
        r = await client.get("/dashboard")
    text = read(r.text).text
    assert "Team calendar (caldav)" in text
    assert "calendar_unreachable: timed out" in text
    assert "secret-password" not in r.text  # calendar URLs (and their secrets) stay out


async def test_purge_forgets_only_ended_page_state(site: Site, pages_app: Any) -> None:
    t = site.tenant
    async with browser(pages_app) as client:
        page = read((await client.get(f"/book/{site.page['slug']}")).text)
        form = page.form("/hold")
        held = await client.post(
            form.action, data={**form.fields, "start": page.slot_buttons()[0].value or ""}
        )
        hold_id = held.headers["location"].split("/hold/")[1].split("?")[0]
    raw = await login_link(t)
    now = dt.datetime.now(dt.UTC)
    async with t.store.db.write() as s:
        await pages_repo.purge_page_state(s, now=now)
    async with t.store.db.read() as s:
        assert await s.get(PageHold, hold_id) is not None
        assert await s.get(DashboardToken, token_hash(raw)) is not None
    async with t.store.db.write() as s:
        await pages_repo.purge_page_state(s, now=now + dt.timedelta(days=1))
    async with t.store.db.read() as s:
        assert await s.get(PageHold, hold_id) is None
        assert await s.get(DashboardToken, token_hash(raw)) is None
