"""The browser connect flow (§7.5) against the fakes' consent screens and token endpoints:
authorization URL with PKCE, single-use state bound to the business, the callback page."""

from __future__ import annotations

import datetime as dt
import urllib.parse

import httpx
import pytest
from sqlalchemy import update

from slotguard.services.calendar_oauth import purge_states, state_id
from slotguard.store import oauth_repo
from slotguard.store.models import OAuthState
from tests.api.helpers import make_business
from tests.conftest import Store, Tenant
from tests.oauth.conftest import Served
from tests.oauth.engine import calendar_row, sync_once


async def start(t: Tenant, biz_id: str, provider: str, **body: object) -> httpx.Response:
    return await t.client.post(
        f"/v1/businesses/{biz_id}/calendars/oauth/{provider}", json=body, headers=t.headers()
    )


async def consent(authorization_url: str) -> str:
    """The owner's browser at the provider: returns where the provider sends it back."""
    async with httpx.AsyncClient() as browser:
        r = await browser.get(authorization_url)
    assert r.status_code == 302, r.text
    location = r.headers["location"]
    assert location.startswith("http://testserver/v1/oauth/")
    return location


def query(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


@pytest.mark.parametrize("provider", ["google", "microsoft"])
async def test_browser_flow_connects_once(
    api: Tenant, served: Served, store: Store, provider: str
) -> None:
    if provider == "google":
        served.google.add_user("owner@example.com", timezone="Europe/Berlin")
    else:
        served.graph.add_user("owner@contoso.example")
    biz = await make_business(api)
    r = await start(api, biz["id"], provider, role="both", name="Work")
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert set(data) == {"authorization_url", "expires_at"}
    expires = dt.datetime.fromisoformat(data["expires_at"].replace("Z", "+00:00"))
    assert dt.timedelta(minutes=9) < expires - dt.datetime.now(dt.UTC) <= dt.timedelta(minutes=10)
    params = query(data["authorization_url"])
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
    assert params["redirect_uri"] == f"http://testserver/v1/oauth/{provider}/callback"
    assert params["response_type"] == "code" and len(params["state"]) >= 32
    if provider == "google":
        assert data["authorization_url"].startswith(f"{served.google_url}/auth?")
        assert params["access_type"] == "offline" and params["prompt"] == "consent"
        assert params["scope"] == "https://www.googleapis.com/auth/calendar.events"
    else:
        assert data["authorization_url"].startswith(
            f"{served.graph_url}/common/oauth2/v2.0/authorize?"
        )
        assert set(params["scope"].split()) == {"offline_access", "Calendars.ReadWrite"}
    # Only a hash of the state is stored.
    async with store.db.read() as s:
        assert await oauth_repo.get_state(s, params["state"]) is None
        stored = await oauth_repo.get_state(s, state_id(params["state"]))
    assert stored is not None and stored.business_id == biz["id"]

    back = await consent(data["authorization_url"])
    page = await api.client.get(back)
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert "connected" in page.text and "<script" not in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert query(back)["code"] not in page.text

    listed = await api.client.get(f"/v1/businesses/{biz['id']}/calendars", headers=api.headers())
    (cal,) = listed.json()["data"]
    assert cal["provider"] == provider and cal["role"] == "both" and cal["name"] == "Work"
    # The token from the exchange is cached: the first sync does not refresh.
    fake = served.google if provider == "google" else served.graph
    tokens_before = len(fake.calls("token"))
    assert await sync_once(store.db, served.settings, cal["id"]) == "synced"
    assert len(fake.calls("token")) == tokens_before
    assert (await calendar_row(store.db, cal["id"])).status == "active"

    # The same link again: refused, nothing created.
    again = await api.client.get(back)
    assert again.status_code == 409 and "already used" in again.text
    listed = await api.client.get(f"/v1/businesses/{biz['id']}/calendars", headers=api.headers())
    assert len(listed.json()["data"]) == 1


async def test_expired_unknown_and_denied_states_are_refused(
    api: Tenant, served: Served, store: Store
) -> None:
    served.google.add_user("owner@example.com")
    biz = await make_business(api)
    url = (await start(api, biz["id"], "google")).json()["data"]["authorization_url"]
    back = await consent(url)
    raw = query(back)["state"]
    async with store.db.write() as s:
        await s.execute(
            update(OAuthState)
            .where(OAuthState.id == state_id(raw))
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    expired = await api.client.get(back)
    assert expired.status_code == 410 and "expired" in expired.text

    unknown = await api.client.get(
        "/v1/oauth/google/callback", params={"state": "forged", "code": "x"}
    )
    assert unknown.status_code == 400 and "not valid" in unknown.text
    missing = await api.client.get("/v1/oauth/google/callback")
    assert missing.status_code == 400
    other = await api.client.get("/v1/oauth/yahoo/callback", params={"state": "s"})
    assert other.status_code == 404

    # A state of one provider is not accepted on the other's callback.
    url = (await start(api, biz["id"], "google")).json()["data"]["authorization_url"]
    swapped = (await consent(url)).replace("/v1/oauth/google/", "/v1/oauth/microsoft/")
    assert (await api.client.get(swapped)).status_code == 400

    served.google.deny_consent = True
    url = (await start(api, biz["id"], "google")).json()["data"]["authorization_url"]
    denied = await api.client.get(await consent(url))
    assert denied.status_code == 400 and "access_denied" in denied.text
    listed = await api.client.get(f"/v1/businesses/{biz['id']}/calendars", headers=api.headers())
    assert listed.json()["data"] == []

    # Purge: states a day past expiry go.
    async with store.db.write() as s:
        purged = await purge_states(s, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=2))
    assert purged >= 4
    async with store.db.read() as s:
        assert await oauth_repo.get_state(s, state_id(raw)) is None


async def test_start_refusals(api: Tenant, served: Served, store: Store) -> None:
    biz = await make_business(api)
    r = await start(api, biz["id"], "yahoo")
    assert r.status_code == 422 and r.json()["error"] == "validation_error"
    r = await start(api, biz["id"], "google", role="owner")
    assert r.status_code == 422
    r = await start(api, "biz_unknown", "google")
    assert r.status_code == 404
    no_key = await api.client.post(f"/v1/businesses/{biz['id']}/calendars/oauth/google", json={})
    assert no_key.status_code == 401
    # A second write calendar is refused before the owner sees a consent screen.
    served.google.add_user("o@example.com")
    refresh = served.google.issue_refresh_token("o@example.com")
    r = await api.client.post(
        f"/v1/businesses/{biz['id']}/calendars",
        json={"provider": "google", "role": "write", "refresh_token": refresh},
        headers=api.headers(),
    )
    assert r.status_code == 201, r.text
    r = await start(api, biz["id"], "microsoft", role="both")
    assert r.status_code == 409 and r.json()["details"]["reason"] == "write_calendar_exists"


async def test_without_public_url_the_redirect_uri_is_the_requests_base(
    store: Store, served: Served
) -> None:
    from slotguard.api.app import create_app
    from tests.conftest import new_tenant

    app = create_app(served.settings.model_copy(update={"public_url": None}), db=store.db)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api.example:8443"
    ) as client:
        t = await new_tenant(store, client)
        biz = await make_business(t)
        r = await start(t, biz["id"], "google")
        assert r.status_code == 200, r.text
        redirect = query(r.json()["data"]["authorization_url"])["redirect_uri"]
        assert redirect == "http://api.example:8443/v1/oauth/google/callback"
