"""Opaque cursors and the limit rules of §1.7."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from slotguard.domain.errors import ValidationFailed

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def clamp_limit(
    limit: int | None, *, default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT
) -> int:
    if limit is None:
        return default
    if limit < 1:
        raise ValidationFailed(
            "limit must be at least 1.", fields=[{"field": "limit", "message": "must be >= 1"}]
        )
    return min(limit, maximum)


def encode_cursor(*parts: Any) -> str:
    raw = json.dumps(list(parts), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, arity: int) -> list[Any] | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        parts = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        parts = None
    if (
        not isinstance(parts, list)
        or len(parts) != arity
        or not all(isinstance(p, str) for p in parts)
    ):
        raise ValidationFailed(
            "The cursor is not valid.", fields=[{"field": "cursor", "message": "invalid cursor"}]
        )
    return parts


def split_page(rows: list[Any], limit: int) -> tuple[list[Any], bool]:
    """Repositories fetch limit + 1 rows; the extra one only says there is more."""
    return rows[:limit], len(rows) > limit
