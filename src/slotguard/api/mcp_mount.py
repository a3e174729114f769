"""``/mcp`` in ``serve``, with the MCP SDK loaded by the first request that needs it.

The SDK and what it pulls in add about 20 MB to a process; a deployment whose agents never
call ``/mcp`` should not carry them in every API process. So the route is a small shim:
the first request imports ``slotguard.mcp.http``, builds the endpoint and starts the SDK's
session manager in a task of its own (its anyio task group must be entered and left by one
task), and the app's lifespan stops it at shutdown. Nothing here imports ``mcp``.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib.util
from typing import TYPE_CHECKING, Any

from starlette.types import Receive, Scope, Send

if TYPE_CHECKING:
    from slotguard.mcp.http import McpEndpoint


def available() -> bool:
    """Whether the optional ``mcp`` extra is installed."""
    return importlib.util.find_spec("mcp") is not None


class LazyMcp:
    """ASGI app for ``/mcp``: builds and starts the real endpoint on first use."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._endpoint: McpEndpoint | None = None
        self._holder: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()

    def endpoint(self) -> McpEndpoint:
        """The endpoint, built (and the SDK imported) on the first call."""
        if self._endpoint is None:
            from slotguard.mcp.http import build_endpoint

            self._endpoint = build_endpoint(self.app)
        return self._endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.endpoint()
        if not endpoint.running:
            await self._start(endpoint)
        await endpoint(scope, receive, send)

    async def _start(self, endpoint: McpEndpoint) -> None:
        async with self._lock:
            if endpoint.running:
                return
            from slotguard.mcp.http import lifespan

            started = asyncio.Event()

            async def hold_open() -> None:
                async with lifespan(endpoint):
                    started.set()
                    await self._stop.wait()

            # A fresh context: the holder outlives this request and must not carry its
            # request id or API key (the SDK's per-request tasks get the request's own).
            self._holder = asyncio.create_task(hold_open(), context=contextvars.Context())
            waiter = asyncio.create_task(started.wait())
            await asyncio.wait({self._holder, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if self._holder.done():  # it failed to start: the request gets its error
                waiter.cancel()
                holder, self._holder = self._holder, None
                await holder

    async def aclose(self) -> None:
        """Stop the session manager if a request started it (the app's shutdown)."""
        if self._holder is not None:
            self._stop.set()
            await self._holder
            self._holder = None
