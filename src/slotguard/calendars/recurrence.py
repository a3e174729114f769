"""iCalendar → busy periods: parsing, time zones, recurrence expansion and the busy rule.

The one place where iCalendar data (CalDAV resources, ICS feeds) becomes busy time.
Expansion is `recurring-ical-events` over `icalendar` (RRULE, RDATE, EXDATE, RECURRENCE-ID
including moved occurrences in another zone and ``RANGE=THISANDFUTURE``, DST), never a
hand-rolled rrule loop.

Time zones, in order:

* IANA names are resolved by zoneinfo; a feed's own VTIMEZONE for an IANA name is ignored.
* Windows names (``W. Europe Standard Time``, also with Outlook's `` 1`` suffix) and
  "globally unique" ids (``/mozilla.org/…/Europe/Berlin``) are rewritten to their IANA name
  before parsing.
* Any other TZID that the data defines with a VTIMEZONE (Outlook's ``Customized Time
  Zone``) is rewritten to ``SG-<sha1 of that definition>`` before parsing. icalendar keeps
  custom VTIMEZONEs in a process-wide cache where the first definition of a TZID wins; keyed
  by content, two feeds defining the same name differently cannot contaminate each other.
* A TZID that is none of these is read as floating time and reported in ``notes``.
* A TZID on a ``VALUE=DATE`` value (Kerio) is dropped: a date has no zone.
* Floating times (and all-day dates) are wall-clock times in the calendar's zone:
  ``X-WR-TIMEZONE`` when the data names a valid one, else the configured calendar zone,
  else the business zone.

Busy rule (fail closed, what is not known to be free is busy): an occurrence is free when
``STATUS:CANCELLED``, ``TRANSP:TRANSPARENT``, ``X-MICROSOFT-CDO-BUSYSTATUS:FREE``, declined
(``PARTSTAT=DECLINED``) by an attendee that is the calendar's owner, or when it carries the
marker of an event slotguard wrote itself. Tentative, needs-action and unknown states block.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar
import recurring_ical_events
from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

from slotguard.calendars.base import MARKER_PROPERTY, BusyPeriod, ProviderDataError, Window

__all__ = ["Expanded", "SeriesBusy", "expand", "is_iana", "resolve_tzid"]

# Expansion margin around the window: floating events are compared as wall-clock times,
# and a day either side covers every UTC offset.
_MARGIN = dt.timedelta(days=1)
# Occurrences kept per parse: an endless rule is bounded by the window anyway; this only
# stops a hostile feed (a FREQ=MINUTELY series) from exhausting memory.
MAX_OCCURRENCES = 50_000

_UNFOLD = re.compile(r"\r?\n[ \t]")
_TZID_PARAM = re.compile(r';TZID=("[^"]*"|[^;:]*)', re.IGNORECASE)
_SUFFIX = re.compile(r"\s+\d+$")
# A date-valued time property (DTSTART;VALUE=DATE:…, also EXDATE/RDATE/RECURRENCE-ID).
_DATE_VALUED = re.compile(
    r"^(DTSTART|DTEND|DUE|EXDATE|RDATE|RECURRENCE-ID);(?:[^:]*;)?VALUE=DATE[;:]", re.IGNORECASE
)


@dataclass
class SeriesBusy:
    """Busy time of one UID (a master with its overrides, or a single event)."""

    periods: list[BusyPeriod] = field(default_factory=list)
    own_booking_id: str | None = None


@dataclass
class Expanded:
    """Busy time per UID, plus non-fatal notes (unknown TZIDs, truncation)."""

    by_uid: dict[str, SeriesBusy] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    calendar_tz: str | None = None  # X-WR-TIMEZONE, when valid

    def all_periods(self) -> list[BusyPeriod]:
        return [p for s in self.by_uid.values() for p in s.periods]


def is_iana(name: str) -> bool:
    if not name or name.startswith("/") or ".." in name:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def resolve_tzid(tzid: str) -> str | None:
    """The IANA name a TZID stands for (itself, a Windows name, a globally unique id), or None."""
    name = tzid.strip().strip('"')
    if is_iana(name):
        return name
    for candidate in (name, _SUFFIX.sub("", name)):
        if candidate in WINDOWS_TO_OLSON:
            return WINDOWS_TO_OLSON[candidate]
    if name.startswith("/"):
        parts = name.strip("/").split("/")
        for i in range(1, len(parts)):
            suffix = "/".join(parts[i:])
            if "/" in suffix and is_iana(suffix):
                return suffix
    return None


def _normalise_tzids(text: str) -> tuple[str, list[str]]:
    """Rewrite TZIDs so icalendar sees only IANA names or content-keyed custom ids."""
    text = _UNFOLD.sub("", text.lstrip("\ufeff"))
    lines = text.splitlines()
    defined: dict[str, str] = {}  # TZID as written -> its VTIMEZONE text
    block: list[str] | None = None
    for line in lines:
        upper = line.upper()
        if upper.startswith("BEGIN:VTIMEZONE"):
            block = []
        if block is not None:
            block.append(line)
            if upper.startswith("END:VTIMEZONE"):
                tzid = next((ln[5:] for ln in block if ln.upper().startswith("TZID:")), None)
                if tzid is not None:
                    defined[tzid.strip()] = "\n".join(block)
                block = None

    mapping: dict[str, str] = {}
    unknown: list[str] = []

    def target(raw: str) -> str:
        name = raw.strip().strip('"')
        if name in mapping:
            return mapping[name]
        resolved = resolve_tzid(name)
        if resolved is not None:
            new = resolved
        elif name in defined:
            digest = hashlib.sha1(defined[name].encode(), usedforsecurity=False).hexdigest()
            new = f"SG-{digest}"
        else:
            new = name
            if name not in unknown:
                unknown.append(name)
        mapping[name] = new
        return new

    out: list[str] = []
    for line in lines:
        upper = line.upper()
        if upper.startswith("TZID:"):
            out.append("TZID:" + target(line[5:]))
        elif ";TZID=" in upper and _DATE_VALUED.match(line):
            # A date has no zone (RFC 5545 3.3.4), yet Kerio and others write one: with it,
            # icalendar reads midnight in that zone, a timed instant (without DTEND: zero
            # length, no busy time at all). The day is a day of the calendar's zone.
            out.append(_TZID_PARAM.sub("", line))
        elif ";TZID=" in upper:
            out.append(_TZID_PARAM.sub(lambda m: f";TZID={_quote(target(m.group(1)))}", line))
        else:
            out.append(line)
    notes = [f"unknown time zone {name!r} read as floating time" for name in unknown]
    return "\r\n".join(out) + "\r\n", notes


def _quote(value: str) -> str:
    return f'"{value}"' if any(c in value for c in ";:,") else value


def _parse(text: str) -> tuple[icalendar.Calendar, list[str]]:
    normalised, notes = _normalise_tzids(text)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cal = icalendar.Calendar.from_ical(normalised)
    except Exception as exc:  # icalendar raises ValueError, KeyError, IndexError…
        raise ProviderDataError(f"malformed iCalendar data: {type(exc).__name__}") from exc
    if not isinstance(cal, icalendar.Calendar):
        raise ProviderDataError("malformed iCalendar data: no VCALENDAR")
    return cal, notes


def _zone_of(cal: icalendar.Calendar, fallback: ZoneInfo) -> tuple[ZoneInfo, str | None]:
    wr = cal.get("X-WR-TIMEZONE")
    if wr is not None:
        name = resolve_tzid(str(wr))
        if name is not None:
            return ZoneInfo(name), name
    return fallback, None


def _aware(value: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    return value.replace(tzinfo=tz) if value.tzinfo is None else value


def _is_free(ev: icalendar.Event, owners: frozenset[str]) -> bool:
    if str(ev.get("STATUS", "")).upper() == "CANCELLED":
        return True
    if str(ev.get("TRANSP", "")).upper() == "TRANSPARENT":
        return True
    if str(ev.get("X-MICROSOFT-CDO-BUSYSTATUS", "")).upper() == "FREE":
        return True
    if owners:
        attendees = ev.get("ATTENDEE")
        if attendees is not None:
            listed = attendees if isinstance(attendees, list) else [attendees]
            for a in listed:
                email = str(a).lower().removeprefix("mailto:")
                partstat = str(getattr(a, "params", {}).get("PARTSTAT", "")).upper()
                if email in owners and partstat == "DECLINED":
                    return True
    return False


def _period(ev: icalendar.Event, tz: ZoneInfo) -> BusyPeriod | None:
    start_prop: Any = ev["DTSTART"]
    end_prop: Any = ev.get("DTEND")
    start: dt.date = start_prop.dt
    end: dt.date | None = end_prop.dt if end_prop is not None else None
    if not isinstance(start, dt.datetime):  # all-day: whole local days in the calendar zone
        if not isinstance(end, dt.date) or isinstance(end, dt.datetime) or end <= start:
            end = start + dt.timedelta(days=1)
        a = dt.datetime.combine(start, dt.time(0), tzinfo=tz)
        b = dt.datetime.combine(end, dt.time(0), tzinfo=tz)
    else:
        a = _aware(start, tz)
        if isinstance(end, dt.datetime):
            b = _aware(end, tz)
        elif isinstance(end, dt.date):
            b = dt.datetime.combine(end, dt.time(0), tzinfo=tz)
        else:
            b = a
    wall = b.replace(tzinfo=None) - a.replace(tzinfo=None)
    a, b = a.astimezone(dt.UTC), b.astimezone(dt.UTC)
    if b <= a < a + wall:
        # A span inside a spring-forward gap (02:30-03:30) is empty in real time; keep its
        # wall-clock length rather than lose it (fail closed).
        b = a + wall
    if b <= a:
        return None  # zero-length events take no time
    return BusyPeriod(a, b)


def expand(
    text: str | bytes,
    window: Window,
    *,
    default_tz: ZoneInfo,
    owner_emails: Iterable[str] = (),
) -> Expanded:
    """Busy time of every VEVENT in ``text`` that overlaps ``window``, grouped by UID.

    ``default_tz``: the calendar's zone (else the business zone), for floating times and
    all-day dates unless the data names its own with ``X-WR-TIMEZONE``. Raises
    ``ProviderDataError`` on data that is not iCalendar.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    cal, notes = _parse(text)
    tz, wr_name = _zone_of(cal, default_tz)
    owners = frozenset(e.strip().lower() for e in owner_emails if e)
    result = Expanded(notes=notes, calendar_tz=wr_name)
    # Own events: marked anywhere in the series (the master carries the marker).
    own: dict[str, str] = {}
    for ev in cal.walk("VEVENT"):
        marker = ev.get(MARKER_PROPERTY)
        if marker is not None:
            own[str(ev.get("UID", ""))] = str(marker)
    lo = (window.start - _MARGIN).astimezone(tz)
    hi = (window.end + _MARGIN).astimezone(tz)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            query = recurring_ical_events.of(cal, skip_bad_series=True)
            occurrences = query.between(lo, hi)
            count = 0
            for ev in occurrences:
                count += 1
                if count > MAX_OCCURRENCES:
                    result.notes.append(
                        f"more than {MAX_OCCURRENCES} occurrences in the window; the rest "
                        "were ignored"
                    )
                    break
                uid = str(ev.get("UID", ""))
                series = result.by_uid.setdefault(uid, SeriesBusy())
                if uid in own:
                    series.own_booking_id = own[uid]
                    continue
                if "DTSTART" not in ev or _is_free(ev, owners):
                    continue
                period = _period(ev, tz)
                if period is None or period.end <= window.start or period.start >= window.end:
                    continue
                series.periods.append(period)
    except ProviderDataError:
        raise
    except Exception as exc:
        raise ProviderDataError(f"unusable iCalendar data: {type(exc).__name__}") from exc
    # UIDs present in the data but with no occurrence in the window still exist (an own
    # event far away, a series that ended): list them so deltas can replace them.
    for ev in cal.walk("VEVENT"):
        uid = str(ev.get("UID", ""))
        series = result.by_uid.setdefault(uid, SeriesBusy())
        if uid in own:
            series.own_booking_id = own[uid]
    for series in result.by_uid.values():
        series.periods.sort(key=lambda p: (p.start, p.end))
    return result
