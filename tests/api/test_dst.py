"""A fall-back night through the API (§1.2): both passes of the repeated hour are offered and
bookable, rendered with their own offsets; on both stores."""

from __future__ import annotations

from tests.api.helpers import ALL_DAYS, key, make_business
from tests.conftest import Tenant

# New York 2027-11-07: 02:00 EDT -> 01:00 EST at 06:00Z. "00:00-04:00" is 04:00Z..09:00Z.
NIGHT_RULES = {
    "working_hours": [{"days": ALL_DAYS, "start": "00:00", "end": "04:00"}],
    "max_advance_days": 3650,
    "slot_interval_minutes": 30,
}


async def test_fall_back_night_lists_ten_half_hour_slots(tenant: Tenant) -> None:
    biz = await make_business(tenant, timezone="America/New_York", rules=NIGHT_RULES)
    r = await tenant.client.get(
        "/v1/availability/slots",
        params={
            "business_id": biz["id"],
            "start": "2027-11-07T00:00:00-04:00",
            "end": "2027-11-08T00:00:00-05:00",
            "duration_minutes": 30,
        },
        headers=tenant.headers(),
    )
    assert r.status_code == 200, r.text
    starts = [s["start"] for s in r.json()["data"]["slots"]]
    assert starts == [
        "2027-11-07T00:00:00-04:00",
        "2027-11-07T00:30:00-04:00",
        "2027-11-07T01:00:00-04:00",
        "2027-11-07T01:30:00-04:00",
        "2027-11-07T01:00:00-05:00",
        "2027-11-07T01:30:00-05:00",
        "2027-11-07T02:00:00-05:00",
        "2027-11-07T02:30:00-05:00",
        "2027-11-07T03:00:00-05:00",
        "2027-11-07T03:30:00-05:00",
    ]


async def test_fall_back_second_pass_is_bookable_directly(tenant: Tenant) -> None:
    biz = await make_business(tenant, timezone="America/New_York", rules=NIGHT_RULES)
    body = {
        "business_id": biz["id"],
        "start_time": "2027-11-07T06:00:00Z",  # 01:00 EST, the second 01:00
        "end_time": "2027-11-07T06:30:00Z",
    }
    r = await tenant.client.post(
        "/v1/bookings", json=body, headers=tenant.headers(**{"Idempotency-Key": key()})
    )
    assert r.status_code == 201, r.text
    assert r.json()["data"]["start_time"] == "2027-11-07T06:00:00Z"
    # And the first 01:00 (05:00Z) stays free and bookable beside it.
    first = {**body, "start_time": "2027-11-07T05:00:00Z", "end_time": "2027-11-07T05:30:00Z"}
    r = await tenant.client.post(
        "/v1/bookings", json=first, headers=tenant.headers(**{"Idempotency-Key": key()})
    )
    assert r.status_code == 201, r.text
