"""OAuth 2.0 for Google and Microsoft: authorization URLs with PKCE, the code exchange and
the refresh grant, as plain form POSTs over httpx.

No database here: `calendars/tokens.py` decides *when* to refresh (once per credential
at a time, across workers) and stores what comes back. Failures are the provider errors
of `calendars/base.py`: a refused grant (``invalid_grant``, a revoked or expired refresh
token, a wrong client secret) is `ProviderAuthError` and is never retried; a token
endpoint that is down, slow, or answers nonsense is `ProviderUnavailable` (retried later).
Token values never appear in an error message or a log line.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from slotguard.calendars.base import (
    ProviderAuthError,
    ProviderRateLimited,
    ProviderUnavailable,
    parse_retry_after,
)
from slotguard.config import Settings

OAuthProvider = Literal["google", "microsoft"]
PROVIDERS: tuple[OAuthProvider, ...] = ("google", "microsoft")

# Least privilege that still reads busy time and writes booking events: Google's
# calendar.events covers events.list/insert/patch/delete on the user's calendars (and the
# list response carries the calendar's zone); Graph's Calendars.ReadWrite the same, with
# offline_access for a refresh token.
GOOGLE_SCOPES = ("https://www.googleapis.com/auth/calendar.events",)
MICROSOFT_SCOPES = ("offline_access", "Calendars.ReadWrite")

TOKEN_TIMEOUT_S = 20.0
"""A token endpoint that has not answered in this time is down (well below the refresh
lease, so a hanging endpoint never outlives the lease that guards it)."""

# Grant errors that mean the credential itself is no good: stop, tell the owner.
_PERMANENT = frozenset(
    {"invalid_grant", "invalid_client", "unauthorized_client", "invalid_scope", "access_denied"}
)


@dataclass(frozen=True, slots=True)
class OAuthClient:
    """The operator's registered OAuth client for one provider."""

    provider: OAuthProvider
    client_id: str
    client_secret: str
    authorize_url: str
    token_url: str
    scopes: tuple[str, ...]
    authorize_params: Mapping[str, str] = field(default_factory=dict)
    # Microsoft's v2 endpoint wants the scopes again on every refresh.
    scope_on_refresh: bool = False


def oauth_client(settings: Settings, provider: OAuthProvider) -> OAuthClient | None:
    """The client from the settings, or None when the operator has not configured it."""
    if provider == "google":
        if not settings.google_client_id or not settings.google_client_secret:
            return None
        return OAuthClient(
            provider="google",
            client_id=settings.google_client_id,
            client_secret=settings.google_client_secret,
            authorize_url=settings.google_auth_url,
            token_url=settings.google_token_url,
            scopes=GOOGLE_SCOPES,
            # offline + consent: Google returns a refresh token only with both (a second
            # consent without prompt=consent comes back without one).
            authorize_params={
                "access_type": "offline",
                "prompt": "consent",
                "include_granted_scopes": "true",
            },
        )
    if not settings.microsoft_client_id or not settings.microsoft_client_secret:
        return None
    login = settings.microsoft_login_url.rstrip("/")
    tenant = urllib.parse.quote(settings.microsoft_tenant, safe="")
    return OAuthClient(
        provider="microsoft",
        client_id=settings.microsoft_client_id,
        client_secret=settings.microsoft_client_secret,
        authorize_url=f"{login}/{tenant}/oauth2/v2.0/authorize",
        token_url=f"{login}/{tenant}/oauth2/v2.0/token",
        scopes=MICROSOFT_SCOPES,
        authorize_params={"response_mode": "query", "prompt": "select_account"},
        scope_on_refresh=True,
    )


def _origin(url: str) -> tuple[str, int] | None:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return None
    if not parsed.host:
        return None
    return parsed.host.lower(), parsed.port or (443 if parsed.scheme == "https" else 80)


@dataclass(frozen=True, slots=True)
class OAuthSetup:
    """What the operator configured for Google and Microsoft (§7.5): the OAuth clients (None
    when not configured), the API base URLs, the public base of the redirect URI, and the
    origins of every one of those URLs. Those origins are the operator's choice (a
    sovereign cloud, a local fake in tests), so the address guard lets connections to them
    through; URLs an API user supplies (ICS, CalDAV) stay behind the guard."""

    clients: Mapping[str, OAuthClient]
    api_urls: Mapping[str, str]
    public_url: str | None
    trusted_origins: frozenset[tuple[str, int]]

    @classmethod
    def from_settings(cls, settings: Settings) -> OAuthSetup:
        clients: dict[str, OAuthClient] = {
            p: c for p in PROVIDERS if (c := oauth_client(settings, p)) is not None
        }
        api_urls = {
            "google": settings.google_api_url.rstrip("/"),
            "microsoft": settings.microsoft_graph_url.rstrip("/"),
        }
        urls = [
            *api_urls.values(),
            settings.google_token_url,
            settings.microsoft_login_url,
        ]
        origins = frozenset(o for u in urls if (o := _origin(u)) is not None)
        public = settings.public_url.rstrip("/") if settings.public_url else None
        return cls(clients=clients, api_urls=api_urls, public_url=public, trusted_origins=origins)

    def redirect_uri(
        self, provider: OAuthProvider, *, request_base: str | None = None
    ) -> str | None:
        """``{SLOTGUARD_PUBLIC_URL}/v1/oauth/{provider}/callback``; without the setting, the
        base URL the API was reached at (right unless a proxy rewrites it)."""
        base = self.public_url or (request_base.rstrip("/") if request_base else None)
        if base is None:
            return None
        return f"{base}/v1/oauth/{provider}/callback"


