"""The browser connect flow for Google and Microsoft calendars (§7.5).

1. ``begin_connect`` (an admin key): an authorization URL with PKCE (S256) and a fresh
   ``state``. The state is a 256-bit random value; only its SHA-256 is stored, with the
   business it is bound to, the requested role/calendar/name, the sealed code verifier
   and an expiry 10 minutes ahead.
2. ``claim_state`` (the callback, no key): spends the state with one conditional UPDATE
   (first caller wins, on either store), so a reused or expired state is refused and two
   racing callbacks cannot both create a calendar.
3. The route then exchanges the code (no transaction open), checks and creates the
   calendar through ``services.calendars`` exactly as a connect with a refresh token.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from slotguard.calendars import oauth
from slotguard.calendars.credentials import CredentialError, SecretBox, secret_box
from slotguard.calendars.sync import SyncConfig
from slotguard.domain.errors import SecretKeyRequired, ValidationFailed
from slotguard.services.businesses import resolve_business
from slotguard.services.calendars import (
    ROLES,
    refuse_second_write_calendar,
    require_oauth_client,
)
from slotguard.services.context import Actor
from slotguard.store import oauth_repo
from slotguard.store.models import OAuthState

STATE_TTL = dt.timedelta(minutes=10)
KEEP_SPENT = dt.timedelta(days=1)
"""States stay this long after expiry, so a late or repeated callback is told "expired" or
"already used" rather than "unknown"; then the worker purges them."""

Refusal = Literal["unknown", "used", "expired"]


def state_id(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True, slots=True)
class AuthorizationStart:
    authorization_url: str
    expires_at: dt.datetime


class StateRefused(Exception):
    """The callback's ``state`` is unknown, already used, or expired."""

    def __init__(self, reason: Refusal) -> None:
        super().__init__(reason)
        self.reason = reason


def _setup(
    provider: str, config: SyncConfig, request_base: str | None
) -> tuple[oauth.OAuthClient, str, SecretBox]:
    if provider not in oauth.PROVIDERS:
        raise ValidationFailed(
            "provider must be google or microsoft.",
            fields=[{"field": "provider", "message": "must be google or microsoft"}],
        )
    require_oauth_client(provider, config)
    assert config.oauth is not None
    redirect_uri = config.oauth.redirect_uri(provider, request_base=request_base)
    if redirect_uri is None:
        raise ValidationFailed(
            "The browser flow needs SLOTGUARD_PUBLIC_URL (the base of the redirect URI) "
            "to be set on the server; or connect with a refresh_token.",
            fields=[{"field": "provider", "message": "SLOTGUARD_PUBLIC_URL is not set"}],
        )
    box = secret_box(config.secret_key)
    if box is None:
        raise SecretKeyRequired()
    return config.oauth.clients[provider], redirect_uri, box


async def begin_connect(
    s: AsyncSession,
    actor: Actor,
    business_id: str,
    *,
    provider: str,
    role: str,
    provider_calendar_id: str | None,
    name: str | None,
    config: SyncConfig,
    now: dt.datetime,
    request_base: str | None = None,
) -> AuthorizationStart:
    """Store a single-use state bound to the business; return the authorization URL.
    ``request_base``: the base URL of this request, for the redirect URI when
    ``SLOTGUARD_PUBLIC_URL`` is not set."""
    client, redirect_uri, box = _setup(provider, config, request_base)
    if role not in ROLES:
        raise ValidationFailed(
            "role must be busy, write or both.",
            fields=[{"field": "role", "message": "must be busy, write or both"}],
        )
    biz = await resolve_business(s, actor, business_id=business_id)
    # Said now rather than after the owner went through the consent screen.
    await refuse_second_write_calendar(s, biz.id, role)
    raw = secrets.token_urlsafe(32)
    sid = state_id(raw)
    verifier = oauth.new_code_verifier()
    expires_at = now + STATE_TTL
    await oauth_repo.add_state(
        s,
        OAuthState(
            id=sid,
            account_id=biz.account_id,
            business_id=biz.id,
            provider=provider,
            role=role,
            provider_calendar_id=provider_calendar_id,
            name=name,
            redirect_uri=redirect_uri,
            verifier=box.seal(sid, {"verifier": verifier}),
            key_id=actor.key_id,
            created_at=now,
            expires_at=expires_at,
            used_at=None,
            calendar_id=None,
        ),
    )
    url = oauth.authorization_url(client, redirect_uri=redirect_uri, state=raw, verifier=verifier)
    return AuthorizationStart(authorization_url=url, expires_at=expires_at)


async def claim_state(
    s: AsyncSession, *, provider: str, raw_state: str, now: dt.datetime
) -> OAuthState:
    """Spend the state (single use); raise `StateRefused` saying why it cannot be."""
    sid = state_id(raw_state)
    state = await oauth_repo.claim_state(s, state_id=sid, provider=provider, now=now)
    if state is not None:
        return state
    seen = await oauth_repo.get_state(s, sid)
    if seen is None or seen.provider != provider:
        raise StateRefused("unknown")
    if seen.used_at is not None:
        raise StateRefused("used")
    raise StateRefused("expired")


def open_verifier(state: OAuthState, config: SyncConfig) -> str:
    box = secret_box(config.secret_key)
    if box is None:
        raise SecretKeyRequired()
    try:
        verifier = box.open(state.id, state.verifier).get("verifier")
    except CredentialError:
        raise SecretKeyRequired() from None
    if not isinstance(verifier, str):
        raise SecretKeyRequired()
    return verifier


async def purge_states(s: AsyncSession, *, now: dt.datetime) -> int:
    """Remove states that expired more than a day ago (spent or not)."""
    return await oauth_repo.purge_states(s, expired_before=now - KEEP_SPENT)
