"""Agents and their API keys (§6).

An agent is a set of scopes, a business fence and a default meeting class; its keys carry
no permissions of their own. Authentication reads the agent on every request, so a change
here (scopes, fence, soft delete) applies to the very next request of each of its keys.

Choices where the contract is silent:
- A caller fenced to some businesses (an agent with `admin` but not `"*"`) may only manage
  agents whose fence lies inside its own, and only revoke keys of such agents: otherwise it
  could mint itself a key for an agent with a wider fence. Violations are 403 `forbidden`
  with `details.business_id` (`"*"` when the target is unfenced, e.g. an account key).
- A key cannot revoke itself (409 `conflict`): the caller would lose its credential in the
  middle of the exchange, and an account's admin keys can only be re-created from the CLI.
- Revoking a revoked key changes nothing and returns it (its first `revoked_at` stays).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.domain.errors import Conflict, NotFound, ValidationFailed
from slotguard.domain.scopes import ALL_SCOPES, Scope
from slotguard.ids import new_id
from slotguard.services import accounts
from slotguard.services.context import Actor, RequestContext
from slotguard.store import agent_repo
from slotguard.store import repositories as repo
from slotguard.store.models import Agent, ApiKey

EVERY_BUSINESS = "*"
AllowedBusinesses = Literal["*"] | Sequence[str]


def _scopes(scopes: Sequence[str]) -> list[str]:
    unknown = [(i, sc) for i, sc in enumerate(scopes) if sc not in ALL_SCOPES]
    if unknown:
        raise ValidationFailed(
            "Unknown scope.",
            fields=[
                {"field": f"scopes.{i}", "message": f"unknown scope {sc!r}"} for i, sc in unknown
            ],
        )
    return list(dict.fromkeys(scopes))  # dedupe, keep the caller's order


async def _allowed_businesses(
    s: AsyncSession, ctx: RequestContext, allowed: AllowedBusinesses
) -> list[str]:
    """The stored form (`["*"]` or known business ids), checked against the caller's fence."""
    ids = [EVERY_BUSINESS] if allowed == EVERY_BUSINESS else list(dict.fromkeys(allowed))
    if ids != [EVERY_BUSINESS] and ids:
        found = await repo.list_businesses(
            s, ctx.account_id, after=None, limit=len(ids), only_ids=frozenset(ids)
        )
        known = {b.id for b in found}
        unknown = [(i, b) for i, b in enumerate(ids) if b not in known]
        if unknown:
            raise ValidationFailed(
                "Unknown business.",
                fields=[
                    {"field": f"allowed_business_ids.{i}", "message": f"unknown business {b!r}"}
                    for i, b in unknown
                ],
            )
    _require_fence_covers(ctx.actor, ids)
    return ids


def _require_fence_covers(actor: Actor, allowed: Sequence[str]) -> None:
    if actor.allowed_business_ids is None:
        return
    for business_id in allowed:
        actor.require_business(business_id)  # "*" is never inside a fence


async def _meeting_class(s: AsyncSession, ctx: RequestContext, name: str | None) -> str | None:
    if name is not None and await repo.get_meeting_class(s, ctx.account_id, name) is None:
        raise ValidationFailed(
            f"Unknown meeting class {name!r}.",
            fields=[
                {"field": "default_meeting_class", "message": f"unknown meeting class {name!r}"}
            ],
        )
    return name


async def create_agent(
    s: AsyncSession,
    ctx: RequestContext,
    *,
    name: str,
    scopes: Sequence[Scope],
    allowed_business_ids: AllowedBusinesses,
    default_meeting_class: str | None,
) -> Agent:
    agent = Agent(
        id=new_id("agt"),
        account_id=ctx.account_id,
        name=name,
        scopes=_scopes(scopes),
        allowed_business_ids=await _allowed_businesses(s, ctx, allowed_business_ids),
        default_meeting_class=await _meeting_class(s, ctx, default_meeting_class),
        created_at=ctx.now,
        updated_at=ctx.now,
        deleted_at=None,
    )
    s.add(agent)
    await s.flush()
    return agent


