"""The Google provider against the Google fake: pulls (pages, sync tokens, 410, the busy
matrix, all-day days, deletions), idempotent writes, throttling and bad answers."""

from __future__ import annotations

import asyncio
import datetime as dt
from zoneinfo import ZoneInfo

import httpx
import pytest

from slotguard.calendars.base import (
    BusyPeriod,
    CursorExpired,
    EventGone,
    EventRef,
    ProviderAuthError,
    ProviderRateLimited,
    ProviderUnavailable,
    Pull,
)
from slotguard.calendars.google import google_event_id
from tests.fakes.google import GOOGLE_ERRORS, GoogleFake
from tests.oauth.providers import NOW, WINDOW, booking_event, google_provider

OWNER = "owner@example.com"
H = dt.timedelta(hours=1)


def busy(pull: Pull) -> dict[str, tuple[BusyPeriod, ...]]:
    return {i.external_id: i.busy for i in pull.items}


async def test_full_pull_applies_the_busy_matrix(
    google: GoogleFake, http: httpx.AsyncClient
) -> None:
    token = google.add_user(OWNER, timezone="Pacific/Kiritimati")  # UTC+14
    t = NOW + dt.timedelta(days=3)
    ids = {
        name: google.add_event(OWNER, start=t + i * H, end=t + i * H + H / 2, **kw)["id"]
        for i, (name, kw) in enumerate(
            {
                "plain": {},
                "transparent": {"transparency": "transparent"},
                "declined": {"self_response": "declined"},
                "tentative": {"self_response": "tentative"},
                "needs_action": {"self_response": "needsAction"},
                "accepted": {"self_response": "accepted"},
                "working_location": {"event_type": "workingLocation"},
                "out_of_office": {"event_type": "outOfOffice"},
                "own": {"private": {"slotguard_booking": "bk_01jown"}},
            }.items()
        )
    }
    day = (NOW + dt.timedelta(days=5)).date()
    ids["all_day"] = google.add_event(OWNER, start=day, end=day + dt.timedelta(days=1))["id"]
    # Started before the window, still going on inside it: kept (the Cal.com bug).
    ids["ongoing"] = google.add_event(
        OWNER, start=WINDOW.start - dt.timedelta(days=2), end=WINDOW.start + H
    )["id"]
    google.add_event(OWNER, start=WINDOW.end + H, end=WINDOW.end + 2 * H)  # outside
    google.max_page_size, google.empty_page_first = 3, True
    provider, _ = google_provider(http, token)
    pull = await provider.pull(None, WINDOW)
    assert pull.full and pull.cursor
    got = busy(pull)
    assert set(got) == set(ids.values())
    for name in ("plain", "tentative", "needs_action", "accepted", "out_of_office", "ongoing"):
        assert len(got[ids[name]]) == 1, name
    for name in ("transparent", "declined", "working_location", "own"):
        assert got[ids[name]] == (), name
    own = next(i for i in pull.items if i.external_id == ids["own"])
    assert own.own_booking_id == "bk_01jown"
    kiri = ZoneInfo("Pacific/Kiritimati")
    assert got[ids["all_day"]] == (
        BusyPeriod(
            dt.datetime.combine(day, dt.time(0), tzinfo=kiri).astimezone(dt.UTC),
            dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=kiri).astimezone(
                dt.UTC
            ),
        ),
    )
    lists = google.calls("list")
    assert len(lists) > 4  # pages (one empty) were followed
    assert all(c.query["singleEvents"] == "true" for c in lists)
    assert lists[0].query["maxResults"] == "2500" and "timeMin" in lists[0].query


