"""Idempotency keys (§1.5): claim, replay, and completion in the effect's own transaction."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from fastapi import Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.api import envelope, openapi
from slotguard.api.deps import get_db
from slotguard.api.errors import ApiError
from slotguard.domain.errors import DomainError
from slotguard.services.context import RequestContext
from slotguard.store import repositories as repo
from slotguard.store.db import Database
from slotguard.store.models import IdempotencyKey

log = structlog.get_logger("slotguard.idempotency")

# A key left in progress by a crashed process can be taken over after this long.
STALE_AFTER = dt.timedelta(seconds=60)
RETENTION = dt.timedelta(hours=24)
REPLAYED_HEADERS = ("etag", "location", "x-request-id")


@dataclass(frozen=True, slots=True)
class IdempotencyRequest:
    key: str
    fingerprint: str


def _valid_key(value: str) -> bool:
    return 1 <= len(value) <= 255 and all(0x20 <= ord(c) <= 0x7E for c in value)


def _canonical(value: Any) -> Any:
    # JSON values compare as values: 1 and 1.0 are the same number.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def fingerprint(method: str, path: str, body: bytes) -> str:
    if body.strip():
        try:
            canon = json.dumps(
                _canonical(json.loads(body)),
                sort_keys=True,
                separators=(",", ":"),
                ensure_ascii=False,
            ).encode("utf-8")
        except ValueError:
            canon = body
    else:
        canon = b""
    digest = hashlib.sha256()
    digest.update(f"{method.upper()} {path}\n".encode())
    digest.update(canon)
    return digest.hexdigest()


def idempotency(*, required: bool) -> Callable[[Request], Awaitable[IdempotencyRequest | None]]:
    async def dependency(request: Request) -> IdempotencyRequest | None:
        raw = request.headers.get("idempotency-key")
        if raw is None:
            if required:
                raise ApiError(
                    400,
                    "missing_idempotency_key",
                    "This endpoint requires an Idempotency-Key header.",
                )
            return None
        if not _valid_key(raw):
            raise ApiError(
                400,
                "invalid_idempotency_key",
                "Idempotency-Key must be 1-255 printable ASCII characters.",
            )
        body = await request.body()
        return IdempotencyRequest(raw, fingerprint(request.method, request.url.path, body))

    dependency.openapi_parameters = [  # type: ignore[attr-defined]  # read by api.openapi
        openapi.header(
            "Idempotency-Key",
            required=required,
            description="1-255 printable ASCII characters; a retry with the same key and body "
            "replays the first response" + ("" if required else " (optional here)"),
            schema=openapi.IDEMPOTENCY_KEY_SCHEMA,
        )
    ]
    return dependency


def _replay(row: IdempotencyKey) -> Response:
    headers = dict(row.response_headers or {})
    headers["Idempotent-Replayed"] = "true"
    return Response(
        content=row.response_body or b"",
        status_code=row.response_status or 200,
        headers=headers,
        media_type=envelope.JSON,
    )


async def _claim(db: Database, ctx: RequestContext, idem: IdempotencyRequest) -> str | Response:
    """Own the key (returns a token) or answer from it (replay or a 409)."""
    now = dt.datetime.now(dt.UTC)
    token = uuid.uuid4().hex
    fresh = {
        "fingerprint": idem.fingerprint,
        "state": "in_progress",
        "owner_token": token,
        "locked_at": now,
        "created_at": now,
        "response_status": None,
        "response_headers": None,
        "response_body": None,
        "completed_at": None,
    }
    row = {"account_id": ctx.account_id, "key": idem.key, **fresh}
    if not db.is_sqlite:
        # The common case, a new key, is one autocommitted statement on PostgreSQL. (On
        # SQLite the insert goes through the serialised writer below instead of contending
        # for the write lock from another connection.)
        async with db.autocommit() as s:
            if await repo.try_insert_idempotency_key(s, row):
                return token
    async with db.write() as s:
        if await repo.insert_idempotency_key(s, row):
            return token
        existing = await repo.get_idempotency_key(s, ctx.account_id, idem.key)
        if existing is None:  # purged between our insert and read: the next try inserts
            raise ApiError(
                409, "idempotency_in_progress", "Retry the request.", headers={"Retry-After": "1"}
            )
        expired = (
            existing.state == "completed"
            and existing.completed_at is not None
            and existing.completed_at < now - RETENTION
        )
        stale = existing.state == "in_progress" and existing.locked_at < now - STALE_AFTER
        reclaimable = expired or (stale and existing.fingerprint == idem.fingerprint)
        if reclaimable and await repo.take_over_idempotency_key(
            s, ctx.account_id, idem.key, expected_token=existing.owner_token, values=fresh
        ):
            return token
        if existing.fingerprint != idem.fingerprint:
            raise ApiError(
                409,
                "idempotency_key_conflict",
                "This Idempotency-Key was used with a different request.",
            )
        if existing.state == "completed":
            return _replay(existing)
        raise ApiError(
            409,
            "idempotency_in_progress",
            "A request with this Idempotency-Key is still being processed.",
            headers={"Retry-After": "1"},
        )


async def _release(db: Database, ctx: RequestContext, key: str, token: str) -> None:
    try:
        async with db.write() as s:
            await repo.release_idempotency_key(s, ctx.account_id, key, token)
    except Exception:  # the key then goes stale and is reclaimable after STALE_AFTER
        log.exception("idempotency_release_failed", key=key)


async def _write_rejection_audit(db: Database, rows: list[Any]) -> None:
    try:
        async with db.write() as s:
            s.add_all(rows)
    except Exception:
        log.exception("rejection_audit_failed")


Work = Callable[[AsyncSession], Awaitable[Response]]


async def run_write(
    request: Request, ctx: RequestContext, idem: IdempotencyRequest | None, work: Work
) -> Response:
    """Run `work` in one write transaction, honouring the idempotency key if any.

    A 2xx response is stored under the key in the same transaction as the work, so the
    effect and its replayable answer commit (or vanish) together. Any failure releases the
    key so a retry executes afresh.
    """
    db = get_db(request)
    token: str | None = None
    if idem is not None:
        claimed = await _claim(db, ctx, idem)
        if isinstance(claimed, Response):
            return claimed
        token = claimed
    try:
        async with db.write() as s:
            response = await work(s)
            if token is not None and idem is not None and 200 <= response.status_code < 300:
                headers = {
                    k: v for k, v in response.headers.items() if k.lower() in REPLAYED_HEADERS
                }
                headers.setdefault("X-Request-Id", envelope.request_id_var.get())
                stored = await repo.complete_idempotency_key(
                    s,
                    ctx.account_id,
                    idem.key,
                    token=token,
                    status=response.status_code,
                    headers=headers,
                    body=bytes(response.body),
                    now=dt.datetime.now(dt.UTC),
                )
                if not stored:
                    # Another request took the key over while we ran (we were slower than
                    # STALE_AFTER); roll back so the work cannot happen twice.
                    raise ApiError(
                        409,
                        "idempotency_in_progress",
                        "A request with this Idempotency-Key is still being processed.",
                        headers={"Retry-After": "1"},
                    )
    except BaseException as exc:
        if token is not None and idem is not None:
            await asyncio.shield(_release(db, ctx, idem.key, token))
        if isinstance(exc, DomainError) and exc.audit:
            await asyncio.shield(_write_rejection_audit(db, exc.audit))
        raise
    if token is not None and idem is not None and not 200 <= response.status_code < 300:
        await _release(db, ctx, idem.key, token)
    return response
