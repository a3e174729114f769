"""The expansion module: busy rule, recurrence, DST, all-day, time-zone ids (research §5.3)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from slotguard.calendars.base import BusyPeriod, ProviderDataError, Window
from slotguard.calendars.recurrence import expand, resolve_tzid

UTC = dt.UTC
BERLIN = ZoneInfo("Europe/Berlin")
NY = ZoneInfo("America/New_York")
WINDOW = Window(dt.datetime(2026, 2, 1, tzinfo=UTC), dt.datetime(2026, 12, 1, tzinfo=UTC))


def cal(*events: str, head: str = "") -> str:
    body = "".join(f"BEGIN:VEVENT\n{e.strip()}\nEND:VEVENT\n" for e in events)
    return f"BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//test//EN\n{head}{body}END:VCALENDAR\n"


def z(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> dt.datetime:
    return dt.datetime(y, mo, d, h, mi, tzinfo=UTC)


def periods(text: str, *, tz: ZoneInfo = BERLIN, owners: tuple[str, ...] = ()) -> list[BusyPeriod]:
    return sorted(
        expand(text, WINDOW, default_tz=tz, owner_emails=owners).all_periods(),
        key=lambda p: p.start,
    )


def starts(text: str, **kw: object) -> list[dt.datetime]:
    return [p.start for p in periods(text, **kw)]  # type: ignore[arg-type]


def test_weekly_across_us_dst() -> None:
    text = cal("""UID:w
DTSTART;TZID=America/New_York:20260302T090000
DTEND;TZID=America/New_York:20260302T100000
RRULE:FREQ=WEEKLY;COUNT=3""")
    assert starts(text) == [z(2026, 3, 2, 14), z(2026, 3, 9, 13), z(2026, 3, 16, 13)]


def test_weekly_across_eu_dst_and_fall_back() -> None:
    text = cal(
        """UID:w
DTSTART;TZID=Europe/Berlin:20260323T090000
DTEND;TZID=Europe/Berlin:20260323T093000
RRULE:FREQ=WEEKLY;COUNT=2""",
        """UID:f
DTSTART;TZID=Europe/Berlin:20261019T090000
DTEND;TZID=Europe/Berlin:20261019T093000
RRULE:FREQ=WEEKLY;COUNT=2""",
    )
    assert starts(text) == [
        z(2026, 3, 23, 8),
        z(2026, 3, 30, 7),
        z(2026, 10, 19, 7),
        z(2026, 10, 26, 8),
    ]


def test_weekly_across_us_and_eu_fall_back() -> None:
    """The autumn transitions fall on different dates too: the last Sunday of October in
    the EU, the first Sunday of November in the US; the week in between differs by 4 hours,
    not 5 or 6."""
    text = cal(
        """UID:ny
DTSTART;TZID=America/New_York:20261019T090000
DTEND;TZID=America/New_York:20261019T100000
RRULE:FREQ=WEEKLY;COUNT=4""",
        """UID:be
DTSTART;TZID=Europe/Berlin:20261019T150000
DTEND;TZID=Europe/Berlin:20261019T160000
RRULE:FREQ=WEEKLY;COUNT=4""",
    )
    got = expand(text, WINDOW, default_tz=ZoneInfo("UTC")).by_uid
    assert [p.start for p in got["ny"].periods] == [
        z(2026, 10, 19, 13),
        z(2026, 10, 26, 13),
        z(2026, 11, 2, 14),
        z(2026, 11, 9, 14),
    ]
    assert [p.start for p in got["be"].periods] == [
        z(2026, 10, 19, 13),
        z(2026, 10, 26, 14),
        z(2026, 11, 2, 14),
        z(2026, 11, 9, 14),
    ]


def test_ambiguous_and_nonexistent_times_on_us_transition_days() -> None:
    text = cal(
        """UID:gap
DTSTART;TZID=America/New_York:20260308T023000
DTEND;TZID=America/New_York:20260308T033000""",
        """UID:amb
DTSTART;TZID=America/New_York:20261101T013000
DTEND;TZID=America/New_York:20261101T020000""",
    )
    got = periods(text, tz=ZoneInfo("UTC"))
    # 02:30 does not exist on 8 March: read with the offset before the gap (-05:00), and
    # its wall-clock hour kept. 01:30 happens twice on 1 November: the first (-04:00), up
    # to 02:00 EST, so the busy time covers both 01:30s.
    assert [(p.start, p.end) for p in got] == [
        (z(2026, 3, 8, 7, 30), z(2026, 3, 8, 8, 30)),
        (z(2026, 11, 1, 5, 30), z(2026, 11, 1, 7)),
    ]


def test_exdate_removes_one_occurrence() -> None:
    text = cal("""UID:x
