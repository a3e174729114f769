"""Accounts and admin keys (created from the CLI, or at first start)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.ids import new_id
from slotguard.services import keys
from slotguard.store import repositories as repo
from slotguard.store.models import Account, ApiKey, MeetingClass

DEFAULT_CLASS = "default"


async def create_account(s: AsyncSession, *, name: str, now: dt.datetime) -> Account:
    """A new account with its built-in `default` meeting class (priority 50)."""
    account = Account(id=new_id("acct"), name=name, rules={}, created_at=now)
    s.add(account)
    s.add(
        MeetingClass(
            id=new_id("mc"),
            account_id=account.id,
            name=DEFAULT_CLASS,
            display_name="Meeting",
            duration_minutes=None,
            priority=50,
            buffer_before_minutes=0,
            buffer_after_minutes=0,
            created_at=now,
            updated_at=now,
        )
    )
    await s.flush()
    return account


async def create_key(
    s: AsyncSession,
    *,
    account_id: str,
    now: dt.datetime,
    agent_id: str | None = None,
    name: str | None = None,
    raw_key: str | None = None,
) -> tuple[ApiKey, str]:
    """Store a new key and return it with the raw secret (the only time it exists)."""
    raw = raw_key or keys.mint_key()
    key = ApiKey(
        id=new_id("key"),
        account_id=account_id,
        agent_id=agent_id,
        key_hash=keys.hash_key(raw),
        prefix=keys.display_prefix(raw),
        name=name,
        created_at=now,
        revoked_at=None,
    )
    s.add(key)
    await s.flush()
    return key, raw


async def bootstrap(
    s: AsyncSession, *, now: dt.datetime, raw_key: str | None
) -> tuple[Account, str] | None:
    """On an empty database, create the first account and admin key.

    Runs inside a write transaction that holds the database's write lock (SQLite) or an
    advisory lock (PostgreSQL), so two processes starting together create one account.
    Returns None when the database already has an account.
    """
    if await repo.count_accounts(s) > 0:
        return None
    account = await create_account(s, name="default", now=now)
    _, raw = await create_key(s, account_id=account.id, now=now, name="bootstrap", raw_key=raw_key)
    return account, raw
