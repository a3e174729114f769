"""The booking pages in a real headless browser (Debian's chromium through Playwright),
against a real `slotguard serve` with its worker, delivering mail to a real SMTP server.

Every request a page makes is checked: only 127.0.0.1 is let through, and anything else is
recorded and fails the test, so the pages provably need nothing from the internet.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import os
import re
import secrets
import shutil
import subprocess
import time
import zoneinfo
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from aiosmtpd.controller import Controller

from tests.effects.conftest import CollectingHandler
from tests.ops.conftest import CHROMIUM, Server, free_port, slotguard_exe, start_server

pytestmark = pytest.mark.slow

AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
OPEN_ALL_DAY = {
    "working_hours": [
        {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00",
         "end": "24:00"}
    ]
}  # fmt: skip


def _browser_missing(reason: str) -> None:
    message = f"browser tests of the booking pages need Debian chromium at {CHROMIUM}: {reason}"
    if os.environ.get("SLOTGUARD_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Site:
    server: Server
    key: str
    mail: CollectingHandler
    env: dict[str, str]

    @property
    def base(self) -> str:
        return self.server.base_url

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {self.key}"}, timeout=10
        )

    def new_page(self, *, timezone: str = "UTC") -> tuple[str, str]:
        """A fresh business (open all day, in `timezone`) and its page: (business id, slug)."""
        with self.api() as c:
            r = c.post(
                "/v1/businesses",
                json={"name": "Dr. Browser", "timezone": timezone, "rules": OPEN_ALL_DAY,
                      "email": f"owner-{secrets.token_hex(4)}@example.com"},
            )  # fmt: skip
            assert r.status_code == 201, r.text
            biz = r.json()["data"]["id"]
            r = c.post("/v1/booking-pages", json={"business_id": biz, "title": "Intro call"})
            assert r.status_code == 201, r.text
            page = r.json()["data"]
            assert page["url"] == f"{self.base}/book/{page['slug']}"
            return biz, page["slug"]

    def bookings(self, business_id: str) -> list[dict[str, Any]]:
        with self.api() as c:
            r = c.get("/v1/bookings", params={"business_id": business_id})
            data: list[dict[str, Any]] = r.json()["data"]
            return data

    async def wait_mail(self, to: str, subject: str, timeout: float = 30) -> str:
        """The text part of the first mail to `to` whose subject starts with `subject`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.mail.mails:
                msg = email.message_from_bytes(m.content, policy=email.policy.default)
                if to in m.rcpt_tos and str(msg["Subject"]).startswith(subject):
                    body = msg.get_body(("plain",))  # type: ignore[attr-defined]
                    assert body is not None
                    text: str = body.get_content()
                    return text
            await asyncio.sleep(0.2)
        raise AssertionError(
            f"no {subject!r} mail to {to} after {timeout} s:\n{self.server.log()[-3000:]}"
        )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        _browser_missing("not installed (apt-get install chromium)")
    handler = CollectingHandler()
    smtp_port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=smtp_port, ready_timeout=5.0)
    controller.start()
    port = free_port()
    key = "sg_live_" + secrets.token_urlsafe(32)
    workdir = tmp_path_factory.mktemp("pages-serve")
    env = {
        "SLOTGUARD_BOOTSTRAP_API_KEY": key,
        "SLOTGUARD_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "SLOTGUARD_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "SLOTGUARD_EMAIL_FROM": "slotguard@example.com",
        "SLOTGUARD_PUBLIC_HOLDS_PER_ADDRESS": "100",
        "SLOTGUARD_OUTBOX_POLL_INTERVAL_MS": "50",
    }
    server = start_server(workdir, env=env, port=port)
    try:
        server.wait_ready()
        yield Site(
            server, key, handler, {"DATABASE_URL": f"sqlite:///{workdir / 'slotguard.db'}", **env}
        )
    finally:
        server.stop()
        controller.stop()


@pytest.fixture(scope="module")
async def chromium(site: Site) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Tab:
    context: Any
    page: Any
    elsewhere: list[str]


async def open_tab(browser: Any, **options: Any) -> Tab:
    """A page in its own context (own cookies) whose network is 127.0.0.1 only."""
    context = await browser.new_context(**options)
    page = await context.new_page()
    elsewhere: list[str] = []

    async def route(r: Any) -> None:
        parts = urlsplit(r.request.url)
        if parts.scheme in ("data", "blob", "about") or parts.hostname == "127.0.0.1":
            await r.continue_()
        else:
            elsewhere.append(r.request.url)
            await r.abort("internetdisconnected")

    await page.route("**/*", route)
    return Tab(context, page, elsewhere)


async def slot_values(page: Any) -> list[str]:
    values: list[str] = await page.locator("ul.slots button").evaluate_all(
        "els => els.map(e => e.value)"
    )
    return values


async def fill_details(page: Any, name: str, mail: str) -> None:
    await page.get_by_label("Your name").fill(name)
    await page.get_by_label("Your email").fill(mail)
    await page.get_by_label(re.compile("^A note")).fill("Looking forward to it")
    await page.get_by_role("button", name="Confirm booking").click()


