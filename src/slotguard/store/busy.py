"""Busy time as availability reads it: packed text from the database, decoded once.

A slot listing needs every busy period of a month or more. Read row by row, each period's
two instants were decoded into objects one at a time, on every request; that cost more than
computing the slots. So busy time arrives packed, one text value per source (the posted busy
time of a window, aggregated by the database; a calendar's whole local copy, packed when
it was written), and a text is decoded once. The decoding caches are keyed by the text
itself: a changed row or copy is a different text, so nothing decoded can be stale.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
from dataclasses import dataclass, field
from typing import NamedTuple

import orjson

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# Smaller texts are decoded without the cache: that is cheap, and the booking path's few
# periods around each booking time would only push the listings' entries out.
_CACHE_FROM_CHARS = 2048


@dataclass(frozen=True, slots=True, eq=False)
class BusyPeriods:
    """Busy periods in UTC, sorted by start: ``starts[i]``-``ends[i]``.

    Compared and hashed by identity: the decoding caches hand out one object per text for
    as long as they keep it, so what a caller derives from it may be cached by the object.
    """

    starts: tuple[dt.datetime, ...]
    ends: tuple[dt.datetime, ...]
    # Periods are disjoint (then `ends` is sorted too and a window is two bisections).
    disjoint: bool

    def window(self, start: dt.datetime, end: dt.datetime) -> BusyWindow:
        """The periods that overlap [start, end) (all of them unless disjoint)."""
        if not self.disjoint:
            return BusyWindow(self, 0, len(self.starts))
        first = bisect.bisect_right(self.ends, start)  # the first that ends after `start`
        last = bisect.bisect_left(self.starts, end)  # past the last that starts before `end`
        return BusyWindow(self, first, max(first, last))


@dataclass(frozen=True, slots=True)
class BusyWindow:
    """``periods[first:last]``: the part of one source that a read asked for."""

    periods: BusyPeriods
    first: int
    last: int

    def pairs(self) -> list[tuple[dt.datetime, dt.datetime]]:
        p, i, j = self.periods, self.first, self.last
        return list(zip(p.starts[i:j], p.ends[i:j], strict=True))


class CalendarState(NamedTuple):
    """A busy calendar's sync state, as staleness warnings need it."""

    id: str
    status: str
    last_synced_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class BusyRead:
    """What one busy read found: the windows of each source, and the sync state of each
    busy calendar."""

    windows: list[BusyWindow] = field(default_factory=list)
    calendars: list[CalendarState] = field(default_factory=list)


def _posted(packed: str, postgres: bool) -> BusyPeriods:
    # "start/end,start/end,…": SQLite's stored text (naive UTC, fixed width) or, from
    # PostgreSQL, epoch microseconds.
    starts: list[dt.datetime] = []
    ends: list[dt.datetime] = []
    if postgres:
        micro = dt.timedelta(microseconds=1)
        for item in packed.split(","):
            a, _, b = item.partition("/")
            starts.append(_EPOCH + int(a) * micro)
            ends.append(_EPOCH + int(b) * micro)
    else:
        parse = dt.datetime.fromisoformat
        for item in packed.split(","):
            a, _, b = item.partition("/")
            starts.append(parse(a).replace(tzinfo=dt.UTC))
            ends.append(parse(b).replace(tzinfo=dt.UTC))
    pairs = sorted(zip(starts, ends, strict=True))  # the database's order, made certain
    return BusyPeriods(tuple(a for a, _ in pairs), tuple(b for _, b in pairs), disjoint=False)


_posted_cached = functools.lru_cache(maxsize=64)(_posted)


def posted_periods(packed: str, *, postgres: bool) -> BusyPeriods:
    """Posted busy time of one window, as the busy read's aggregate packed it."""
    if len(packed) < _CACHE_FROM_CHARS:
        return _posted(packed, postgres)
    return _posted_cached(packed, postgres)


@functools.lru_cache(maxsize=128)
def copy_periods(packed: str) -> BusyPeriods:
    """A calendar's packed copy (JSON ``[[start, end], …]`` in epoch seconds, merged and
    sorted by start, see `calendar_repo.pack_periods`)."""
    fromts = dt.datetime.fromtimestamp
    pairs = orjson.loads(packed)
    return BusyPeriods(
        tuple(fromts(a, dt.UTC) for a, _ in pairs),
        tuple(fromts(b, dt.UTC) for _, b in pairs),
        disjoint=True,
    )
