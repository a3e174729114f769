"""Access tokens of Google and Microsoft calendars, refreshed once per credential at a time.

Every worker process (``serve``'s embedded worker, ``slotguard worker``, the API during a
connect or a sync-now) may need a calendar's access token at the same moment. Refreshing
it twice is not harmless: Microsoft rotates the refresh token on every refresh, and the
loser of such a race ends up holding a dead one. So:

* A token still valid for more than ``REFRESH_MARGIN`` is used as is (no lock at all).
* Otherwise the caller takes the refresh lease, a conditional UPDATE on the token row
  (``store/oauth_repo.py``). Only the holder calls the token endpoint; it stores the new
  access token (and a rotated refresh token, in the calendar's credentials) and releases
  the lease in one transaction. Everyone else polls the row until the new token appears.
* The lease outlives the token endpoint's timeout, so a hanging endpoint ends with
  ``ProviderUnavailable`` and a released lease, never a stuck calendar; a holder that
  died simply loses the lease when it runs out.
* ``invalid_grant`` records the refused credentials version: later calls raise
  ``ProviderAuthError`` at once without asking the provider again, until new credentials
  (a reconnect) change the version. No retry loop.

No database transaction is open while the token endpoint is called.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import replace

import httpx
import structlog

from slotguard.calendars import oauth
from slotguard.calendars.base import (
    AccessTokens,
    ProviderAuthError,
    ProviderContext,
    ProviderError,
    ProviderUnavailable,
)
from slotguard.calendars.credentials import CredentialError, SecretBox
from slotguard.calendars.permits import MailboxPermits
from slotguard.store import oauth_repo
from slotguard.store.db import Database

log = structlog.get_logger("slotguard.calendars.tokens")

Clock = Callable[[], dt.datetime]

REFRESH_MARGIN = dt.timedelta(minutes=5)
"""Refresh this long before expiry, so a token never expires in the middle of a sync."""
LEASE = dt.timedelta(seconds=oauth.TOKEN_TIMEOUT_S * 2 + 10)
POLL_S = 0.1


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class OAuthTokens:
    """The `AccessTokens` of one calendar (see ``calendars/base.py``)."""

    def __init__(
        self,
        db: Database,
        *,
        calendar_id: str,
        client: oauth.OAuthClient,
        box: SecretBox,
        http: httpx.AsyncClient,
        clock: Clock = _utcnow,
        margin: dt.timedelta = REFRESH_MARGIN,
        lease: dt.timedelta = LEASE,
        timeout_s: float = oauth.TOKEN_TIMEOUT_S,
    ) -> None:
        self.db = db
        self.calendar_id = calendar_id
        self.client = client
        self.box = box
        self.http = http
        self.clock = clock
        self.margin = margin
        self.lease = lease
        self.timeout_s = timeout_s
        self.owner = "tok_" + uuid.uuid4().hex[:16]
        self.refreshes = 0  # refreshes this object made (tests, metrics)
        # The last token this object saw valid, and its expiry: every request of a sync
        # asks for a token, and most need no database round trip for it.
        self._memo: tuple[str, dt.datetime] | None = None

    def __repr__(self) -> str:
        return f"OAuthTokens(calendar_id={self.calendar_id!r})"

    async def get(self, *, rejected: str | None = None) -> str:
        memo = self._memo
        if memo is not None and memo[0] != rejected and memo[1] - self.margin > self.clock():
            return memo[0]
        deadline = self.clock() + self.lease + dt.timedelta(seconds=5)
        async with self.db.read() as s:
            exists = await oauth_repo.get_token(s, self.calendar_id) is not None
        if not exists:
            async with self.db.write() as s:
                await oauth_repo.ensure_token_row(s, calendar_id=self.calendar_id, now=self.clock())
        while True:
            now = self.clock()
            token, version = await self._current(now, rejected)
            if token is not None:
                return token
            async with self.db.write() as s:
                leased = await oauth_repo.try_lease(
                    s,
                    calendar_id=self.calendar_id,
                    owner=self.owner,
                    now=now,
                    until=now + self.lease,
                )
            if leased:
                return await self._refresh(rejected, version)
            if now > deadline:
                raise ProviderUnavailable("token refresh by another worker did not finish")
            await asyncio.sleep(POLL_S)

    async def _current(self, now: dt.datetime, rejected: str | None) -> tuple[str | None, int]:
        """A usable cached token (or None) and the credentials version; raises when the
        current credentials were already refused."""
        async with self.db.read() as s:
            row = await oauth_repo.get_token(s, self.calendar_id)
            creds = await oauth_repo.calendar_credentials(s, self.calendar_id)
        if creds is None:
            raise ProviderAuthError("the calendar no longer exists")
        version = creds[1]
        if row is not None and row.refused_version == version:
            raise ProviderAuthError(
                f"{self._label} refused the stored grant; reconnect the calendar"
            )
        if row is None or row.access_token is None or row.expires_at is None:
            return None, version
        if row.expires_at - self.margin <= now:
            return None, version
        try:
            token = self.box.open(self.calendar_id, row.access_token).get("access_token")
        except CredentialError:
            return None, version  # sealed with a key no longer configured: refresh
        if not isinstance(token, str) or token == rejected:
            return None, version
        self._memo = (token, row.expires_at)
        return token, version

    @property
    def _label(self) -> str:
        return "Google" if self.client.provider == "google" else "Microsoft"

    async def _refresh(self, rejected: str | None, version_seen: int) -> str:
        now = self.clock()
        try:
            # Under the lease, look again: the previous holder may have just finished.
            token, _ = await self._current(now, rejected)
            if token is not None:
                await self._release()
                return token
            async with self.db.read() as s:
                creds = await oauth_repo.calendar_credentials(s, self.calendar_id)
            if creds is None or not creds[0]:
                raise ProviderAuthError("the calendar has no stored refresh token")
            sealed, version = creds
            assert sealed is not None
            try:
                secrets = self.box.open(self.calendar_id, sealed)
            except CredentialError as exc:
                raise ProviderAuthError(str(exc)) from None
            refresh_token = secrets.get("refresh_token")
            if not isinstance(refresh_token, str) or not refresh_token:
                raise ProviderAuthError("the calendar has no stored refresh token")
            try:
                grant = await oauth.refresh_access_token(
                    self.http,
                    self.client,
                    refresh_token=refresh_token,
                    now=self.clock(),
                    timeout_s=self.timeout_s,
                )
            except ProviderAuthError:
                async with self.db.write() as s:
                    await oauth_repo.mark_refused(
                        s,
                        calendar_id=self.calendar_id,
                        owner=self.owner,
                        version=version,
                        now=self.clock(),
                    )
                log.warning("calendar_token_refused", calendar_id=self.calendar_id)
                raise
        except ProviderError:
            await self._release()
            raise
        except BaseException:
            await asyncio.shield(self._release())
            raise
        self.refreshes += 1
        sealed_token = self.box.seal(self.calendar_id, {"access_token": grant.access_token})
        async with self.db.write() as s:
            if grant.refresh_token and grant.refresh_token != refresh_token:
                rotated = self.box.seal(
                    self.calendar_id, {**secrets, "refresh_token": grant.refresh_token}
                )
                kept = await oauth_repo.replace_credentials(
                    s,
                    calendar_id=self.calendar_id,
                    version=version,
                    credentials=rotated,
                    now=self.clock(),
                )
                if not kept:
                    # New credentials arrived meanwhile (a reconnect): they win; this token
                    # belongs to the old grant, so use it once and do not cache it.
                    await oauth_repo.release_lease(
                        s, calendar_id=self.calendar_id, owner=self.owner, now=self.clock()
                    )
                    return grant.access_token
            saved = await oauth_repo.save_access_token(
                s,
                calendar_id=self.calendar_id,
                owner=self.owner,
                access_token=sealed_token,
                expires_at=grant.expires_at,
                now=self.clock(),
            )
        if saved:
            self._memo = (grant.access_token, grant.expires_at)
        else:
            log.warning("calendar_token_lease_lost", calendar_id=self.calendar_id)
        log.info(
            "calendar_token_refreshed",
            calendar_id=self.calendar_id,
            rotated=bool(grant.refresh_token),
            expires_at=grant.expires_at.isoformat(),
        )
        return grant.access_token

    async def _release(self) -> None:
        async with self.db.write() as s:
            await oauth_repo.release_lease(
                s, calendar_id=self.calendar_id, owner=self.owner, now=self.clock()
            )


async def store_initial_token(
    db: Database, *, calendar_id: str, box: SecretBox, grant: oauth.TokenGrant, now: dt.datetime
) -> None:
    """Cache the access token a code exchange or a connect check just obtained, so the
    first sync does not refresh again."""
    owner = "tok_" + uuid.uuid4().hex[:16]
    async with db.write() as s:
        await oauth_repo.ensure_token_row(s, calendar_id=calendar_id, now=now)
        if await oauth_repo.try_lease(
            s, calendar_id=calendar_id, owner=owner, now=now, until=now + LEASE
        ):
            await oauth_repo.save_access_token(
                s,
                calendar_id=calendar_id,
                owner=owner,
                access_token=box.seal(calendar_id, {"access_token": grant.access_token}),
                expires_at=grant.expires_at,
                now=now,
            )


class RefreshTokenGrant:
    """`AccessTokens` without a database, for the one check request of a connect (the
    calendar row does not exist yet). Keeps a rotated refresh token and the last grant, so
    the connect stores the refresh token that still works and caches the access token."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        client: oauth.OAuthClient,
        *,
        refresh_token: str,
        clock: Clock = _utcnow,
        timeout_s: float = oauth.TOKEN_TIMEOUT_S,
        grant: oauth.TokenGrant | None = None,
    ) -> None:
        self.http = http
        self.client = client
        self.refresh_token = refresh_token
        self.clock = clock
        self.timeout_s = timeout_s
        self.grant = grant

    def __repr__(self) -> str:
        return f"RefreshTokenGrant(provider={self.client.provider!r})"

    async def get(self, *, rejected: str | None = None) -> str:
        grant = self.grant
        if (
            grant is not None
            and grant.access_token != rejected
            and grant.expires_at - REFRESH_MARGIN > self.clock()
        ):
            return grant.access_token
        grant = await oauth.refresh_access_token(
            self.http,
            self.client,
            refresh_token=self.refresh_token,
            now=self.clock(),
            timeout_s=self.timeout_s,
        )
        if grant.refresh_token:
            self.refresh_token = grant.refresh_token
        self.grant = grant
        return grant.access_token