async def test_book_then_mail_then_reschedule_and_cancel(site: Site, chromium: Any) -> None:
    from playwright.async_api import expect

    biz, slug = site.new_page()
    tab = await open_tab(chromium, timezone_id="Europe/Berlin")
    page = tab.page
    await page.goto(f"{site.base}/book/{slug}")
    # The script saw the browser's zone and switched the page to it.
    await page.wait_for_url(re.compile(r"tz=Europe%2FBerlin"))
    assert await page.locator("#tz").input_value() == "Europe/Berlin"
    await expect(page.get_by_text("Times are shown in Europe/Berlin.")).to_be_visible()
    first = page.locator("ul.slots button").first
    start = await first.get_attribute("value")
    await first.click()
    await page.wait_for_url(re.compile(r"/hold/hld_"))
    await expect(page.get_by_text("This time is held for you")).to_be_visible()
    await fill_details(page, "Ada Lovelace", "ada@example.com")
    await page.wait_for_url(re.compile(r"/manage/"))
    await expect(page.get_by_role("heading", name="You are booked")).to_be_visible()
    shown = await page.locator("a[href*='/manage/']").first.get_attribute("href")
    assert shown and shown.startswith(f"{site.base}/manage/")
    (booking,) = site.bookings(biz)
    assert booking["start_time"] == start
    assert booking["id"] not in shown

    text = await site.wait_mail("ada@example.com", "Confirmed")
    assert shown in text
    link = re.search(r"http://127\.0\.0\.1:\d+/manage/[\w-]+", text)
    assert link and link.group(0) == shown

    # Later, from the mail: reschedule in a fresh browser, then cancel.
    later = await open_tab(chromium, timezone_id="Europe/Berlin")
    await later.page.goto(link.group(0))
    await later.page.wait_for_url(re.compile(r"tz=Europe%2FBerlin"))
    await expect(later.page.get_by_text("Confirmed", exact=True)).to_be_visible()
    move = later.page.locator("section[aria-labelledby='move-h'] ul.slots button").nth(3)
    new_start = await move.get_attribute("value")
    await move.click()
    await expect(later.page.get_by_text("moved to the new time")).to_be_visible()
    (moved,) = site.bookings(biz)
    assert moved["start_time"] == new_start and moved["version"] == 2
    update = await site.wait_mail("ada@example.com", "Updated")
    assert link.group(0) in update

    await later.page.get_by_role("button", name="Cancel this booking").click()
    await expect(later.page.get_by_text("Your booking is cancelled")).to_be_visible()
    await expect(later.page.get_by_text(re.compile(r"^Cancelled on "))).to_be_visible()
    (cancelled,) = site.bookings(biz)
    assert cancelled["status"] == "cancelled"
    await site.wait_mail("ada@example.com", "Cancelled")
    assert tab.elsewhere == [] and later.elsewhere == []
    await tab.context.close()
    await later.context.close()


async def test_two_browsers_race_for_one_slot(site: Site, chromium: Any) -> None:
    from playwright.async_api import expect

    biz, slug = site.new_page()
    one, two = await open_tab(chromium), await open_tab(chromium)
    for tab in (one, two):
        await tab.page.goto(f"{site.base}/book/{slug}?tz=UTC")
    target = (await slot_values(one.page))[0]
    assert (await slot_values(two.page))[0] == target
    await asyncio.gather(
        one.page.locator(f"button[value='{target}']").click(),
        two.page.locator(f"button[value='{target}']").click(),
    )
    for tab in (one, two):
        await tab.page.wait_for_load_state()
    won = [t for t in (one, two) if "/hold/" in t.page.url]
    lost = [t for t in (one, two) if "/hold/" not in t.page.url]
    assert len(won) == 1 and len(lost) == 1, [t.page.url for t in (one, two)]
    await expect(lost[0].page.get_by_text("was just taken")).to_be_visible()
    fresh = await slot_values(lost[0].page)
    assert fresh and target not in fresh
    await fill_details(won[0].page, "Winner", "win@example.com")
    await expect(won[0].page.get_by_role("heading", name="You are booked")).to_be_visible()
    bookings = site.bookings(biz)
    assert [b["start_time"] for b in bookings] == [target]
    for tab in (one, two):
        assert tab.elsewhere == []
        await tab.context.close()


async def test_visitor_in_another_zone_sees_local_times(site: Site, chromium: Any) -> None:
    from playwright.async_api import expect

    _, slug = site.new_page(timezone="Europe/Berlin")
    tab = await open_tab(chromium, timezone_id="America/New_York", locale="en-US")
    await tab.page.goto(f"{site.base}/book/{slug}")
    await tab.page.wait_for_url(re.compile(r"tz=America%2FNew_York"))
    await expect(tab.page.get_by_text("Times are shown in America/New_York.")).to_be_visible()
    ny = zoneinfo.ZoneInfo("America/New_York")
    buttons = tab.page.locator("ul.slots button")
    assert await buttons.count() > 3
    for i in range(4):
        button = buttons.nth(i)
        value = await button.get_attribute("value")
        assert value
        local = dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(ny)
        name = " ".join((await button.text_content() or "").split())
        assert (
            name
            == f"{local:%H:%M} {local:%Z} on {local:%A} {local.day} {local:%B %Y}, America/New_York"
        )
        # The browser, in its emulated zone, agrees on the wall-clock time.
        seen = await tab.page.evaluate(
            "v => new Date(v).toLocaleTimeString('en-GB', {hour: '2-digit', minute: '2-digit'})",
            value,
        )
        assert seen == f"{local:%H:%M}"
        # Screen readers get the date and time, not a bare number.
        await expect(tab.page.get_by_role("button", name=name, exact=True)).to_have_count(1)
    assert tab.elsewhere == []
    await tab.context.close()


