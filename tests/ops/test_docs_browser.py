"""/docs and /redoc render the API in a real headless browser with no internet.

Every request the page makes goes through a route handler that lets only 127.0.0.1 through
and records anything else; a request addressed elsewhere would fail offline, so none may be
attempted (the page's CSP would also stop one before it is sent).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.ops.conftest import Server

pytestmark = pytest.mark.slow

LOCAL_SCHEMES = {"blob", "data", "about"}


def is_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in LOCAL_SCHEMES or parts.hostname == "127.0.0.1"


async def offline_page(browser: Any) -> tuple[Any, list[str], list[str], list[str]]:
    """A page whose network is 127.0.0.1 only: (page, routed away, attempted, CSP notes)."""
    page = await browser.new_page()
    routed_away: list[str] = []
    attempted: list[str] = []
    console: list[str] = []

    async def route(r: Any) -> None:
        if is_local(r.request.url):
            await r.continue_()
        else:
            routed_away.append(r.request.url)
            await r.abort("internetdisconnected")

    await page.route("**/*", route)
    page.on("request", lambda req: None if is_local(req.url) else attempted.append(req.url))
    page.on("console", lambda msg: console.append(msg.text))
    return page, routed_away, attempted, console


def operations(server: Server) -> list[dict[str, str]]:
    spec = httpx.get(f"{server.base_url}/openapi.json", timeout=10).json()
    return [
        {"method": method.upper(), "path": path, "id": op["operationId"]}
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
    ]


async def test_swagger_ui_lists_every_operation_offline(server: Server, browser: Any) -> None:
    ops = operations(server)
    assert len(ops) > 20
    page, routed_away, attempted, console = await offline_page(browser)
    response = await page.goto(f"{server.base_url}/docs")
    assert response is not None and response.status == 200
    blocks = page.locator(".opblock")
    await page.wait_for_function(
        "n => document.querySelectorAll('.opblock').length >= n", arg=len(ops), timeout=20_000
    )
    shown = set()
    for i in range(await blocks.count()):
        block = blocks.nth(i)
        method = await block.locator(".opblock-summary-method").inner_text()
        path = await block.locator(".opblock-summary-path").get_attribute("data-path")
        shown.add((method.strip().upper(), path))
    assert shown == {(o["method"], o["path"]) for o in ops}
    assert routed_away == [] and attempted == [], (routed_away, attempted)
    assert not [c for c in console if "Content Security Policy" in c], console
    await page.close()


async def test_redoc_lists_every_operation_offline(server: Server, browser: Any) -> None:
    ops = operations(server)
    page, routed_away, attempted, console = await offline_page(browser)
    response = await page.goto(f"{server.base_url}/redoc")
    assert response is not None and response.status == 200
    selector = 'li[role=menuitem][data-item-id^="operation/"]'
    await page.wait_for_function(
        "([sel, n]) => document.querySelectorAll(sel).length >= n",
        arg=[selector, len(ops)],
        timeout=20_000,
    )
    items = page.locator(selector)
    shown = {await items.nth(i).get_attribute("data-item-id") for i in range(await items.count())}
    assert shown == {f"operation/{o['id']}" for o in ops}
    # Nothing was even attempted: the bundle's footer logo no longer names a CDN.
    assert routed_away == [] and attempted == [], (routed_away, attempted)
    assert not [c for c in console if "Content Security Policy" in c], console
    await page.close()
