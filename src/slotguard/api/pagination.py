"""Opaque cursors and the limit rules of §1.7."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from fastapi import Response
from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.api import envelope
from slotguard.api.inputguard import check_json
from slotguard.domain.errors import ValidationFailed
from slotguard.store.db import Database

T = TypeVar("T")

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
        raw = base64.urlsafe_b64decode(padded.encode())
        # A forged cursor is input like any other: bounded before it is parsed.
        parts = None if check_json(raw, location="query") else json.loads(raw)
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


async def keyset_page(
    db: Database,
    *,
    limit: int | None,
    cursor: str | None,
    fetch: Callable[[AsyncSession, str | None, int], Awaitable[Sequence[T]]],
    render: Callable[[T], Any],
    key: Callable[[T], str] = lambda row: str(row.id),  # type: ignore[attr-defined]
) -> Response:
    """One page of a list ordered by a unique string key (ids or names).

    `fetch(session, after, limit)` returns up to limit + 1 rows after the key `after`.
    """
    n = clamp_limit(limit)
    after = decode_cursor(cursor, 1)
    async with db.read() as s:
        rows, more = split_page(list(await fetch(s, after[0] if after else None, n)), n)
    return envelope.page(
        [render(r) for r in rows], next_cursor=encode_cursor(key(rows[-1])) if more else None
    )
