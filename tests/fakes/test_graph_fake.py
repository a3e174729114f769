"""Contract tests: the Graph fake answers as the documentation's examples say (research
note §2)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.fakes.common import FakeTransport, serve
from tests.fakes.graph import GRAPH_ERRORS, GraphFake

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
PROP = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name slotguardBooking"
SCOPE = "offline_access Calendars.ReadWrite"


@pytest.fixture
def fake() -> GraphFake:
    return GraphFake()


@pytest.fixture
async def client(fake: GraphFake) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=FakeTransport(fake.app), base_url=fake.base_url, timeout=2
    ) as c:
        yield c


async def refresh(client: httpx.AsyncClient, fake: GraphFake, token: str) -> httpx.Response:
    return await client.post(
        "/common/oauth2/v2.0/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": token,
            "client_id": fake.client_id,
            "client_secret": fake.client_secret,
            "scope": SCOPE,
        },
    )


async def bearer(client: httpx.AsyncClient, fake: GraphFake, token: str) -> dict[str, str]:
    r = await refresh(client, fake, token)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def test_refresh_tokens_rotate_and_the_old_one_dies(
    client: httpx.AsyncClient, fake: GraphFake
) -> None:
    first = fake.add_user("o@contoso.com")
    r = await refresh(client, fake, first)
    body = r.json()
    assert body["token_type"] == "Bearer" and "offline_access" not in body["scope"]
    assert body["refresh_token"] != first
    again = await refresh(client, fake, first)
    assert again.status_code == 400
    err = again.json()
    assert err["error"] == "invalid_grant" and err["error_codes"] == [700082]
    assert err["error_description"].startswith("AADSTS700082")
    assert (await refresh(client, fake, body["refresh_token"])).status_code == 200


async def test_delta_rounds_links_removed_and_410(
    client: httpx.AsyncClient, fake: GraphFake
) -> None:
    headers = await bearer(client, fake, fake.add_user("o@contoso.com"))
    ids = [
        fake.add_event(
            "o@contoso.com",
            start=T0 + dt.timedelta(hours=i),
            end=T0 + dt.timedelta(hours=i, minutes=30),
        )["id"]
        for i in range(3)
    ]
    all_day = fake.add_event(
        "o@contoso.com",
        start=dt.date(2026, 3, 3),
        end=dt.date(2026, 3, 4),
        zone="Europe/Berlin",
        show_as="free",
    )
    prefer = {"Prefer": 'outlook.timezone="UTC", odata.maxpagesize=2'}
    r = await client.get(
        "/v1.0/me/calendarView/delta",
        headers={**headers, **prefer},
        params={"startDateTime": "2026-03-01T00:00:00Z", "endDateTime": "2026-04-01T00:00:00Z"},
    )
    assert r.status_code == 200, r.text
    page = r.json()
    assert len(page["value"]) == 2
    assert page["@odata.nextLink"].startswith(fake.base_url + "/v1.0/me/calendarView/delta?")
    first = page["value"][0]
    assert first["start"] == {"dateTime": "2026-03-02T09:00:00.0000000", "timeZone": "UTC"}
    # Only the token may be on a link: adding anything else is refused.
    bad = await client.get(page["@odata.nextLink"] + "&$top=5", headers={**headers, **prefer})
    assert bad.status_code == 400
    r = await client.get(page["@odata.nextLink"], headers={**headers, **prefer})
    page = r.json()
    assert "@odata.deltaLink" in page and "@odata.nextLink" not in page
    day = next(v for v in page["value"] if v["id"] == all_day["id"])
    assert day["isAllDay"] and day["originalStartTimeZone"] == "W. Europe Standard Time"
    assert day["start"] == {"dateTime": "2026-03-03T00:00:00.0000000", "timeZone": "UTC"}

    fake.delete_event(ids[0])
    fake.add_event(
        "o@contoso.com", start=T0 + dt.timedelta(days=90), end=T0 + dt.timedelta(days=90, hours=1)
    )  # outside the window
    r = await client.get(page["@odata.deltaLink"], headers={**headers, **prefer})
    changes = r.json()
    assert changes["value"][0] == {
        "@odata.type": "#microsoft.graph.event",
        "id": ids[0],
        "@removed": {"reason": "deleted"},
    }
    assert changes["value"][1]["@removed"] == {"reason": "deleted"}  # spurious, outside
    fake.invalidate_delta_tokens()
    r = await client.get(changes["@odata.deltaLink"], headers={**headers, **prefer})
    assert r.status_code == 410 and r.json()["error"]["code"] == "SyncStateNotFound"


async def test_create_with_transaction_id_and_marker_lookup(
    client: httpx.AsyncClient, fake: GraphFake
) -> None:
    headers = await bearer(client, fake, fake.add_user("o@contoso.com"))
    body = {
        "subject": "Booking",
        "transactionId": "7E163156-7762-4BEB-A1C6-729EA81755A7",
        "start": {"dateTime": "2026-03-02T09:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2026-03-02T09:30:00", "timeZone": "UTC"},
        "singleValueExtendedProperties": [{"id": PROP, "value": "bk_1"}],
    }
    r1 = await client.post("/v1.0/me/events", json=body, headers=headers)
    r2 = await client.post("/v1.0/me/events", json=body, headers=headers)
    assert r1.status_code == r2.status_code == 201
    assert (
        r1.json()["id"] == r2.json()["id"] and r1.json()["transactionId"] == body["transactionId"]
    )
    flt = f"singleValueExtendedProperties/Any(ep: ep/id eq '{PROP}' and ep/value eq 'bk_1')"
    r = await client.get("/v1.0/me/events", params={"$filter": flt}, headers=headers)
    assert [v["id"] for v in r.json()["value"]] == [r1.json()["id"]]
    one = f"/v1.0/me/events/{r1.json()['id']}"
    stale = await client.patch(one, json={"subject": "x"}, headers={**headers, "If-Match": 'W/"0"'})
    assert stale.status_code == 412
    assert (await client.patch(one, json={"subject": "x"}, headers=headers)).json()[
        "subject"
    ] == "x"
    assert (await client.delete(one, headers=headers)).status_code == 204
    gone = await client.delete(one, headers=headers)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "ErrorItemNotFound"
    fake.transaction_dedupe = False
    r3 = await client.post("/v1.0/me/events", json=body, headers=headers)
    r4 = await client.post("/v1.0/me/events", json=body, headers=headers)
    assert r3.json()["id"] != r4.json()["id"]  # the "duplicates" mode


async def test_mailbox_concurrency_limit_over_a_real_server(fake: GraphFake) -> None:
    token = fake.add_user("o@contoso.com")
    fake.mailbox_latency_s = 0.2
    with serve(fake.app) as base:
        fake.base_url = base
        async with httpx.AsyncClient(base_url=base, timeout=5) as c:
            headers = await bearer(c, fake, token)
            answers = await asyncio.gather(
                *(c.get("/v1.0/me/calendar", headers=headers) for _ in range(6))
            )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 200, 200, 200, 429, 429]
    throttled = next(a for a in answers if a.status_code == 429)
    assert throttled.headers["retry-after"] == "1"
    assert (
        throttled.json()["error"]["code"]
        == GRAPH_ERRORS["ApplicationThrottled"][1]["error"]["code"]
    )


async def test_a_series_lists_its_instances_and_dies_as_removed_items(
    client: httpx.AsyncClient, fake: GraphFake
) -> None:
    headers = await bearer(client, fake, fake.add_user("o@contoso.com"))
    master, occurrences = fake.add_series(
        "o@contoso.com",
        first_start=T0,
        duration=dt.timedelta(hours=1),
        count=3,
        every=dt.timedelta(days=1),
        zone="Europe/Berlin",
    )
    r = await client.get(
        "/v1.0/me/calendarView/delta",
        headers=headers,
        params={"startDateTime": "2026-03-01T00:00:00Z", "endDateTime": "2026-04-01T00:00:00Z"},
    )
    page = r.json()
    listed = page["value"]
    # The instances only, each naming its master; never the master itself.
    assert [v["id"] for v in listed] == [o["id"] for o in occurrences]
    assert {v["type"] for v in listed} == {"occurrence"}
    assert {v["seriesMasterId"] for v in listed} == {master}
    assert listed[1]["originalStart"] == "2026-03-03T09:00:00Z"

    fake.delete_event(master)
    r = await client.get(page["@odata.deltaLink"], headers=headers)
    removed = r.json()["value"]
    assert {v["id"] for v in removed} == {master} | {o["id"] for o in occurrences}
    assert all(v["@removed"] == {"reason": "deleted"} for v in removed)
    assert fake.live_events("o@contoso.com") == []
