"""Per-key rate limits (§1.7): 429 `rate_limited` with `Retry-After` and `X-RateLimit-*`."""

from __future__ import annotations

import math
import time

import limits
from fastapi import Request
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from slotguard.api.errors import ApiError

STATE_KEY = "rate_limit_headers"


class KeyRateLimiter:
    """A moving-window limit per API key, kept in this process's memory."""

    def __init__(self, spec: str) -> None:
        self.item = limits.parse(spec)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    async def check(self, request: Request, key_id: str) -> None:
        allowed = await self.limiter.hit(self.item, key_id)
        stats = await self.limiter.get_window_stats(self.item, key_id)
        reset_in = max(0, math.ceil(stats.reset_time - time.time()))
        headers = {
            "X-RateLimit-Limit": str(self.item.amount),
            "X-RateLimit-Remaining": str(max(0, stats.remaining)),
            "X-RateLimit-Reset": str(reset_in),
        }
        request.scope.setdefault("state", {})[STATE_KEY] = headers
        if not allowed:
            raise ApiError(
                429,
                "rate_limited",
                "Too many requests for this API key.",
                {"limit": str(self.item)},
                headers={**headers, "Retry-After": str(max(1, reset_in))},
            )


def limiter_from_spec(spec: str | None) -> KeyRateLimiter | None:
    return KeyRateLimiter(spec) if spec else None