# -- PKCE (RFC 7636) ---------------------------------------------------------------------


def new_code_verifier() -> str:
    """43 to 128 characters of the unreserved set; 64 random bytes give 86."""
    return secrets.token_urlsafe(64)


def code_challenge(verifier: str) -> str:
    """S256: base64url(SHA-256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorization_url(client: OAuthClient, *, redirect_uri: str, state: str, verifier: str) -> str:
    params = {
        "client_id": client.client_id,
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "scope": " ".join(client.scopes),
        "state": state,
        "code_challenge": code_challenge(verifier),
        "code_challenge_method": "S256",
        **client.authorize_params,
    }
    sep = "&" if "?" in client.authorize_url else "?"
    return client.authorize_url + sep + urllib.parse.urlencode(params)


# -- the token endpoint ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """What a token endpoint gave: the access token and when it expires; a refresh token
    when one was issued (always after a code exchange with offline access; after a
    refresh only when the provider rotates it, as Microsoft does)."""

    access_token: str
    expires_at: dt.datetime
    refresh_token: str | None = None
    scope: str | None = None

    def __repr__(self) -> str:  # never show a token, even in a traceback
        rotated = bool(self.refresh_token)
        return f"TokenGrant(expires_at={self.expires_at.isoformat()}, rotated={rotated})"


async def exchange_code(
    http: httpx.AsyncClient,
    client: OAuthClient,
    *,
    code: str,
    verifier: str,
    redirect_uri: str,
    now: dt.datetime,
    timeout_s: float = TOKEN_TIMEOUT_S,
) -> TokenGrant:
    """The authorization-code grant with the PKCE verifier."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
    }
    if client.scope_on_refresh:
        form["scope"] = " ".join(client.scopes)
    grant = await _token_request(http, client, form, now=now, timeout_s=timeout_s)
    if not grant.refresh_token:
        raise ProviderAuthError(
            f"{_label(client)} issued no refresh token (offline access was not granted)",
            status=200,
        )
    return grant


async def refresh_access_token(
    http: httpx.AsyncClient,
    client: OAuthClient,
    *,
    refresh_token: str,
    now: dt.datetime,
    timeout_s: float = TOKEN_TIMEOUT_S,
) -> TokenGrant:
    """The refresh-token grant. A rotated refresh token comes back in the grant and must
    be stored before the old one is thrown away (Microsoft invalidates the old one)."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if client.scope_on_refresh:
        form["scope"] = " ".join(client.scopes)
    return await _token_request(http, client, form, now=now, timeout_s=timeout_s)


def _label(client: OAuthClient) -> str:
    return "Google" if client.provider == "google" else "Microsoft"


async def _token_request(
    http: httpx.AsyncClient,
    client: OAuthClient,
    form: dict[str, str],
    *,
    now: dt.datetime,
    timeout_s: float,
) -> TokenGrant:
    label = _label(client)
    body = {**form, "client_id": client.client_id, "client_secret": client.client_secret}
    try:
        response = await http.post(
            client.token_url,
            data=body,
            headers={"Accept": "application/json"},
            timeout=timeout_s,
        )
    except httpx.TimeoutException:
        raise ProviderUnavailable(f"{label} token endpoint timed out") from None
    except httpx.HTTPError as exc:
        raise ProviderUnavailable(
            f"{label} token endpoint unreachable: {type(exc).__name__}"
        ) from None
    data = _json_object(response)
    if response.status_code == 429:
        raise ProviderRateLimited(
            f"{label} token endpoint is rate limiting",
            retry_after=retry_after_seconds(response),
            status=429,
        )
    if response.status_code >= 500:
        raise ProviderUnavailable(
            f"{label} token endpoint answered {response.status_code}", status=response.status_code
        )
    if response.status_code != 200:
        error = str(data.get("error", "")) if data else ""
        if error in _PERMANENT or response.status_code in (400, 401):
            raise ProviderAuthError(
                f"{label} refused the grant: {error or response.status_code}"
                + _safe_description(data),
                status=response.status_code,
            )
        raise ProviderUnavailable(
            f"{label} token endpoint answered {response.status_code}", status=response.status_code
        )
    if data is None:
        raise ProviderUnavailable(
            f"{label} token endpoint answered something that is not JSON", status=200
        )
    token = data.get("access_token")
    expires_in = data.get("expires_in", 3600)
    if not isinstance(token, str) or not token:
        raise ProviderUnavailable(f"{label} token endpoint answered no access token", status=200)
    try:
        lifetime = max(0, int(expires_in))
    except (TypeError, ValueError):
        lifetime = 3600
    refresh = data.get("refresh_token")
    scope = data.get("scope")
    return TokenGrant(
        access_token=token,
        expires_at=now + dt.timedelta(seconds=lifetime),
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        scope=scope if isinstance(scope, str) else None,
    )


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _safe_description(data: Mapping[str, Any] | None) -> str:
    """The provider's human description, short and without anything token-shaped (the
    AADSTS text names the failure; it carries no secret)."""
    if not data:
        return ""
    text = str(data.get("error_description", "")).split("\r\n")[0].split("\n")[0]
    return f" ({text[:160]})" if text else ""


def retry_after_seconds(response: httpx.Response) -> float | None:
    """`Retry-After` as seconds (delta-seconds or an HTTP date), None when absent/bad."""
    return parse_retry_after(response.headers.get("retry-after"))