DTSTART;TZID=America/New_York:20260302T090000
DTEND;TZID=America/New_York:20260302T100000
RRULE:FREQ=WEEKLY;COUNT=3
EXDATE;TZID=America/New_York:20260309T090000""")
    assert starts(text) == [z(2026, 3, 2, 14), z(2026, 3, 16, 13)]


def test_rdate_adds_an_occurrence() -> None:
    text = cal("""UID:r
DTSTART:20260302T090000Z
DTEND:20260302T100000Z
RDATE:20260305T120000Z""")
    assert starts(text) == [z(2026, 3, 2, 9), z(2026, 3, 5, 12)]


def test_moved_occurrence_in_another_tzid() -> None:
    text = cal(
        """UID:m
DTSTART;TZID=Europe/Berlin:20260302T090000
DTEND;TZID=Europe/Berlin:20260302T100000
RRULE:FREQ=WEEKLY;COUNT=3""",
        """UID:m
RECURRENCE-ID;TZID=Europe/Berlin:20260309T090000
DTSTART;TZID=America/New_York:20260309T090000
DTEND;TZID=America/New_York:20260309T100000""",
    )
    # The original 08:00Z slot on 03-09 is freed, 13:00Z (09:00 New York, after its DST) is busy.
    assert starts(text) == [z(2026, 3, 2, 8), z(2026, 3, 9, 13), z(2026, 3, 16, 8)]


def test_cancelled_occurrence_via_override() -> None:
    text = cal(
        """UID:c
DTSTART:20260302T090000Z
DTEND:20260302T100000Z
RRULE:FREQ=DAILY;COUNT=3""",
        """UID:c
RECURRENCE-ID:20260303T090000Z
DTSTART:20260303T090000Z
DTEND:20260303T100000Z
STATUS:CANCELLED""",
    )
    assert starts(text) == [z(2026, 3, 2, 9), z(2026, 3, 4, 9)]


def test_endless_rule_is_bounded_by_the_window() -> None:
    text = cal("""UID:e
DTSTART:20200101T090000Z
DTEND:20200101T093000Z
RRULE:FREQ=DAILY""")
    got = periods(text)
    assert got[0].start == z(2026, 2, 1, 9)
    assert got[-1].start == z(2026, 11, 30, 9)
    assert len(got) == (dt.date(2026, 12, 1) - dt.date(2026, 2, 1)).days


def test_nonexistent_and_ambiguous_local_times() -> None:
    text = cal(
        """UID:gap
DTSTART;TZID=Europe/Berlin:20260329T023000
DTEND;TZID=Europe/Berlin:20260329T033000""",
        """UID:amb
DTSTART;TZID=Europe/Berlin:20261025T023000
DTEND;TZID=Europe/Berlin:20261025T033000""",
    )
    got = periods(text)
    # 02:30 does not exist on spring-forward day: zoneinfo reads it with the earlier
    # offset (+01:00); the ambiguous fall-back 02:30 is taken at its first occurrence (+02:00).
    assert (got[0].start, got[0].end) == (z(2026, 3, 29, 1, 30), z(2026, 3, 29, 2, 30))
    assert got[1].start == z(2026, 10, 25, 0, 30)
    assert all(p.end > p.start for p in got)


def test_multiday_timed_event_across_dst() -> None:
    text = cal("""UID:md
DTSTART;TZID=Europe/Berlin:20260328T120000
DTEND;TZID=Europe/Berlin:20260330T120000""")
    (p,) = periods(text)
    assert (p.start, p.end) == (z(2026, 3, 28, 11), z(2026, 3, 30, 10))


def test_all_day_blocks_the_local_day_in_a_far_zone() -> None:
    text = cal("""UID:ad
DTSTART;VALUE=DATE:20260310
DTEND;VALUE=DATE:20260311""")
    (p,) = periods(text, tz=ZoneInfo("Pacific/Auckland"))
    assert (p.start, p.end) == (z(2026, 3, 9, 11), z(2026, 3, 10, 11))


def test_all_day_without_dtend_is_one_day() -> None:
    text = cal("""UID:ad
DTSTART;VALUE=DATE:20260310""")
    (p,) = periods(text, tz=NY)
    assert (p.start, p.end) == (z(2026, 3, 10, 4), z(2026, 3, 11, 4))


def test_all_day_across_dst_keeps_local_midnights() -> None:
    text = cal("""UID:ad
DTSTART;VALUE=DATE:20260307
DTEND;VALUE=DATE:20260309""")
    (p,) = periods(text, tz=NY)
    assert (p.start, p.end) == (z(2026, 3, 7, 5), z(2026, 3, 9, 4))


def test_x_wr_timezone_applies_to_floating_and_all_day() -> None:
    text = cal(
        """UID:fl
DTSTART:20260310T090000
DTEND:20260310T100000""",
        """UID:ad
