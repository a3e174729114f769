"""API key scopes: the one list the API, docs and tests read from."""

from __future__ import annotations

from typing import Literal

Scope = Literal[
    "availability:read",
    "holds:write",
    "bookings:read",
    "bookings:write",
    "bookings:preempt",
    "audit:read",
    "admin",
]
ALL_SCOPES: tuple[Scope, ...] = (
    "availability:read",
    "holds:write",
    "bookings:read",
    "bookings:write",
    "bookings:preempt",
    "audit:read",
    "admin",
)
