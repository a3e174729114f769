"""IANA time zone names."""

from __future__ import annotations

import functools
import importlib.resources
import zoneinfo


@functools.cache
def _known() -> frozenset[str]:
    # The tz database's own list of names, as shipped by the `tzdata` package: every zone and
    # every official alias (the backward links, so Asia/Calcutta and US/Eastern keep working).
    # Not `zoneinfo.available_timezones()`: that also walks the system zone directory, where
    # files such as "localtime" (this machine's zone, whatever it is) are not IANA names.
    text = importlib.resources.files("tzdata").joinpath("zones").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


def check_zone_name(name: str) -> str:
    """Return `name` if it is an IANA zone name or alias, else raise ValueError."""
    if name not in _known():
        raise ValueError(f"unknown IANA time zone: {name!r}")
    return name


@functools.cache
def zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(check_zone_name(name))
