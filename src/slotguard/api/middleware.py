"""The outermost layer: request ids, body limit, input guard, last-resort 500, access log,
metrics."""

from __future__ import annotations

import time
from typing import Any

import structlog
from prometheus_client import Counter, Histogram
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from slotguard.api import envelope, inputguard
from slotguard.ids import new_id

MAX_BODY_BYTES = 1024 * 1024

log = structlog.get_logger("slotguard.access")

HTTP_REQUESTS = Counter(
    "slotguard_http_requests_total", "HTTP requests", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "slotguard_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class RequestMiddleware:
    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = new_id("req")
        token = envelope.request_id_var.set(rid)
        scope.setdefault("state", {})["request_id"] = rid
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = MutableHeaders(scope=message)
                # A replayed idempotent response keeps the request id of its body.
                if "x-request-id" not in headers:
                    headers["X-Request-Id"] = rid
                for name, value in scope["state"].get("rate_limit_headers", {}).items():
                    if name.lower() not in headers:
                        headers[name] = value
            await send(message)

        async def reply(
            status_code: int, code: str, message: str, details: dict[str, Any] | None = None
        ) -> None:
            body = envelope.dumps(envelope.error_body(status_code, code, message, details))
            await send_wrapper(
                {
                    "type": "http.response.start",
                    "status": status_code,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send_wrapper({"type": "http.response.body", "body": body})

        try:
            body = await self._read_body(scope, receive)
            if body is None:
                await reply(413, "payload_too_large", "The request body exceeds 1 MiB.")
                return
            if "\x00" in scope["path"]:  # no id holds NUL: nothing can be found there
                await reply(404, "not_found", "The requested object does not exist.")
                return
            problem = inputguard.check_query(scope.get("query_string", b""))
            if problem is None and body:
                problem = inputguard.check_body(body, _content_type(scope))
            if problem is not None:
                details = {"fields": [problem.as_field()]}
                await reply(422, "validation_error", "The request is not valid.", details)
                return
            await self.app(scope, _replay(body, receive), send_wrapper)
        except Exception:
            log.exception("unhandled_error", request_id=rid)
            if not response_started:
                await reply(500, "internal_error", "An unexpected error occurred.")
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            HTTP_REQUESTS.labels(scope["method"], route, str(status)).inc()
            HTTP_LATENCY.labels(scope["method"], route).observe(elapsed)
            log.info(
                "request",
                request_id=rid,
                method=scope["method"],
                path=scope["path"],
                client=(scope.get("client") or ("-",))[0],
                status=status,
                duration_ms=round(elapsed * 1000, 2),
            )
            envelope.request_id_var.reset(token)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or None if it is over the limit (declared or streamed)."""
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    if int(value) > self.max_body:
                        return None
                except ValueError:
                    pass
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _content_type(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return bytes(value).decode("latin-1")
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
