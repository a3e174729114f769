"""Audit rows: one per decision and state change, written in the caller's transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.ids import new_id
from slotguard.services.context import RequestContext
from slotguard.store import repositories as repo
from slotguard.store.models import AuditEntry


def values(
    ctx: RequestContext,
    action: str,
    *,
    business_id: str | None = None,
    booking_id: str | None = None,
    hold_id: str | None = None,
    meeting_class: str | None = None,
    decision: str | None = None,
    reason: str | None = None,
    correlation_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The `audit_log` row of one decision, by column."""
    return {
        "id": new_id("aud"),
        "account_id": ctx.account_id,
        "at": ctx.now,
        "action": action,
        "agent_id": ctx.actor.agent_id,
        "key_id": ctx.actor.key_id,
        "business_id": business_id,
        "hold_id": hold_id,
        "booking_id": booking_id,
        "meeting_class": meeting_class,
        "decision": decision,
        "reason": reason,
        "request_id": ctx.request_id,
        "correlation_id": correlation_id,
        "details": details or {},
    }


def entry(ctx: RequestContext, action: str, **fields: Any) -> AuditEntry:
    """An audit row as an object, for a session of its own (rejections, after a rollback)."""
    return AuditEntry(**values(ctx, action, **fields))


def record(s: AsyncSession, ctx: RequestContext, action: str, **fields: Any) -> None:
    """Record in the caller's transaction (inserted when it commits)."""
    repo.add_audit_row(s, values(ctx, action, **fields))
