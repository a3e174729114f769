"""Contract tests: the Google fake answers as the documentation's examples say (research
note §1), so tests built on it test slotguard against Google's wire format."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.fakes.common import FakeTransport, serve
from tests.fakes.google import GOOGLE_ERRORS, GoogleFake

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
API = "/calendar/v3/calendars"


@pytest.fixture
def fake() -> GoogleFake:
    return GoogleFake()


@pytest.fixture
async def client(fake: GoogleFake) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=FakeTransport(fake.app), base_url="http://google.test", timeout=2
    ) as c:
        yield c


async def bearer(client: httpx.AsyncClient, fake: GoogleFake, refresh: str) -> dict[str, str]:
    r = await client.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "client_id": fake.client_id,
            "client_secret": fake.client_secret,
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3599
    assert "refresh_token" not in body  # Google does not rotate
    return {"Authorization": f"Bearer {body['access_token']}"}


async def test_token_errors_have_the_documented_shape(
    client: httpx.AsyncClient, fake: GoogleFake
) -> None:
    r = await client.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": "x",
            "client_id": fake.client_id,
            "client_secret": fake.client_secret,
        },
    )
    assert r.status_code == 400
    assert r.json() == {
        "error": "invalid_grant",
        "error_description": "Token has been expired or revoked.",
    }
    r = await client.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": "x",
            "client_id": "nope",
            "client_secret": "x",
        },
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


async def test_expired_access_token_is_401_auth_error(
    client: httpx.AsyncClient, fake: GoogleFake
) -> None:
    headers = await bearer(client, fake, fake.add_user("o@example.com"))
    fake.clock.advance(3600)
    r = await client.get(f"{API}/primary/events", params={"singleEvents": "true"}, headers=headers)
    assert r.status_code == 401
    assert r.json()["error"]["errors"][0] == {
        "domain": "global",
        "reason": "authError",
        "message": "Invalid Credentials",
        "location": "Authorization",
        "locationType": "header",
    }


async def test_list_pages_then_sync_token_then_changes_only(
    client: httpx.AsyncClient, fake: GoogleFake
) -> None:
    headers = await bearer(client, fake, fake.add_user("o@example.com", timezone="Europe/Berlin"))
    for i in range(5):
        fake.add_event(
            "o@example.com",
            start=T0 + dt.timedelta(hours=i),
            end=T0 + dt.timedelta(hours=i, minutes=30),
        )
    window = {"timeMin": "2026-03-01T00:00:00Z", "timeMax": "2026-04-01T00:00:00Z"}
    params = {"singleEvents": "true", "maxResults": "2", **window}
    seen, pages = [], 0
    page_token = None
    while True:
        r = await client.get(
            f"{API}/primary/events",
            params={**params, **({"pageToken": page_token} if page_token else {})},
            headers=headers,
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["kind"] == "calendar#events" and body["timeZone"] == "Europe/Berlin"
        assert ("nextPageToken" in body) != ("nextSyncToken" in body)  # mutually exclusive
        seen += body["items"]
        pages += 1
        page_token = body.get("nextPageToken")
        if page_token is None:
            sync = body["nextSyncToken"]
            break
    assert pages == 3 and len(seen) == 5

    # syncToken together with timeMin is refused, as documented.
    r = await client.get(
        f"{API}/primary/events",
        params={"singleEvents": "true", "syncToken": sync, **window},
        headers=headers,
    )
    assert r.status_code == 400

    fake.delete_event("o@example.com", seen[0]["id"])
    r = await client.get(
        f"{API}/primary/events", params={"singleEvents": "true", "syncToken": sync}, headers=headers
    )
    body = r.json()
    assert body["items"] == [
        {
            "kind": "calendar#event",
            "etag": body["items"][0]["etag"],
            "id": seen[0]["id"],
            "status": "cancelled",
        }
    ]

    fake.invalidate_sync_tokens("o@example.com")
    r = await client.get(
        f"{API}/primary/events",
        params={"singleEvents": "true", "syncToken": body["nextSyncToken"]},
        headers=headers,
    )
    assert (r.status_code, r.json()) == GOOGLE_ERRORS["fullSyncRequired"]
    assert r.json()["error"]["errors"][0]["reason"] == "fullSyncRequired"


async def test_series_instances_and_cancelled_instance(
    client: httpx.AsyncClient, fake: GoogleFake
) -> None:
    headers = await bearer(client, fake, fake.add_user("o@example.com"))
    master, instances = fake.add_series(
        "o@example.com",
        first_start=T0,
        duration=dt.timedelta(hours=1),
        count=3,
        time_zone="Europe/Berlin",
    )
    fake.cancel_instance("o@example.com", instances[1]["id"])
    r = await client.get(f"{API}/primary/events", params={"singleEvents": "true"}, headers=headers)
    items = r.json()["items"]
    assert [i["id"] for i in items] == [i["id"] for i in instances]  # master not listed
    assert items[1] == {
        "kind": "calendar#event",
        "etag": items[1]["etag"],
        "id": instances[1]["id"],
        "status": "cancelled",
        "recurringEventId": master,
        "originalStartTime": instances[1]["originalStartTime"],
    }
    assert all(i["recurringEventId"] == master for i in items)


async def test_insert_with_chosen_id_duplicate_tombstone_patch_delete(
    client: httpx.AsyncClient, fake: GoogleFake
) -> None:
    headers = await bearer(client, fake, fake.add_user("o@example.com"))
    event = {
        "id": "0123456789abcdefghijklmnopqrstuv",
        "summary": "Booking",
        "start": {"dateTime": "2026-03-02T09:00:00Z", "timeZone": "Europe/Paris"},
        "end": {"dateTime": "2026-03-02T09:30:00Z", "timeZone": "Europe/Paris"},
        "extendedProperties": {"private": {"slotguard_booking": "bk_1"}},
    }
    url = f"{API}/primary/events"
    r = await client.post(url, params={"sendUpdates": "none"}, json=event, headers=headers)
    assert r.status_code == 200 and r.json()["id"] == event["id"]
    etag = r.json()["etag"]
    r = await client.post(url, params={"sendUpdates": "none"}, json=event, headers=headers)
    assert r.status_code == 409
    assert r.json() == {
        "error": {
            "errors": [
                {
                    "domain": "global",
                    "reason": "duplicate",
                    "message": "The requested identifier already exists.",
                }
            ],
            "code": 409,
            "message": "The requested identifier already exists.",
        }
    }
    r = await client.post(url, json={**event, "id": "bk_01xyz"}, headers=headers)
    assert r.status_code == 400  # not base32hex

    one = f"{url}/{event['id']}"
    r = await client.patch(one, json={"summary": "x"}, headers={**headers, "If-Match": '"1"'})
    assert r.status_code == 412
    assert r.json()["error"]["errors"][0]["reason"] == "conditionNotMet"
    r = await client.patch(one, json={"summary": "x"}, headers={**headers, "If-Match": etag})
    assert r.status_code == 200 and r.json()["summary"] == "x"
    assert r.json()["extendedProperties"]["private"]["slotguard_booking"] == "bk_1"

    r = await client.delete(one, params={"sendUpdates": "none"}, headers=headers)
    assert r.status_code == 204
    r = await client.delete(one, params={"sendUpdates": "none"}, headers=headers)
    assert r.status_code == 410 and r.json()["error"]["errors"][0]["reason"] == "deleted"
    r = await client.get(one, headers=headers)
    assert r.json()["status"] == "cancelled"  # the tombstone stays
    r = await client.post(url, params={"sendUpdates": "none"}, json=event, headers=headers)
    assert r.status_code == 409  # a deleted id cannot be used again
    r = await client.delete(f"{url}/neverexisted0", headers=headers)
    assert r.status_code == 404 and r.json()["error"]["errors"][0]["reason"] == "notFound"


async def test_faults_commit_then_drop_and_hang(
    client: httpx.AsyncClient, fake: GoogleFake
) -> None:
    headers = await bearer(client, fake, fake.add_user("o@example.com"))
    event = {
        "id": "abcde12345",
        "start": {"dateTime": "2026-03-02T09:00:00Z"},
        "end": {"dateTime": "2026-03-02T10:00:00Z"},
    }
    fake.inject("insert", "commit_then_drop")
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post(f"{API}/primary/events", json=event, headers=headers)
    assert [e["id"] for e in fake.live_events("o@example.com")] == ["abcde12345"]
    fake.inject("list", "hang")
    with pytest.raises(httpx.ReadTimeout):
        await client.get(
            f"{API}/primary/events", params={"singleEvents": "true"}, headers=headers, timeout=0.2
        )
    status, body = GOOGLE_ERRORS["rateLimitExceeded"]
    fake.fail_next("list", status, body, headers={"Retry-After": "3"})
    r = await client.get(f"{API}/primary/events", params={"singleEvents": "true"}, headers=headers)
    assert r.status_code == 429 and r.headers["retry-after"] == "3"


async def test_pkce_code_flow_over_a_real_server(fake: GoogleFake) -> None:
    import base64
    import hashlib

    fake.add_user("o@example.com")
    verifier = "v" * 50
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    with serve(fake.app) as base:
        async with httpx.AsyncClient(base_url=base) as c:
            r = await c.get(
                "/auth",
                params={
                    "client_id": fake.client_id,
                    "redirect_uri": "http://app.test/cb",
                    "response_type": "code",
                    "scope": "https://www.googleapis.com/auth/calendar.events",
                    "state": "s1",
                    "code_challenge": challenge.decode(),
                    "code_challenge_method": "S256",
                    "access_type": "offline",
                },
            )
            assert r.status_code == 302
            location = httpx.URL(r.headers["location"])
            assert location.params["state"] == "s1"
            code = location.params["code"]
            form = {
                "grant_type": "authorization_code",
                "code": code,
                "client_id": fake.client_id,
                "client_secret": fake.client_secret,
                "redirect_uri": "http://app.test/cb",
            }
            bad = await c.post("/token", data={**form, "code_verifier": "w" * 50})
            assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant"
            # The code was spent by the failed attempt, as Google's codes are single-use.
            again = await c.post("/token", data={**form, "code_verifier": verifier})
            assert again.status_code == 400
