"""Examples for the slot engine: rules, blockers, check_slot reasons, and DST days by hand."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from slotguard.domain.availability import (
    Blocker,
    BlockerKind,
    Interval,
    SlotRequest,
    bookable_bounds,
    check_slot,
    choose_non_overlapping,
    compute_slots,
    open_ranges,
)
from slotguard.domain.rules import WEEKDAYS, EffectiveRules

WEEKDAYS_ONLY = ["mon", "tue", "wed", "thu", "fri"]
MONDAY = date(2026, 4, 6)
TUESDAY = date(2026, 4, 7)
SUNDAY = date(2026, 4, 12)


def at(text: str, tz: str = "UTC") -> datetime:
    """`YYYY-MM-DD HH:MM` wall time in `tz` (fold=0) as an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).astimezone(UTC)


def z(text: str) -> datetime:
    """`YYYY-MM-DDTHH:MM` read as UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def make_rules(
    hours: Sequence[tuple[Sequence[str], str, str]] = ((WEEKDAYS_ONLY, "09:00", "17:00"),),
    **fields: Any,
) -> EffectiveRules:
    values: dict[str, Any] = {
        "working_hours": [{"days": list(d), "start": s, "end": e} for d, s, e in hours],
        "date_overrides": [],
        "buffer_minutes": 0,
        "slot_interval_minutes": None,
        "min_notice_minutes": 0,
        "max_advance_days": 3650,
        "max_meetings_per_day": None,
        "hold_ttl_seconds": 300,
        "sacred_meeting_age_hours": 24,
    }
    values.update(fields)
    return EffectiveRules.model_validate(values)


def make_req(
    rules: EffectiveRules | None = None,
    *,
    tz: str = "UTC",
    duration: int = 60,
    interval: int | None = None,
    now: datetime | None = None,
    before: int = 0,
    after: int = 0,
) -> SlotRequest:
    rules = rules or make_rules()
    return SlotRequest(
        tz=ZoneInfo(tz),
        rules=rules,
        duration=timedelta(minutes=duration),
        now=now or z("2026-01-01T00:00"),
        buffer_before=timedelta(minutes=before),
        buffer_after=timedelta(minutes=after),
        interval_minutes=interval or rules.slot_interval_for(duration),
    )


def slots(
    req: SlotRequest,
    start: datetime,
    end: datetime,
    blockers: Iterable[Blocker] = (),
    per_day: Mapping[date, int] | None = None,
    limit: int = 10_000,
) -> list[Interval]:
    return compute_slots(
        req,
        window_start=start,
        window_end=end,
        blockers=list(blockers),
        bookings_per_day=per_day or {},
        limit=limit,
    )


def local_starts(found: Sequence[Interval], tz: str = "UTC") -> list[str]:
    return [s.start.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M") for s in found]


def utc_starts(found: Sequence[Interval]) -> list[str]:
    return [s.start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M") for s in found]


def day_window(day: date, tz: str = "UTC") -> tuple[datetime, datetime]:
    """Local midnight to the next local midnight (both exist in every zone tested here)."""
    return at(f"{day} 00:00", tz), at(f"{day + timedelta(days=1)} 00:00", tz)


def check(
    req: SlotRequest,
    start: datetime,
    end: datetime,
    blockers: Iterable[Blocker] = (),
    per_day: Mapping[date, int] | None = None,
) -> str | None:
    return check_slot(
        req, start=start, end=end, blockers=list(blockers), bookings_per_day=per_day or {}
    )


def test_dates_used_are_the_weekdays_the_tests_assume() -> None:
    assert (MONDAY.weekday(), TUESDAY.weekday(), SUNDAY.weekday()) == (0, 1, 6)


# --- working hours and overrides --------------------------------------------------------------


def test_several_ranges_per_day_each_with_its_own_grid() -> None:
    rules = make_rules([(WEEKDAYS_ONLY, "09:00", "12:00"), (WEEKDAYS_ONLY, "13:10", "15:00")])
    found = slots(make_req(rules, duration=60, interval=30), *day_window(MONDAY))
    # Morning grid from 09:00; afternoon grid anchored at 13:10, not at 13:00 or 13:30.
    # 11:30 would end 12:30 and 14:10 would end 15:10: both past their range's end.
    assert local_starts(found) == [
        "2026-04-06 09:00",
        "2026-04-06 09:30",
        "2026-04-06 10:00",
        "2026-04-06 10:30",
        "2026-04-06 11:00",
        "2026-04-06 13:10",
        "2026-04-06 13:40",
    ]
    assert all(s.end - s.start == timedelta(minutes=60) for s in found)


def test_overlapping_ranges_list_a_shared_start_once_and_stay_sorted() -> None:
    rules = make_rules([(["mon"], "10:00", "12:00"), (["mon"], "09:00", "11:00")])
    found = slots(make_req(rules, duration=60, interval=60), *day_window(MONDAY))
    assert local_starts(found) == ["2026-04-06 09:00", "2026-04-06 10:00", "2026-04-06 11:00"]


def test_a_slot_must_fit_inside_one_range_even_when_ranges_touch() -> None:
    rules = make_rules([(["mon"], "09:00", "12:00"), (["mon"], "12:00", "14:00")])
    req = make_req(rules, duration=60, interval=30)
    found = slots(req, *day_window(MONDAY))
    assert "2026-04-06 11:30" not in local_starts(found)
    assert check(req, at("2026-04-06 11:30"), at("2026-04-06 12:30")) == "outside_working_hours"
    assert check(req, at("2026-04-06 12:00"), at("2026-04-06 13:00")) is None


def test_days_without_hours_are_closed() -> None:
    found = slots(
        make_req(duration=60, interval=60), at("2026-04-10 00:00"), at("2026-04-13 00:00")
    )
    # Friday only: Saturday and Sunday have no working hours.
    assert {s.start.date() for s in found} == {date(2026, 4, 10)}
    assert len(found) == 8


def test_date_override_with_no_hours_closes_the_day() -> None:
    rules = make_rules(date_overrides=[{"date": "2026-04-06", "hours": []}])
    req = make_req(rules, duration=60, interval=60)
    found = slots(req, at("2026-04-06 00:00"), at("2026-04-08 00:00"))
    assert {s.start.date() for s in found} == {TUESDAY}
    assert check(req, at("2026-04-06 10:00"), at("2026-04-06 11:00")) == "outside_working_hours"


def test_date_override_replaces_the_days_hours_entirely() -> None:
    rules = make_rules(
        date_overrides=[
            {"date": "2026-04-06", "hours": [{"start": "14:00", "end": "16:00"}]},
            # A Sunday, normally closed, opened by an override.
            {"date": "2026-04-12", "hours": [{"start": "08:00", "end": "09:00"}]},
        ]
    )
    req = make_req(rules, duration=60, interval=60)
    assert local_starts(slots(req, *day_window(MONDAY))) == [
        "2026-04-06 14:00",
        "2026-04-06 15:00",
    ]
    assert local_starts(slots(req, *day_window(SUNDAY))) == ["2026-04-12 08:00"]
    # The weekday hours no longer apply on the overridden Monday.
    assert check(req, at("2026-04-06 09:00"), at("2026-04-06 10:00")) == "outside_working_hours"
    assert len(slots(req, *day_window(TUESDAY))) == 8


def test_two_overrides_for_one_date_add_up() -> None:
    rules = make_rules(
        date_overrides=[
            {"date": "2026-04-06", "hours": [{"start": "09:00", "end": "10:00"}]},
            {"date": "2026-04-06", "hours": [{"start": "15:00", "end": "16:00"}]},
        ]
    )
    found = slots(make_req(rules, duration=60, interval=60), *day_window(MONDAY))
    assert local_starts(found) == ["2026-04-06 09:00", "2026-04-06 15:00"]


def test_hours_are_wall_clock_in_the_business_zone() -> None:
    # 09:00-11:00 in Kolkata (UTC+05:30) is 03:30-05:30 UTC.
    req = make_req(make_rules([(["mon"], "09:00", "11:00")]), tz="Asia/Kolkata", duration=60)
    found = slots(req, z("2026-04-05T00:00"), z("2026-04-07T00:00"))
    assert utc_starts(found)[0] == "2026-04-06T03:30"
    assert utc_starts(found)[-1] == "2026-04-06T04:30"
    assert len(found) == 5  # 15-minute default grid: 09:00 .. 10:00 local


def test_range_running_to_midnight() -> None:
    req = make_req(make_rules([(["mon"], "22:00", "24:00")]), duration=60, interval=60)
    found = slots(req, *day_window(MONDAY, "UTC"), limit=10)
    assert utc_starts(found) == ["2026-04-06T22:00", "2026-04-06T23:00"]
    assert found[-1].end == z("2026-04-07T00:00")


# --- grid -------------------------------------------------------------------------------------


def test_slot_grid_and_off_grid() -> None:
    req = make_req(make_rules([(["mon"], "09:00", "10:00")]), duration=30, interval=20)
    found = slots(req, *day_window(MONDAY))
    # 09:40 would end 10:10, after the range.
    assert local_starts(found) == ["2026-04-06 09:00", "2026-04-06 09:20"]
    assert check(req, at("2026-04-06 09:20"), at("2026-04-06 09:50")) is None
    assert check(req, at("2026-04-06 09:10"), at("2026-04-06 09:40")) == "off_grid"
    seconds_off = at("2026-04-06 09:20") + timedelta(seconds=1)
    assert check(req, seconds_off, seconds_off + timedelta(minutes=30)) == "off_grid"


def test_default_interval_is_resolved_by_the_caller() -> None:
    rules = make_rules([(["mon"], "09:00", "10:00")])
    assert rules.slot_interval_for(10) == 10
    found = slots(make_req(rules, duration=10), *day_window(MONDAY))
    assert len(found) == 6


# --- notice and advance -----------------------------------------------------------------------


def test_min_notice() -> None:
    rules = make_rules(min_notice_minutes=60)
    req = make_req(rules, duration=30, interval=30, now=at("2026-04-06 09:20"))
    found = slots(req, *day_window(MONDAY))
    assert local_starts(found)[0] == "2026-04-06 10:30"  # earliest start 10:20
    assert check(req, at("2026-04-06 10:00"), at("2026-04-06 10:30")) == "too_soon"
    assert check(req, at("2026-04-06 10:30"), at("2026-04-06 11:00")) is None


def test_start_exactly_at_the_notice_limit_is_allowed() -> None:
    req = make_req(make_rules(min_notice_minutes=40), duration=30, now=at("2026-04-06 09:20"))
    assert local_starts(slots(req, *day_window(MONDAY)))[0] == "2026-04-06 10:00"


def test_never_in_the_past() -> None:
    req = make_req(duration=30, interval=30, now=at("2026-04-06 10:10"))
    assert local_starts(slots(req, *day_window(MONDAY)))[0] == "2026-04-06 10:30"
    assert check(req, at("2026-04-06 10:00"), at("2026-04-06 10:30")) == "too_soon"


def test_max_advance() -> None:
    rules = make_rules(max_advance_days=1)
    early = make_req(rules, duration=60, interval=60, now=at("2026-04-06 08:00"))
    found = slots(early, at("2026-04-06 00:00"), at("2026-04-09 00:00"))
    # Latest start Tuesday 08:00, before Tuesday's hours open.
    assert {s.start.date() for s in found} == {MONDAY}
    assert check(early, at("2026-04-07 09:00"), at("2026-04-07 10:00")) == "too_far"

    later = make_req(rules, duration=60, interval=60, now=at("2026-04-06 09:00"))
    found = slots(later, at("2026-04-06 00:00"), at("2026-04-09 00:00"))
    # The bound is inclusive: Tuesday 09:00 is exactly now + 1 day.
    assert local_starts(found)[-1] == "2026-04-07 09:00"
    assert check(later, at("2026-04-07 09:00"), at("2026-04-07 10:00")) is None


def test_bookable_bounds() -> None:
    req = make_req(make_rules(min_notice_minutes=90, max_advance_days=2), now=z("2026-04-06T09:00"))
    assert bookable_bounds(req) == (z("2026-04-06T10:30"), z("2026-04-08T09:00"))


# --- blockers and buffers ---------------------------------------------------------------------


def test_back_to_back_with_zero_buffers_is_fine() -> None:
    req = make_req(make_rules([(["mon"], "09:00", "13:00")]), duration=60, interval=60)
    booking = Blocker(at("2026-04-06 10:00"), at("2026-04-06 11:00"), "booking")
    found = slots(req, *day_window(MONDAY), blockers=[booking])
    assert local_starts(found) == ["2026-04-06 09:00", "2026-04-06 11:00", "2026-04-06 12:00"]


@pytest.mark.parametrize(
    (
        "rules_buffer",
        "class_before",
        "class_after",
        "extra",
        "own_before",
        "own_after",
        "last",
        "first",
    ),
    [
        # Nothing: back to back on both sides of the 10:00-11:00 booking.
        (0, 0, 0, 0, 0, 0, "09:30", "11:00"),
        # The business buffer is kept on both sides.
        (10, 0, 0, 0, 0, 0, "09:20", "11:10"),
        # The new meeting's class: 5 min before it (after the booking), 15 after it.
        (0, 5, 15, 0, 0, 0, "09:15", "11:05"),
        # A per-query extra on both sides.
        (0, 0, 0, 20, 0, 0, "09:10", "11:20"),
        # The booking's own class buffers.
        (0, 0, 0, 0, 15, 25, "09:15", "11:25"),
        # Everything adds up: before the booking 10+15+5+15=45, after it 25+10+5+5=45.
        (10, 5, 15, 5, 15, 25, "08:45", "11:45"),
    ],
)
def test_buffers_from_rules_class_query_and_the_blocker(
    rules_buffer: int,
    class_before: int,
    class_after: int,
    extra: int,
    own_before: int,
    own_after: int,
    last: str,
    first: str,
) -> None:
    # The caller sums the new meeting's side (services/scheduling.py does this).
    req = make_req(
        make_rules([(["mon"], "08:00", "14:00")], buffer_minutes=rules_buffer),
        duration=30,
        interval=5,
        before=rules_buffer + class_before + extra,
        after=rules_buffer + class_after + extra,
    )
    booking = Blocker(
        at("2026-04-06 10:00"),
        at("2026-04-06 11:00"),
        "booking",
        buffer_before=timedelta(minutes=own_before),
        buffer_after=timedelta(minutes=own_after),
    )
    found = slots(req, *day_window(MONDAY), blockers=[booking])
    before = [s for s in found if s.start < at("2026-04-06 10:00")]
    after = [s for s in found if s.start >= at("2026-04-06 10:00")]
    assert local_starts(before[-1:]) == [f"2026-04-06 {last}"]
    assert local_starts(after[:1]) == [f"2026-04-06 {first}"]
    # Every 5-minute start outside the blocked stretch is offered.
    assert (
        len(before)
        == (at(f"2026-04-06 {last}") - at("2026-04-06 08:00")) // timedelta(minutes=5) + 1
    )
    assert (
        len(after)
        == (at("2026-04-06 13:30") - at(f"2026-04-06 {first}")) // timedelta(minutes=5) + 1
    )
    # check_slot agrees at the edges, and names the buffer just inside them.
    five = timedelta(minutes=5)
    for start in (before[-1].start, after[0].start):
        assert check(req, start, start + timedelta(minutes=30), [booking]) is None
    gap_before = rules_buffer + class_after + extra + own_before  # new meeting, then booking
    gap_after = own_after + rules_buffer + class_before + extra  # booking, then new meeting
    inside_before = "buffer" if gap_before >= 5 else "overlaps_booking"
    inside_after = "buffer" if gap_after >= 5 else "overlaps_booking"
    assert check(req, before[-1].start + five, before[-1].end + five, [booking]) == inside_before
    assert check(req, after[0].start - five, after[0].end - five, [booking]) == inside_after


def test_busy_time_and_holds_block_like_bookings() -> None:
    req = make_req(make_rules([(["mon"], "09:00", "13:00")]), duration=60, interval=60)
    blockers = [
        Blocker(at("2026-04-06 09:00"), at("2026-04-06 10:00"), "hold"),
        Blocker(at("2026-04-06 11:30"), at("2026-04-06 11:45"), "busy"),
    ]
    found = slots(req, *day_window(MONDAY), blockers=blockers)
    assert local_starts(found) == ["2026-04-06 10:00", "2026-04-06 12:00"]


def test_blockers_in_other_zones_are_compared_as_instants() -> None:
    req = make_req(make_rules([(["mon"], "09:00", "12:00")]), duration=60, interval=60)
    paris = ZoneInfo("Europe/Paris")  # UTC+2 in April
    busy = Blocker(
        datetime(2026, 4, 6, 12, 0, tzinfo=paris), datetime(2026, 4, 6, 13, 0, tzinfo=paris), "busy"
    )
    found = slots(req, *day_window(MONDAY), blockers=[busy])
    assert local_starts(found) == ["2026-04-06 09:00", "2026-04-06 11:00"]


def test_many_blockers_merge_and_leave_the_gaps() -> None:
    req = make_req(make_rules([(["mon"], "08:00", "18:00")]), duration=30, interval=15)
    blockers = [
        Blocker(at("2026-04-06 08:30"), at("2026-04-06 09:30"), "busy"),
        Blocker(at("2026-04-06 09:00"), at("2026-04-06 10:00"), "booking"),  # overlaps
        Blocker(at("2026-04-06 10:00"), at("2026-04-06 10:15"), "hold"),  # touches
        Blocker(at("2026-04-06 11:00"), at("2026-04-06 11:00"), "busy"),  # zero length
        Blocker(at("2026-04-06 12:00"), at("2026-04-06 17:00"), "busy"),
    ]
    found = slots(req, *day_window(MONDAY), blockers=blockers)
    # 10:30-11:00 ends at the zero-length blocker and 11:00 starts at it: neither overlaps it;
    # 10:45-11:15 has it strictly inside.
    assert local_starts(found) == [
        "2026-04-06 08:00",
        "2026-04-06 10:15",
        "2026-04-06 10:30",
        "2026-04-06 11:00",
        "2026-04-06 11:15",
        "2026-04-06 11:30",
        "2026-04-06 17:00",
        "2026-04-06 17:15",
        "2026-04-06 17:30",
    ]


# --- daily cap --------------------------------------------------------------------------------


def test_daily_cap() -> None:
    req = make_req(make_rules(max_meetings_per_day=2), duration=60, interval=60)
    per_day = {MONDAY: 2, TUESDAY: 1}
    found = slots(req, at("2026-04-06 00:00"), at("2026-04-08 00:00"), per_day=per_day)
    assert {s.start.date() for s in found} == {TUESDAY}
    assert check(req, at("2026-04-06 09:00"), at("2026-04-06 10:00"), per_day=per_day) == (
        "daily_limit"
    )
    assert check(req, at("2026-04-07 09:00"), at("2026-04-07 10:00"), per_day=per_day) is None


def test_no_cap_ignores_the_counts() -> None:
    req = make_req(duration=60, interval=60)
    assert len(slots(req, *day_window(MONDAY), per_day={MONDAY: 999})) == 8


def test_daily_cap_counts_the_local_date() -> None:
    # 20:00-24:00 New York on Monday is Tuesday 00:00-04:00 UTC.
    rules = make_rules([(["mon"], "20:00", "24:00")], max_meetings_per_day=1)
    req = make_req(rules, tz="America/New_York", duration=60, interval=60)
    window = day_window(MONDAY, "America/New_York")
    assert len(slots(req, *window, per_day={TUESDAY: 5})) == 4
    assert slots(req, *window, per_day={MONDAY: 1}) == []


# --- check_slot reasons and their order -------------------------------------------------------


def reason_req(**fields: Any) -> SlotRequest:
    rules = make_rules(
        [(["mon"], "09:00", "12:00"), (["mon"], "13:00", "17:00")],
        min_notice_minutes=60,
        max_advance_days=7,
        max_meetings_per_day=3,
        **fields,
    )
    return make_req(
        rules, duration=60, interval=30, now=at("2026-04-06 08:00"), before=10, after=10
    )


@pytest.mark.parametrize(
    ("start", "end", "blockers", "per_day", "reason"),
    [
        ("2026-04-06 09:30", "2026-04-06 10:30", [], {}, None),
        ("2026-04-06 08:30", "2026-04-06 09:30", [], {}, "too_soon"),
        ("2026-04-13 09:00", "2026-04-13 10:00", [], {}, "too_far"),
        ("2026-04-06 11:30", "2026-04-06 12:30", [], {}, "outside_working_hours"),
        ("2026-04-06 12:00", "2026-04-06 13:00", [], {}, "outside_working_hours"),
        ("2026-04-07 09:00", "2026-04-07 10:00", [], {}, "outside_working_hours"),  # Tuesday
        ("2026-04-06 09:15", "2026-04-06 10:15", [], {}, "off_grid"),
        (
            "2026-04-06 10:00",
            "2026-04-06 11:00",
            [("10:30", "10:45", "booking")],
            {},
            "overlaps_booking",
        ),
        ("2026-04-06 10:00", "2026-04-06 11:00", [("09:00", "10:01", "hold")], {}, "overlaps_hold"),
        (
            "2026-04-06 10:00",
            "2026-04-06 11:00",
            [("10:59", "12:00", "busy")],
            {},
            "overlaps_busy_time",
        ),
        ("2026-04-06 10:00", "2026-04-06 11:00", [("11:00", "11:30", "booking")], {}, "buffer"),
        ("2026-04-06 10:00", "2026-04-06 11:00", [("09:00", "09:55", "busy")], {}, "buffer"),
        ("2026-04-06 10:00", "2026-04-06 11:00", [("09:00", "09:50", "busy")], {}, None),
        ("2026-04-06 10:00", "2026-04-06 11:00", [], {MONDAY: 3}, "daily_limit"),
        ("2026-04-06 10:00", "2026-04-06 11:00", [], {MONDAY: 2}, None),
        # Order: raw overlaps by kind, booking first, then hold, then busy time.
        (
            "2026-04-06 10:00",
            "2026-04-06 11:00",
            [("10:00", "10:30", "busy"), ("10:30", "11:00", "hold"), ("09:00", "12:00", "booking")],
            {},
            "overlaps_booking",
        ),
        (
            "2026-04-06 10:00",
            "2026-04-06 11:00",
            [("10:00", "10:30", "busy"), ("10:30", "11:00", "hold"), ("11:00", "12:00", "booking")],
            {},
            "overlaps_hold",
        ),
        # A raw overlap wins over a mere buffer conflict with an earlier blocker.
        (
            "2026-04-06 10:00",
            "2026-04-06 11:00",
            [("09:00", "09:55", "booking"), ("10:30", "10:40", "busy")],
            {},
            "overlaps_busy_time",
        ),
        # Earlier checks win over later ones.
        (
            "2026-04-06 08:45",
            "2026-04-06 09:45",
            [("08:00", "12:00", "booking")],
            {MONDAY: 9},
            "too_soon",
        ),
        ("2026-04-06 09:15", "2026-04-06 10:15", [("08:00", "12:00", "booking")], {}, "off_grid"),
        (
            "2026-04-06 10:00",
            "2026-04-06 11:00",
            [("11:05", "11:30", "hold")],
            {MONDAY: 3},
            "buffer",
        ),
    ],
)
def test_check_slot_reasons(
    start: str,
    end: str,
    blockers: list[tuple[str, str, BlockerKind]],
    per_day: dict[date, int],
    reason: str | None,
) -> None:
    req = reason_req()
    blocks = [Blocker(at(f"2026-04-06 {a}"), at(f"2026-04-06 {b}"), k) for a, b, k in blockers]
    assert check(req, at(start), at(end), blocks, per_day) == reason
    # For grid candidates of the request's duration, compute_slots says the same.
    if at(end) - at(start) == req.duration:
        listed = slots(req, z("2026-04-01T00:00"), z("2026-04-20T00:00"), blocks, per_day)
        assert (Interval(at(start), at(end)) in listed) == (reason is None)


def test_check_slot_takes_any_end() -> None:
    req = reason_req()  # 60-minute request, but a booking may name its own end
    assert check(req, at("2026-04-06 09:00"), at("2026-04-06 11:30")) is None
    assert check(req, at("2026-04-06 09:00"), at("2026-04-06 12:30")) == "outside_working_hours"


def test_check_slot_rejects_an_empty_interval() -> None:
    with pytest.raises(ValueError, match="after start"):
        check(reason_req(), at("2026-04-06 10:00"), at("2026-04-06 10:00"))


def test_naive_datetimes_are_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        make_req(now=datetime(2026, 4, 6, 9))
    with pytest.raises(ValueError, match="timezone-aware"):
        slots(make_req(), datetime(2026, 4, 6), datetime(2026, 4, 7))


def test_invalid_requests_and_blockers_are_rejected() -> None:
    with pytest.raises(ValueError, match="duration"):
        make_req(duration=0)
    with pytest.raises(ValueError, match="negative"):
        make_req(before=-5)
    with pytest.raises(ValueError, match="before its start"):
        Blocker(z("2026-04-06T10:00"), z("2026-04-06T09:00"), "busy")
    with pytest.raises(ValueError, match="negative"):
        Blocker(z("2026-04-06T09:00"), z("2026-04-06T10:00"), "busy", buffer_after=-timedelta(1))


# --- limit and window -------------------------------------------------------------------------


def test_limit() -> None:
    req = make_req(duration=60, interval=60)
    window = (at("2026-04-06 00:00"), at("2026-04-11 00:00"))
    everything = slots(req, *window)
    assert len(everything) == 40
    assert slots(req, *window, limit=3) == everything[:3]
    assert slots(req, *window, limit=9) == everything[:9]  # spills into the second day
    assert slots(req, *window, limit=0) == []


def test_window_clipping() -> None:
    req = make_req(duration=60, interval=30)
    found = slots(req, at("2026-04-06 10:15"), at("2026-04-06 12:00"))
    # Fully inside the window: 10:30-11:30 and 11:00-12:00 (ending at the window end).
    assert local_starts(found) == ["2026-04-06 10:30", "2026-04-06 11:00"]
    assert slots(req, at("2026-04-06 10:15"), at("2026-04-06 11:14")) == []
    assert slots(req, at("2026-04-06 12:00"), at("2026-04-06 10:00")) == []


# --- choose_non_overlapping ---------------------------------------------------------------------


def test_choose_non_overlapping_is_earliest_first_greedy() -> None:
    req = make_req(duration=60, interval=30)
    found = slots(req, *day_window(MONDAY))
    chosen = choose_non_overlapping(list(reversed(found)), 3)
    assert local_starts(chosen) == ["2026-04-06 09:00", "2026-04-06 10:00", "2026-04-06 11:00"]
    assert choose_non_overlapping(found, 0) == []
    assert len(choose_non_overlapping(found, 100)) == 8
    assert choose_non_overlapping([], 2) == []


# --- open_ranges ------------------------------------------------------------------------------


def test_open_ranges_lists_whole_ranges_of_the_days_touched() -> None:
    rules = make_rules(
        [(WEEKDAYS_ONLY, "09:00", "12:00"), (WEEKDAYS_ONLY, "13:00", "17:00")],
        date_overrides=[{"date": "2026-04-07", "hours": [{"start": "10:00", "end": "11:00"}]}],
    )
    req = make_req(rules, tz="America/New_York")
    ranges = open_ranges(
        req, at("2026-04-06 16:00", "America/New_York"), at("2026-04-08 09:00", "America/New_York")
    )
    assert [(r.start, r.end) for r in ranges] == [
        (z("2026-04-06T13:00"), z("2026-04-06T16:00")),
        (z("2026-04-06T17:00"), z("2026-04-06T21:00")),
        (z("2026-04-07T14:00"), z("2026-04-07T15:00")),
        (z("2026-04-08T13:00"), z("2026-04-08T16:00")),
        (z("2026-04-08T17:00"), z("2026-04-08T21:00")),
    ]
    # The end is exclusive: a window ending at local midnight does not touch the next day.
    assert len(open_ranges(req, *day_window(MONDAY, "America/New_York"))) == 2
    assert open_ranges(req, z("2026-04-06T12:00"), z("2026-04-06T12:00")) == []


# --- DST: every count worked out by hand --------------------------------------------------------

EARLY_HOURS = [(list(WEEKDAYS), "00:00", "06:00")]


@pytest.mark.parametrize(
    ("tz", "day", "minutes", "expected"),
    [
        # New York, spring forward 2026-03-08: 02:00 EST -> 03:00 EDT (07:00Z). Wall times
        # 00:00..05:00; 02:00 does not exist and is skipped -> 5 slots. 00:00 EST = 05:00Z,
        # 01:00 EST = 06:00Z, then 03:00/04:00/05:00 EDT = 07/08/09Z (05:00 ends at 06:00 EDT,
        # the range end 10:00Z). Five real hours, tiled exactly.
        (
            "America/New_York",
            date(2026, 3, 8),
            60,
            [
                "2026-03-08T05:00",
                "2026-03-08T06:00",
                "2026-03-08T07:00",
                "2026-03-08T08:00",
                "2026-03-08T09:00",
            ],
        ),
        # New York, fall back 2026-11-01: 02:00 EDT -> 01:00 EST (06:00Z). The range runs from
        # 00:00 EDT (04Z) to 06:00 EST (11Z), seven real hours, and 01:00 occurs twice in it ->
        # 7 slots: 00:00 EDT = 04Z, 01:00 EDT = 05Z, 01:00 EST = 06Z, 02:00..05:00 EST = 07..10Z.
        (
            "America/New_York",
            date(2026, 11, 1),
            60,
            [
                "2026-11-01T04:00",
                "2026-11-01T05:00",
                "2026-11-01T06:00",
                "2026-11-01T07:00",
                "2026-11-01T08:00",
                "2026-11-01T09:00",
                "2026-11-01T10:00",
            ],
        ),
        # London, spring forward 2026-03-29: 01:00 GMT -> 02:00 BST (01:00Z). 01:00 is skipped
        # -> 5 slots: 00:00 GMT = 00Z, 02:00..05:00 BST = 01..04Z (range ends 06:00 BST = 05Z).
        (
            "Europe/London",
            date(2026, 3, 29),
            60,
            [
                "2026-03-29T00:00",
                "2026-03-29T01:00",
                "2026-03-29T02:00",
                "2026-03-29T03:00",
                "2026-03-29T04:00",
            ],
        ),
        # London, fall back 2026-10-25: 02:00 BST -> 01:00 GMT (01:00Z). Seven real hours, 01:00
        # twice -> 7 slots: 00:00 BST = 23Z the day before, 01:00 BST = 00Z, 01:00 GMT = 01Z,
        # 02:00..05:00 GMT = 02..05Z.
        (
            "Europe/London",
            date(2026, 10, 25),
            60,
            [
                "2026-10-24T23:00",
                "2026-10-25T00:00",
                "2026-10-25T01:00",
                "2026-10-25T02:00",
                "2026-10-25T03:00",
                "2026-10-25T04:00",
                "2026-10-25T05:00",
            ],
        ),
        # Lord Howe, 30-minute fall back 2026-04-05: 02:00 +11 -> 01:30 +10:30 (15:00Z on the
        # 4th). The range runs from 00:00 +11 (13:00Z) to 06:00 +10:30 (19:30Z), 6.5 real hours,
        # and 01:30 occurs twice -> 13 slots: 13:00Z .. 14:30Z at +11 (01:30 +11 = 14:30Z), then
        # 01:30 +10:30 = 15:00Z .. 05:30 +10:30 = 19:00Z.
        (
            "Australia/Lord_Howe",
            date(2026, 4, 5),
            30,
            [
                "2026-04-04T13:00",
                "2026-04-04T13:30",
                "2026-04-04T14:00",
                "2026-04-04T14:30",
                "2026-04-04T15:00",
                "2026-04-04T15:30",
                "2026-04-04T16:00",
                "2026-04-04T16:30",
                "2026-04-04T17:00",
                "2026-04-04T17:30",
                "2026-04-04T18:00",
                "2026-04-04T18:30",
                "2026-04-04T19:00",
            ],
        ),
        # Lord Howe, 30-minute spring forward 2026-10-04: 02:00 +10:30 -> 02:30 +11 (15:30Z on
        # the 3rd). Of 12 wall times 02:00 does not exist -> 11 slots tiling 5.5 real hours:
        # 00:00 +10:30 = 13:30Z .. 01:30 = 15:00Z, then 02:30 +11 = 15:30Z .. 05:30 = 18:30Z.
        (
            "Australia/Lord_Howe",
            date(2026, 10, 4),
            30,
            [
                "2026-10-03T13:30",
                "2026-10-03T14:00",
                "2026-10-03T14:30",
                "2026-10-03T15:00",
                "2026-10-03T15:30",
                "2026-10-03T16:00",
                "2026-10-03T16:30",
                "2026-10-03T17:00",
                "2026-10-03T17:30",
                "2026-10-03T18:00",
                "2026-10-03T18:30",
            ],
        ),
        # Kolkata has no DST (control): 6 slots, 00:00 IST = 18:30Z the day before, hourly.
        (
            "Asia/Kolkata",
            date(2026, 3, 8),
            60,
            [
                "2026-03-07T18:30",
                "2026-03-07T19:30",
                "2026-03-07T20:30",
                "2026-03-07T21:30",
                "2026-03-07T22:30",
                "2026-03-07T23:30",
            ],
        ),
    ],
)
def test_dst_days(tz: str, day: date, minutes: int, expected: list[str]) -> None:
    req = make_req(make_rules(EARLY_HOURS), tz=tz, duration=minutes, interval=minutes)
    # A window of several days around, so only the rules decide what is listed that day.
    found = slots(
        req, at(f"{day - timedelta(days=1)} 12:00", tz), at(f"{day + timedelta(days=1)} 12:00", tz)
    )
    on_day = [s for s in found if s.start.astimezone(ZoneInfo(tz)).date() == day]
    assert utc_starts(on_day) == expected
    assert all(s.end - s.start == timedelta(minutes=minutes) for s in on_day)
    for s in on_day:
        assert check(req, s.start, s.end) is None


def test_dst_repeated_hour_both_occurrences_are_bookable() -> None:
    req = make_req(make_rules(EARLY_HOURS), tz="America/New_York", duration=60, interval=60)
    # 05:00Z = 01:00 EDT and 06:00Z = 01:00 EST on 2026-11-01, the two 01:00s of the day.
    assert check(req, z("2026-11-01T05:00"), z("2026-11-01T06:00")) is None
    assert check(req, z("2026-11-01T06:00"), z("2026-11-01T07:00")) is None
    # Off the wall-clock grid in either pass: 01:30 EDT, 01:30 EST.
    assert check(req, z("2026-11-01T05:30"), z("2026-11-01T06:30")) == "off_grid"
    assert check(req, z("2026-11-01T06:30"), z("2026-11-01T07:30")) == "off_grid"


def _new_york_fall_back_2027() -> SlotRequest:
    rules = make_rules([(list(WEEKDAYS), "00:00", "04:00")])
    return make_req(rules, tz="America/New_York", duration=30, interval=30)


def test_dst_fall_back_night_lists_both_passes_of_the_repeated_hour() -> None:
    # New York 2027-11-07: 02:00 EDT -> 01:00 EST at 06:00Z. "00:00-04:00" runs from 00:00 EDT
    # (04:00Z) to 04:00 EST (09:00Z): five real hours, ten half-hour slots, both 01:00s and
    # both 01:30s among them.
    req = _new_york_fall_back_2027()
    found = slots(req, *day_window(date(2027, 11, 7), "America/New_York"))
    assert utc_starts(found) == [
        f"2027-11-07T{h:02d}:{m:02d}" for h in range(4, 9) for m in (0, 30)
    ]
    assert [s.start.astimezone(ZoneInfo("America/New_York")).isoformat() for s in found][2:6] == [
        "2027-11-07T01:00:00-04:00",
        "2027-11-07T01:30:00-04:00",
        "2027-11-07T01:00:00-05:00",
        "2027-11-07T01:30:00-05:00",
    ]
    assert open_ranges(req, *day_window(date(2027, 11, 7), "America/New_York")) == [
        Interval(z("2027-11-07T04:00"), z("2027-11-07T09:00"))
    ]


def test_dst_fall_back_direct_booking_of_the_second_pass_is_accepted() -> None:
    req = _new_york_fall_back_2027()
    # 06:00Z is 01:00 EST, the second 01:00 of the night.
    assert check(req, z("2027-11-07T06:00"), z("2027-11-07T06:30")) is None
    # A booking may span the change: 01:30 EDT for an hour ends at 01:30 EST.
    assert check(req, z("2027-11-07T05:30"), z("2027-11-07T06:30")) is None
    assert check(req, z("2027-11-07T06:10"), z("2027-11-07T06:40")) == "off_grid"
    assert check(req, z("2027-11-07T08:30"), z("2027-11-07T09:30")) == "outside_working_hours"


def test_dst_fall_back_range_starting_in_the_repeated_hour_covers_the_second_pass() -> None:
    # "01:30-04:00" opens at its first occurrence, 01:30 EDT (05:30Z), and covers the real time
    # up to 04:00 EST (09:00Z); 01:00 EST (06:00Z) is real time inside it with a wall reading on
    # the grid (01:30 - 30 min), so it is offered too: 3.5 hours, 7 slots.
    rules = make_rules([(list(WEEKDAYS), "01:30", "04:00")])
    req = make_req(rules, tz="America/New_York", duration=30, interval=30)
    found = slots(req, *day_window(date(2027, 11, 7), "America/New_York"))
    assert utc_starts(found) == [
        "2027-11-07T05:30",
        "2027-11-07T06:00",
        "2027-11-07T06:30",
        "2027-11-07T07:00",
        "2027-11-07T07:30",
        "2027-11-07T08:00",
        "2027-11-07T08:30",
    ]


def test_dst_fall_back_range_ending_in_the_repeated_hour_ends_at_its_first_pass() -> None:
    # "00:00-01:30": the ambiguous end is taken at its first occurrence, 01:30 EDT (05:30Z).
    rules = make_rules([(list(WEEKDAYS), "00:00", "01:30")])
    req = make_req(rules, tz="America/New_York", duration=30, interval=30)
    found = slots(req, *day_window(date(2027, 11, 7), "America/New_York"))
    assert utc_starts(found) == ["2027-11-07T04:00", "2027-11-07T04:30", "2027-11-07T05:00"]


@pytest.mark.parametrize(
    ("tz", "day", "start", "end", "expected"),
    [
        # Chatham, fall back 2027-04-04: 03:45 +13:45 -> 02:45 +12:45 (14:00Z on the 3rd).
        # "02:00-05:00" runs 02:00 +13:45 (12:15Z) .. 05:00 +12:45 (16:15Z): four hours.
        ("Pacific/Chatham", date(2027, 4, 4), "02:00", "05:00", ("2027-04-03T12:15", 8)),
        # Havana, fall back at midnight 2027-11-07: 01:00 CDT -> 00:00 CST (05:00Z). "00:00" is
        # ambiguous: taken at its first occurrence, 00:00 CDT (04:00Z); "00:00-03:00" is then
        # four real hours, both passes of 00:00-01:00 inside.
        ("America/Havana", date(2027, 11, 7), "00:00", "03:00", ("2027-11-07T04:00", 8)),
        # Cairo, fall back at the end of the day 2027-10-28: 24:00 EEST -> 23:00 EET (21:00Z).
        # "21:00-24:00" runs 21:00 EEST (18:00Z) .. 24:00 EET (22:00Z): four hours.
        ("Africa/Cairo", date(2027, 10, 28), "21:00", "24:00", ("2027-10-28T18:00", 8)),
        # Lord Howe, 30-minute fall back 2027-04-04: 02:00 +11 -> 01:30 +10:30 (15:00Z on the
        # 3rd). "00:00-04:00" runs 13:00Z .. 17:30Z: 4.5 hours.
        ("Australia/Lord_Howe", date(2027, 4, 4), "00:00", "04:00", ("2027-04-03T13:00", 9)),
    ],
)
def test_dst_fall_back_covers_the_real_time_in_other_zones(
    tz: str, day: date, start: str, end: str, expected: tuple[str, int]
) -> None:
    # Half-hour slots on a half-hour grid tile the range's real time exactly.
    first, count = expected
    rules = make_rules([(list(WEEKDAYS), start, end)])
    req = make_req(rules, tz=tz, duration=30, interval=30)
    window = (
        at(f"{day} 00:00", tz) - timedelta(hours=3),
        at(f"{day} 00:00", tz) + timedelta(days=1, hours=3),
    )
    found = [s for s in slots(req, *window) if s.start.astimezone(ZoneInfo(tz)).date() == day]
    t0 = z(first)
    assert [s.start for s in found] == [t0 + k * timedelta(minutes=30) for k in range(count)]
    for s in found:
        assert check(req, s.start, s.end) is None


def test_dst_finer_grid_across_the_gap() -> None:
    # New York spring forward, 60-minute slots on a 30-minute grid: wall times 00:00..05:30,
    # minus 02:00 and 02:30 (nonexistent), minus 05:30 (would end 06:30 EDT). 01:30 EST (06:30Z)
    # lasts one real hour and ends 07:30Z = 03:30 EDT, inside the range -> 9 slots.
    req = make_req(make_rules(EARLY_HOURS), tz="America/New_York", duration=60, interval=30)
    found = slots(req, *day_window(date(2026, 3, 8), "America/New_York"))
    assert local_starts(found, "America/New_York") == [
        "2026-03-08 00:00",
        "2026-03-08 00:30",
        "2026-03-08 01:00",
        "2026-03-08 01:30",
        "2026-03-08 03:00",
        "2026-03-08 03:30",
        "2026-03-08 04:00",
        "2026-03-08 04:30",
        "2026-03-08 05:00",
    ]
    assert found[3].end == z("2026-03-08T07:30")


def test_dst_fall_back_slot_spans_the_repeated_hour() -> None:
    # 90-minute slots every 90 minutes from 00:00 EDT on 2026-11-01: 00:00 EDT (04Z, ends 05:30Z),
    # 01:30 EDT (05:30Z, ends 07:00Z = 02:00 EST), 01:30 EST (06:30Z, the second 01:30; ends
    # 08:00Z), 03:00 EST (08Z, ends 09:30Z) and 04:30 EST (09:30Z, ends 11Z = 06:00 EST, the
    # range end). The two 01:30s overlap: they are alternatives, as any two listed slots are.
    req = make_req(make_rules(EARLY_HOURS), tz="America/New_York", duration=90, interval=90)
    found = slots(req, *day_window(date(2026, 11, 1), "America/New_York"))
    assert utc_starts(found) == [
        "2026-11-01T04:00",
        "2026-11-01T05:30",
        "2026-11-01T06:30",
        "2026-11-01T08:00",
        "2026-11-01T09:30",
    ]


def test_dst_fall_back_across_midnight_lists_the_repeated_times_of_the_previous_date() -> None:
    # Newfoundland went back from 00:01 NDT to 23:01 NST (02:31Z) on Sunday 1987-10-25. The
    # range "00:00-01:00" that Sunday starts at the first 00:00 (02:30Z) and ends at 01:00
    # NST (04:30Z): two real hours, half of them reading 23:xx of the Saturday. 30-minute
    # slots on the 00:00 grid: 00:00 NDT, then 23:30 NST (Saturday's date), 00:00 and 00:30 NST.
    rules = make_rules([(list(WEEKDAYS), "00:00", "01:00")])
    req = make_req(
        rules, tz="America/St_Johns", duration=30, interval=30, now=z("1987-01-01T00:00")
    )
    found = slots(req, z("1987-10-25T02:00"), z("1987-10-25T06:00"))
    assert utc_starts(found) == [
        "1987-10-25T02:30",
        "1987-10-25T03:00",
        "1987-10-25T03:30",
        "1987-10-25T04:00",
    ]
    assert local_starts(found, "America/St_Johns")[1] == "1987-10-24 23:30"


def test_dst_range_start_in_the_gap_opens_after_the_gap() -> None:
    # "02:30-05:00" on the New York spring-forward day opens at 03:00 EDT (07:00Z). The grid is
    # still anchored at 02:30 wall time: 02:30 is skipped, then 03:00, 03:30, 04:00, 04:30.
    rules = make_rules([(list(WEEKDAYS), "02:30", "05:00")])
    req = make_req(rules, tz="America/New_York", duration=30, interval=30)
    day = date(2026, 3, 8)
    assert utc_starts(slots(req, *day_window(day, "America/New_York"))) == [
        "2026-03-08T07:00",
        "2026-03-08T07:30",
        "2026-03-08T08:00",
        "2026-03-08T08:30",
    ]
    assert open_ranges(req, *day_window(day, "America/New_York")) == [
        Interval(z("2026-03-08T07:00"), z("2026-03-08T09:00"))
    ]


def test_dst_range_end_in_the_gap_closes_when_the_gap_ends() -> None:
    # "00:00-02:30" closes at the first instant after the gap, 03:00 EDT = 07:00Z: two real hours.
    # 30-minute grid, 60-minute slots: 00:00, 00:30, 01:00 EST fit (01:00 ends 07:00Z); 01:30 EST
    # would end 07:30Z; 02:00 does not exist.
    rules = make_rules([(list(WEEKDAYS), "00:00", "02:30")])
    req = make_req(rules, tz="America/New_York", duration=60, interval=30)
    day = date(2026, 3, 8)
    assert utc_starts(slots(req, *day_window(day, "America/New_York"))) == [
        "2026-03-08T05:00",
        "2026-03-08T05:30",
        "2026-03-08T06:00",
    ]
    assert open_ranges(req, *day_window(day, "America/New_York")) == [
        Interval(z("2026-03-08T05:00"), z("2026-03-08T07:00"))
    ]
    assert check(req, z("2026-03-08T06:30"), z("2026-03-08T07:30")) == "outside_working_hours"


def test_dst_range_wholly_inside_the_gap_is_closed() -> None:
    rules = make_rules([(list(WEEKDAYS), "02:00", "02:59")])
    req = make_req(rules, tz="America/New_York", duration=15, interval=15)
    window = day_window(date(2026, 3, 8), "America/New_York")
    assert open_ranges(req, *window) == []
    assert slots(req, *window) == []
    # The next day the range is open as usual.
    assert len(slots(req, *day_window(date(2026, 3, 9), "America/New_York"))) == 3


def test_dst_gap_in_lord_howe_half_hour_boundary() -> None:
    # Lord Howe 2026-10-04: 02:00-02:30 does not exist. A range "02:15-03:00" opens at 02:30
    # +11 (15:30Z) and lasts 30 real minutes; its 15-minute grid from 02:15 gives 02:30, 02:45.
    rules = make_rules([(list(WEEKDAYS), "02:15", "03:00")])
    req = make_req(rules, tz="Australia/Lord_Howe", duration=15, interval=15)
    found = slots(req, *day_window(date(2026, 10, 4), "Australia/Lord_Howe"))
    assert utc_starts(found) == ["2026-10-03T15:30", "2026-10-03T15:45"]
