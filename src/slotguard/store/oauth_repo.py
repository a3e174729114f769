"""Queries of the OAuth connect flow and of the access-token cache with its refresh lease.

Both guarantees live in single conditional UPDATEs, so they hold across processes on
either store: a ``state`` is spent by ``UPDATE … WHERE used_at IS NULL AND expires_at >
now`` (one winner), and a refresh lease is taken by ``UPDATE … WHERE lease_until IS NULL
OR lease_until < now`` (one holder at a time; a holder that died loses it when it runs out).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.store.models import Calendar, CalendarOAuthToken, OAuthState


def _rowcount(result: Any) -> int:
    return int(result.rowcount or 0)


# -- connect-flow states -----------------------------------------------------------------


async def add_state(s: AsyncSession, state: OAuthState) -> None:
    s.add(state)
    await s.flush()


async def claim_state(
    s: AsyncSession, *, state_id: str, provider: str, now: dt.datetime
) -> OAuthState | None:
    """Spend a state: the first caller gets it, a reused or expired one gives None."""
    result = await s.execute(
        update(OAuthState)
        .where(
            OAuthState.id == state_id,
            OAuthState.provider == provider,
            OAuthState.used_at.is_(None),
            OAuthState.expires_at > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(result) != 1:
        return None
    return await s.get(OAuthState, state_id, populate_existing=True)


async def get_state(s: AsyncSession, state_id: str) -> OAuthState | None:
    return await s.get(OAuthState, state_id)


async def set_state_calendar(s: AsyncSession, *, state_id: str, calendar_id: str) -> None:
    await s.execute(
        update(OAuthState).where(OAuthState.id == state_id).values(calendar_id=calendar_id)
    )


async def purge_states(s: AsyncSession, *, expired_before: dt.datetime) -> int:
    result = await s.execute(delete(OAuthState).where(OAuthState.expires_at < expired_before))
    return _rowcount(result)


# -- access tokens and the refresh lease ---------------------------------------------------


async def ensure_token_row(s: AsyncSession, *, calendar_id: str, now: dt.datetime) -> None:
    values = {"calendar_id": calendar_id, "refresh_count": 0, "updated_at": now}
    table = CalendarOAuthToken
    stmt: Any
    if s.bind.dialect.name == "postgresql":
        stmt = pg_insert(table).values(**values).on_conflict_do_nothing()
    else:
        stmt = sqlite_insert(table).values(**values).on_conflict_do_nothing()
    await s.execute(stmt)


async def get_token(s: AsyncSession, calendar_id: str) -> CalendarOAuthToken | None:
    return (
        await s.scalars(
            select(CalendarOAuthToken)
            .where(CalendarOAuthToken.calendar_id == calendar_id)
            .execution_options(populate_existing=True)
        )
    ).one_or_none()


async def try_lease(
    s: AsyncSession, *, calendar_id: str, owner: str, now: dt.datetime, until: dt.datetime
) -> bool:
    result = await s.execute(
        update(CalendarOAuthToken)
        .where(
            CalendarOAuthToken.calendar_id == calendar_id,
            or_(CalendarOAuthToken.lease_until.is_(None), CalendarOAuthToken.lease_until < now),
        )
        .values(lease_owner=owner, lease_until=until, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


async def release_lease(s: AsyncSession, *, calendar_id: str, owner: str, now: dt.datetime) -> None:
    await s.execute(
        update(CalendarOAuthToken)
        .where(
            CalendarOAuthToken.calendar_id == calendar_id,
            CalendarOAuthToken.lease_owner == owner,
        )
        .values(lease_owner=None, lease_until=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )


async def save_access_token(
    s: AsyncSession,
    *,
    calendar_id: str,
    owner: str,
    access_token: str | None,
    expires_at: dt.datetime | None,
    now: dt.datetime,
) -> bool:
    """Store a fresh access token and end the lease, only while `owner` still holds it."""
    result = await s.execute(
        update(CalendarOAuthToken)
        .where(
            CalendarOAuthToken.calendar_id == calendar_id,
            CalendarOAuthToken.lease_owner == owner,
        )
        .values(
            access_token=access_token,
            expires_at=expires_at,
            lease_owner=None,
            lease_until=None,
            refreshed_at=now,
            refresh_count=CalendarOAuthToken.refresh_count + 1,
            refused_version=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


async def mark_refused(
    s: AsyncSession, *, calendar_id: str, owner: str, version: int, now: dt.datetime
) -> None:
    await s.execute(
        update(CalendarOAuthToken)
        .where(
            CalendarOAuthToken.calendar_id == calendar_id,
            CalendarOAuthToken.lease_owner == owner,
        )
        .values(
            refused_version=version,
            access_token=None,
            expires_at=None,
            lease_owner=None,
            lease_until=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )


async def forget_access_token(s: AsyncSession, *, calendar_id: str, now: dt.datetime) -> None:
    """After new credentials (a reconnect): the cached token and any refusal are void."""
    await s.execute(
        update(CalendarOAuthToken)
        .where(CalendarOAuthToken.calendar_id == calendar_id)
        .values(access_token=None, expires_at=None, refused_version=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )


# -- the calendar's stored credentials ---------------------------------------------------


async def calendar_credentials(s: AsyncSession, calendar_id: str) -> tuple[str | None, int] | None:
    """(sealed credentials, credentials_version), or None if the calendar is gone."""
    row = (
        await s.execute(
            select(Calendar.credentials, Calendar.credentials_version).where(
                Calendar.id == calendar_id
            )
        )
    ).one_or_none()
    return None if row is None else (row[0], int(row[1]))


async def replace_credentials(
    s: AsyncSession, *, calendar_id: str, version: int, credentials: str, now: dt.datetime
) -> bool:
    """Write rotated credentials unless someone changed them since `version` was read (a
    reconnect with new credentials wins over a rotation of the old ones)."""
    result = await s.execute(
        update(Calendar)
        .where(Calendar.id == calendar_id, Calendar.credentials_version == version)
        .values(credentials=credentials, credentials_version=version + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1
