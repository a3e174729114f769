"""Microsoft 365 / Outlook through Microsoft Graph behind the provider interface (research
note §2).

* Reads: ``calendarView/delta`` over the window; ``@odata.nextLink`` and
  ``@odata.deltaLink`` are followed exactly as given (their tokens carry the window and
  every parameter; nothing is added); the delta link is the cursor; ``@removed`` items are
  deleted locally (Graph also reports changes outside the window that way, and dropping
  those is right too); 410 → ``CursorExpired``. Always ``Prefer: outlook.timezone="UTC"``.
* Busy rule (fail closed): busy unless ``isCancelled``, declined by the owner,
  ``showAs`` ``free`` or ``workingElsewhere``, or one of our own events. ``tentative``,
  ``oof`` and ``unknown`` are busy. All-day events are midnight to midnight whatever the
  Prefer zone says: their dates are read in ``originalStartTimeZone`` (Windows names mapped
  to IANA, a trailing `` 1`` stripped), failing that the calendar's or business zone.
* Own events: ours carry a ``transactionId`` (only apps set one) and the extended property
  marker; delta cannot expand extended properties, so for events with a transactionId the
  marker is read with one GET each (there is one such event per booking, not per event).
* Writes: ``transactionId`` = the booking's derived identity plus the marker. Before a
  create, the marker is looked up, so a retry after a lost answer adopts the event it made
  (whether or not Graph de-duplicated the transactionId); PATCH with ``If-Match``;
  DELETE treats 404 as done.
* At most 4 requests in flight per mailbox, across the mailbox's calendars and every
  process (``calendars/permits.py``). The mailbox is the calendar owner's address, which
  the connect check reads (``CheckResult.mailbox``, kept in the settings as ``mailbox``;
  for a calendar stored without it, the engine's next sync asks once). Until then a
  calendar counts as a mailbox of its own.
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
from typing import Any
from zoneinfo import ZoneInfo

from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

from slotguard.calendars.base import (
    BookingEvent,
    BusyPeriod,
    CheckResult,
    CursorExpired,
    EventGone,
    EventRef,
    ProviderAuthError,
    ProviderContext,
    ProviderDataError,
    ProviderSpec,
    ProviderUnavailable,
    Pull,
    RemoteItem,
    Window,
    all_day_period,
)
from slotguard.calendars.permits import mailbox_key
from slotguard.calendars.rest import MAILBOXES, RestSession, classify_graph

DEFAULT_GRAPH_URL = "https://graph.microsoft.com/v1.0"
LABEL = "Microsoft Graph"
# A fixed property set GUID names slotguard's marker property for good.
MARKER_PROPERTY_ID = "String {6b1a7d2e-3c4f-4b8a-9e51-0d2f7c9a4e63} Name slotguardBooking"
PREFER = 'outlook.timezone="UTC", odata.maxpagesize=200'
MAX_PAGES = 2000
FREE = frozenset({"free", "workingElsewhere"})
_SUFFIX = re.compile(r"\s+\d+$")


def windows_zone(name: Any) -> ZoneInfo | None:
    """A zone from a Graph ``timeZone``/``originalStartTimeZone``: an IANA name, a Windows
    name (Outlook sometimes appends `` 1``), or None when unknown."""
    if not isinstance(name, str) or not name:
        return None
    for candidate in (name, _SUFFIX.sub("", name)):
        iana = WINDOWS_TO_OLSON.get(candidate)
        for key in (iana, candidate):
            if not key:
                continue
            try:
                return ZoneInfo(key)
            except (KeyError, ValueError):
                continue
    return None


def _wire(t: dt.datetime) -> dict[str, str]:
    return {"dateTime": t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


def _quote_odata(value: str) -> str:
    return value.replace("'", "''")


class MicrosoftCalendar:
    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx
        self.base = (ctx.settings.get("api_url") or DEFAULT_GRAPH_URL).rstrip("/")
        cid = ctx.settings.get("calendar_id")
        self.calendar_id = str(cid) if cid else None
        mailbox = ctx.settings.get("mailbox")
        self.mailbox_key = mailbox_key(
            "microsoft", str(mailbox) if mailbox else f"calendar:{ctx.calendar_id}"
        )
        if ctx.permits is not None:
            limiter = ctx.permits.limiter(self.mailbox_key)
        else:  # no database at hand (tests of the provider alone)
            sem = MAILBOXES.get(self.mailbox_key)
            limiter = lambda: sem  # noqa: E731
        self.rest = RestSession(
            ctx.http,
            label=LABEL,
            tokens=ctx.tokens,
            classify=classify_graph,
            timeout_s=ctx.timeout_s,
            limiter=limiter,
            default_headers={"Prefer": PREFER},
        )

    @property
    def calendar_url(self) -> str:
        if self.calendar_id is None:
            return f"{self.base}/me/calendar"
        return f"{self.base}/me/calendars/{urllib.parse.quote(self.calendar_id, safe='')}"

    @property
    def delta_url(self) -> str:
        if self.calendar_id is None:
            return f"{self.base}/me/calendarView/delta"
        return f"{self.calendar_url}/calendarView/delta"

    @property
    def events_url(self) -> str:
        if self.calendar_id is None:
            return f"{self.base}/me/events"
        return f"{self.calendar_url}/events"

    def _event_url(self, event_id: str) -> str:
        return f"{self.base}/me/events/{urllib.parse.quote(event_id, safe='')}"

    # -- reads ----------------------------------------------------------------------------

    async def check(self) -> CheckResult:
        r = await self.rest.request("GET", self.calendar_url, passthrough=(404,))
        if r.status_code == 404:
            raise ProviderUnavailable(f"{LABEL}: no calendar {self.calendar_id!r}", status=404)
        data = self.rest.json(r)
        name = data.get("name")
        owner = data.get("owner")
        address = owner.get("address") if isinstance(owner, dict) else None
        return CheckResult(
            name=name if isinstance(name, str) and name else None,
            mailbox=address.strip().lower()
            if isinstance(address, str) and "@" in address
            else None,
        )

    async def pull(self, cursor: str | None, window: Window) -> Pull:
        full = cursor is None
        url = cursor or self.delta_url
        params: dict[str, str] | None = None
        if cursor is None:
            params = {
                "startDateTime": window.start.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "endDateTime": window.end.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        items: list[RemoteItem] = []
        deleted: list[str] = []
        notes: list[str] = []
        for _ in range(MAX_PAGES):
            r = await self.rest.request("GET", url, params=params, passthrough=(404, 410))
            if r.status_code == 410:
                if cursor is not None:
                    raise CursorExpired(f"{LABEL}: the delta token expired", status=410)
                raise ProviderUnavailable(f"{LABEL} answered 410 to a full sync", status=410)
            if r.status_code == 404:
                raise ProviderUnavailable(f"{LABEL}: the calendar is gone", status=404)
            data = self.rest.json(r)
            values = data.get("value")
            if not isinstance(values, list):
                raise ProviderDataError(f"{LABEL} answered a page without a value list")
            for raw in values:
                if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
                    notes.append("an event without an id was skipped")
                    continue
                if "@removed" in raw:
                    if not full:
                        deleted.append(raw["id"])
                    continue
                items.append(await self._item(raw, notes))
            next_link = data.get("@odata.nextLink")
            if isinstance(next_link, str) and next_link:
                url, params = next_link, None  # followed exactly as given
                continue
            delta = data.get("@odata.deltaLink")
            if not isinstance(delta, str) or not delta:
                raise ProviderDataError(f"{LABEL}: the last page carried no delta link")
            return Pull(
                full=full, items=items, deleted=deleted, cursor=delta, notes=sorted(set(notes))
            )
        raise ProviderDataError(f"{LABEL}: more than {MAX_PAGES} pages")

    async def _item(self, raw: dict[str, Any], notes: list[str]) -> RemoteItem:
        own = None
        if raw.get("transactionId"):
            own = await self._marker_of(raw["id"])
        etag = raw.get("@odata.etag") if isinstance(raw.get("@odata.etag"), str) else None
        series = raw.get("seriesMasterId") if isinstance(raw.get("seriesMasterId"), str) else None
        base = {"external_id": raw["id"], "etag": etag, "series_id": series, "own_booking_id": own}
        if own is not None or not _is_busy(raw):
            return RemoteItem(**base)
        period = self._period(raw, notes)
        if period is None or period.end <= period.start:
            return RemoteItem(**base)
        return RemoteItem(busy=(period,), **base)

    async def _marker_of(self, event_id: str) -> str | None:
        r = await self.rest.request(
            "GET",
            self._event_url(event_id),
            passthrough=(404,),
            params={
                "$select": "id",
                "$expand": f"singleValueExtendedProperties($filter=id eq "
                f"'{_quote_odata(MARKER_PROPERTY_ID)}')",
            },
        )
        if r.status_code == 404:
            return None
        for prop in self.rest.json(r).get("singleValueExtendedProperties") or []:
            if isinstance(prop, dict) and prop.get("id", "").lower() == MARKER_PROPERTY_ID.lower():
                value = prop.get("value")
                return value if isinstance(value, str) and value else None
        return None

    def _period(self, raw: dict[str, Any], notes: list[str]) -> BusyPeriod | None:
        start, end = raw.get("start"), raw.get("end")
        if not isinstance(start, dict) or not isinstance(end, dict):
            notes.append("an event without times was skipped")
            return None
        try:
            if raw.get("isAllDay"):
                first = dt.date.fromisoformat(str(start["dateTime"])[:10])
                last = dt.date.fromisoformat(str(end["dateTime"])[:10])
                if last <= first:
                    last = first + dt.timedelta(days=1)
                zone = windows_zone(raw.get("originalStartTimeZone"))
                if zone is None:
                    notes.append(
                        f"unknown time zone {str(raw.get('originalStartTimeZone'))[:60]!r}: "
                        "all-day event read in the calendar's zone"
                    )
                    zone = self.ctx.calendar_tz or self.ctx.business_tz
                return all_day_period(first, last, zone)
            return BusyPeriod(self._instant(start), self._instant(end))
        except (KeyError, ValueError, TypeError):
            notes.append("an event with unreadable times was skipped")
            return None

    def _instant(self, t: dict[str, Any]) -> dt.datetime:
        # 7 fractional digits, no offset; read together with timeZone (UTC, as asked).
        raw = str(t["dateTime"])
        head, dot, frac = raw.partition(".")
        parsed = dt.datetime.fromisoformat(head + (dot + frac[:6] if dot else ""))
        if parsed.tzinfo is None:
            zone = windows_zone(t.get("timeZone") or "UTC")
            if zone is None:
                raise ValueError("unknown time zone")
            parsed = parsed.replace(tzinfo=zone)
        return parsed.astimezone(dt.UTC)

    # -- writes ---------------------------------------------------------------------------

    def _body(self, event: BookingEvent) -> dict[str, Any]:
        return {
            "subject": event.title,
            "body": {"contentType": "text", "content": event.description or ""},
            "start": _wire(event.start),
            "end": _wire(event.end),
            "showAs": "busy",
            "isReminderOn": False,
        }

    async def _find(self, booking_id: str) -> list[dict[str, Any]]:
        flt = (
            f"singleValueExtendedProperties/Any(ep: ep/id eq '{_quote_odata(MARKER_PROPERTY_ID)}'"
            f" and ep/value eq '{_quote_odata(booking_id)}')"
        )
        r = await self.rest.request("GET", self.events_url, params={"$filter": flt})
        found = self.rest.json(r).get("value")
        return (
            [e for e in found if isinstance(e, dict) and isinstance(e.get("id"), str)]
            if (isinstance(found, list))
            else []
        )

    async def upsert_event(self, event: BookingEvent, existing: EventRef | None) -> EventRef:
        if existing is not None and existing.generation == event.generation:
            return await self._patch(existing.remote_id, event, existing.etag)
        # A create is not safe to repeat blindly (Graph documents no retention for
        # transactionId de-duplication): look for our marker first, every time.
        for attempt in range(2):
            found = await self._find(event.booking_id)
            if found:
                keep, *extra = found
                for dup in extra:  # duplicates are "not guaranteed to be detected"
                    await self.delete_event(EventRef(remote_id=dup["id"], generation=0))
                return await self._patch(keep["id"], event, None)
            body = {
                **self._body(event),
                "transactionId": str(event.identity),
                "singleValueExtendedProperties": [
                    {"id": MARKER_PROPERTY_ID, "value": event.booking_id}
                ],
            }
            try:
                r = await self.rest.request("POST", self.events_url, json=body, retry_unsafe=False)
            except ProviderUnavailable:
                if attempt == 0:
                    continue  # the outcome is unknown: look again before re-creating
                raise
            data = self.rest.json(r)
            if not isinstance(data.get("id"), str):
                raise ProviderDataError(f"{LABEL} created an event without an id")
            return EventRef(remote_id=data["id"], generation=event.generation, etag=_etag(data))
        raise ProviderUnavailable(f"{LABEL}: the event could not be created")

    async def _patch(self, event_id: str, event: BookingEvent, etag: str | None) -> EventRef:
        for _ in range(2):
            headers = {"If-Match": etag} if etag else {}
            r = await self.rest.request(
                "PATCH",
                self._event_url(event_id),
                json=self._body(event),
                headers=headers,
                passthrough=(404, 412),
            )
            if r.status_code == 404:
                raise EventGone(f"{LABEL}: the event of this booking was deleted", status=404)
            if r.status_code == 412:
                etag = None  # changed by someone else: the booking wins, write it again
                continue
            data = self.rest.json(r)
            return EventRef(remote_id=event_id, generation=event.generation, etag=_etag(data))
        raise ProviderUnavailable(f"{LABEL}: the event keeps changing under us", status=412)

    async def delete_event(self, ref: EventRef) -> None:
        await self.rest.request("DELETE", self._event_url(ref.remote_id), passthrough=(404,))


def _etag(data: dict[str, Any]) -> str | None:
    etag = data.get("@odata.etag")
    return etag if isinstance(etag, str) else None


def _is_busy(raw: dict[str, Any]) -> bool:
    if raw.get("isCancelled"):
        return False
    response = raw.get("responseStatus")
    if isinstance(response, dict) and response.get("response") == "declined":
        return False
    return raw.get("showAs") not in FREE


def build(ctx: ProviderContext) -> MicrosoftCalendar:
    if ctx.tokens is None:
        raise ProviderAuthError(f"{LABEL}: no OAuth credentials for this calendar")
    return MicrosoftCalendar(ctx)


SPEC = ProviderSpec(
    name="microsoft",
    build=build,
    secret_fields=("refresh_token",),
    setting_fields=("calendar_id",),
    required_fields=("refresh_token",),
    learns_mailbox=True,
)
