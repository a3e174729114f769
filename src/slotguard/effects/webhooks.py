"""Webhook sending: Standard Webhooks signatures, one delivery attempt, the retry schedule.

No database here. The outbox worker owns attempts and state; it calls ``deliver`` with a
client from ``netguard.make_webhook_client`` and stores the ``DeliveryResult``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import httpx
from standardwebhooks import Webhook

from slotguard.effects.netguard import WebhookTargetError

__all__ = [
    "MAX_ATTEMPTS",
    "RESPONSE_SNIPPET_BYTES",
    "RETRY_SCHEDULE",
    "DeliveryResult",
    "build_event",
    "deliver",
    "encode_payload",
    "new_secret",
    "next_attempt_delay",
    "rfc3339_utc",
]

SECRET_PREFIX: Final = "whsec_"
RESPONSE_SNIPPET_BYTES: Final = 1024

# Seconds to wait after the previous attempt: entry n is the delay before attempt n + 1
# (entry 0 is the first attempt, sent at once). About 24 hours in all, so a receiver that is
# down for a day's maintenance still gets the event; after the last entry the event is dead.
RETRY_SCHEDULE: Final[tuple[int, ...]] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
MAX_ATTEMPTS: Final = len(RETRY_SCHEDULE)
_JITTER: Final = 0.10


def new_secret() -> str:
    """A fresh endpoint secret: ``whsec_`` + base64 of 32 random bytes (Standard Webhooks)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _as_utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value.astimezone(UTC)


def rfc3339_utc(value: datetime) -> str:
    """``2026-04-01T09:00:00Z``: UTC, whole seconds, as the API renders instants (§1.2)."""
    text = _as_utc(value, "datetime").isoformat(timespec="seconds")
    return text.removesuffix("+00:00") + "Z"


def build_event(
    type: str, event_id: str, created_at: datetime, data: dict[str, Any]
) -> dict[str, Any]:
    """The webhook payload ``{type, id, created_at, data}`` (API §8)."""
    return {"type": type, "id": event_id, "created_at": rfc3339_utc(created_at), "data": data}


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return rfc3339_utc(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode_payload(payload: dict[str, Any]) -> str:
    """The exact body text that is signed and sent (compact JSON, UTF-8 kept as is)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=_json_default)


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What one delivery attempt did. ``error`` is set only when no HTTP response came back."""

    ok: bool
    status_code: int | None
    gone: bool
    error: str | None
    duration_ms: int
    response_snippet: str
    blocked: bool = False
    """The target address was refused by the network guard (private, loopback, …)."""


async def _read_snippet(response: httpx.Response) -> str:
    # Receivers may answer with anything; keep only the start of it for the delivery log.
    collected = bytearray()
    async for chunk in response.aiter_bytes():
        collected.extend(chunk)
        if len(collected) >= RESPONSE_SNIPPET_BYTES:
            break
    return bytes(collected[:RESPONSE_SNIPPET_BYTES]).decode("utf-8", errors="replace")


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def deliver(
    client: httpx.AsyncClient,
    *,
    url: str,
    secret: str | Sequence[str],
    msg_id: str,
    payload: dict[str, Any],
    now: datetime,
    total_timeout: float | None = 60.0,
) -> DeliveryResult:
    """POST one signed event to ``url``; never raises for network or HTTP problems.

    ``msg_id`` is the event id: it stays the same on every retry so receivers can de-duplicate.
    ``total_timeout`` bounds the whole attempt; the client's own timeouts bound each phase.
    Several secrets (during a rotation) give one signature each, space-separated, as the
    Standard Webhooks spec allows; a receiver accepts the delivery if any of them verifies.
    """
    body = encode_payload(payload)
    timestamp = _as_utc(now, "now")
    secrets_ = [secret] if isinstance(secret, str) else list(secret)
    if not secrets_:
        raise ValueError("at least one secret is needed")
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": " ".join(
            Webhook(each).sign(msg_id, timestamp, body) for each in secrets_
        ),
    }
    started = time.perf_counter()

    def elapsed_ms() -> int:
        return round((time.perf_counter() - started) * 1000)

    def failure(error: str, *, blocked: bool = False) -> DeliveryResult:
        return DeliveryResult(
            ok=False,
            status_code=None,
            gone=False,
            error=error,
            duration_ms=elapsed_ms(),
            response_snippet="",
            blocked=blocked,
        )

    try:
        async with asyncio.timeout(total_timeout):
            request = client.build_request("POST", url, content=body.encode(), headers=headers)
            response = await client.send(request, stream=True)
            try:
                snippet = await _read_snippet(response)
            finally:
                await response.aclose()
    except WebhookTargetError as exc:
        return failure(f"refused target: {exc}", blocked=True)
    except (httpx.TimeoutException, TimeoutError) as exc:
        return failure(f"timeout: {_describe(exc)}")
    except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
        return failure(_describe(exc))

    status = response.status_code
    return DeliveryResult(
        ok=200 <= status < 300,
        status_code=status,
        gone=status == 410,
        error=None,
        duration_ms=elapsed_ms(),
        response_snippet=snippet,
    )


def next_attempt_delay(attempt_number: int, rng: random.Random) -> float | None:
    """Seconds to wait before the next attempt, after ``attempt_number`` attempts were made.

    ``next_attempt_delay(0, rng)`` is the first attempt (0 s); after attempt 1 it is about 5 s,
    after attempt 7 about 10 h; after attempt 8 (the last) it is None: the event is dead.
    The ±10 % jitter keeps retries of many events for one endpoint from arriving in a burst.
    """
    if attempt_number < 0:
        raise ValueError("attempt_number must be >= 0")
    if attempt_number >= MAX_ATTEMPTS:
        return None
    base = RETRY_SCHEDULE[attempt_number]
    return base * rng.uniform(1 - _JITTER, 1 + _JITTER)