DTSTART;VALUE=DATE:20260312""",
        head="X-WR-TIMEZONE:Asia/Tokyo\n",
    )
    got = periods(text, tz=NY)
    assert [(p.start, p.end) for p in got] == [
        (z(2026, 3, 10, 0), z(2026, 3, 10, 1)),
        (z(2026, 3, 11, 15), z(2026, 3, 12, 15)),
    ]


def test_floating_time_uses_the_default_zone() -> None:
    text = cal("""UID:fl
DTSTART:20260310T090000
DTEND:20260310T100000""")
    assert starts(text, tz=NY) == [z(2026, 3, 10, 13)]


@pytest.mark.parametrize(
    ("extra", "busy"),
    [
        ("", True),
        ("STATUS:CONFIRMED", True),
        ("STATUS:TENTATIVE", True),
        ("STATUS:CANCELLED", False),
        ("TRANSP:TRANSPARENT", False),
        ("TRANSP:OPAQUE", True),
        ("X-MICROSOFT-CDO-BUSYSTATUS:FREE", False),
        ("X-MICROSOFT-CDO-BUSYSTATUS:TENTATIVE", True),
        ("X-MICROSOFT-CDO-BUSYSTATUS:OOF", True),
        ("ATTENDEE;PARTSTAT=DECLINED:mailto:owner@example.com", False),
        ("ATTENDEE;PARTSTAT=DECLINED:mailto:someone@example.com", True),
        ("ATTENDEE;PARTSTAT=NEEDS-ACTION:mailto:owner@example.com", True),
        ("ATTENDEE;PARTSTAT=TENTATIVE:mailto:Owner@Example.com", True),
        ("ATTENDEE;PARTSTAT=ACCEPTED:mailto:owner@example.com", True),
        ("X-SLOTGUARD-BOOKING:bk_01", False),
    ],
)
def test_free_busy_matrix(extra: str, busy: bool) -> None:
    text = cal(f"""UID:fb
DTSTART:20260310T090000Z
DTEND:20260310T100000Z
{extra}""")
    assert bool(periods(text, owners=("owner@example.com",))) is busy


def test_all_day_transparent_is_free() -> None:
    text = cal("""UID:ad
DTSTART;VALUE=DATE:20260310
TRANSP:TRANSPARENT""")
    assert periods(text) == []


def test_own_event_is_reported_with_its_booking() -> None:
    text = cal("""UID:bk_01-1@slotguard
DTSTART:20260310T090000Z
DTEND:20260310T100000Z
X-SLOTGUARD-BOOKING:bk_01""")
    got = expand(text, WINDOW, default_tz=BERLIN)
    assert got.by_uid["bk_01-1@slotguard"].own_booking_id == "bk_01"
    assert got.all_periods() == []


def test_event_ongoing_at_window_start_is_kept() -> None:
    w = Window(z(2026, 3, 10, 9, 30), z(2026, 3, 20))
    text = cal("""UID:o
DTSTART:20260310T090000Z
DTEND:20260310T100000Z""")
    (p,) = expand(text, w, default_tz=BERLIN).all_periods()
    assert p.start == z(2026, 3, 10, 9)


def test_windows_tzids_are_mapped() -> None:
    text = cal(
        """UID:win
DTSTART;TZID=W. Europe Standard Time:20260310T090000
DTEND;TZID=W. Europe Standard Time:20260310T100000""",
        """UID:win1
DTSTART;TZID="Eastern Standard Time 1":20260310T090000
DTEND;TZID="Eastern Standard Time 1":20260310T100000""",
    )
    got = expand(text, WINDOW, default_tz=ZoneInfo("Asia/Tokyo"))
    assert sorted(p.start for p in got.all_periods()) == [z(2026, 3, 10, 8), z(2026, 3, 10, 13)]
    assert got.notes == []


def test_globally_unique_tzid_is_mapped_without_warning() -> None:
    text = cal("""UID:g
DTSTART;TZID=/mozilla.org/20070129_1/America/New_York:20260310T090000
DTEND;TZID=/mozilla.org/20070129_1/America/New_York:20260310T100000""")
    got = expand(text, WINDOW, default_tz=BERLIN)
    assert [p.start for p in got.all_periods()] == [z(2026, 3, 10, 13)]
    assert got.notes == []


def test_unknown_tzid_is_floating_in_default_zone_with_a_note() -> None:
    text = cal("""UID:u
DTSTART;TZID=Nowhere Standard Time:20260310T090000
DTEND;TZID=Nowhere Standard Time:20260310T100000""")
    got = expand(text, WINDOW, default_tz=NY)
    assert [p.start for p in got.all_periods()] == [z(2026, 3, 10, 13)]
    assert got.notes and "Nowhere Standard Time" in got.notes[0]


def _custom(offset: str, name: str = "Customized Time Zone") -> str:
    vtz = f"""BEGIN:VTIMEZONE