async def test_incremental_pull_uses_the_sync_token_and_reports_deletions(
    google: GoogleFake, http: httpx.AsyncClient
) -> None:
    token = google.add_user(OWNER, timezone="Europe/Berlin")
    t = NOW + dt.timedelta(days=2)
    one = google.add_event(OWNER, start=t, end=t + H)["id"]
    two = google.add_event(OWNER, start=t + 2 * H, end=t + 3 * H)["id"]
    master, instances = google.add_series(
        OWNER, first_start=t + dt.timedelta(days=1), duration=H, count=4, time_zone="Europe/Berlin"
    )
    other_master, _ = google.add_series(
        OWNER, first_start=t + dt.timedelta(days=2), duration=H, count=2
    )
    provider, _ = google_provider(http, token)
    full = await provider.pull(None, WINDOW)
    assert len(full.items) == 2 + 4 + 2
    assert {i.series_id for i in full.items if i.series_id} == {master, other_master}

    google.update_event(OWNER, one, start=t + 5 * H, end=t + 6 * H)  # moved
    google.delete_event(OWNER, two)
    google.cancel_instance(OWNER, instances[1]["id"])
    google.delete_event(OWNER, other_master)  # a whole series, as its master's tombstone
    delta = await provider.pull(full.cursor, WINDOW)
    assert not delta.full and delta.cursor and delta.cursor != full.cursor
    assert [i.external_id for i in delta.items] == [one]
    assert delta.items[0].busy == (BusyPeriod(t + 5 * H, t + 6 * H),)
    assert set(delta.deleted) == {two, instances[1]["id"], other_master}
    last = google.calls("list")[-1]
    assert "syncToken" in last.query and "timeMin" not in last.query and "timeMax" not in last.query

    quiet = await provider.pull(delta.cursor, WINDOW)
    assert quiet.items == [] and quiet.deleted == []

    google.invalidate_sync_tokens(OWNER)
    with pytest.raises(CursorExpired):
        await provider.pull(quiet.cursor, WINDOW)


async def test_insert_is_idempotent_under_lost_answers(
    google: GoogleFake, http: httpx.AsyncClient
) -> None:
    provider, _ = google_provider(http, google.add_user(OWNER))
    event = booking_event()
    # The write lands, the answer is lost, five times in a row; then it gets through.
    google.inject("insert", "commit_then_drop", times=5)
    refs = []
    for _ in range(6):
        try:
            refs.append(await provider.upsert_event(event, None))
        except ProviderUnavailable:
            continue
    assert refs, "the sixth attempt succeeds"
    live = google.live_events(OWNER)
    assert len(live) == 1
    assert live[0]["id"] == google_event_id(event) == refs[-1].remote_id
    assert live[0]["extendedProperties"]["private"]["slotguard_booking"] == event.booking_id
    assert all(c.query.get("sendUpdates") == "none" for c in google.calls("insert"))
    assert "attendees" not in live[0]
    # And once more from scratch (say the worker died before saving the link): adopted.
    again = await provider.upsert_event(event, None)
    assert again.remote_id == refs[-1].remote_id and len(google.live_events(OWNER)) == 1


