"""HTTP methods across routes: HEAD on every GET resource, and a complete `Allow` on 405.

FastAPI routes answer only the methods they declare, one route per method, so HEAD is 405
and a 405 lists the methods of whichever route matched the path first. HTTP says HEAD is
GET without a body (RFC 9110 §9.3.2) and `Allow` lists every method of the resource
(§10.2.1).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


class HeadAsGet:
    """Serve HEAD as the GET it stands for, headers (Content-Length included) without body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Not /mcp: its GET is an event stream that never ends, so a HEAD would never finish.
        if (
            scope["type"] != "http"
            or scope["method"] != "HEAD"
            or scope["path"] == "/mcp"
            or scope["path"].startswith("/mcp/")
        ):
            await self.app(scope, receive, send)
            return

        async def send_headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, send_headers_only)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route answers on this request's path."""
    allowed = []
    for method in _METHODS:
        probe = {**request.scope, "method": "GET" if method == "HEAD" else method}
        if any(route.matches(probe)[0] is Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return allowed