TZID:{name}
BEGIN:STANDARD
DTSTART:16010101T000000
TZOFFSETFROM:{offset}
TZOFFSETTO:{offset}
END:STANDARD
END:VTIMEZONE
"""
    return cal(
        f"""UID:c{offset}
DTSTART;TZID={name}:20260310T090000
DTEND;TZID={name}:20260310T100000""",
        head=vtz,
    )


KERIO = '"Amsterdam, Belgrade, Berlin, Brussels, Rome, Stockholm, Vienna"'


@pytest.mark.parametrize("tzid", [KERIO, "Europe/Berlin"])
def test_tzid_on_a_date_is_ignored_and_the_day_stays_whole(tzid: str) -> None:
    """Kerio (and others) put a TZID on VALUE=DATE values; a date has no zone (RFC 5545
    3.3.4), so the day is the calendar's local day, with or without DTEND, for a series
    with EXDATE;VALUE=DATE too, and no warning about the zone."""
    text = cal(
        f"""UID:with-end
DTSTART;TZID={tzid};VALUE=DATE:20260310
DTEND;TZID={tzid};VALUE=DATE:20260311""",
        f"""UID:no-end
DTSTART;TZID={tzid};VALUE=DATE:20260312""",
        f"""UID:series
DTSTART;TZID={tzid};VALUE=DATE:20260316
RRULE:FREQ=DAILY;COUNT=3
EXDATE;VALUE=DATE:20260317""",
        f"""UID:free
DTSTART;TZID={tzid};VALUE=DATE:20260320
X-MICROSOFT-CDO-BUSYSTATUS:FREE""",
    )
    got = expand(text, WINDOW, default_tz=NY)

    def day(d: int) -> tuple[dt.datetime, dt.datetime]:
        return z(2026, 3, d, 4), z(2026, 3, d + 1, 4)  # New York midnights (EDT)

    spans = {uid: [(p.start, p.end) for p in s.periods] for uid, s in got.by_uid.items()}
    assert spans == {
        "with-end": [day(10)],
        "no-end": [day(12)],
        "series": [day(16), day(18)],
        "free": [],
    }
    assert got.notes == []


def test_custom_vtimezone_cache_does_not_leak_between_feeds() -> None:
    a = expand(_custom("+0100"), WINDOW, default_tz=BERLIN).all_periods()
    b = expand(_custom("-0500"), WINDOW, default_tz=BERLIN).all_periods()
    assert [p.start for p in a] == [z(2026, 3, 10, 8)]
    assert [p.start for p in b] == [z(2026, 3, 10, 14)]


def test_feed_vtimezone_for_an_iana_name_does_not_override_zoneinfo() -> None:
    bogus = _custom("+0700", name="Europe/Berlin")
    assert [p.start for p in expand(bogus, WINDOW, default_tz=NY).all_periods()] == [
        z(2026, 3, 10, 8)
    ]


def test_this_and_future_range() -> None:
    text = cal(
        """UID:t
DTSTART:20260302T090000Z
DTEND:20260302T100000Z
RRULE:FREQ=DAILY;COUNT=4""",
        """UID:t
RECURRENCE-ID;RANGE=THISANDFUTURE:20260304T090000Z
DTSTART:20260304T150000Z
DTEND:20260304T160000Z""",
    )
    assert starts(text) == [
        z(2026, 3, 2, 9),
        z(2026, 3, 3, 9),
        z(2026, 3, 4, 15),
        z(2026, 3, 5, 15),
    ]


def test_until_in_utc_for_a_local_series() -> None:
    text = cal("""UID:u
DTSTART;TZID=Europe/Berlin:20260302T090000
DTEND;TZID=Europe/Berlin:20260302T100000
RRULE:FREQ=DAILY;UNTIL=20260304T080000Z""")
    assert starts(text) == [z(2026, 3, 2, 8), z(2026, 3, 3, 8), z(2026, 3, 4, 8)]


def test_bom_lf_and_missing_version_are_tolerated() -> None:
    text = (
        "\ufeffBEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:b\nDTSTART:20260310T090000Z\n"
        "DTEND:20260310T100000Z\nEND:VEVENT\nEND:VCALENDAR\n"
    )
    assert starts(text) == [z(2026, 3, 10, 9)]


@pytest.mark.parametrize("bad", ["not a calendar", "BEGIN:VCALENDAR\nBEGIN:VEVENT\n"])
def test_malformed_data_raises_provider_data_error(bad: str) -> None:
    with pytest.raises(ProviderDataError):
        expand(bad, WINDOW, default_tz=BERLIN)


def test_resolve_tzid() -> None:
    assert resolve_tzid("Europe/Berlin") == "Europe/Berlin"
    assert resolve_tzid("W. Europe Standard Time") == "Europe/Berlin"
    assert resolve_tzid("Nowhere") is None
