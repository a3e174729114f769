"""The slot list's JSON: orjson's fast path for whole-minute offsets, and the exact text
of an old local mean time with seconds (which orjson alone would round)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import orjson

from slotguard.api.routes.availability import _local, _slot_list
from slotguard.domain.availability import Interval


def _slots(start: dt.datetime, n: int) -> list[Interval]:
    step = dt.timedelta(minutes=30)
    return [Interval(start + k * step, start + (k + 1) * step) for k in range(n)]


def _rendered(slots: list[Interval], tz: dt.tzinfo) -> list[dict[str, str]]:
    return orjson.loads(bytes(orjson.dumps({"s": _slot_list(slots, tz)})))["s"]


def test_modern_slots_render_as_local_rfc3339() -> None:
    tz = ZoneInfo("Asia/Kolkata")
    slots = _slots(dt.datetime(2030, 3, 4, 3, 30, tzinfo=dt.UTC), 3)
    assert _rendered(slots, tz) == [
        {"start": _local(s.start, tz), "end": _local(s.end, tz)} for s in slots
    ]
    assert _rendered(slots, tz)[0]["start"] == "2030-03-04T09:00:00+05:30"
    assert _rendered(slots, dt.UTC)[0]["start"] == "2030-03-04T03:30:00Z"


def test_a_local_mean_time_keeps_its_seconds() -> None:
    # Africa/Monrovia was -00:44:30 until 1972; orjson would write -00:44.
    tz = ZoneInfo("Africa/Monrovia")
    slots = _slots(dt.datetime(1950, 6, 1, 12, 0, tzinfo=dt.UTC), 2)
    got = _rendered(slots, tz)
    assert got == [{"start": _local(s.start, tz), "end": _local(s.end, tz)} for s in slots]
    assert got[0]["start"] == "1950-06-01T11:15:30-00:44:30"


def test_no_slots() -> None:
    assert _rendered([], ZoneInfo("Europe/Berlin")) == []
