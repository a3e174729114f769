"""Businesses, the two rule layers, meeting classes and busy time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.domain.errors import Conflict, NotFound, ValidationFailed
from slotguard.domain.rules import EffectiveRules, RuleSource, RulesPatch, merge_rules
from slotguard.ids import new_id
from slotguard.services.accounts import DEFAULT_CLASS
from slotguard.services.context import Actor
from slotguard.store import repositories as repo
from slotguard.store.models import Account, Business, BusyInterval, MeetingClass


async def _flush_unique(s: AsyncSession, what: str) -> None:
    try:
        async with s.begin_nested():
            await s.flush()
    except IntegrityError as exc:
        if repo.is_unique_violation(exc):
            raise Conflict(f"{what} already exists.") from None
        raise


async def get_account(s: AsyncSession, actor: Actor) -> Account:
    account = await repo.get_account(s, actor.account_id)
    if account is None:  # the key was valid a moment ago; the account row cannot vanish
        raise NotFound()
    return account


async def resolve_business(
    s: AsyncSession,
    actor: Actor,
    *,
    business_id: str | None,
    owner_email: str | None = None,
    lock: bool = False,
) -> Business:
    """The business named by id (or owner email), checked against the key's fence."""
    if business_id:
        biz = (
            await repo.lock_business(s, actor.account_id, business_id)
            if lock
            else await repo.get_business(s, actor.account_id, business_id)
        )
    elif owner_email:
        biz = await repo.get_business_by_email(s, actor.account_id, owner_email)
        if biz is not None and lock:
            biz = await repo.lock_business(s, actor.account_id, biz.id)
    else:
        raise ValidationFailed(
            "business_id or owner_email is required.",
            fields=[{"field": "business_id", "message": "business_id or owner_email is required"}],
        )
    if biz is None:
        raise NotFound("The business does not exist.")
    actor.require_business(biz.id)
    return biz


def merge_layers(
    account_rules: dict[str, Any], business_rules: dict[str, Any] | None
) -> tuple[EffectiveRules, dict[str, RuleSource]]:
    """Effective rules from the stored account and business layers."""
    return merge_rules(
        RulesPatch.model_validate(account_rules or {}),
        RulesPatch.model_validate(business_rules or {}) if business_rules is not None else None,
    )


def effective_rules(
    account: Account, business: Business | None
) -> tuple[EffectiveRules, dict[str, RuleSource]]:
    return merge_layers(account.rules, business.rules if business is not None else None)


async def create_business(
    s: AsyncSession,
    actor: Actor,
    *,
    name: str,
    email: str | None,
    timezone: str,
    rules: RulesPatch | None,
    now: dt.datetime,
) -> Business:
    biz = Business(
        id=new_id("biz"),
        account_id=actor.account_id,
        name=name,
        email=email,
        timezone=timezone,
        rules=rules.model_dump(mode="json", exclude_none=True) if rules else {},
        created_at=now,
        updated_at=now,
        deleted_at=None,
    )
    s.add(biz)
    await _flush_unique(s, "A business with this email")
    return biz


async def update_business(
    s: AsyncSession, actor: Actor, business_id: str, *, changes: dict[str, Any], now: dt.datetime
) -> Business:
    biz = await resolve_business(s, actor, business_id=business_id, lock=True)
    for field in ("name", "email", "timezone"):
        if field in changes:
            setattr(biz, field, changes[field])
    if "rules" in changes:
        patch = changes["rules"]
        biz.rules = patch.model_dump(mode="json", exclude_none=True) if patch else {}
    biz.updated_at = now
    await _flush_unique(s, "A business with this email")
    return biz


async def delete_business(
    s: AsyncSession, actor: Actor, business_id: str, now: dt.datetime
) -> None:
    # Soft delete: bookings and audit rows keep pointing at it.
    biz = await resolve_business(s, actor, business_id=business_id, lock=True)
    biz.deleted_at = now
    biz.updated_at = now


