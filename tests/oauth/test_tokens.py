"""Access tokens: refreshed before expiry, once per credential at a time across workers
(the lease lives in the database), rotated Microsoft refresh tokens saved, invalid_grant
refused without a retry loop, a hanging or failing token endpoint never leaves a lease."""

from __future__ import annotations

import asyncio
import datetime as dt

import httpx
import pytest

from slotguard.calendars import oauth
from slotguard.calendars.base import ProviderAuthError, ProviderUnavailable
from slotguard.calendars.credentials import SecretBox
from slotguard.calendars.tokens import OAuthTokens
from slotguard.config import Settings
from slotguard.store import oauth_repo
from slotguard.store.db import Database
from tests.conftest import Store
from tests.fakes.google import GoogleFake
from tests.fakes.graph import GraphFake
from tests.oauth.conftest import GOOGLE, LOGIN, make_calendar


def settings() -> Settings:
    return Settings(
        google_client_id="google-client",
        google_client_secret="google-secret",
        google_token_url=f"{GOOGLE}/token",
        microsoft_client_id="ms-client",
        microsoft_client_secret="ms-secret",
        microsoft_login_url=LOGIN,
    )


def client(provider: oauth.OAuthProvider) -> oauth.OAuthClient:
    c = oauth.oauth_client(settings(), provider)
    assert c is not None
    return c


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


async def stored_refresh_token(store: Store, box: SecretBox, calendar_id: str) -> str:
    async with store.db.read() as s:
        creds = await oauth_repo.calendar_credentials(s, calendar_id)
    assert creds is not None and creds[0] is not None
    token = box.open(calendar_id, creds[0])["refresh_token"]
    assert isinstance(token, str)
    return token


async def test_google_token_cached_then_refreshed_before_expiry(
    store: Store, box: SecretBox, google: GoogleFake, http: httpx.AsyncClient
) -> None:
    cal = await make_calendar(
        store, box, provider="google", refresh_token=google.add_user("o@example.com")
    )
    clock = Clock()
    tokens = OAuthTokens(
        store.db, calendar_id=cal.id, client=client("google"), box=box, http=http, clock=clock
    )
    first = await tokens.get()
    assert await tokens.get() == first
    assert len(google.calls("token")) == 1
    clock.now += dt.timedelta(seconds=3599 - 299)  # inside the 5-minute margin
    second = await tokens.get()
    assert second != first and len(google.calls("token")) == 2
    # A token the provider just refused is replaced even though it looks valid.
    third = await tokens.get(rejected=second)
    assert third not in (first, second) and len(google.calls("token")) == 3
    # The access token is stored sealed, never in clear.
    async with store.db.read() as s:
        row = await oauth_repo.get_token(s, cal.id)
    assert row is not None and row.access_token is not None and third not in row.access_token


@pytest.mark.parametrize("provider", ["google", "microsoft"])
async def test_two_workers_refresh_once(
    store: Store,
    box: SecretBox,
    google: GoogleFake,
    graph: GraphFake,
    http: httpx.AsyncClient,
    provider: oauth.OAuthProvider,
) -> None:
    fake: GoogleFake | GraphFake = google if provider == "google" else graph
    refresh = fake.add_user("o@example.com")
    cal = await make_calendar(store, box, provider=provider, refresh_token=refresh)
    # A slow token endpoint, so both workers are waiting for a token at the same time.
    fake.inject("token", "respond", status=200, delay_s=0.0)
    fake.faults.clear()
    fake.latency_s = 0.3
    # Two workers: each its own connection pool (as two processes have) and token object.
    other = Database.connect(store.url, pool_size=2)
    try:
        workers = [
            OAuthTokens(db, calendar_id=cal.id, client=client(provider), box=box, http=http)
            for db in (store.db, other)
        ]
        results = await asyncio.gather(*(w.get() for w in workers), *(w.get() for w in workers))
    finally:
        await other.dispose()
    assert len(set(results)) == 1
    assert len(fake.calls("token")) == 1
    assert sum(w.refreshes for w in workers) == 1
    if provider == "microsoft":
        # The rotated refresh token was saved: the old one no longer works at the fake,
        # the stored one does.
        stored = await stored_refresh_token(store, box, cal.id)
        assert stored != refresh and stored in graph.refresh_tokens
        assert refresh not in graph.refresh_tokens


async def test_microsoft_rotation_keeps_working_across_many_refreshes(
    store: Store, box: SecretBox, graph: GraphFake, http: httpx.AsyncClient
) -> None:
    cal = await make_calendar(
        store, box, provider="microsoft", refresh_token=graph.add_user("o@contoso.com")
    )
    clock = Clock()
    tokens = OAuthTokens(
        store.db, calendar_id=cal.id, client=client("microsoft"), box=box, http=http, clock=clock
    )
    for _ in range(4):
        await tokens.get()
        clock.now += dt.timedelta(hours=2)
    assert len(graph.calls("token")) == 4
    # Each refresh sent the scopes again (v2 endpoint) to the configured tenant.
    assert all("Calendars.ReadWrite" in c.body.decode() for c in graph.calls("token"))
    assert set(graph.tenants_seen) == {"common"}


async def test_invalid_grant_is_auth_failed_without_retry_loop(
    store: Store, box: SecretBox, google: GoogleFake, http: httpx.AsyncClient
) -> None:
    refresh = google.add_user("o@example.com")
    cal = await make_calendar(store, box, provider="google", refresh_token=refresh)
    google.revoke(refresh)
    tokens = OAuthTokens(store.db, calendar_id=cal.id, client=client("google"), box=box, http=http)
    with pytest.raises(ProviderAuthError, match="invalid_grant"):
        await tokens.get()
    for _ in range(3):
        with pytest.raises(ProviderAuthError):
            await tokens.get()
    assert len(google.calls("token")) == 1  # refused once, never asked again
    # New credentials (a reconnect) lift the refusal.
    async with store.db.write() as s:
        assert await oauth_repo.replace_credentials(
            s,
            calendar_id=cal.id,
            version=1,
            credentials=box.seal(
                cal.id, {"refresh_token": google.issue_refresh_token("o@example.com")}
            ),
            now=dt.datetime.now(dt.UTC),
        )
    assert await tokens.get()
    assert len(google.calls("token")) == 2


@pytest.mark.parametrize("fault", ["hang", "storm", "malformed"])
async def test_bad_token_endpoint_is_unavailable_and_releases_the_lease(
    store: Store, box: SecretBox, google: GoogleFake, http: httpx.AsyncClient, fault: str
) -> None:
    cal = await make_calendar(
        store, box, provider="google", refresh_token=google.add_user("o@example.com")
    )
    if fault == "hang":
        google.inject("token", "hang")
    elif fault == "storm":
        google.fail_next("token", 503, {"error": "backend"}, times=1)
    else:
        google.inject("token", "malformed")
    tokens = OAuthTokens(
        store.db, calendar_id=cal.id, client=client("google"), box=box, http=http, timeout_s=0.3
    )
    with pytest.raises(ProviderUnavailable):
        await tokens.get()
    async with store.db.read() as s:
        row = await oauth_repo.get_token(s, cal.id)
    assert row is not None and row.lease_owner is None and row.refused_version is None
    assert await tokens.get()  # the next attempt works at once
