"""IANA time zone names."""

from __future__ import annotations

import functools
import zoneinfo


@functools.cache
def _known() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def check_zone_name(name: str) -> str:
    """Return `name` if it is an IANA zone this machine knows, else raise ValueError."""
    if name not in _known():
        raise ValueError(f"unknown IANA time zone: {name!r}")
    return name


@functools.cache
def zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(check_zone_name(name))
