"""Hypothesis properties of the slot engine, in zones with and without DST (incl. 30-minute DST).

The checks here are written independently of the engine: working hours are re-derived from the
rules and compared in local wall time, conflicts use the raw buffer formula on every pair, and a
deliberately naive reference walks every real minute of every range and reads its wall clock.
A last property takes any zone of the tz database and a date around one of its transitions and
checks that the free time listed is exactly the real time of the ranges minus what is blocked.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from slotguard.domain.availability import (
    Blocker,
    BlockerKind,
    Interval,
    SlotRequest,
    check_slot,
    choose_non_overlapping,
    compute_slots,
)
from slotguard.domain.rules import WEEKDAYS, EffectiveRules, minutes_of

# The local dates of every 2026 offset change of the zones tested, so DST days come up often.
TRANSITION_DAYS = {
    "America/New_York": [date(2026, 3, 8), date(2026, 11, 1)],
    "Europe/London": [date(2026, 3, 29), date(2026, 10, 25)],
    "Australia/Lord_Howe": [date(2026, 4, 5), date(2026, 10, 4)],
    # 45-minute offsets, changes at 02:45/03:45 wall time.
    "Pacific/Chatham": [date(2026, 4, 5), date(2026, 9, 27)],
    # Changes at midnight: Havana 00:00 -> 01:00 and 01:00 -> 00:00; Cairo 00:00 -> 01:00 and
    # 24:00 -> 23:00 (the repeated hour ends the day).
    "America/Havana": [date(2026, 3, 8), date(2026, 11, 1)],
    "Africa/Cairo": [date(2026, 4, 24), date(2026, 10, 29)],
    "Asia/Kolkata": [],
    "UTC": [],
}
ZONES = list(TRANSITION_DAYS)
FIVE = timedelta(minutes=5)
TICK = timedelta(microseconds=1)

PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# The reference comparisons are the strongest checks: give them more examples.
REFERENCE_PROPS = settings(PROPS, max_examples=300)


@dataclass(frozen=True)
class Case:
    req: SlotRequest
    window_start: datetime
    window_end: datetime
    blockers: list[Blocker]
    per_day: dict[date, int]

    @property
    def tz(self) -> ZoneInfo:
        return self.req.tz

    def slots(self, limit: int = 100_000) -> list[Interval]:
        return compute_slots(
            self.req,
            window_start=self.window_start,
            window_end=self.window_end,
            blockers=self.blockers,
            bookings_per_day=self.per_day,
            limit=limit,
        )

    def check(self, start: datetime, end: datetime) -> str | None:
        return check_slot(
            self.req, start=start, end=end, blockers=self.blockers, bookings_per_day=self.per_day
        )


minutes5 = st.integers(0, 12).map(lambda k: 5 * k)
buffers = st.sampled_from([0, 0, 5, 10, 25]).map(lambda m: timedelta(minutes=m))


@st.composite
def spans(draw: st.DrawFn) -> tuple[str, str]:
    start = draw(st.integers(0, 286)) * 5
    end = min(1440, start + draw(st.sampled_from([5, 60, 180, 480, 1440])) + draw(minutes5))
    return _hhmm(start), _hhmm(end)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


# Early hours are where the DST changes of these zones happen (Cairo's fall back excepted).
# Boundaries inside the gaps and the repeated times too: New York 02:00-03:00, London
# 01:00-02:00, Lord Howe 02:00-02:30, Chatham 02:45-03:45, Havana 00:00-01:00 (local wall
# time, on their spring-forward days; fall back repeats the hour before those).
early_spans = st.tuples(
    st.sampled_from(["00:00", "00:30", "01:00", "01:15", "01:45", "02:00", "02:15", "03:00"]),
    st.sampled_from(["01:30", "02:15", "02:30", "02:45", "03:00", "04:00", "06:00", "24:00"]),
).filter(lambda span: span[0] < span[1])
late_spans = st.tuples(
    st.sampled_from(["20:00", "22:00", "23:00", "23:30"]), st.sampled_from(["23:30", "24:00"])
).filter(lambda span: span[0] < span[1])
half_hour = timedelta(minutes=30)
KINDS: list[BlockerKind] = ["booking", "hold", "busy"]


@st.composite
def cases(draw: st.DrawFn, dst_day: bool = False) -> Case:
    """A random business, request, window and blockers.

    `dst_day`: a zone with DST, a window over one of its transition days, early-morning hours,
    and lenient notice and advance, so that slots on both sides of a change are common.
    """
    if dst_day:
        zone = draw(st.sampled_from([name for name, days in TRANSITION_DAYS.items() if days]))
        base = draw(st.sampled_from(TRANSITION_DAYS[zone]))
        hour_spans = st.one_of(early_spans, early_spans, late_spans, spans())
    else:
        zone = draw(st.sampled_from(ZONES))
        any_day = st.dates(min_value=date(2026, 1, 1), max_value=date(2026, 12, 31))
        days = TRANSITION_DAYS[zone]
        base = draw(st.sampled_from(days) | any_day if days else any_day)
        hour_spans = st.one_of(spans(), spans(), early_spans, late_spans)
    tz = ZoneInfo(zone)
    working_hours = [
        {"days": days, "start": s, "end": e}
        for days, (s, e) in draw(
            st.lists(
                st.tuples(
                    st.just(list(WEEKDAYS))
                    | st.lists(st.sampled_from(WEEKDAYS), min_size=1, max_size=7, unique=True),
                    hour_spans,
                ),
                min_size=0 if dst_day else 1,
                max_size=3,
            )
        )
    ]
    if dst_day:  # every day, so the transition day surely has hours near the change
        start, end = draw(late_spans if zone == "Africa/Cairo" else early_spans)
        working_hours.append({"days": list(WEEKDAYS), "start": start, "end": end})
    override_days = st.integers(-1, 4).map(lambda d: base + timedelta(days=d))
    date_overrides = [
        {"date": d, "hours": [{"start": s, "end": e} for s, e in hs]}
        for d, hs in draw(
            st.lists(st.tuples(override_days, st.lists(hour_spans, max_size=2)), max_size=2)
        )
    ]
    rules = EffectiveRules.model_validate(
        {
            "working_hours": working_hours,
            "date_overrides": date_overrides,
            "buffer_minutes": draw(st.sampled_from([0, 0, 5, 10, 15])),
            "slot_interval_minutes": None,
            "min_notice_minutes": draw(st.sampled_from([0, 30] if dst_day else [0, 30, 60, 600])),
            "max_advance_days": draw(st.sampled_from([5] if dst_day else [5, 2, 1, 0])),
            "max_meetings_per_day": draw(st.sampled_from([None, None, 1, 2])),
            "hold_ttl_seconds": 300,
            "sacred_meeting_age_hours": 24,
        }
    )
    duration = draw(st.sampled_from([5, 15, 30, 45, 60, 90, 120]))
    interval = draw(st.sampled_from([5, 10, 15, 20, 30, 45, 60, 90]))
    extra = draw(st.sampled_from([0, 0, 5, 20]))
    midnight = datetime(base.year, base.month, base.day, tzinfo=tz).astimezone(UTC)
    if dst_day:
        # The whole transition day and a little on each side; `now` a day before.
        window_start = midnight - draw(st.integers(0, 6)) * half_hour
        window_end = midnight + (48 + draw(st.integers(0, 6))) * half_hour
        now = window_start - timedelta(days=1)
    else:
        # Near the local midnight of `base`, up to two days long; `now` mostly before it.
        window_start = midnight + draw(st.integers(-24, 24)) * half_hour
        length = draw(st.sampled_from([48, 24, 90, 12, 1])) + draw(st.integers(-1, 6))
        window_end = window_start + length * half_hour
        ahead = draw(st.sampled_from([-8, 0, 12, 36])) + draw(st.integers(0, 8))
        now = window_start - ahead * half_hour
    # On the half hour (notice and advance limits then meet grid times exactly), or not.
    now += timedelta(
        minutes=draw(st.sampled_from([0, 0, 30]) | st.integers(0, 59)),
        seconds=draw(st.sampled_from([0, 0, 17])),
    )
    req = SlotRequest(
        tz=tz,
        rules=rules,
        duration=timedelta(minutes=duration),
        now=now,
        # The caller's sum: business buffer + the class's own side + the per-query extra.
        buffer_before=timedelta(minutes=rules.buffer_minutes + extra) + draw(buffers),
        buffer_after=timedelta(minutes=rules.buffer_minutes + extra) + draw(buffers),
        interval_minutes=interval,
    )
    on_half_hour = st.integers(-10, 100).map(lambda k: 6 * k)
    blockers = [
        Blocker(
            # Often on the half hour, so that edges meet grid times exactly.
            start=(b_start := window_start + draw(on_half_hour | st.integers(-60, 600)) * FIVE),
            end=b_start + draw(st.integers(0, 48)) * FIVE,
            kind=kind,
            buffer_before=timedelta(0) if kind == "busy" else draw(buffers),
            buffer_after=timedelta(0) if kind == "busy" else draw(buffers),
        )
        for kind in draw(st.lists(st.sampled_from(KINDS), max_size=10))
    ]
    per_day = {
        base + timedelta(days=d): draw(st.integers(0, 3)) for d in draw(st.sets(st.integers(-2, 5)))
    }
    return Case(req, window_start, window_end, blockers, per_day)


any_case = st.one_of(cases(), cases(dst_day=True))


def day_spans(rules: EffectiveRules, day: date) -> list[tuple[int, int]]:
    """The wall-clock hours of one local day, straight from the rules."""
    overrides = [o for o in rules.date_overrides if o.date == day]
    if overrides:
        return [(minutes_of(h.start), minutes_of(h.end)) for o in overrides for h in o.hours]
    name = WEEKDAYS[day.weekday()]
    return [(minutes_of(w.start), minutes_of(w.end)) for w in rules.working_hours if name in w.days]


def conflicts(req: SlotRequest, slot: Interval, b: Blocker) -> bool:
    return (slot.start - req.buffer_before < b.end + b.buffer_after) and (
        b.start - b.buffer_before < slot.end + req.buffer_after
    )


# --- the properties ---------------------------------------------------------------------------


@PROPS
@given(any_case)
def test_no_slot_overlaps_a_blocker_widened_by_buffers(case: Case) -> None:
    for slot in case.slots():
        for b in case.blockers:
            assert not conflicts(case.req, slot, b), (slot, b)


@PROPS
@given(any_case)
def test_slots_lie_inside_working_hours_with_a_wall_reading_on_the_grid(case: Case) -> None:
    req, tz = case.req, case.tz
    interval = timedelta(minutes=req.interval_minutes)
    for slot in case.slots():
        assert slot.end - slot.start == req.duration
        local_start = slot.start.astimezone(tz)
        last_instant = (slot.end - TICK).astimezone(tz)  # the slot is half-open
        day = local_start.date()
        assert last_instant.date() == day
        midnight = datetime(day.year, day.month, day.day)
        wall_start = local_start.replace(tzinfo=None) - midnight
        # Inside the real time of one range, and the start's own wall reading on its grid
        # (in either pass of a repeated hour).
        assert any(
            _first_existing_instant(tz, midnight + timedelta(minutes=rs)) <= slot.start
            and slot.end <= _first_existing_instant(tz, midnight + timedelta(minutes=re))
            and (wall_start - timedelta(minutes=rs)) % interval == timedelta(0)
            for rs, re in day_spans(req.rules, day)
        ), (slot, local_start, last_instant)


@PROPS
@given(any_case)
def test_slots_are_sorted_unique_inside_the_window_and_the_limits(case: Case) -> None:
    found = case.slots()
    starts = [s.start for s in found]
    assert starts == sorted(set(starts))
    notice = timedelta(minutes=case.req.rules.min_notice_minutes)
    cap = case.req.rules.max_meetings_per_day
    for slot in found:
        assert slot.start.tzinfo is UTC
        assert case.window_start <= slot.start
        assert slot.end <= case.window_end
        assert slot.start >= case.req.now + notice
        assert slot.start <= case.req.now + timedelta(days=case.req.rules.max_advance_days)
        if cap is not None:
            assert case.per_day.get(slot.start.astimezone(case.tz).date(), 0) < cap


@PROPS
@given(any_case)
def test_check_slot_agrees_with_compute_slots(case: Case) -> None:
    listed = {s.start for s in case.slots()}
    # Every 5-minute UTC instant covers every grid time here: zone offsets are multiples of
    # 30 minutes and hours, intervals and windows multiples of 5.
    probe = case.window_start
    while probe + case.req.duration <= case.window_end:
        verdict = case.check(probe, probe + case.req.duration)
        assert (verdict is None) == (probe in listed), (probe, verdict)
        probe += FIVE


@REFERENCE_PROPS
@given(any_case)
def test_compute_slots_matches_a_naive_reference(case: Case) -> None:
    assert [s.start for s in case.slots()] == reference_starts(case)


@REFERENCE_PROPS
@given(any_case, st.data())
def test_check_slot_matches_a_naive_reference_for_any_interval(
    case: Case, data: st.DataObject
) -> None:
    tz = case.tz
    first = case.window_start.astimezone(tz).date() - timedelta(days=1)
    last = case.window_end.astimezone(tz).date() + timedelta(days=1)
    ranges = reference_ranges(case, first, last)
    offsets = st.integers(-12, 200).map(lambda k: k * FIVE)
    lengths = st.sampled_from([case.req.duration, FIVE, 12 * FIVE]) | st.integers(1, 60).map(
        lambda k: k * FIVE
    )
    for _ in range(25):
        start = case.window_start + data.draw(offsets)
        slot = Interval(start, start + data.draw(lengths))
        assert case.check(slot.start, slot.end) == reference_check(case, ranges, slot), slot


@PROPS
@given(any_case, st.data())
def test_buffers_are_exact_at_both_edges(case: Case, data: st.DataObject) -> None:
    found = case.slots()
    if not found:
        return
    slot = data.draw(st.sampled_from(found))
    kind = data.draw(st.sampled_from(KINDS))
    own = timedelta(0) if kind == "busy" else data.draw(buffers)
    hour, minute = timedelta(hours=1), timedelta(minutes=1)
    # Blockers whose buffered reach ends exactly where the slot's buffered reach begins.
    after_start = slot.end + case.req.buffer_after + own
    before_end = slot.start - case.req.buffer_before - own
    touching = [
        Blocker(after_start, after_start + hour, kind, buffer_before=own),
        Blocker(before_end - hour, before_end, kind, buffer_after=own),
    ]
    with_touching = dataclasses.replace(case, blockers=[*case.blockers, *touching])
    assert slot in with_touching.slots()
    assert with_touching.check(slot.start, slot.end) is None
    # One minute closer on either side and the slot is gone.
    for closer in (
        Blocker(after_start - minute, after_start + hour, kind, buffer_before=own),
        Blocker(before_end - hour, before_end + minute, kind, buffer_after=own),
    ):
        with_closer = dataclasses.replace(case, blockers=[*case.blockers, closer])
        assert slot not in with_closer.slots()
        assert with_closer.check(slot.start, slot.end) in {
            "buffer",
            "overlaps_booking",
            "overlaps_hold",
            "overlaps_busy_time",
        }


@PROPS
@given(any_case, st.integers(0, 20))
def test_limit_is_a_prefix(case: Case, limit: int) -> None:
    assert case.slots(limit) == case.slots()[:limit]


@PROPS
@given(any_case, st.integers(0, 100), st.integers(0, 100))
def test_a_smaller_window_is_a_filter(case: Case, cut_start: int, cut_end: int) -> None:
    length = case.window_end - case.window_start
    start = case.window_start + length * cut_start / 200
    end = case.window_end - length * cut_end / 200
    smaller = compute_slots(
        case.req,
        window_start=start,
        window_end=end,
        blockers=case.blockers,
        bookings_per_day=case.per_day,
        limit=100_000,
    )
    assert smaller == [s for s in case.slots() if start <= s.start and s.end <= end]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 100), st.integers(1, 30)), max_size=20), st.integers(0, 6))
def test_choose_non_overlapping(raw: list[tuple[int, int]], n: int) -> None:
    t0 = datetime(2026, 4, 6, tzinfo=UTC)
    slots = [Interval(t0 + a * FIVE, t0 + (a + d) * FIVE) for a, d in raw]
    chosen = choose_non_overlapping(slots, n)
    assert len(chosen) <= n
    assert all(c in slots for c in chosen)
    assert all(a.end <= b.start for a, b in itertools.pairwise(chosen))
    # Greedy by earliest start: every slot left out overlaps one chosen at or before its start,
    # unless the quota was already filled.
    if len(chosen) < n:
        for s in slots:
            assert s in chosen or any(c.start <= s.start < c.end for c in chosen)


# --- the naive reference ----------------------------------------------------------------------


def _first_existing_instant(tz: ZoneInfo, naive: datetime) -> datetime:
    """fold=0 instant of `naive`, or of the first existing wall minute after a gap (these
    zones change offset on whole minutes, so that minute is the transition itself)."""
    while True:
        instant = naive.replace(tzinfo=tz).astimezone(UTC)
        if instant.astimezone(tz).replace(tzinfo=None) == naive:
            return instant
        naive += timedelta(minutes=1)


@dataclass(frozen=True)
class RefRange:
    day: date
    start: datetime
    end: datetime
    grid: frozenset[datetime]


def reference_ranges(case: Case, first: date, last: date) -> list[RefRange]:
    """Every working range of the local days first..last with its grid, one minute at a time."""
    req, tz = case.req, case.tz
    out = []
    day = first
    while day <= last:
        midnight = datetime(day.year, day.month, day.day)
        for rs, re in day_spans(req.rules, day):
            start = _first_existing_instant(tz, midnight + timedelta(minutes=rs))
            end = _first_existing_instant(tz, midnight + timedelta(minutes=re))
            # Every real minute of the range whose wall-clock reading is on the grid (these
            # zones' offsets are whole minutes, so every grid time is a real minute).
            grid = set()
            instant = start
            while instant < end:
                local = instant.astimezone(tz)
                reading = (local.replace(tzinfo=None) - midnight) // timedelta(minutes=1)
                if local.date() == day and (reading - rs) % req.interval_minutes == 0:
                    grid.add(instant)
                instant += timedelta(minutes=1)
            out.append(RefRange(day, start, end, frozenset(grid)))
        day += timedelta(days=1)
    return out


def reference_check(case: Case, ranges: list[RefRange], slot: Interval) -> str | None:
    req, rules = case.req, case.req.rules
    if slot.start < req.now + timedelta(minutes=rules.min_notice_minutes):
        return "too_soon"
    if slot.start > req.now + timedelta(days=rules.max_advance_days):
        return "too_far"
    inside = [r for r in ranges if r.start <= slot.start and slot.end <= r.end]
    if not inside:
        return "outside_working_hours"
    if not any(slot.start in r.grid for r in inside):
        return "off_grid"
    for kind, reason in [
        ("booking", "overlaps_booking"),
        ("hold", "overlaps_hold"),
        ("busy", "overlaps_busy_time"),
    ]:
        if any(b.kind == kind and b.start < slot.end and slot.start < b.end for b in case.blockers):
            return reason
    if any(conflicts(req, slot, b) for b in case.blockers):
        return "buffer"
    cap = rules.max_meetings_per_day
    if cap is not None and case.per_day.get(slot.start.astimezone(case.tz).date(), 0) >= cap:
        return "daily_limit"
    return None


def reference_starts(case: Case) -> list[datetime]:
    tz = case.tz
    first = case.window_start.astimezone(tz).date() - timedelta(days=1)
    last = case.window_end.astimezone(tz).date() + timedelta(days=1)
    ranges = reference_ranges(case, first, last)
    found = set()
    for r in ranges:
        for start in r.grid:
            slot = Interval(start, start + case.req.duration)
            if (
                case.window_start <= slot.start
                and slot.end <= case.window_end
                and reference_check(case, ranges, slot) is None
            ):
                found.add(start)
    return sorted(found)


# --- any zone, around its transitions: free time listed == real time of ranges - blocked ------

ALL_ZONES = sorted(available_timezones())
MINUTE = timedelta(minutes=1)


@functools.cache
def offset_changes(zone: str, year: int) -> tuple[datetime, ...]:
    """The UTC instants in `year` where `zone` changes its UTC offset (day scan, then bisect)."""
    tz = ZoneInfo(zone)
    out = []
    t = datetime(year, 1, 1, tzinfo=UTC)
    while t.year == year:
        nxt = t + timedelta(days=1)
        if t.astimezone(tz).utcoffset() != nxt.astimezone(tz).utcoffset():
            lo, hi = t, nxt  # offset at lo is the old one, at hi the new one
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                if mid.astimezone(tz).utcoffset() == t.astimezone(tz).utcoffset():
                    lo = mid
                else:
                    hi = mid
            out.append(hi.replace(microsecond=0))
        t = nxt
    return tuple(out)


def merge(intervals: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    out: list[tuple[datetime, datetime]] = []
    for a, b in sorted(i for i in intervals if i[0] < i[1]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def subtract(
    base: list[tuple[datetime, datetime]], cut: list[tuple[datetime, datetime]]
) -> list[tuple[datetime, datetime]]:
    out = []
    for a, b in base:
        pieces = [(a, b)]
        for c, d in cut:
            pieces = [
                part
                for x, y in pieces
                for part in ((x, min(y, c)), (max(x, d), y))
                if part[0] < part[1]
            ]
        out.extend(pieces)
    return merge(out)


@dataclass(frozen=True)
class TilingCase:
    case: Case
    days: tuple[date, ...]  # the local days whose ranges lie inside the window


@st.composite
def tiling_cases(draw: st.DrawFn) -> TilingCase:
    """Any zone, a local day next to one of its offset changes (or any day if it has none),
    working ranges near the change, and duration == grid: the slots then tile the free time."""
    zone = draw(st.sampled_from(ALL_ZONES))
    tz = ZoneInfo(zone)
    year = draw(st.integers(1980, 2037))
    changes = offset_changes(zone, year)
    if changes:
        change = draw(st.sampled_from(changes))
        day = (change - TICK).astimezone(tz).date() + timedelta(days=draw(st.integers(-1, 1)))
        around = (change - TICK).astimezone(tz)
        near = around.hour * 60 + around.minute
    else:
        day = draw(st.dates(date(year, 1, 1), date(year, 12, 31)))
        near = 120
    grid = draw(st.sampled_from([1, 5, 15, 15, 30]))
    # Range boundaries on the grid, mostly within a few hours of the change's wall time.
    starts = st.one_of(
        st.integers(max(0, near - 240) // grid, min(1439, near + 60) // grid),
        st.integers(0, 1439 // grid),
    ).map(lambda k: k * grid)
    lengths = st.one_of(st.integers(1, 300 // grid), st.integers(1, 1440 // grid)).map(
        lambda k: k * grid
    )
    hours = draw(
        st.lists(
            st.tuples(
                st.lists(st.sampled_from(WEEKDAYS), min_size=1, max_size=7, unique=True),
                st.tuples(starts, lengths).map(lambda sl: (sl[0], min(1440, sl[0] + sl[1]))),
            ),
            min_size=1,
            max_size=3,
        )
    )
    rules = EffectiveRules.model_validate(
        {
            "working_hours": [
                {"days": days, "start": _hhmm(s), "end": _hhmm(e)} for days, (s, e) in hours
            ],
            "date_overrides": [],
            "buffer_minutes": 0,
            "slot_interval_minutes": None,
            "min_notice_minutes": 0,
            "max_advance_days": 30,
            "max_meetings_per_day": None,
            "hold_ttl_seconds": 300,
            "sacred_meeting_age_hours": 24,
        }
    )
    days = (day - timedelta(days=1), day, day + timedelta(days=1))
    window_start = _first_existing_instant(tz, datetime(*days[0].timetuple()[:3]))
    window_end = _first_existing_instant(tz, datetime(*(day + timedelta(days=2)).timetuple()[:3]))
    # Exact tiling needs every grid time on the UTC grid lattice: offsets (and so the change)
    # that are whole multiples of the grid. True of nearly every zone since the 1970s.
    lattice = timedelta(minutes=grid)
    for instant in (window_start, window_end - TICK, *changes):
        offset = instant.astimezone(tz).utcoffset()
        assume(offset is not None and offset % lattice == timedelta(0))
    # ... and the changes themselves on that lattice: a change at an odd minute (Newfoundland
    # sprang forward at 00:01 in 1987) leaves a piece of range shorter than one slot.
    for change in changes:
        assume((change - datetime(1970, 1, 1, tzinfo=UTC)) % lattice == timedelta(0))
    blockers = [
        Blocker(
            start=(b_start := window_start + draw(st.integers(0, 72 * 60 // grid)) * lattice),
            end=b_start + draw(st.integers(0, 6 * 60 // grid)) * lattice,
            kind=draw(st.sampled_from(KINDS)),
        )
        for _ in range(draw(st.integers(0, 6)))
    ]
    req = SlotRequest(
        tz=tz,
        rules=rules,
        duration=lattice,
        now=window_start - timedelta(days=1),
        buffer_before=timedelta(0),
        buffer_after=timedelta(0),
        interval_minutes=grid,
    )
    return TilingCase(Case(req, window_start, window_end, blockers, {}), days)


@settings(PROPS, max_examples=300)
@given(tiling_cases())
def test_free_time_listed_is_the_real_time_of_the_ranges_minus_what_is_blocked(
    tc: TilingCase,
) -> None:
    case = tc.case
    tz = case.tz
    ranges = []
    for day in tc.days:
        midnight = datetime(day.year, day.month, day.day)
        ranges += [
            (
                _first_existing_instant(tz, midnight + timedelta(minutes=rs)),
                _first_existing_instant(tz, midnight + timedelta(minutes=re)),
            )
            for rs, re in day_spans(case.req.rules, day)
        ]
    expected = subtract(merge(ranges), merge([(b.start, b.end) for b in case.blockers]))
    found = case.slots()
    assert merge([(s.start, s.end) for s in found]) == expected
    # ... and each listed slot once: their total is the free time, not more.
    total = sum((s.end - s.start for s in found), timedelta(0))
    assert total == sum((b - a for a, b in expected), timedelta(0))
