"""Bounds on what slotguard accepts, in one place: the API, the services and the docs read them.

The instant range keeps every instant far from the ends of `datetime`: windows, margins,
buffers and look-aheads add at most a few years to an accepted instant, so arithmetic on
them can never overflow, and every stored instant has a four-digit year.
"""

from __future__ import annotations

import datetime as dt

INSTANT_MIN = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
"""The earliest accepted instant (inclusive)."""

INSTANT_MAX = dt.datetime(3000, 1, 1, tzinfo=dt.UTC)
"""The end of the accepted range (exclusive): the last accepted instant is in 2999."""

MIN_MEETING = dt.timedelta(minutes=1)
"""The shortest booking: slot grids are counted in whole minutes."""


def check_instant(value: dt.datetime) -> dt.datetime:
    """`value` (aware) as UTC, or ValueError when it is outside [INSTANT_MIN, INSTANT_MAX).

    The wall-clock year is checked before converting: converting
    `0001-01-01T00:30:00+01:00` or `9999-12-31T22:00:00-05:00` to UTC would overflow.
    """
    if not INSTANT_MIN.year <= value.year < INSTANT_MAX.year:
        raise ValueError(instant_range_message())
    utc = value.astimezone(dt.UTC)
    if not INSTANT_MIN <= utc < INSTANT_MAX:
        raise ValueError(instant_range_message())
    return utc


def instant_range_message() -> str:
    return (
        f"must be from {INSTANT_MIN:%Y-%m-%dT%H:%M:%SZ} up to (not including) "
        f"{INSTANT_MAX:%Y-%m-%dT%H:%M:%SZ}"
    )