async def test_update_with_if_match_reapplies_after_a_remote_edit(
    google: GoogleFake, http: httpx.AsyncClient
) -> None:
    provider, _ = google_provider(http, google.add_user(OWNER))
    event = booking_event()
    ref = await provider.upsert_event(event, None)
    google.update_event(OWNER, ref.remote_id, summary="edited by the owner")  # etag moves
    moved = booking_event(start=NOW + dt.timedelta(days=3), title="Moved")
    ref2 = await provider.upsert_event(moved, ref)
    patches = google.calls("patch")
    assert patches[0].headers["if-match"] == ref.etag  # stale: 412, re-read, re-applied
    (live,) = google.live_events(OWNER)
    assert live["summary"] == "Moved" and ref2.etag == live["etag"]
    assert live["start"]["dateTime"] == (NOW + dt.timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert live["start"]["timeZone"] == "Europe/Paris"


async def test_deleted_by_the_owner_is_event_gone_then_a_new_generation(
    google: GoogleFake, http: httpx.AsyncClient
) -> None:
    provider, _ = google_provider(http, google.add_user(OWNER))
    event = booking_event()
    ref = await provider.upsert_event(event, None)
    google.delete_event(OWNER, ref.remote_id)
    with pytest.raises(EventGone):
        await provider.upsert_event(event, ref)
    with pytest.raises(EventGone):  # the tombstone keeps the id: a create cannot reuse it
        await provider.upsert_event(event, None)
    fresh = await provider.upsert_event(booking_event(generation=2), None)
    assert fresh.remote_id != ref.remote_id and fresh.generation == 2
    await provider.delete_event(fresh)
    await provider.delete_event(fresh)  # 410: done
    await provider.delete_event(EventRef(remote_id="neverexisted0", generation=1))  # 404: done
    assert google.live_events(OWNER) == []


async def test_throttling_waits_for_retry_after_with_jitter(
    google: GoogleFake, http: httpx.AsyncClient
) -> None:
    provider, sleeps = google_provider(http, google.add_user(OWNER))
    status, body = GOOGLE_ERRORS["rateLimitExceeded"]
    google.fail_next("list", status, body, headers={"Retry-After": "2"})
    status, body = GOOGLE_ERRORS["userRateLimitExceeded"]
    google.fail_next("list", status, body)
    pull = await provider.pull(None, WINDOW)
    assert pull.full
    assert len(sleeps.waits) == 2
    assert 2.0 <= sleeps.waits[0] <= 2.0 * 1.25 + 0.05  # Retry-After plus jitter
    assert 1.0 <= sleeps.waits[1] <= 1.0 * 1.25 + 0.05  # no header: backoff (attempt 1)


async def test_long_retry_after_is_handed_back_not_slept(
    google: GoogleFake, http: httpx.AsyncClient
) -> None:
    provider, sleeps = google_provider(http, google.add_user(OWNER))
    status, body = GOOGLE_ERRORS["rateLimitExceeded"]
    google.fail_next("list", status, body, headers={"Retry-After": "120"})
    with pytest.raises(ProviderRateLimited) as info:
        await provider.pull(None, WINDOW)
    assert info.value.retry_after is not None and info.value.retry_after >= 120
    assert sleeps.waits == []


async def test_a_throttled_calendar_does_not_hold_up_another(
    google: GoogleFake, http: httpx.AsyncClient
) -> None:
    slow, _ = google_provider(http, google.add_user(OWNER))
    fast, _ = google_provider(http, google.add_user("other@example.com"))
    google.add_event("other@example.com", start=NOW + H, end=NOW + 2 * H)

    async def real_sleep(seconds: float) -> None:
        await asyncio.sleep(min(seconds, 0.5))

    slow.rest.sleep = real_sleep
    status, body = GOOGLE_ERRORS["rateLimitExceeded"]
    google.fail_next("list", status, body, headers={"Retry-After": "1"}, times=2)
    order: list[str] = []

    async def run(name: str, p: object) -> None:
        await p.pull(None, WINDOW)  # type: ignore[attr-defined]
        order.append(name)

    await asyncio.gather(run("slow", slow), run("fast", fast))
    assert order == ["fast", "slow"]


@pytest.mark.parametrize("fault", ["storm", "malformed", "hang", "drop"])
async def test_bad_answers_are_unavailable(
    google: GoogleFake, http: httpx.AsyncClient, fault: str
) -> None:
    provider, sleeps = google_provider(http, google.add_user(OWNER))
    if fault == "storm":
        status, body = GOOGLE_ERRORS["backendError503"]
        google.fail_next("list", status, body, times=10)
    elif fault == "malformed":
        google.inject("list", "malformed")
    else:
        google.inject("list", fault, times=10)
    provider.rest.timeout_s = 0.2
    with pytest.raises(ProviderUnavailable):
        await provider.pull(None, WINDOW)
    if fault in ("storm", "hang", "drop"):
        assert len(sleeps.waits) == 3  # bounded retries with backoff, then give up


async def test_expired_token_is_refreshed_once_then_auth_failed(
    google: GoogleFake, http: httpx.AsyncClient
) -> None:
    refresh = google.add_user(OWNER)
    provider, _ = google_provider(http, refresh)
    await provider.check()
    google.expire_access_tokens()
    assert (await provider.pull(None, WINDOW)).full  # 401, one refresh, retried
    assert len(google.calls("token")) == 2
    google.expire_access_tokens()
    google.revoke(refresh)
    with pytest.raises(ProviderAuthError):
        await provider.pull(None, WINDOW)
