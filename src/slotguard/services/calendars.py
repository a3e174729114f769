"""Connected calendars (§7.1): connect, change, remove, read; staleness; write-back queue.

Connecting validates the settings with one provider request *before* any write
transaction opens (`prepare_connection`), so a slow provider never holds a database lock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.calendars.base import (
    ProviderAuthError,
    ProviderError,
    ProviderSpec,
)
from slotguard.calendars.credentials import CredentialError, SecretBox, secret_box
from slotguard.calendars.http import split_userinfo
from slotguard.calendars.oauth import PROVIDERS as OAUTH_PROVIDERS
from slotguard.calendars.oauth import TokenGrant
from slotguard.calendars.registry import PROVIDERS, get_spec
from slotguard.calendars.sync import (
    SyncConfig,
    SyncState,
    build_context,
    is_stale,
    open_credentials,
)
from slotguard.calendars.tokens import RefreshTokenGrant, store_initial_token
from slotguard.config import get_settings
from slotguard.domain.errors import (
    CalendarAuthFailed,
    CalendarUnreachable,
    Conflict,
    NotFound,
    SecretKeyRequired,
    ValidationFailed,
)
from slotguard.effects.netguard import WebhookTargetError, validate_webhook_url
from slotguard.services.businesses import resolve_business
from slotguard.services.context import Actor
from slotguard.store import calendar_repo, oauth_repo
from slotguard.store.db import Database
from slotguard.store.models import Booking, Business, Calendar

log = structlog.get_logger("slotguard.calendars")

ROLES = ("busy", "write", "both")
# Body fields that are provider settings (not secrets) and stored in plain text.
PLAIN_FIELDS = ("calendar_id",)


def _invalid(field_name: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, fields=[{"field": field_name, "message": message}])


@dataclass
class Connection:
    """A validated connect (or reconnect) request, ready to be written."""

    spec: ProviderSpec
    role: str
    name: str | None
    url: str | None
    settings: dict[str, Any]
    secrets: dict[str, Any]
    timezone: str | None
    checked_name: str | None = None
    checked_timezone: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Google/Microsoft: the grant the check obtained (its access token is cached once the
    # calendar exists, so the first sync does not refresh again).
    grant: TokenGrant | None = None

    def __repr__(self) -> str:  # never show the secrets, even in a traceback
        return f"Connection(provider={self.spec.name!r}, role={self.role!r})"


async def _guard_url(url: str, *, allow_private: bool) -> str:
    if url.lower().startswith("webcal://"):
        url = "https://" + url[len("webcal://") :]
    try:
        clean, _, _ = split_userinfo(url)
        await validate_webhook_url(clean, allow_private=allow_private)
    except WebhookTargetError as exc:
        raise _invalid("url", str(exc).replace("webhook", "calendar")) from None
    except Exception:
        raise _invalid("url", "calendar URL is not a valid URL") from None
    return url


def _provider_error(exc: ProviderError) -> Exception:
    if isinstance(exc, ProviderAuthError):
        return CalendarAuthFailed(exc.message, **({"status": exc.status} if exc.status else {}))
    details = {"status": exc.status} if exc.status is not None else {}
    return CalendarUnreachable(exc.message, **details)


async def prepare_connection(
    *,
    business: Business,
    provider: str,
    role: str,
    name: str | None,
    fields: Mapping[str, Any],
    config: SyncConfig,
    calendar_id: str,
    check: bool = True,
    grant: TokenGrant | None = None,
    db: Database | None = None,
    stored_credentials: bool = False,
) -> Connection:
    """Validate a connect request and check it against the provider (one request).

    Google/Microsoft: the check obtains an access token with the refresh token (or uses
    ``grant``, just issued by a code exchange); a refresh token rotated meanwhile
    (Microsoft) replaces the one given, so what is stored is the one that still works.
    ``stored_credentials`` (a PATCH that changes no credential of calendar
    ``calendar_id``): the check uses the stored grant through the refresh lease (``db``),
    like every worker, and ``secrets`` stays empty, so the stored credentials (perhaps
    rotated by that very check) are not written again."""
    spec = get_spec(provider)
    if spec is None:
        raise _invalid("provider", f"provider must be one of {', '.join(sorted(PROVIDERS))}")
    if provider in OAUTH_PROVIDERS:
        require_oauth_client(provider, config)
    if role not in ROLES:
        raise _invalid("role", "role must be busy, write or both")
    if spec.read_only and role != "busy":
        raise _invalid("role", f"{provider} calendars are read only: role must be busy")
    allowed = {"timezone", *spec.secret_fields, *spec.setting_fields}
    if spec.needs_url:
        allowed.add("url")
    unexpected = sorted(k for k, v in fields.items() if v is not None and k not in allowed)
    if unexpected:
        raise ValidationFailed(
            "These fields do not apply to this provider.",
            fields=[{"field": k, "message": f"not a {provider} setting"} for k in unexpected],
        )
    missing = [k for k in spec.required_fields if not fields.get(k)]
    if missing:
        raise ValidationFailed(
            "These fields are required for this provider.",
            fields=[{"field": k, "message": "required"} for k in missing],
        )
    url: str | None = fields.get("url")
    secrets = {k: fields[k] for k in spec.secret_fields if fields.get(k) is not None}
    if spec.needs_url:
        if not url:
            raise _invalid("url", f"a {provider} calendar needs a url")
        try:
            _, user, password = split_userinfo(url)
        except Exception:
            raise _invalid("url", "calendar URL is not a valid URL") from None
        if user and "username" in spec.secret_fields:
            secrets.setdefault("username", user)
        if password and "password" in spec.secret_fields:
            secrets.setdefault("password", password)
    if secrets and secret_box(config.secret_key) is None:
        raise SecretKeyRequired()
    if spec.needs_url and url:
        url = await _guard_url(url, allow_private=config.allow_private)
        url, _, _ = split_userinfo(url)
    settings = {
        **spec.setting_defaults,
        **{k: fields[k] for k in spec.setting_fields if fields.get(k) is not None},
    }
    conn = Connection(
        spec=spec,
        role=role,
        name=name,
        url=url,
        settings=settings,
        secrets=secrets,
        timezone=fields.get("timezone"),
    )
    if check:
        await _check(
            conn,
            business,
            config=config,
            calendar_id=calendar_id,
            grant=grant,
            db=db,
            stored=stored_credentials and provider in OAUTH_PROVIDERS,
        )
    if stored_credentials:
        conn.secrets = {}
    return conn


OAUTH_LABELS = {"google": "Google Calendar", "microsoft": "Microsoft 365"}
OAUTH_SETTINGS = {
    "google": "SLOTGUARD_GOOGLE_CLIENT_ID and SLOTGUARD_GOOGLE_CLIENT_SECRET",
    "microsoft": "SLOTGUARD_MICROSOFT_CLIENT_ID and SLOTGUARD_MICROSOFT_CLIENT_SECRET",
}


def require_oauth_client(provider: str, config: SyncConfig) -> None:
    """422 when the operator has not registered an OAuth client for this provider."""
    if config.oauth is None or provider not in config.oauth.clients:
        raise _invalid(
            "provider",
            f"{OAUTH_LABELS.get(provider, provider)} is not configured on this server: "
            f"the operator sets {OAUTH_SETTINGS.get(provider, 'its OAuth client')}",
        )


async def _check(
    conn: Connection,
    business: Business,
    *,
    config: SyncConfig,
    calendar_id: str,
    grant: TokenGrant | None = None,
    db: Database | None = None,
    stored: bool = False,
) -> None:
    probe = Calendar(
        id=calendar_id,
        provider=conn.spec.name,
        url=conn.url,
        settings=conn.settings,
        timezone=conn.timezone,
    )
    async with config.client() as http:
        ctx = build_context(
            probe,
            business,
            credentials=conn.secrets,
            http=http,
            config=config,
            db=db,
            new_grant=not stored,
        )
        tokens = ctx.tokens
        if isinstance(tokens, RefreshTokenGrant) and grant is not None:
            tokens.grant = grant
        try:
            result = await conn.spec.build(ctx).check()
        except ProviderError as exc:
            raise _provider_error(exc) from None
    if isinstance(tokens, RefreshTokenGrant):
        conn.secrets["refresh_token"] = tokens.refresh_token
        conn.grant = tokens.grant
    conn.checked_name = result.name
    conn.checked_timezone = result.timezone
    if result.mailbox:
        # Requests are counted per mailbox (calendars/permits.py), whichever calendar.
        conn.settings["mailbox"] = result.mailbox


async def cache_checked_token(
    db: Database, conn: Connection, *, calendar_id: str, config: SyncConfig
) -> None:
    """After the calendar committed: keep the access token its connect check obtained, so
    the first sync needs no refresh (best effort: without it the first sync refreshes)."""
    box = secret_box(config.secret_key)
    if conn.grant is None or box is None:
        return
    try:
        await store_initial_token(
            db, calendar_id=calendar_id, box=box, grant=conn.grant, now=dt.datetime.now(dt.UTC)
        )
    except Exception:
        log.warning("calendar_token_cache_failed", calendar_id=calendar_id)


async def refuse_second_write_calendar(s: AsyncSession, business_id: str, role: str) -> None:
    """409 ``write_calendar_exists`` early, for a role that writes (re-checked at create)."""
    if role in calendar_repo.WRITE_ROLES and await calendar_repo.write_calendar_id(s, business_id):
        raise Conflict(
            "The business already has a calendar that bookings are written to.",
            reason="write_calendar_exists",
        )


async def business_for(s: AsyncSession, actor: Actor, business_id: str) -> Business:
    return await resolve_business(s, actor, business_id=business_id)


async def create_calendar(
    s: AsyncSession,
    actor: Actor,
    business_id: str,
    *,
    calendar_id: str,
    conn: Connection,
    config: SyncConfig,
    now: dt.datetime,
) -> Calendar:
    biz = await resolve_business(s, actor, business_id=business_id, lock=True)
    if conn.role in calendar_repo.WRITE_ROLES and await calendar_repo.write_calendar_id(s, biz.id):
        raise Conflict(
            "The business already has a calendar that bookings are written to.",
            reason="write_calendar_exists",
        )
    box = secret_box(config.secret_key)
    cal = Calendar(
        id=calendar_id,
        account_id=biz.account_id,
        business_id=biz.id,
        provider=conn.spec.name,
        role=conn.role,
        name=conn.name or conn.checked_name,
        url=conn.url,
        provider_calendar_id=conn.settings.get("calendar_id"),
        settings=conn.settings,
        credentials=box.seal(calendar_id, conn.secrets) if (box and conn.secrets) else None,
        credentials_version=1 if conn.secrets else 0,
        timezone=conn.timezone or conn.checked_timezone,
        status="pending",
        last_synced_at=None,
        last_error=None,
        busy_count=0,
        copy_generation=0,
        cursor=None,
        window_start=None,
        window_end=None,
        last_full_sync_at=None,
        next_sync_at=now,  # the first sync starts at once, in the background
        failures=0,
        lease_owner=None,
        lease_until=None,
        created_at=now,
        updated_at=now,
    )
    s.add(cal)
    try:
        await s.flush()
    except IntegrityError:
        raise Conflict(
            "The business already has a calendar that bookings are written to.",
            reason="write_calendar_exists",
        ) from None
    return cal


async def get_calendar(
    s: AsyncSession, actor: Actor, business_id: str, calendar_id: str
) -> Calendar:
    biz = await resolve_business(s, actor, business_id=business_id)
    cal = await calendar_repo.get_calendar(s, actor.account_id, biz.id, calendar_id)
    if cal is None:
        raise NotFound("The calendar does not exist.")
    return cal


async def list_calendars(
    s: AsyncSession, actor: Actor, business_id: str, *, after: str | None, limit: int
) -> Sequence[Calendar]:
    biz = await resolve_business(s, actor, business_id=business_id)
    return await calendar_repo.list_calendars(s, biz.id, after=after, limit=limit)


async def update_calendar(
    s: AsyncSession,
    actor: Actor,
    business_id: str,
    calendar_id: str,
    *,
    changes: Mapping[str, Any],
    conn: Connection | None,
    config: SyncConfig,
    now: dt.datetime,
) -> Calendar:
    """Apply a PATCH: ``name``, ``role``, and (already checked in ``conn``) credentials."""
    await resolve_business(s, actor, business_id=business_id, lock=True)
    cal = await get_calendar(s, actor, business_id, calendar_id)
    if "name" in changes:
        cal.name = changes["name"]
    if "role" in changes and changes["role"] != cal.role:
        role = changes["role"]
        spec = get_spec(cal.provider)
        if role not in ROLES:
            raise _invalid("role", "role must be busy, write or both")
        if spec is not None and spec.read_only and role != "busy":
            raise _invalid("role", f"{cal.provider} calendars are read only: role must be busy")
        if role in calendar_repo.WRITE_ROLES:
            other = await calendar_repo.write_calendar_id(s, cal.business_id)
            if other is not None and other != cal.id:
                raise Conflict(
                    "The business already has a calendar that bookings are written to.",
                    reason="write_calendar_exists",
                )
        cal.role = role
    if conn is not None:
        box = secret_box(config.secret_key)
        if conn.secrets:
            if box is None:
                raise SecretKeyRequired()
            cal.credentials = box.seal(cal.id, conn.secrets)
            cal.credentials_version += 1
            # The cached access token belongs to the old grant.
            await oauth_repo.forget_access_token(s, calendar_id=cal.id, now=now)
        if conn.url is not None:
            cal.url = conn.url
        cal.settings = {**(cal.settings or {}), **conn.settings}
        if conn.timezone:
            cal.timezone = conn.timezone
        # New credentials: sync again now, and forget an auth failure.
        cal.next_sync_at = now
        if cal.status == "auth_failed":
            cal.status = "pending"
    cal.updated_at = now
    try:
        await s.flush()
    except IntegrityError:
        raise Conflict(
            "The business already has a calendar that bookings are written to.",
            reason="write_calendar_exists",
        ) from None
    return cal


def connection_fields_of(cal: Calendar, box_key: str | None) -> dict[str, Any]:
    """The stored settings and secrets of a calendar, as connect fields (for re-checks);
    settings the provider learnt itself (``mailbox``) are not connect fields."""
    spec = get_spec(cal.provider)
    settable = spec.setting_fields if spec is not None else ()
    fields: dict[str, Any] = {
        "url": cal.url,
        **{k: v for k, v in (cal.settings or {}).items() if k in settable},
    }
    fields.update(open_credentials(secret_box(box_key), cal))
    return fields


async def delete_calendar(
    s: AsyncSession, actor: Actor, business_id: str, calendar_id: str
) -> None:
    """Stop sync and write-back and drop the calendar's busy time, in this transaction
    (events already written to it stay there)."""
    await resolve_business(s, actor, business_id=business_id, lock=True)
    cal = await get_calendar(s, actor, business_id, calendar_id)
    await calendar_repo.delete_calendar(s, cal.id)


async def busy_of(
    s: AsyncSession,
    actor: Actor,
    business_id: str,
    calendar_id: str,
    *,
    start: dt.datetime,
    end: dt.datetime,
    limit: int,
) -> Sequence[tuple[dt.datetime, dt.datetime]]:
    cal = await get_calendar(s, actor, business_id, calendar_id)
    return await calendar_repo.calendar_busy_between(s, cal, start=start, end=end, limit=limit)


# -- key rotation (§7.4) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rotation:
    rotated: int
    unreadable: list[str]  # calendars whose credentials no configured key decrypts


async def rotate_credentials(s: AsyncSession, box: SecretBox) -> Rotation:
    """Re-encrypt every stored calendar credential with the first key of ``box``.

    A credential that none of the keys decrypts is left as it is and reported: its calendar
    fails to sync (``last_error`` says why) until the owner enters the credentials again."""
    rotated = 0
    unreadable: list[str] = []
    for calendar_id, token in await calendar_repo.all_credentials(s):
        try:
            new = box.rotate(token)
        except CredentialError:
            unreadable.append(calendar_id)
            continue
        if await calendar_repo.replace_sealed_credentials(s, calendar_id, old=token, new=new):
            rotated += 1
    return Rotation(rotated, unreadable)


# -- staleness (§7.2) ---------------------------------------------------------------------


def calendar_warnings(
    states: Iterable[SyncState], *, now: dt.datetime, interval_s: float | None
) -> list[dict[str, Any]]:
    """``calendar_stale`` warnings for the busy calendars whose copy is old, failing or not
    there yet (their last good copy is used all the same), from the states the busy read
    returned. ``interval_s``: the serving app's sync interval
    (`RequestContext.calendar_sync_seconds`)."""
    interval = interval_s if interval_s is not None else get_settings().calendar_sync_seconds
    return [
        {"code": "calendar_stale", "calendar_id": cal.id}
        for cal in states
        if is_stale(cal, now, interval)
    ]


# -- write-back queue (§7.3) ---------------------------------------------------------------


async def write_calendar_for(s: AsyncSession, booking: Booking) -> str | None:
    """The business's write calendar, or None (then the booking is `not_applicable`)."""
    return await calendar_repo.write_calendar_id(s, booking.business_id)
