"""The slot engine: rules + blockers -> bookable slots, and the one-slot check behind bookings.

Pure: no database, no web, no clock. `now` arrives in the `SlotRequest`, every instant in and
out is an aware datetime, and every instant returned is in UTC.

Contract (the choices, and why):

* Working hours are wall-clock ranges in the business zone; several per day are allowed and
  each is kept as it is (ranges are *not* merged): a slot must fit inside one range, and the
  grid of candidate starts is anchored at each range's own start, so "09:00-12:00, 13:10-17:00"
  with a 30-minute grid offers 13:10, 13:40, ... in the afternoon. Candidates shared by two
  overlapping ranges are listed once.
* A `date_overrides` entry for a local date replaces that day's working hours entirely (empty
  hours = closed). Several entries for the same date are combined (their hours are added up)
  rather than letting one silently win.
* DST (spec §1.2): a working range covers the real time between its two boundaries. A boundary
  that does not exist (spring-forward gap) maps to the first instant after the gap (the
  transition itself): "02:30-05:00" on a US spring-forward day opens at 03:00 EDT, and
  "00:00-02:30" closes then. An ambiguous boundary (fall-back fold) is taken at its first
  occurrence. Inside the range, a candidate start is every real instant whose wall-clock
  reading is on the grid `range_start + k * interval` (k any integer): wall times of a gap are
  skipped, and on a fall-back night both passes of a repeated wall time are offered, so New
  York's "00:00-04:00" on 2027-11-07 holds ten half-hour slots, 01:00 -04:00 and 01:00 -05:00
  among them. Taking the repeated times at the first pass only would leave a real hour of
  working time unbookable. A slot lasts `duration` of real elapsed time and must end at or
  before the instant its range ends.
* `min_notice_minutes` and `max_advance_days` are real elapsed time from `now` (a day is 24 h),
  and a start is never in the past whatever the notice.
* Conflicts are half-open and buffer-aware: new slot [s, e) conflicts with blocker [a, b) iff
  ``s - req.buffer_before < b + blocker.buffer_after`` and
  ``a - blocker.buffer_before < e + req.buffer_after``. The request carries the business
  buffer (applied once between two meetings), its own class buffers and any per-query extra;
  each blocker carries only its own class buffers, so the gap between two meetings is
  `business + class(A).after + class(B).before`.
* The daily cap counts confirmed bookings per *local* date of the slot start.

Performance: candidates are never tested against every blocker. Each blocker is widened once
by its own buffers and the request's, ``[a - b.before - req.after, b + b.after + req.before)``
(a raw candidate overlaps that exactly when the rule above says "conflict"), the widened
intervals are sorted and merged into disjoint ones, and each range's candidates are swept
against them with bisect, skipping a blocked run or emitting a free run at a time. Wall-time
to UTC conversions depend only on (zone, date, range, interval), so they are cached per zone,
shared by every business in that zone and across requests.
"""

from __future__ import annotations

import functools
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import accumulate, repeat
from operator import add
from typing import Literal
from zoneinfo import ZoneInfo

from slotguard.domain.rules import WEEKDAYS, EffectiveRules, minutes_of

__all__ = [
    "Blocker",
    "BlockerKind",
    "Interval",
    "RejectReason",
    "SlotRequest",
    "bookable_bounds",
    "check_slot",
    "choose_non_overlapping",
    "compute_slots",
    "open_ranges",
]

_ZERO = timedelta(0)
_SECOND = timedelta(seconds=1)
_TICK = timedelta(microseconds=1)
_ONE_DAY = timedelta(days=1)


def _utc(value: datetime, name: str = "datetime") -> datetime:
    if value.tzinfo is UTC:  # the common case, and on the hot path for every blocker
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value!r}")
    return value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Interval:
    """Half-open [start, end) between two aware datetimes (UTC when produced here)."""

    start: datetime
    end: datetime


BlockerKind = Literal["booking", "hold", "busy"]


@dataclass(frozen=True, slots=True)
class Blocker:
    """Time already taken: a confirmed booking, one slot of a live hold, or busy time.

    `buffer_before` / `buffer_after` are the blocker's OWN meeting-class buffers (zero for
    busy time); the business buffer is carried by the request so it is counted once.
    """

    start: datetime
    end: datetime
    kind: BlockerKind
    buffer_before: timedelta = _ZERO
    buffer_after: timedelta = _ZERO

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError("blocker end must not be before its start")
        if self.buffer_before < _ZERO or self.buffer_after < _ZERO:
            raise ValueError("blocker buffers must not be negative")


