"""``/mcp`` inside ``serve``: streamable HTTP, authenticated with the API's bearer keys.

Stateless JSON responses, so any of several ``serve`` processes can answer any request and
no session is pinned to one. The endpoint checks the key (a 401 in the API's error shape
otherwise) and hands it to the tools, which call the API in-process through
``httpx.ASGITransport``: the key's rate limit counts each API call a tool makes, not the
``/mcp`` request around them.

The endpoint's own check of the key is remembered for a minute (``KEY_CHECK_SECONDS``), so
a conversation's tool calls do not each pay a key lookup on top of the API's: every API call
a tool makes authenticates the key itself, so a key revoked meanwhile can do nothing; until
the minute is over it still sees its tool list and gets ``unauthorized`` results, then 401s.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from slotguard.api.deps import actor_for_key
from slotguard.api.errors import unauthorized
from slotguard.domain.scopes import ALL_SCOPES
from slotguard.mcp.server import Backend, SlotguardMCP, build_server, current_key, current_scopes
from slotguard.services.keys import hash_key

INTERNAL_BASE_URL = "http://slotguard.internal"
KEY_CHECK_SECONDS = 60.0


class McpEndpoint:
    """ASGI endpoint for ``/mcp``: bearer check, then the SDK's streamable HTTP handler."""

    def __init__(self, server: SlotguardMCP, app: Any) -> None:
        self.server = server
        self.app = app
        # True while `lifespan` holds the SDK's session manager open.
        self.running = False
        self.clock: Callable[[], float] = time.monotonic
        # Keys checked recently: hash → (scopes, until).
        self._checked: dict[str, tuple[frozenset[str], float]] = {}
        # Every request needs the Authorization header; DNS-rebinding attacks come from
        # browsers that hold no key, so the Host allowlist would only break real hostnames.
        self._handler: ASGIApp = server.streamable_http_app(
            streamable_http_path="/mcp",
            stateless_http=True,
            json_response=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:

        raw = _bearer(scope)
        scopes = await self._scopes(raw) if raw else None
        if scopes is None or raw is None:
            # Raised into the app's exception handlers: the API's own 401 body and headers.
            raise unauthorized()
        key_token, scope_token = current_key.set(raw), current_scopes.set(scopes)
        try:
            await self.server.session_manager.handle_request(scope, receive, send)
        finally:
            current_key.reset(key_token)
            current_scopes.reset(scope_token)

    async def _scopes(self, raw: str) -> frozenset[str] | None:
        """The scopes of a valid key; None for an unknown, revoked or orphaned one."""
        digest, now = hash_key(raw), self.clock()
        hit = self._checked.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
        actor = await actor_for_key(self.app.state.db, raw)
        if actor is None:
            self._checked.pop(digest, None)
            return None
        scopes = frozenset(ALL_SCOPES) if actor.agent_id is None else actor.scopes
        if len(self._checked) >= 1000:  # bounded: keys come and go
            self._checked.clear()
        self._checked[digest] = (scopes, now + KEY_CHECK_SECONDS)
        return scopes


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            kind, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            return token if kind.lower() == "bearer" and token else None
    return None


def build_endpoint(app: Any) -> McpEndpoint:
    """The ``/mcp`` endpoint of the FastAPI ``app``; ``lifespan`` must hold it open."""
    backend = Backend(base_url=INTERNAL_BASE_URL, transport=lambda: httpx.ASGITransport(app=app))
    return McpEndpoint(build_server(backend, version=str(app.version)), app)


@asynccontextmanager
async def lifespan(endpoint: McpEndpoint) -> AsyncIterator[None]:
    """The SDK's session manager task group, for as long as the app runs."""
    async with endpoint.server.session_manager.run():
        endpoint.running = True
        try:
            yield
        finally:
            endpoint.running = False
            await endpoint.server.backend.aclose()
