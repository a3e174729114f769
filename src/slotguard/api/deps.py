"""Request-scoped dependencies: the database, the caller, the request context."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from slotguard.api.errors import unauthorized
from slotguard.domain.scopes import Scope
from slotguard.services import keys
from slotguard.services.context import Actor, RequestContext
from slotguard.store import repositories as repo
from slotguard.store.db import Database


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def authenticate(request: Request) -> Actor:
    header = request.headers.get("authorization", "")
    scheme, _, raw = header.partition(" ")
    raw = raw.strip()
    if scheme.lower() != "bearer" or not raw:
        raise unauthorized()
    actor = await actor_for_key(get_db(request), raw)
    if actor is None:
        raise unauthorized()
    limiter = getattr(request.app.state, "rate_limiter", None)
    if limiter is not None and actor.key_id is not None:
        await limiter.check(request, actor.key_id)
    return actor


async def actor_for_key(db: Database, raw: str) -> Actor | None:
    """The actor a raw API key stands for; None when it is unknown, revoked or orphaned."""
    digest = keys.hash_key(raw)
    async with db.read() as s:
        found = await repo.find_key_by_hash(s, digest)
    if found is None:
        return None
    key = found
    # The lookup was by hash; compare again in constant time so a timing side channel on
    # the index lookup cannot be turned into a key oracle.
    if not keys.matches(raw, key.key_hash) or key.revoked_at is not None:
        return None
    if key.agent_id is None:
        return Actor(account_id=key.account_id, key_id=key.id)
    if key.agent_row_id is None or key.agent_deleted_at is not None:
        return None
    allowed_ids = key.agent_allowed_business_ids
    allowed = None if "*" in allowed_ids else frozenset(allowed_ids)
    return Actor(
        account_id=key.account_id,
        key_id=key.id,
        agent_id=key.agent_id,
        scopes=frozenset(key.agent_scopes),
        allowed_business_ids=allowed,
        default_meeting_class=key.agent_default_meeting_class,
    )


# Declares the scheme in the OpenAPI document (§1.4) for clients and fuzzers; `authenticate`
# still reads the header itself so every failure is the same 401 `unauthorized`.
BEARER = HTTPBearer(
    scheme_name="bearerAuth",
    bearerFormat="sg_live_…",
    description="An API key: `Authorization: Bearer sg_live_…`",
    auto_error=False,
)


def context(scope: Scope | None) -> Callable[..., Awaitable[RequestContext]]:
    """Dependency: authenticate, check `scope`, and build the request context."""

    async def dependency(
        request: Request,
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
    ) -> RequestContext:
        actor = await authenticate(request)
        if scope is not None:
            actor.require_scope(scope)
        settings = getattr(request.app.state, "settings", None)
        return RequestContext(
            actor=actor,
            request_id=request.scope.get("state", {}).get("request_id"),
            now=dt.datetime.now(dt.UTC),
            calendar_sync_seconds=None if settings is None else settings.calendar_sync_seconds,
        )

    return dependency