async def put_default_rules(s: AsyncSession, actor: Actor, rules: RulesPatch) -> Account:
    account = await get_account(s, actor)
    account.rules = rules.model_dump(mode="json", exclude_none=True)
    return account


# -- meeting classes ---------------------------------------------------------------------


def meeting_class_name(actor: Actor, name: str | None) -> str:
    """The class a request acts as: named, else the agent's default, else `default`."""
    return name or actor.default_meeting_class or DEFAULT_CLASS


async def resolve_meeting_class(s: AsyncSession, actor: Actor, name: str | None) -> MeetingClass:
    """The class a request acts as: named, else the agent's default, else `default`."""
    chosen = meeting_class_name(actor, name)
    mc = await repo.get_meeting_class(s, actor.account_id, chosen)
    if mc is None:
        if name is None and chosen != DEFAULT_CLASS:
            mc = await repo.get_meeting_class(s, actor.account_id, DEFAULT_CLASS)
        if mc is None:
            raise ValidationFailed(
                f"Unknown meeting class {chosen!r}.",
                fields=[{"field": "meeting_class", "message": f"unknown meeting class {chosen!r}"}],
            )
    return mc


async def get_meeting_class(s: AsyncSession, actor: Actor, name: str) -> MeetingClass:
    mc = await repo.get_meeting_class(s, actor.account_id, name)
    if mc is None:
        raise NotFound("The meeting class does not exist.")
    return mc


async def create_meeting_class(
    s: AsyncSession, actor: Actor, *, fields: dict[str, Any], now: dt.datetime
) -> MeetingClass:
    mc = MeetingClass(
        id=new_id("mc"),
        account_id=actor.account_id,
        created_at=now,
        updated_at=now,
        **fields,
    )
    s.add(mc)
    await _flush_unique(s, "A meeting class with this name")
    return mc


async def update_meeting_class(
    s: AsyncSession, actor: Actor, name: str, *, changes: dict[str, Any], now: dt.datetime
) -> MeetingClass:
    mc = await get_meeting_class(s, actor, name)
    for field, value in changes.items():
        setattr(mc, field, value)
    mc.updated_at = now
    await _flush_unique(s, "A meeting class with this name")
    return mc


async def delete_meeting_class(s: AsyncSession, actor: Actor, name: str) -> None:
    if name == DEFAULT_CLASS:
        raise Conflict("The default meeting class cannot be deleted.")
    mc = await get_meeting_class(s, actor, name)
    # Bookings keep their class name and the priority/buffers they were made with.
    await s.delete(mc)


# -- busy time ---------------------------------------------------------------------------


async def add_busy(
    s: AsyncSession,
    actor: Actor,
    business_id: str,
    *,
    start: dt.datetime,
    end: dt.datetime,
    title: str | None,
    external_id: str | None,
    now: dt.datetime,
) -> BusyInterval:
    biz = await resolve_business(s, actor, business_id=business_id)
    busy = BusyInterval(
        id=new_id("busy"),
        account_id=actor.account_id,
        business_id=biz.id,
        start_at=start,
        end_at=end,
        title=title,
        external_id=external_id,
        source="api",
        created_at=now,
    )
    s.add(busy)
    await s.flush()
    return busy


async def list_busy(
    s: AsyncSession,
    actor: Actor,
    business_id: str,
    *,
    start: dt.datetime | None,
    end: dt.datetime | None,
    after: str | None,
    limit: int,
) -> Sequence[BusyInterval]:
    biz = await resolve_business(s, actor, business_id=business_id)
    return await repo.list_busy(s, biz.id, start=start, end=end, after=after, limit=limit)


async def delete_busy(s: AsyncSession, actor: Actor, business_id: str, busy_id: str) -> None:
    biz = await resolve_business(s, actor, business_id=business_id)
    busy = await repo.get_busy(s, biz.id, busy_id)
    if busy is None:
        raise NotFound("The busy interval does not exist.")
    await s.delete(busy)
