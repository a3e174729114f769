"""``/mcp`` loads the MCP SDK on its first request and stops it with the app."""

from __future__ import annotations

import subprocess
import sys

import httpx

from slotguard.api.app import create_app
from slotguard.config import Settings
from tests.conftest import Store, new_tenant

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "lazy-test", "version": "1"},
    },
}


def test_building_the_app_does_not_import_the_sdk(tmp_path: object) -> None:
    code = (
        "import sys\n"
        "from slotguard.api.app import create_app\n"
        "from slotguard.config import Settings\n"
        f"app = create_app(Settings(database_url='sqlite:///{tmp_path}/x.db'))\n"
        "assert any(getattr(r, 'path', None) == '/mcp' for r in app.routes), 'no /mcp route'\n"
        "print(sorted(m for m in sys.modules if m == 'mcp' or m.startswith('mcp.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout


async def test_first_request_starts_the_sdk_and_shutdown_stops_it(store: Store) -> None:
    app = create_app(Settings(database_url=store.url, embedded_worker=False), db=store.db)
    lazy = app.state.mcp
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as h,
    ):
        t = await new_tenant(store, h)
        headers = {
            "Authorization": f"Bearer {t.key}",
            "Accept": "application/json, text/event-stream",
        }
        r = await h.post("/mcp", json=INITIALIZE, headers=headers)
        assert r.status_code == 200, r.text
        assert r.json()["result"]["serverInfo"]["name"] == "slotguard"
        endpoint = lazy.endpoint()
        assert endpoint.running
        # A second request reuses the running session manager.
        listed = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
        r = await h.post("/mcp", json=listed, headers=headers)
        assert r.status_code == 200, r.text
        assert len(r.json()["result"]["tools"]) == 13
    assert not endpoint.running
