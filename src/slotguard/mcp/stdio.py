"""``slotguard mcp``: the MCP server over stdio, as a client of a slotguard server.

stdout is the protocol's wire: nothing else may be printed there, so logging goes to stderr
and is configured before the server starts.
"""

from __future__ import annotations

import logging
import os
import sys

import anyio

from slotguard.client import DEFAULT_BASE_URL
from slotguard.mcp.server import Backend, build_server


def main() -> None:
    """Serve over stdio until the host closes the pipe; configuration from the environment."""
    key = os.environ.get("SLOTGUARD_API_KEY", "").strip()
    if not key:
        print("slotguard mcp: set SLOTGUARD_API_KEY to an API key", file=sys.stderr)
        raise SystemExit(2)
    url = os.environ.get("SLOTGUARD_URL", DEFAULT_BASE_URL).strip() or DEFAULT_BASE_URL
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    backend = Backend(base_url=url, api_key=key)
    server = build_server(backend)

    async def run() -> None:
        try:
            await server.run_stdio_async()
        finally:
            await backend.aclose()

    anyio.run(run)