def attach_tokens(
    ctx: ProviderContext,
    *,
    setup: oauth.OAuthSetup,
    db: Database | None,
    box: SecretBox | None,
    new_grant: bool = False,
) -> ProviderContext:
    """The context a Google/Microsoft provider is built with: the operator's API base URL,
    the calendar's access tokens and (with a database) the mailbox permits.

    The tokens of a stored calendar (the engine, the write-back, a re-check of stored
    credentials) are `OAuthTokens`: cached, and refreshed only under the lease, so no
    token use races a concurrent refresh that rotates the refresh token. Only a refresh
    token that is not stored yet (``new_grant``: a connect, new credentials in a PATCH; or
    no database at all) is used directly (`RefreshTokenGrant`). Other providers, and a
    provider the operator has not configured, are returned unchanged (building them then
    fails with `ProviderAuthError`)."""
    if ctx.provider not in oauth.PROVIDERS:
        return ctx
    client = setup.clients.get(ctx.provider)
    settings = {**ctx.settings, "api_url": setup.api_urls[ctx.provider]}
    if db is not None:
        # Stateless but for the process-wide semaphores (``rest.MAILBOXES``).
        ctx = replace(ctx, permits=MailboxPermits(db))
    if client is None:
        return replace(ctx, settings=settings, tokens=None)
    timeout_s = min(ctx.timeout_s, oauth.TOKEN_TIMEOUT_S)
    tokens: AccessTokens | None = None
    if db is not None and box is not None and not new_grant:
        tokens = OAuthTokens(
            db,
            calendar_id=ctx.calendar_id,
            client=client,
            box=box,
            http=ctx.http,
            timeout_s=timeout_s,
        )
    else:
        refresh_token = ctx.credentials.get("refresh_token")
        if isinstance(refresh_token, str) and refresh_token:
            tokens = RefreshTokenGrant(
                ctx.http, client, refresh_token=refresh_token, timeout_s=timeout_s
            )
    return replace(ctx, settings=settings, tokens=tokens)