async def test_keyboard_only_booking(site: Site, chromium: Any) -> None:
    from playwright.async_api import expect

    biz, slug = site.new_page()
    tab = await open_tab(chromium)
    page = tab.page
    await page.goto(f"{site.base}/book/{slug}?tz=UTC")

    async def tab_until(check: str, limit: int = 80) -> None:
        for _ in range(limit):
            await page.keyboard.press("Tab")
            if await page.evaluate(check):
                return
        raise AssertionError(f"Tab never reached: {check}")

    await tab_until("document.activeElement.name === 'start'")
    picked = await page.evaluate("document.activeElement.value")
    await page.keyboard.press("Enter")
    await page.wait_for_url(re.compile(r"/hold/hld_"))
    await tab_until("document.activeElement.id === 'name'")
    await page.keyboard.type("Kim Keys")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "email"
    await page.keyboard.type("kim@example.com")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "note"
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Confirm booking"
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="You are booked")).to_be_visible()
    (booking,) = site.bookings(biz)
    assert booking["start_time"] == picked and booking["customer_name"] == "Kim Keys"
    assert tab.elsewhere == []
    await tab.context.close()


async def test_books_with_javascript_off(site: Site, chromium: Any) -> None:
    from playwright.async_api import expect

    biz, slug = site.new_page()
    tab = await open_tab(chromium, java_script_enabled=False)
    await tab.page.goto(f"{site.base}/book/{slug}")
    await tab.page.get_by_label("Your time zone").select_option("Asia/Tokyo")
    await tab.page.get_by_role("button", name="Show times in this zone").click()
    await expect(tab.page.get_by_text("Times are shown in Asia/Tokyo.")).to_be_visible()
    await tab.page.locator("ul.slots button").first.click()
    await fill_details(tab.page, "No Script", "noscript@example.com")
    await expect(tab.page.get_by_role("heading", name="You are booked")).to_be_visible()
    await expect(tab.page.get_by_text("(Asia/Tokyo, JST)")).to_be_visible()
    assert len(site.bookings(biz)) == 1
    await tab.context.close()


def login_link(site: Site) -> str:
    out = subprocess.run(
        [slotguard_exe(), "admin", "login-link"],
        capture_output=True, text=True, env={**os.environ, **site.env}, timeout=60, check=True,
    )  # fmt: skip
    found = re.search(r"http://\S+/dashboard/login/[\w-]+", out.stdout)
    assert found, out.stdout
    return found.group(0)


async def test_no_serious_accessibility_violations(site: Site, chromium: Any) -> None:
    """axe-core (vendored, injected by the test; CSP bypassed for the injection only)."""
    biz, slug = site.new_page()
    tab = await open_tab(chromium, bypass_csp=True)
    page = tab.page
    found: dict[str, list[str]] = {}

    async def scan(name: str) -> None:
        await page.add_script_tag(path=str(AXE))
        result = await page.evaluate(
            "async () => await axe.run(document, {resultTypes: ['violations']})"
        )
        bad = [
            f"{v['id']} ({v['impact']}): {v['help']} at "
            + ", ".join(n["target"][0] for n in v["nodes"][:3])
            for v in result["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert result["testEngine"]["name"] == "axe-core"
        found[name] = bad

    await page.goto(f"{site.base}/book/{slug}?tz=UTC")
    await scan("book")
    await page.locator("ul.slots button").first.click()
    await page.wait_for_url(re.compile(r"/hold/"))
    await scan("hold")
    # Submitted empty (the browser's own checks switched off): the server's error messages.
    await page.evaluate("document.querySelector('form.details').noValidate = true")
    await page.get_by_role("button", name="Confirm booking").click()
    await page.get_by_text("Please check the form").wait_for()
    await scan("hold with errors")
    await fill_details(page, "Axe Tester", "axe@example.com")
    await page.wait_for_url(re.compile(r"/manage/"))
    await scan("manage")
    await page.goto(login_link(site))
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(re.compile(r"/dashboard$"))
    await scan("dashboard")
    await page.goto(f"{site.base}/dashboard/audit")
    await scan("audit")
    assert found and all(v == [] for v in found.values()), found
    # The scan can fail: a nameless button on the same page is caught.
    await page.evaluate("document.querySelector('main').append(document.createElement('button'))")
    await scan("control")
    assert any(v.startswith("button-name") for v in found["control"]), found["control"]
    assert len(site.bookings(biz)) == 1
    assert tab.elsewhere == []
    await tab.context.close()