@dataclass(frozen=True, slots=True)
class SlotRequest:
    """Everything the engine needs about one query or one booking attempt.

    `buffer_before` / `buffer_after`: the gap the NEW meeting needs on each side, already
    summed by the caller (business `buffer_minutes` + its class buffer + per-query extra).
    `interval_minutes`: the grid cadence, already resolved (`rules.slot_interval_for`).
    """

    tz: ZoneInfo
    rules: EffectiveRules
    duration: timedelta
    now: datetime
    buffer_before: timedelta
    buffer_after: timedelta
    interval_minutes: int

    def __post_init__(self) -> None:
        _utc(self.now, "now")
        if self.duration <= _ZERO:
            raise ValueError("duration must be positive")
        if self.buffer_before < _ZERO or self.buffer_after < _ZERO:
            raise ValueError("buffers must not be negative")
        if self.interval_minutes < 1:
            raise ValueError("interval_minutes must be at least 1")


RejectReason = Literal[
    "too_soon",
    "too_far",
    "outside_working_hours",
    "off_grid",
    "overlaps_booking",
    "overlaps_hold",
    "overlaps_busy_time",
    "buffer",
    "daily_limit",
]

# check_slot reports a raw overlap by the first kind in this order (spec §4.3 reason list).
_OVERLAP_REASONS: tuple[tuple[BlockerKind, RejectReason], ...] = (
    ("booking", "overlaps_booking"),
    ("hold", "overlaps_hold"),
    ("busy", "overlaps_busy_time"),
)


def bookable_bounds(req: SlotRequest) -> tuple[datetime, datetime]:
    """(earliest, latest) allowed start, both inclusive, in UTC.

    The earliest is never before `now`, even if a rule were to allow a negative notice.
    """
    now = _utc(req.now, "now")
    earliest = max(now, now + timedelta(minutes=req.rules.min_notice_minutes))
    latest = now + timedelta(days=req.rules.max_advance_days)
    return earliest, latest


# --- wall clock -> UTC ----------------------------------------------------------------------


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)


def _resolve(tz: ZoneInfo, naive: datetime) -> datetime | None:
    """UTC instant of an existing wall time (first occurrence), or None inside a DST gap.

    fold=0 picks the first occurrence of an ambiguous time; a nonexistent time does not
    survive the round trip back to wall time (zoneinfo maps it with the pre-gap offset to a
    wall time on the far side of the gap).
    """
    utc = naive.replace(tzinfo=tz).astimezone(UTC)
    if utc.astimezone(tz).replace(tzinfo=None) != naive:
        return None
    return utc


def _gap_end(tz: ZoneInfo, naive: datetime) -> datetime:
    """The first existing instant after the gap containing the nonexistent `naive`.

    For a gap time, fold=1 (post-transition offset) gives an instant before the transition and
    fold=0 (pre-transition offset) one at or after it; bisect between them on whole seconds
    (tzdata transitions fall on whole seconds).
    """
    lo = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    hi = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    lo_offset = lo.astimezone(tz).utcoffset()
    if hi <= lo or hi.astimezone(tz).utcoffset() == lo_offset:  # pragma: no cover - defensive
        return hi
    a, b = 0, (hi - lo) // _SECOND  # offset at lo + a s is lo_offset, at lo + b s it is not
    while b - a > 1:
        m = (a + b) // 2
        if (lo + m * _SECOND).astimezone(tz).utcoffset() == lo_offset:
            a = m
        else:
            b = m
    return lo + b * _SECOND


def _boundary(tz: ZoneInfo, naive: datetime) -> datetime:
    resolved = _resolve(tz, naive)
    return resolved if resolved is not None else _gap_end(tz, naive)


@functools.lru_cache(maxsize=8192)
def _range_bounds(tz: ZoneInfo, day: date, rs: int, re: int) -> tuple[datetime, datetime]:
    """UTC [start, end) of the wall range rs..re (minutes) on local `day`; may be empty."""
    base = _midnight(day)
    return (
        _boundary(tz, base + timedelta(minutes=rs)),
        _boundary(tz, base + timedelta(minutes=re)),
    )


