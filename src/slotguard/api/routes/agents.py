"""Agents and API keys (§6). Every route needs scope `admin`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.api import convert, envelope
from slotguard.api.deps import context, get_db
from slotguard.api.docs import Deleted, many, one
from slotguard.api.idempotency import IdempotencyRequest, idempotency, run_write
from slotguard.api.pagination import (
    clamp_limit,
    decode_cursor,
    encode_cursor,
    keyset_page,
    split_page,
)
from slotguard.api.schemas import (
    AgentCreate,
    AgentRead,
    AgentUpdate,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyRead,
    QueryInt,
    set_fields,
)
from slotguard.services import agents as svc
from slotguard.services.context import RequestContext

router = APIRouter(prefix="/v1")

Admin = Annotated[RequestContext, Depends(context("admin"))]
Idem = Annotated[IdempotencyRequest | None, Depends(idempotency(required=False))]


@router.post("/agents", status_code=201, responses=one(AgentRead, 201))
async def create_agent(body: AgentCreate, request: Request, ctx: Admin, idem: Idem) -> Response:
    """Create an agent: scopes, allowed businesses and a default meeting class."""

    async def work(s: AsyncSession) -> Response:
        agent = await svc.create_agent(
            s,
            ctx,
            name=body.name,
            scopes=body.scopes,
            allowed_business_ids=body.allowed_business_ids,
            default_meeting_class=body.default_meeting_class,
        )
        return envelope.ok(
            convert.agent(agent), status=201, headers={"Location": f"/v1/agents/{agent.id}"}
        )

    return await run_write(request, ctx, idem, work)


@router.get("/agents", responses=many(AgentRead))
async def list_agents(
    request: Request, ctx: Admin, limit: QueryInt | None = None, cursor: str | None = None
) -> Response:
    """List agents, by id (deleted ones are gone)."""
    return await keyset_page(
        get_db(request),
        limit=limit,
        cursor=cursor,
        fetch=lambda s, after, n: svc.list_agents(s, ctx, after=after, limit=n),
        render=convert.agent,
    )


@router.get("/agents/{agent_id}", responses=one(AgentRead))
async def get_agent(agent_id: str, request: Request, ctx: Admin) -> Response:
    """Get one agent."""
    async with get_db(request).read() as s:
        agent = await svc.get_agent(s, ctx, agent_id=agent_id)
    return envelope.ok(convert.agent(agent))


@router.patch("/agents/{agent_id}", responses=one(AgentRead))
async def update_agent(
    agent_id: str, body: AgentUpdate, request: Request, ctx: Admin, idem: Idem
) -> Response:
    """Change an agent; its keys act with the new settings from their next request."""

    async def work(s: AsyncSession) -> Response:
        agent = await svc.update_agent(
            s,
            ctx,
            agent_id=agent_id,
            changes=set_fields(body, nullable={"default_meeting_class"}),
        )
        return envelope.ok(convert.agent(agent))

    return await run_write(request, ctx, idem, work)


@router.delete("/agents/{agent_id}", responses=one(Deleted))
async def delete_agent(agent_id: str, request: Request, ctx: Admin, idem: Idem) -> Response:
    """Delete an agent and revoke all its keys at once."""

    async def work(s: AsyncSession) -> Response:
        await svc.delete_agent(s, ctx, agent_id=agent_id)
        return envelope.ok({"id": agent_id, "deleted": True})

    return await run_write(request, ctx, idem, work)


# -- keys --------------------------------------------------------------------------------


@router.post("/agents/{agent_id}/keys", status_code=201, responses=one(ApiKeyCreated, 201))
async def create_agent_key(
    agent_id: str,
    request: Request,
    ctx: Admin,
    idem: Idem,
    body: ApiKeyCreate | None = None,
) -> Response:
    """Mint a key for an agent; the secret `key` is in this response only."""
    created: list[ApiKeyCreated] = []

    async def work(s: AsyncSession) -> Response:
        key, secret = await svc.create_agent_key(
            s, ctx, agent_id=agent_id, name=body.name if body else None
        )
        created.append(convert.api_key_created(key, secret))
        # This is the body an Idempotency-Key stores for replay, so it carries no secret:
        # only a hash of a key may be stored. A replay says which key was made, not its value.
        return _key_created(convert.api_key_created(key, None))

    response = await run_write(request, ctx, idem, work)
    if not created:  # a replay: `work` did not run here
        return response
    return _key_created(created[0])


def _key_created(key: ApiKeyCreated) -> Response:
    return envelope.ok(key, status=201, headers={"Location": f"/v1/keys/{key.id}"})


@router.get("/agents/{agent_id}/keys", responses=many(ApiKeyRead))
async def list_agent_keys(
    agent_id: str,
    request: Request,
    ctx: Admin,
    limit: QueryInt | None = None,
    cursor: str | None = None,
) -> Response:
    """List an agent's keys, revoked ones included, without secrets."""
    n = clamp_limit(limit)
    after = decode_cursor(cursor, 1)
    async with get_db(request).read() as s:
        rows, more = split_page(
            list(
                await svc.list_agent_keys(
                    s, ctx, agent_id=agent_id, after=after[0] if after else None, limit=n
                )
            ),
            n,
        )
    return envelope.page(
        [convert.api_key(k) for k in rows],
        next_cursor=encode_cursor(rows[-1].id) if more else None,
    )


@router.get("/keys/{key_id}", responses=one(ApiKeyRead))
async def get_key(key_id: str, request: Request, ctx: Admin) -> Response:
    """Get one key of the account (agent or admin key), without its secret."""
    async with get_db(request).read() as s:
        key = await svc.get_key(s, ctx, key_id=key_id)
    return envelope.ok(convert.api_key(key))


@router.delete("/keys/{key_id}", responses=one(ApiKeyRead))
async def revoke_key(key_id: str, request: Request, ctx: Admin, idem: Idem) -> Response:
    """Revoke a key at once (twice is fine); a key cannot revoke itself (409 `conflict`)."""

    async def work(s: AsyncSession) -> Response:
        key = await svc.revoke_key(s, ctx, key_id=key_id)
        return envelope.ok(convert.api_key(key))

    return await run_write(request, ctx, idem, work)
