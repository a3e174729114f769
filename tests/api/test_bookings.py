"""Direct bookings, reads, cancel, reschedule and PATCH (§4), on both stores."""

from __future__ import annotations

import datetime as dt

from tests.api.helpers import book, future_day, iso, key, make_business
from tests.conftest import Tenant

H = dt.timedelta(hours=1)


async def test_book_returns_201_with_location_and_etag(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    start = future_day() + 9 * H
    r = await book(tenant, biz["id"], start, customer_email="ann@example.com", title="Intro")
    assert r.status_code == 201, r.text
    b = r.json()["data"]
    assert r.headers["Location"] == f"/v1/bookings/{b['id']}"
    assert r.headers["ETag"] == '"1"'
    assert r.headers["X-Request-Id"] == r.json()["meta"]["request_id"]
    assert b["id"].startswith("bk_") and b["correlation_id"].startswith("corr_")
    assert b["status"] == "confirmed" and b["version"] == 1
    assert b["start_time"] == iso(start)
    assert b["start_time"].endswith("Z")
    assert b["title"] == "Intro"
    g = await tenant.client.get(f"/v1/bookings/{b['id']}", headers=tenant.headers())
    assert g.status_code == 200 and g.headers["ETag"] == '"1"'
    assert g.json()["data"] == b


async def test_title_defaults_to_class_display_name(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    r = await book(tenant, biz["id"], future_day() + 9 * H)
    assert r.json()["data"]["title"] == "Meeting"
    assert r.json()["data"]["meeting_class"] == "default"


async def test_overlap_gives_exact_409_body(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    start = future_day() + 9 * H
    assert (await book(tenant, biz["id"], start, 60)).status_code == 201
    r = await book(tenant, biz["id"], start + dt.timedelta(minutes=30), 60)
    assert r.status_code == 409
    body = r.json()
    assert body["error"] == "conflict"
    assert body["message"] == "The requested time slot is no longer available."
    assert body["code"] == 409
    assert body["request_id"] == r.headers["X-Request-Id"]
    assert body["details"] == {"reason": "overlaps_booking"}


async def test_back_to_back_is_allowed(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    start = future_day() + 9 * H
    assert (await book(tenant, biz["id"], start, 60)).status_code == 201
    assert (await book(tenant, biz["id"], start + H, 60)).status_code == 201
    assert (await book(tenant, biz["id"], start - H, 60)).status_code == 201


async def test_end_defaults_from_meeting_class_duration(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    r = await tenant.client.post(
        "/v1/meeting-classes",
        json={"name": "interview", "display_name": "Interview", "duration_minutes": 45},
        headers=tenant.headers(),
    )
    assert r.status_code == 201, r.text
    start = future_day() + 9 * H
    r = await tenant.client.post(
        "/v1/bookings",
        json={"business_id": biz["id"], "start": iso(start), "meeting_class": "interview"},
        headers=tenant.headers(**{"Idempotency-Key": key()}),
    )
    assert r.status_code == 201, r.text
    assert r.json()["data"]["end_time"] == iso(start + dt.timedelta(minutes=45))
    assert r.json()["data"]["title"] == "Interview"


async def test_each_rejection_reason(tenant: Tenant) -> None:
    day = future_day(7)
    biz = await make_business(
        tenant,
        rules={
            "working_hours": [
                {
                    "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                    "start": "09:00",
                    "end": "17:00",
                }
            ],
            "buffer_minutes": 15,
            "slot_interval_minutes": 30,
            "min_notice_minutes": 24 * 60,
            "max_advance_days": 20,
            "max_meetings_per_day": 2,
        },
    )
    bid = biz["id"]
    assert (await book(tenant, bid, day + 10 * H)).status_code == 201
    r = await tenant.client.post(
        f"/v1/businesses/{bid}/busy",
        json={"start": iso(day + 14 * H), "end": iso(day + 15 * H)},
        headers=tenant.headers(),
    )
    assert r.status_code == 201, r.text

    async def reason(start: dt.datetime, minutes: int = 30) -> str:
        res = await book(tenant, bid, start, minutes)
        assert res.status_code == 409, res.text
        return str(res.json()["details"]["reason"])

    assert await reason(day + 10 * H) == "overlaps_booking"
    assert await reason(day + 14 * H) == "overlaps_busy_time"
    assert await reason(day + 10 * H + dt.timedelta(minutes=30)) == "buffer"
    assert await reason(day + 8 * H) == "outside_working_hours"
    assert await reason(day + 16 * H + dt.timedelta(minutes=45)) == "outside_working_hours"
    assert await reason(day + 12 * H + dt.timedelta(minutes=10)) == "off_grid"
    assert await reason(future_day(30) + 10 * H) == "too_far"
    assert (await book(tenant, bid, day + 12 * H)).status_code == 201
    assert await reason(day + 16 * H) == "daily_limit"


async def test_too_soon_reason_on_an_open_grid(tenant: Tenant) -> None:
    biz = await make_business(
        tenant,
        rules={
            "working_hours": [
                {
                    "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                    "start": "00:00",
                    "end": "24:00",
                }
            ],
            "min_notice_minutes": 3 * 24 * 60,
            "slot_interval_minutes": 60,
        },
    )
    res = await book(tenant, biz["id"], future_day(1) + 10 * H, 60)
    assert res.status_code == 409
    assert res.json()["details"]["reason"] == "too_soon"


async def test_past_and_reversed_times_are_422(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    past = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - 2 * H
    r = await book(tenant, biz["id"], past)
    assert r.status_code == 422 and r.json()["error"] == "validation_error"
    start = future_day() + 9 * H
    r = await tenant.client.post(
        "/v1/bookings",
        json={"business_id": biz["id"], "start_time": iso(start), "end_time": iso(start)},
        headers=tenant.headers(**{"Idempotency-Key": key()}),
    )
    assert r.status_code == 422 and r.json()["error"] == "validation_error"


async def test_cancel_frees_slot_and_is_repeatable(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    start = future_day() + 9 * H
    b = (await book(tenant, biz["id"], start)).json()["data"]
    r = await tenant.client.post(
        f"/v1/bookings/{b['id']}/cancel",
        json={"reason": "sick"},
        headers=tenant.headers(**{"Idempotency-Key": key()}),
    )
    assert r.status_code == 200, r.text
    c = r.json()["data"]
    assert c["status"] == "cancelled" and c["version"] == 2
    assert c["cancellation_reason"] == "sick" and c["cancelled_at"]
    assert r.headers["ETag"] == '"2"'
    again = await tenant.client.post(
        f"/v1/bookings/{b['id']}/cancel", headers=tenant.headers(**{"Idempotency-Key": key()})
    )
    assert again.status_code == 200 and again.json()["data"] == c
    assert (await book(tenant, biz["id"], start)).status_code == 201


async def test_cancel_with_stale_if_match_is_412(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    b = (await book(tenant, biz["id"], future_day() + 9 * H)).json()["data"]
    r = await tenant.client.post(
        f"/v1/bookings/{b['id']}/cancel",
        headers=tenant.headers(**{"Idempotency-Key": key(), "If-Match": '"7"'}),
    )
    assert r.status_code == 412 and r.json()["error"] == "version_conflict"
    assert r.json()["details"]["current_version"] == 1


async def test_reschedule_keeps_id_and_bumps_version(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    start = future_day() + 9 * H
    b = (await book(tenant, biz["id"], start, 60)).json()["data"]
    new_start = start + 3 * H
    r = await tenant.client.post(
        f"/v1/bookings/{b['id']}/reschedule",
        json={"start_time": iso(new_start)},
        headers=tenant.headers(**{"Idempotency-Key": key(), "If-Match": 'W/"1"'}),
    )
    assert r.status_code == 200, r.text
    m = r.json()["data"]
    assert m["id"] == b["id"] and m["version"] == 2
    assert m["start_time"] == iso(new_start) and m["end_time"] == iso(new_start + H)
    # The old time is free again; the new one is taken.
    assert (await book(tenant, biz["id"], start, 60)).status_code == 201
    assert (await book(tenant, biz["id"], new_start, 60)).status_code == 409


async def test_reschedule_may_overlap_its_own_old_time(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    start = future_day() + 9 * H
    b = (await book(tenant, biz["id"], start, 60)).json()["data"]
    r = await tenant.client.post(
        f"/v1/bookings/{b['id']}/reschedule",
        json={"start_time": iso(start + dt.timedelta(minutes=30))},
        headers=tenant.headers(**{"Idempotency-Key": key()}),
    )
    assert r.status_code == 200, r.text


async def test_reschedule_conflict_leaves_booking_untouched(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    start = future_day() + 9 * H
    a = (await book(tenant, biz["id"], start, 60)).json()["data"]
    assert (await book(tenant, biz["id"], start + 2 * H, 60)).status_code == 201
    r = await tenant.client.post(
        f"/v1/bookings/{a['id']}/reschedule",
        json={"start_time": iso(start + 2 * H)},
        headers=tenant.headers(**{"Idempotency-Key": key()}),
    )
    assert r.status_code == 409 and r.json()["details"]["reason"] == "overlaps_booking"
    g = (await tenant.client.get(f"/v1/bookings/{a['id']}", headers=tenant.headers())).json()
    assert g["data"] == a


async def test_reschedule_cancelled_is_booking_not_active(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    b = (await book(tenant, biz["id"], future_day() + 9 * H)).json()["data"]
    await tenant.client.post(
        f"/v1/bookings/{b['id']}/cancel", headers=tenant.headers(**{"Idempotency-Key": key()})
    )
    r = await tenant.client.post(
        f"/v1/bookings/{b['id']}/reschedule",
        json={"start_time": iso(future_day() + 12 * H)},
        headers=tenant.headers(**{"Idempotency-Key": key()}),
    )
    assert r.status_code == 409 and r.json()["error"] == "booking_not_active"


async def test_patch_if_match_rules(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    b = (await book(tenant, biz["id"], future_day() + 9 * H, metadata={"a": "1", "b": "2"})).json()[
        "data"
    ]
    url = f"/v1/bookings/{b['id']}"
    r = await tenant.client.patch(
        url, json={"title": "x"}, headers=tenant.headers(**{"Idempotency-Key": key()})
    )
    assert r.status_code == 428 and r.json()["error"] == "missing_if_match"
    r = await tenant.client.patch(
        url,
        json={"title": "x"},
        headers=tenant.headers(**{"Idempotency-Key": key(), "If-Match": "abc"}),
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_if_match"
    r = await tenant.client.patch(
        url,
        json={"title": "x"},
        headers=tenant.headers(**{"Idempotency-Key": key(), "If-Match": '"5"'}),
    )
    assert r.status_code == 412 and r.json()["details"]["current_version"] == 1
    r = await tenant.client.patch(
        url,
        json={"start_time": iso(future_day()), "status": "cancelled", "title": "x"},
        headers=tenant.headers(**{"Idempotency-Key": key(), "If-Match": '"1"'}),
    )
    assert r.status_code == 422 and r.json()["error"] == "field_immutable"
    assert r.json()["details"]["fields"] == ["start_time", "status"]
    r = await tenant.client.patch(
        url,
        json={"title": "New", "metadata": {"a": None, "c": "3"}, "customer_name": "Zed"},
        headers=tenant.headers(**{"Idempotency-Key": key(), "If-Match": '"1"'}),
    )
    assert r.status_code == 200, r.text
    d = r.json()["data"]
    assert d["title"] == "New" and d["customer_name"] == "Zed"
    assert d["metadata"] == {"b": "2", "c": "3"}
    assert d["version"] == 2 and r.headers["ETag"] == '"2"'
    unchanged = (await tenant.client.get(url, headers=tenant.headers())).json()["data"]
    assert unchanged["start_time"] == b["start_time"]


async def test_metadata_limits(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    start = future_day() + 9 * H
    too_many = {f"k{i}": "v" for i in range(51)}
    r = await book(tenant, biz["id"], start, metadata=too_many)
    assert r.status_code == 422
    r = await book(tenant, biz["id"], start, metadata={"k" * 41: "v"})
    assert r.status_code == 422
    r = await book(tenant, biz["id"], start, metadata={"k": "v" * 501})
    assert r.status_code == 422
    r = await book(tenant, biz["id"], start, metadata={"k": 5})
    assert r.status_code == 422


async def test_list_filters_and_cursor(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    other = await make_business(tenant)
    day = future_day()
    ids = []
    for i in range(5):
        r = await book(tenant, biz["id"], day + i * H, customer_email=f"c{i % 2}@example.com")
        ids.append(r.json()["data"]["id"])
    await book(tenant, other["id"], day)
    await tenant.client.post(
        f"/v1/bookings/{ids[4]}/cancel", headers=tenant.headers(**{"Idempotency-Key": key()})
    )
    seen: list[str] = []
    cursor = None
    while True:
        params = {"business_id": biz["id"], "limit": 2}
        if cursor:
            params["cursor"] = cursor
        r = await tenant.client.get("/v1/bookings", params=params, headers=tenant.headers())
        assert r.status_code == 200, r.text
        seen += [b["id"] for b in r.json()["data"]]
        meta = r.json()["meta"]
        if not meta["has_more"]:
            assert "next_cursor" not in meta
            break
        cursor = meta["next_cursor"]
    assert seen == ids
    r = await tenant.client.get(
        "/v1/bookings",
        params={"business_id": biz["id"], "status": "confirmed"},
        headers=tenant.headers(),
    )
    assert [b["id"] for b in r.json()["data"]] == ids[:4]
    r = await tenant.client.get(
        "/v1/bookings", params={"customer_email": "c1@example.com"}, headers=tenant.headers()
    )
    assert [b["id"] for b in r.json()["data"]] == [ids[1], ids[3]]
    r = await tenant.client.get(
        "/v1/bookings",
        params={"sort": "updated_at", "business_id": biz["id"]},
        headers=tenant.headers(),
    )
    assert [b["id"] for b in r.json()["data"]][-1] == ids[4]
    r = await tenant.client.get(
        "/v1/bookings",
        params={"start": iso(day + H), "end": iso(day + 3 * H), "business_id": biz["id"]},
        headers=tenant.headers(),
    )
    assert [b["id"] for b in r.json()["data"]] == ids[1:3]
    r = await tenant.client.get(
        "/v1/bookings", params={"cursor": "garbage!"}, headers=tenant.headers()
    )
    assert r.status_code == 422


async def test_other_accounts_objects_are_404(tenant: Tenant, store, app_client) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import new_tenant

    biz = await make_business(tenant)
    b = (await book(tenant, biz["id"], future_day() + 9 * H)).json()["data"]
    intruder = await new_tenant(store, app_client)
    r = await intruder.client.get(f"/v1/bookings/{b['id']}", headers=intruder.headers())
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = await intruder.client.get(f"/v1/businesses/{biz['id']}", headers=intruder.headers())
    assert r.status_code == 404
    r = await book(intruder, biz["id"], future_day() + 12 * H)
    assert r.status_code == 404
    r = await intruder.client.post(
        f"/v1/bookings/{b['id']}/cancel", headers=intruder.headers(**{"Idempotency-Key": key()})
    )
    assert r.status_code == 404
    r = await intruder.client.get("/v1/bookings", headers=intruder.headers())
    assert r.json()["data"] == []


async def test_owner_email_targets_business(tenant: Tenant) -> None:
    await make_business(tenant, email="doc@example.com")
    start = future_day() + 9 * H
    r = await tenant.client.post(
        "/v1/bookings",
        json={
            "owner_email": "DOC@example.com",
            "start_time": iso(start),
            "end_time": iso(start + H),
        },
        headers=tenant.headers(**{"Idempotency-Key": key()}),
    )
    assert r.status_code == 201, r.text


async def test_audit_rows_for_every_change(tenant: Tenant) -> None:
    biz = await make_business(tenant)
    start = future_day() + 9 * H
    b = (await book(tenant, biz["id"], start)).json()["data"]
    assert (await book(tenant, biz["id"], start)).status_code == 409
    await tenant.client.post(
        f"/v1/bookings/{b['id']}/reschedule",
        json={"start_time": iso(start + H)},
        headers=tenant.headers(**{"Idempotency-Key": key()}),
    )
    await tenant.client.patch(
        f"/v1/bookings/{b['id']}",
        json={"title": "t"},
        headers=tenant.headers(**{"Idempotency-Key": key(), "If-Match": '"2"'}),
    )
    await tenant.client.post(
        f"/v1/bookings/{b['id']}/cancel", headers=tenant.headers(**{"Idempotency-Key": key()})
    )
    r = await tenant.client.get(
        "/v1/audit-log", params={"business_id": biz["id"]}, headers=tenant.headers()
    )
    assert r.status_code == 200, r.text
    rows = r.json()["data"]
    assert [a["action"] for a in rows] == [
        "booking_created",
        "booking_rejected",
        "booking_rescheduled",
        "booking_updated",
        "booking_cancelled",
    ]
    assert rows[1]["reason"] == "overlaps_booking" and rows[1]["decision"] == "reject"
    assert all(a["request_id"].startswith("req_") for a in rows)
    assert all(a["actor"]["key_id"].startswith("key_") for a in rows)
    assert rows[-1]["details"]["state"]["version"] == 4
    only = await tenant.client.get(
        "/v1/audit-log",
        params={"booking_id": b["id"], "action": "booking_cancelled"},
        headers=tenant.headers(),
    )
    assert [a["action"] for a in only.json()["data"]] == ["booking_cancelled"]
    export = await tenant.client.get(
        "/v1/audit-log/export", params={"business_id": biz["id"]}, headers=tenant.headers()
    )
    assert export.status_code == 200
    assert export.headers["content-type"].startswith("application/x-ndjson")
    assert len(export.text.strip().splitlines()) == 5