async def get_agent(s: AsyncSession, ctx: RequestContext, *, agent_id: str) -> Agent:
    """A live agent of the caller's account (deleted or foreign ones are 404)."""
    agent = await repo.get_agent(s, ctx.account_id, agent_id)
    if agent is None:
        raise NotFound("The agent does not exist.")
    return agent


async def list_agents(
    s: AsyncSession, ctx: RequestContext, *, after: str | None, limit: int
) -> Sequence[Agent]:
    return await repo.list_agents(s, ctx.account_id, after=after, limit=limit)


async def _managed_agent(s: AsyncSession, ctx: RequestContext, agent_id: str) -> Agent:
    agent = await get_agent(s, ctx, agent_id=agent_id)
    _require_fence_covers(ctx.actor, agent.allowed_business_ids)
    return agent


async def update_agent(
    s: AsyncSession, ctx: RequestContext, *, agent_id: str, changes: Mapping[str, Any]
) -> Agent:
    """Apply the fields sent; `default_meeting_class: None` clears it."""
    agent = await _managed_agent(s, ctx, agent_id)
    if "name" in changes:
        agent.name = changes["name"]
    if "scopes" in changes:
        agent.scopes = _scopes(changes["scopes"])
    if "allowed_business_ids" in changes:
        agent.allowed_business_ids = await _allowed_businesses(
            s, ctx, changes["allowed_business_ids"]
        )
    if "default_meeting_class" in changes:
        agent.default_meeting_class = await _meeting_class(s, ctx, changes["default_meeting_class"])
    agent.updated_at = ctx.now
    await s.flush()
    return agent


async def delete_agent(s: AsyncSession, ctx: RequestContext, *, agent_id: str) -> None:
    """Soft-delete the agent and revoke its keys in the same transaction.

    Authentication also refuses any key of a deleted agent, so a key minted concurrently
    with the delete (and so missed by the revocation) is refused as well.
    """
    agent = await _managed_agent(s, ctx, agent_id)
    agent.deleted_at = ctx.now
    agent.updated_at = ctx.now
    await s.flush()
    await repo.revoke_agent_keys(s, agent.id, ctx.now)


async def create_agent_key(
    s: AsyncSession, ctx: RequestContext, *, agent_id: str, name: str | None
) -> tuple[ApiKey, str]:
    """A new key for the agent, with its raw secret (the only time it exists)."""
    agent = await _managed_agent(s, ctx, agent_id)
    return await accounts.create_key(
        s, account_id=ctx.account_id, agent_id=agent.id, name=name, now=ctx.now
    )


async def list_agent_keys(
    s: AsyncSession, ctx: RequestContext, *, agent_id: str, after: str | None, limit: int
) -> Sequence[ApiKey]:
    agent = await get_agent(s, ctx, agent_id=agent_id)
    return await agent_repo.list_agent_keys_page(
        s, ctx.account_id, agent.id, after=after, limit=limit
    )


async def get_key(s: AsyncSession, ctx: RequestContext, *, key_id: str) -> ApiKey:
    """Any key of the account, agent or admin, revoked or not."""
    key = await repo.get_key(s, ctx.account_id, key_id)
    if key is None:
        raise NotFound("The key does not exist.")
    return key


async def revoke_key(s: AsyncSession, ctx: RequestContext, *, key_id: str) -> ApiKey:
    """Revoke a key at once; revoking twice returns it unchanged.

    Refused (409 `conflict`) for the key making the request, and (403) for keys outside a
    fenced caller's reach; see the module docstring.
    """
    key = await get_key(s, ctx, key_id=key_id)
    if key.revoked_at is not None:
        return key
    if key.id == ctx.actor.key_id:
        raise Conflict("A key cannot revoke itself; revoke it with another key.")
    if ctx.actor.allowed_business_ids is not None:
        agent = await repo.get_agent(s, ctx.account_id, key.agent_id) if key.agent_id else None
        # An account key, or a key of a deleted agent, has no fence of its own to compare.
        _require_fence_covers(
            ctx.actor, agent.allowed_business_ids if agent is not None else [EVERY_BUSINESS]
        )
    key.revoked_at = ctx.now
    await s.flush()
    return key