def _offset_change(tz: ZoneInfo, start: datetime, end: datetime) -> datetime | None:
    """The instant in (start, end) where the UTC offset changes, if it does.

    At most one change can fall inside a range (see `_range_grid`), so the offsets at both ends
    tell; bisect on whole seconds (tzdata transitions fall on whole seconds).
    """
    first = start.astimezone(tz).utcoffset()
    if (end - _TICK).astimezone(tz).utcoffset() == first:
        return None
    a, b = 0, -(-(end - start) // _SECOND)  # offset at start + a s is `first`, at start + b s not
    while b - a > 1:
        m = (a + b) // 2
        if (start + m * _SECOND).astimezone(tz).utcoffset() == first:
            a = m
        else:
            b = m
    return min(start + b * _SECOND, end)


@functools.lru_cache(maxsize=4096)
def _range_grid(tz: ZoneInfo, day: date, rs: int, re: int, interval: int) -> tuple[datetime, ...]:
    """UTC instants in the range rs..re of local `day` whose wall reading is on its grid.

    The grid is the wall times rs + k*interval (k any integer, the reading within `day`); an
    instant is on it when its own wall-clock reading is one of them. Ascending.

    Fast path (every day but a transition day): when both boundaries exist, the range lasts
    exactly its wall-clock length and the UTC offset is the same at both ends, wall time and
    UTC differ by one constant inside it and the grid is plain arithmetic. "Same offset at both
    ends => no change inside" relies on two offset changes never being closer than a range is
    long (at most ~a day): across all of tzdata, history included, the closest pair is ~4 days
    apart. Transition days split the range at the change into two spans of constant offset and
    do the same arithmetic on each: a gap's wall times never occur, and a repeated wall time
    occurs once in each span.
    """
    base = _midnight(day)
    start, end = _range_bounds(tz, day, rs, re)
    if start >= end:
        return ()
    if (
        _resolve(tz, base + timedelta(minutes=rs)) == start
        and _resolve(tz, base + timedelta(minutes=re)) == end
        and end - start == timedelta(minutes=re - rs)
        and start.astimezone(tz).utcoffset() == (end - _TICK).astimezone(tz).utcoffset()
    ):
        count = -(-(re - rs) // interval)  # wall times rs + k*interval < re
        return tuple(accumulate(repeat(timedelta(minutes=interval), count - 1), add, initial=start))
    change = _offset_change(tz, start, end)
    pieces = [(start, end)] if change is None else [(start, change), (change, end)]
    step = timedelta(minutes=interval)
    base_utc = base.replace(tzinfo=UTC)  # wall reading r of instant t: t + offset == base + r
    out: list[datetime] = []
    for lo, hi in pieces:
        offset = lo.astimezone(tz).utcoffset()
        assert offset is not None  # a ZoneInfo always has one
        first_reading = lo + offset - base_utc
        # First whole wall minute. Negative after a fall-back that crosses midnight (clocks
        # going back from 00:01 to 23:01, as in Newfoundland until 2011): the repeated times
        # read as the previous date but are real time inside this day's range.
        minute = -(-first_reading // timedelta(minutes=1))
        minute += (rs - minute) % interval  # ... on the grid
        instant = base_utc + timedelta(minutes=minute) - offset
        while minute < re and instant < hi:
            out.append(instant)
            minute += interval
            instant += step
    return tuple(out)


# --- rules -> open ranges -------------------------------------------------------------------

_Span = tuple[int, int]  # wall minutes [start, end) within one local day
_WEEKDAY_INDEX = {name: index for index, name in enumerate(WEEKDAYS)}  # == date.weekday()


class _Hours:
    """A day's wall-clock hours from the rules: the date override if any, else the weekday's."""

    __slots__ = ("_by_weekday", "_overrides")

    def __init__(self, rules: EffectiveRules) -> None:
        by_weekday: list[set[_Span]] = [set() for _ in range(7)]
        for wh in rules.working_hours:
            span = (minutes_of(wh.start), minutes_of(wh.end))
            for weekday in wh.days:
                by_weekday[_WEEKDAY_INDEX[weekday]].add(span)
        overrides: dict[date, set[_Span]] = {}
        for override in rules.date_overrides:
            spans = overrides.setdefault(override.date, set())
            spans.update((minutes_of(h.start), minutes_of(h.end)) for h in override.hours)
        self._by_weekday = tuple(tuple(sorted(s)) for s in by_weekday)
        self._overrides = {d: tuple(sorted(s)) for d, s in overrides.items()}

    def spans(self, day: date) -> tuple[_Span, ...]:
        override = self._overrides.get(day)
        return override if override is not None else self._by_weekday[day.weekday()]


@dataclass(frozen=True, slots=True)
class _Range:
    day: date
    rs: int
    re: int
    start: datetime
    end: datetime


def _ranges(req: SlotRequest, hours: _Hours, first: date, last: date) -> list[_Range]:
    """Non-empty open ranges of the local days first..last, in day order then span order."""
    out: list[_Range] = []
    day = first
    while day <= last:
        for rs, re in hours.spans(day):
            start, end = _range_bounds(req.tz, day, rs, re)
            if start < end:  # a range lying wholly inside a DST gap is empty
                out.append(_Range(day, rs, re, start, end))
        day += _ONE_DAY
    return out


def _local_date(instant: datetime, tz: ZoneInfo) -> date:
    return instant.astimezone(tz).date()


def open_ranges(req: SlotRequest, start: datetime, end: datetime) -> list[Interval]:
    """The open ranges (after date overrides) of every local day touching [start, end), in UTC.

    Whole ranges are returned, not clipped to [start, end); sorted by start.
    """
    lo, hi = _utc(start, "start"), _utc(end, "end")
    if hi <= lo:
        return []
    first, last = _local_date(lo, req.tz), _local_date(hi - _TICK, req.tz)
    ranges = _ranges(req, _Hours(req.rules), min(first, last), max(first, last))
    return sorted({Interval(r.start, r.end) for r in ranges}, key=lambda i: (i.start, i.end))


# --- blockers -------------------------------------------------------------------------------


def _merged_blocks(
    req: SlotRequest, blockers: Sequence[Blocker], lo: datetime, hi: datetime
) -> tuple[list[datetime], list[datetime]]:
    """Blockers widened by both sides' buffers, merged: (starts, ends), disjoint and ascending.

    A raw candidate [s, e) conflicts iff for the merged interval [A, B) with the smallest B > s,
    A < e. Zero-length widened blockers are kept (they still block a slot strictly around them)
    and touching intervals are merged, which preserves that test. Only blockers that can reach
    a candidate with start in [lo, hi] are kept.
    """
    reach_end = hi + req.duration
    widened: list[tuple[datetime, datetime]] = []
    for b in blockers:
        a = _utc(b.start, "blocker start") - b.buffer_before - req.buffer_after
        z = _utc(b.end, "blocker end") + b.buffer_after + req.buffer_before
        if z > lo and a < reach_end:
            widened.append((a, z))
    widened.sort()
    starts: list[datetime] = []
    ends: list[datetime] = []
    for a, z in widened:
        if ends and a <= ends[-1]:
            if z > ends[-1]:
                ends[-1] = z
        else:
            starts.append(a)
            ends.append(z)
    return starts, ends


def _free_starts(
    grid: tuple[datetime, ...],
    i: int,
    j: int,
    duration: timedelta,
    starts: list[datetime],
    ends: list[datetime],
) -> list[datetime]:
    """Candidates grid[i:j] that no merged block touches, a run at a time."""
    out: list[datetime] = []
    nb = len(ends)
    p = 0
    k = i
    while k < j:
        s = grid[k]
        p = bisect_right(ends, s, p)  # first block ending after s
        if p < nb and starts[p] < s + duration:
            # Blocked, and so is every candidate starting before this block ends.
            k = bisect_left(grid, ends[p], k + 1, j)
            continue
        # Free, and so is every candidate ending by the start of the next block.
        k2 = j if p == nb else bisect_right(grid, starts[p] - duration, k, j)
        out.extend(grid[k:k2])
        k = k2
    return out


# --- public operations ----------------------------------------------------------------------


def compute_slots(
    req: SlotRequest,
    *,
    window_start: datetime,
    window_end: datetime,
    blockers: Sequence[Blocker],
    bookings_per_day: Mapping[date, int],
    limit: int,
) -> list[Interval]:
    """Every bookable slot of `req.duration` fully inside [window_start, window_end).

    Sorted by start, at most `limit`. A slot is listed iff `check_slot` would accept it.
    """
    if limit <= 0:
        return []
    earliest, latest = bookable_bounds(req)
    duration = req.duration
    lo = max(earliest, _utc(window_start, "window_start"))
    hi = min(latest, _utc(window_end, "window_end") - duration)  # inclusive bound on starts
    if hi < lo:
        return []
    tz, interval, cap = req.tz, req.interval_minutes, req.rules.max_meetings_per_day
    starts, ends = _merged_blocks(req, blockers, lo, hi)
    hours = _Hours(req.rules)
    out: list[Interval] = []
    # One spare day on each side: a local date is monotonic in UTC for every real zone, but
    # being generous costs two cache lookups and keeps "iff check_slot" unconditional.
    day, last = _local_date(lo, tz) - _ONE_DAY, _local_date(hi, tz) + _ONE_DAY
    while day <= last and len(out) < limit:
        if cap is not None and bookings_per_day.get(day, 0) >= cap:
            day += _ONE_DAY
            continue
        found: list[datetime] = []
        spans = hours.spans(day)
        for rs, re in spans:
            r_start, r_end = _range_bounds(tz, day, rs, re)
            if r_start >= r_end:
                continue
            grid = _range_grid(tz, day, rs, re, interval)
            i = bisect_left(grid, lo)
            j = bisect_right(grid, min(hi, r_end - duration), i)
            if i < j:
                found.extend(_free_starts(grid, i, j, duration, starts, ends))
        if len(spans) > 1:
            # Each range's run is sorted; only overlapping ranges interleave or repeat.
            found = sorted(set(found))
        out.extend(Interval(s, s + duration) for s in found[: limit - len(out)])
        day += _ONE_DAY
    return out


def check_slot(
    req: SlotRequest,
    *,
    start: datetime,
    end: datetime,
    blockers: Sequence[Blocker],
    bookings_per_day: Mapping[date, int],
) -> RejectReason | None:
    """Would booking exactly [start, end) now pass every rule? None if so, else the first
    failing reason in this order: too_soon, too_far, outside_working_hours, off_grid,
    overlaps_booking, overlaps_hold, overlaps_busy_time (raw overlap, unbuffered), buffer
    (only the buffered widening overlaps), daily_limit.

    `req.duration` is not used: the interval is explicit. For a grid candidate with
    end = start + duration it agrees exactly with `compute_slots`.
    """
    s, e = _utc(start, "start"), _utc(end, "end")
    if e <= s:
        raise ValueError("end must be after start")
    earliest, latest = bookable_bounds(req)
    if s < earliest:
        return "too_soon"
    if s > latest:
        return "too_far"
    tz = req.tz
    local_day = _local_date(s, tz)
    containing = [
        r
        for r in _ranges(req, _Hours(req.rules), local_day - _ONE_DAY, local_day + _ONE_DAY)
        if r.start <= s and e <= r.end
    ]
    if not containing:
        return "outside_working_hours"
    # Membership in the very grid compute_slots walks, so both always agree.
    if not any(
        _in_grid(_range_grid(tz, r.day, r.rs, r.re, req.interval_minutes), s) for r in containing
    ):
        return "off_grid"
    raw: set[BlockerKind] = set()
    buffered = False
    for b in blockers:
        a, z = _utc(b.start, "blocker start"), _utc(b.end, "blocker end")
        if a < e and s < z:
            raw.add(b.kind)
        elif (
            s - req.buffer_before < z + b.buffer_after
            and a - b.buffer_before < e + req.buffer_after
        ):
            buffered = True
    for kind, reason in _OVERLAP_REASONS:
        if kind in raw:
            return reason
    if buffered:
        return "buffer"
    cap = req.rules.max_meetings_per_day
    if cap is not None and bookings_per_day.get(local_day, 0) >= cap:
        return "daily_limit"
    return None


def _in_grid(grid: tuple[datetime, ...], instant: datetime) -> bool:
    k = bisect_left(grid, instant)
    return k < len(grid) and grid[k] == instant


def choose_non_overlapping(slots: Sequence[Interval], n: int) -> list[Interval]:
    """Up to `n` pairwise non-overlapping slots, earliest start first (greedy).

    No buffer is kept between the chosen slots: they are alternatives reserved by one hold,
    and at most one of them becomes a meeting.
    """
    chosen: list[Interval] = []
    if n <= 0:
        return chosen
    for slot in sorted(slots, key=lambda i: (i.start, i.end)):
        if not chosen or slot.start >= chosen[-1].end:
            chosen.append(slot)
            if len(chosen) == n:
                break
    return chosen
