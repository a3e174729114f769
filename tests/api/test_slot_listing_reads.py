"""The slot listing's reads: packed busy time and merged rules are never served stale."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tests.api.helpers import future_day, iso, make_business
from tests.conftest import Tenant

H = dt.timedelta(hours=1)
MIN = dt.timedelta(minutes=1)


async def _starts(t: Tenant, biz_id: str, day: dt.datetime, **params: Any) -> list[str]:
    r = await t.client.get(
        "/v1/availability/slots",
        params={
            "business_id": biz_id,
            "start": iso(day),
            "end": iso(day + 24 * H),
            "duration_minutes": 30,
            "slot_interval_minutes": 30,
            **params,
        },
        headers=t.headers(),
    )
    assert r.status_code == 200, r.text
    return [s["start"] for s in r.json()["data"]["slots"]]


async def _busy(t: Tenant, biz_id: str, start: dt.datetime, end: dt.datetime) -> str:
    r = await t.client.post(
        f"/v1/businesses/{biz_id}/busy",
        json={"start": iso(start), "end": iso(end)},
        headers=t.headers(),
    )
    assert r.status_code == 201, r.text
    return str(r.json()["data"]["id"])


async def test_posted_busy_changes_show_at_once(tenant: Tenant) -> None:
    # Enough busy rows that their packed text is decoded through the cache (> 2 kB).
    biz = await make_business(tenant)
    day = future_day()
    for k in range(60):  # the afternoon and evening: 14:00-24:00 in 10-minute pieces
        start = day + 14 * H + k * 10 * MIN
        await _busy(tenant, biz["id"], start, start + 10 * MIN)
    first = await _starts(tenant, biz["id"], day)
    assert iso(day + 9 * H) in first and iso(day + 15 * H) not in first
    assert await _starts(tenant, biz["id"], day) == first  # the same text: the cached decode

    morning = await _busy(tenant, biz["id"], day + 9 * H, day + 10 * H)
    after_add = await _starts(tenant, biz["id"], day)
    assert iso(day + 9 * H) not in after_add and iso(day + 9 * H + 30 * MIN) not in after_add
    assert len(after_add) == len(first) - 2

    r = await tenant.client.delete(
        f"/v1/businesses/{biz['id']}/busy/{morning}", headers=tenant.headers()
    )
    assert r.status_code == 200, r.text
    assert await _starts(tenant, biz["id"], day) == first


async def test_the_same_busy_text_of_two_businesses_is_each_its_own(tenant: Tenant) -> None:
    # Identical busy time in two businesses: the same packed text, decoded once, blocks both.
    day = future_day()
    a, b = await make_business(tenant), await make_business(tenant)
    for biz in (a, b):
        for k in range(60):
            start = day + 14 * H + k * 10 * MIN
            await _busy(tenant, biz["id"], start, start + 10 * MIN)
    assert await _starts(tenant, a["id"], day) == await _starts(tenant, b["id"], day)
    assert iso(day + 9 * H) in await _starts(tenant, a["id"], day)
    await _busy(tenant, b["id"], day + 9 * H, day + 10 * H)
    assert iso(day + 9 * H) in await _starts(tenant, a["id"], day)
    assert iso(day + 9 * H) not in await _starts(tenant, b["id"], day)


async def test_rule_changes_show_at_once(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    day = future_day()
    before = await _starts(tenant, biz["id"], day)
    assert iso(day + 3 * H) in before
    r = await tenant.client.patch(
        f"/v1/businesses/{biz['id']}",
        json={
            "rules": {"working_hours": [{"days": ["mon", "tue", "wed", "thu", "fri", "sat",
                                                  "sun"], "start": "09:00", "end": "12:00"}]}
        },
        headers=tenant.headers(),
    )  # fmt: skip
    assert r.status_code == 200, r.text
    after = await _starts(tenant, biz["id"], day)
    assert after == [iso(day + 9 * H + k * 30 * MIN) for k in range(6)]
    # The account layer too: the business has no buffer of its own, so it inherits this one.
    await _busy(tenant, biz["id"], day + 10 * H, day + 10 * H + 30 * MIN)
    unbuffered = await _starts(tenant, biz["id"], day)
    assert unbuffered == [iso(day + 9 * H + k * 30 * MIN) for k in range(6) if k != 2]
    r = await tenant.client.put(
        "/v1/rules/defaults", json={"buffer_minutes": 30}, headers=tenant.headers()
    )
    assert r.status_code == 200, r.text
    buffered = await _starts(tenant, biz["id"], day)
    assert buffered == [iso(day + 9 * H), iso(day + 11 * H), iso(day + 11 * H + 30 * MIN)]
