"""The caller (§3.5): who this key is, what it may do, and the server's clock."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from slotguard.api import envelope
from slotguard.api.deps import context
from slotguard.api.docs import one
from slotguard.api.schemas_agents import MeRead
from slotguard.domain.scopes import ALL_SCOPES
from slotguard.services.context import RequestContext

router = APIRouter(prefix="/v1")


@router.get("/me", responses=one(MeRead))
async def me(ctx: Annotated[RequestContext, Depends(context(None))]) -> Response:
    """The key's account, agent, scopes and businesses, and the server's time."""
    actor = ctx.actor
    scopes = list(ALL_SCOPES) if actor.agent_id is None else sorted(actor.scopes)
    allowed = actor.allowed_business_ids
    body = MeRead(
        account_id=actor.account_id,
        key_id=actor.key_id,
        agent_id=actor.agent_id,
        scopes=scopes,
        allowed_business_ids="*" if allowed is None else sorted(allowed),
        now=ctx.now,
    )
    return envelope.ok(body.model_dump(mode="json", exclude_none=True))
