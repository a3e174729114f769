"""Google Calendar v3 behind the provider interface (research note §1).

* Reads: ``events.list`` with ``singleEvents=true`` (series come expanded), the window as
  ``timeMin``/``timeMax`` on a full sync, then only ``syncToken`` (Google refuses it
  together with the window); pages followed to the end; 410 → ``CursorExpired``.
* Busy rule (fail closed): busy unless cancelled, ``transparency: transparent``, declined
  by the owner (``attendees[self]``), a ``workingLocation`` entry, or one of our own
  events (the private extended property ``slotguard_booking``). Tentative,
  ``needsAction`` and ``outOfOffice`` are busy. All-day ``date`` events block whole days
  in the calendar's zone (the list's ``timeZone``).
* Writes: ``events.insert`` with the id derived from the booking (``uuid5(...).hex``,
  32 characters of ``[0-9a-f]``: valid base32hex; our ``bk_`` ids are not), so a retried
  insert answers 409 ``duplicate`` and the event is adopted after its marker is checked;
  a tombstone (the owner deleted it) is ``EventGone`` and the engine writes a new
  generation. ``patch`` with ``If-Match``; delete treats 404/410 as done; every write
  with ``sendUpdates=none`` (nobody is invited: slotguard mails its own invites).
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from typing import Any
from zoneinfo import ZoneInfo

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
from slotguard.calendars.rest import RestSession, classify_google, google_reason

DEFAULT_API_URL = "https://www.googleapis.com/calendar/v3"
MARKER_KEY = "slotguard_booking"
PAGE_SIZE = 2500  # the documented maximum
MAX_PAGES = 2000
LABEL = "Google Calendar"


def google_event_id(event: BookingEvent) -> str:
    return event.identity.hex


def _zone(name: Any) -> ZoneInfo | None:
    if not isinstance(name, str) or not name:
        return None
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):
        return None


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class GoogleCalendar:
    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx
        self.base = (ctx.settings.get("api_url") or DEFAULT_API_URL).rstrip("/")
        self.calendar_id = str(ctx.settings.get("calendar_id") or "primary")
        self.rest = RestSession(
            ctx.http,
            label=LABEL,
            tokens=ctx.tokens,
            classify=classify_google,
            timeout_s=ctx.timeout_s,
        )

    @property
    def events_url(self) -> str:
        return f"{self.base}/calendars/{urllib.parse.quote(self.calendar_id, safe='')}/events"

    def _event_url(self, event_id: str) -> str:
        return f"{self.events_url}/{urllib.parse.quote(event_id, safe='')}"

    # -- reads ----------------------------------------------------------------------------

    async def check(self) -> CheckResult:
        now = dt.datetime.now(dt.UTC)
        r = await self.rest.request(
            "GET",
            self.events_url,
            passthrough=(404,),
            params={
                "singleEvents": "true",
                "maxResults": "1",
                "timeMin": _iso(now),
                "timeMax": _iso(now + dt.timedelta(minutes=1)),
            },
        )
        if r.status_code == 404:
            raise ProviderUnavailable(f"{LABEL}: no calendar {self.calendar_id!r}", status=404)
        data = self.rest.json(r)
        zone = data.get("timeZone")
        summary = data.get("summary")
        return CheckResult(
            name=summary if isinstance(summary, str) and summary else None,
            timezone=zone if _zone(zone) is not None else None,
        )

    async def pull(self, cursor: str | None, window: Window) -> Pull:
        full = cursor is None
        params = {"singleEvents": "true", "maxResults": str(PAGE_SIZE)}
        if cursor is None:
            params |= {"timeMin": _iso(window.start), "timeMax": _iso(window.end)}
        else:
            params["syncToken"] = cursor
        items: list[RemoteItem] = []
        deleted: list[str] = []
        notes: list[str] = []
        zone: ZoneInfo | None = None
        page_token: str | None = None
        for _ in range(MAX_PAGES):
            query = params if page_token is None else {**params, "pageToken": page_token}
            r = await self.rest.request(
                "GET", self.events_url, params=query, passthrough=(404, 410)
            )
            if r.status_code == 410:
                if cursor is not None:
                    raise CursorExpired(f"{LABEL}: the sync token expired", status=410)
                raise ProviderUnavailable(f"{LABEL} answered 410 to a full sync", status=410)
            if r.status_code == 404:
                raise ProviderUnavailable(f"{LABEL}: no calendar {self.calendar_id!r}", status=404)
            data = self.rest.json(r)
            zone = zone or _zone(data.get("timeZone"))
            raw_items = data.get("items", [])
            if not isinstance(raw_items, list):
                raise ProviderDataError(f"{LABEL} answered a page without an item list")
            for raw in raw_items:
                if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
                    notes.append("an event without an id was skipped")
                    continue
                if raw.get("status") == "cancelled":
                    # A deleted event, a deleted series (its master id: the engine also
                    # drops the rows whose series_id it is), or a cancelled instance.
                    if not full:
                        deleted.append(raw["id"])
                    continue
                item = self._item(raw, zone or self.ctx.calendar_tz or self.ctx.business_tz, notes)
                if item is not None:
                    items.append(item)
            token = data.get("nextPageToken")
            if isinstance(token, str) and token:
                page_token = token
                continue
            next_sync = data.get("nextSyncToken")
            if not isinstance(next_sync, str) or not next_sync:
                raise ProviderDataError(f"{LABEL}: the last page carried no sync token")
            return Pull(
                full=full, items=items, deleted=deleted, cursor=next_sync, notes=sorted(set(notes))
            )
        raise ProviderDataError(f"{LABEL}: more than {MAX_PAGES} pages")

    def _item(self, raw: dict[str, Any], zone: ZoneInfo, notes: list[str]) -> RemoteItem | None:
        series = raw.get("recurringEventId")
        private = (raw.get("extendedProperties") or {}).get("private") or {}
        own = private.get(MARKER_KEY) if isinstance(private, dict) else None
        own = own if isinstance(own, str) and own else None
        etag = raw.get("etag") if isinstance(raw.get("etag"), str) else None
        base = {
            "external_id": raw["id"],
            "etag": etag,
            "series_id": series if isinstance(series, str) else None,
            "own_booking_id": own,
        }
        if own is not None or not _is_busy(raw):
            return RemoteItem(**base)
        period = _period(raw, zone)
        if period is None:
            notes.append("an event with unreadable times was skipped")
            return RemoteItem(**base)
        if period.end <= period.start:
            return RemoteItem(**base)
        return RemoteItem(busy=(period,), **base)

    # -- writes ---------------------------------------------------------------------------

    def _body(self, event: BookingEvent) -> dict[str, Any]:
        body: dict[str, Any] = {
            "summary": event.title,
            "start": {"dateTime": _iso(event.start), "timeZone": event.timezone},
            "end": {"dateTime": _iso(event.end), "timeZone": event.timezone},
            "transparency": "opaque",
            "extendedProperties": {"private": {MARKER_KEY: event.booking_id}},
        }
        body["description"] = event.description or ""
        return body

    async def upsert_event(self, event: BookingEvent, existing: EventRef | None) -> EventRef:
        if existing is not None and existing.generation == event.generation:
            return await self._patch(existing.remote_id, event, existing.etag)
        event_id = google_event_id(event)
        # The id makes the insert idempotent, so even a create whose answer was lost may
        # simply be sent again: the repeat answers 409 and the event is adopted below.
        r = await self.rest.request(
            "POST",
            self.events_url,
            params={"sendUpdates": "none"},
            json={"id": event_id, **self._body(event)},
            passthrough=(409,),
        )
        if r.status_code != 409:
            data = self.rest.json(r)
            return EventRef(remote_id=event_id, generation=event.generation, etag=_etag(data))
        if google_reason(r) not in (None, "duplicate"):
            raise ProviderUnavailable(f"{LABEL} answered 409 ({google_reason(r)})", status=409)
        current = await self._get(event_id)
        if current is None or current.get("status") == "cancelled":
            raise EventGone(f"{LABEL}: the event of this booking was deleted", status=410)
        marker = ((current.get("extendedProperties") or {}).get("private") or {}).get(MARKER_KEY)
        if marker != event.booking_id:
            raise ProviderDataError(f"{LABEL}: the event id is taken by another event")
        return await self._patch(event_id, event, _etag(current))

    async def _get(self, event_id: str) -> dict[str, Any] | None:
        r = await self.rest.request("GET", self._event_url(event_id), passthrough=(404, 410))
        if r.status_code in (404, 410):
            return None
        return self.rest.json(r)

    async def _patch(self, event_id: str, event: BookingEvent, etag: str | None) -> EventRef:
        for _ in range(2):
            headers = {"If-Match": etag} if etag else {}
            r = await self.rest.request(
                "PATCH",
                self._event_url(event_id),
                params={"sendUpdates": "none"},
                json=self._body(event),
                headers=headers,
                passthrough=(404, 410, 412),
            )
            if r.status_code in (404, 410):
                raise EventGone(f"{LABEL}: the event of this booking was deleted", status=410)
            if r.status_code == 412:
                # Someone changed it since we last saw it: read it again and re-apply ours
                # (the booking is authoritative).
                current = await self._get(event_id)
                if current is None or current.get("status") == "cancelled":
                    raise EventGone(f"{LABEL}: the event of this booking was deleted")
                etag = _etag(current)
                continue
            data = self.rest.json(r)
            if data.get("status") == "cancelled":
                raise EventGone(f"{LABEL}: the event of this booking was deleted")
            return EventRef(remote_id=event_id, generation=event.generation, etag=_etag(data))
        raise ProviderUnavailable(f"{LABEL}: the event keeps changing under us", status=412)

    async def delete_event(self, ref: EventRef) -> None:
        await self.rest.request(
            "DELETE",
            self._event_url(ref.remote_id),
            params={"sendUpdates": "none"},
            passthrough=(404, 410),
        )


def _etag(data: dict[str, Any]) -> str | None:
    etag = data.get("etag")
    return etag if isinstance(etag, str) else None


def _is_busy(raw: dict[str, Any]) -> bool:
    if raw.get("transparency") == "transparent":
        return False
    if raw.get("eventType") == "workingLocation":
        return False
    for attendee in raw.get("attendees") or []:
        if isinstance(attendee, dict) and attendee.get("self"):
            return attendee.get("responseStatus") != "declined"
    return True


def _period(raw: dict[str, Any], zone: ZoneInfo) -> BusyPeriod | None:
    start, end = raw.get("start"), raw.get("end")
    if not isinstance(start, dict) or not isinstance(end, dict):
        return None
    try:
        if "date" in start:
            first = dt.date.fromisoformat(str(start["date"]))
            last = dt.date.fromisoformat(str(end.get("date", start["date"])))
            if last <= first:
                last = first + dt.timedelta(days=1)
            return all_day_period(first, last, zone)
        return BusyPeriod(_instant(start), _instant(end))
    except (KeyError, ValueError, TypeError):
        return None


def _instant(t: dict[str, Any]) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(str(t["dateTime"]).replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        zone = _zone(t.get("timeZone"))
        if zone is None:
            raise ValueError("a time without offset or zone")
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(dt.UTC)


def build(ctx: ProviderContext) -> GoogleCalendar:
    if ctx.tokens is None:
        raise ProviderAuthError(f"{LABEL}: no OAuth credentials for this calendar")
    return GoogleCalendar(ctx)


SPEC = ProviderSpec(
    name="google",
    build=build,
    secret_fields=("refresh_token",),
    setting_fields=("calendar_id",),
    required_fields=("refresh_token",),
    setting_defaults={"calendar_id": "primary"},
)
