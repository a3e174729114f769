"""CalDAV (RFC 4791, RFC 6578): a thin client on httpx and defusedxml.

Reads:
* ``check``: ``PROPFIND Depth: 0`` on the collection (must be a calendar collection).
* full copy: ``sync-collection`` with an empty token lists every member with its etag and
  yields the first token; bodies come from ``calendar-multiget`` in batches.
* delta: ``sync-collection`` from the stored token; removed members (404) are deleted,
  changed ones fetched. ``507`` truncation continues from the token returned. A 403/409
  with ``valid-sync-token`` is ``CursorExpired`` (never a silent full fetch).
* servers without ``sync-collection``: compare ``getctag``; when it changed, diff the
  members' etags (``PROPFIND Depth: 1``) against the ones kept in the cursor.

Writes: the resource ``{booking_id}-{generation}.ics`` is created with
``If-None-Match: *``; a 412 means it exists (a retried create whose first response was
lost), so it is read back and adopted when its marker names the booking, never duplicated.
Updates use ``If-Match``; a DELETE answered 404 is done. Times are written in UTC.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote
from xml.etree.ElementTree import Element

import httpx
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

from slotguard.calendars.base import (
    MARKER_PROPERTY,
    BookingEvent,
    CheckResult,
    CursorExpired,
    EventGone,
    EventRef,
    ProviderContext,
    ProviderDataError,
    ProviderError,
    ProviderSpec,
    ProviderUnavailable,
    Pull,
    RemoteItem,
    Window,
)
from slotguard.calendars.http import Answer, request
from slotguard.calendars.recurrence import expand, resolve_tzid

__all__ = ["SPEC", "CalDavProvider", "event_body"]

D = "{DAV:}"
C = "{urn:ietf:params:xml:ns:caldav}"
CS = "{http://calendarserver.org/ns/}"
XML = {"Content-Type": "application/xml; charset=utf-8"}
MULTIGET_BATCH = 100
MAX_SYNC_ROUNDS = 1000

_PROPFIND_COLLECTION = b"""<?xml version="1.0" encoding="utf-8"?>
<d:propfind xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"
  xmlns:cs="http://calendarserver.org/ns/">
 <d:prop><d:resourcetype/><d:displayname/><cs:getctag/><d:sync-token/>
  <d:supported-report-set/><c:calendar-timezone/></d:prop>
</d:propfind>"""

_PROPFIND_ETAGS = b"""<?xml version="1.0" encoding="utf-8"?>
<d:propfind xmlns:d="DAV:"><d:prop><d:getetag/><d:resourcetype/></d:prop></d:propfind>"""


def _sync_body(token: str | None) -> bytes:
    tok = "" if not token else _escape(token)
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<d:sync-collection xmlns:d="DAV:">'
        f"<d:sync-token>{tok}</d:sync-token><d:sync-level>1</d:sync-level>"
        "<d:prop><d:getetag/></d:prop></d:sync-collection>"
    ).encode()


def _multiget_body(hrefs: Iterable[str]) -> bytes:
    refs = "".join(f"<d:href>{_escape(h)}</d:href>" for h in hrefs)
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<c:calendar-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">'
        f"<d:prop><d:getetag/><c:calendar-data/></d:prop>{refs}</c:calendar-multiget>"
    ).encode()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _xml(body: bytes) -> Element:
    try:
        return fromstring(body, forbid_dtd=True)  # type: ignore[no-any-return]
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise ProviderDataError(
            f"the CalDAV server sent unusable XML: {type(exc).__name__}"
        ) from None


def _status_code(text: str | None) -> int | None:
    if not text:
        return None
    parts = text.split()
    if len(parts) >= 2 and parts[1].isdigit():
        return int(parts[1])
    return None


def _ical_text(ev: BookingEvent, *, now: dt.datetime) -> str:
    def stamp(t: dt.datetime) -> str:
        return t.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")

    def text(value: str) -> str:
        escaped = (
            value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")
        )
        return escaped.replace("\r", "")

    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//slotguard//calendar write-back//EN",
        "BEGIN:VEVENT",
        f"UID:{ev.booking_id}-{ev.generation}@slotguard",
        f"DTSTAMP:{stamp(now)}",
        f"DTSTART:{stamp(ev.start)}",
        f"DTEND:{stamp(ev.end)}",
        f"SUMMARY:{text(ev.title)}",
    ]
    if ev.description:
        lines.append(f"DESCRIPTION:{text(ev.description)}")
    lines += [
        "TRANSP:OPAQUE",
        "STATUS:CONFIRMED",
        f"X-SLOTGUARD-TIMEZONE:{ev.timezone}",
        f"{MARKER_PROPERTY}:{ev.booking_id}",
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    return "\r\n".join(_fold(line) for line in lines) + "\r\n"


def _fold(line: str) -> str:
    raw = line.encode()
    if len(raw) <= 75:
        return line
    out: list[str] = []
    current = ""
    for ch in line:
        if len((current + ch).encode()) > (75 if not out else 74):
            out.append(current)
            current = ch
        else:
            current += ch
    out.append(current)
    return "\r\n ".join(out)


def event_body(ev: BookingEvent, *, now: dt.datetime | None = None) -> bytes:
    """The iCalendar resource slotguard writes for a booking (UTC times, with the marker)."""
    return _ical_text(ev, now=now or dt.datetime.now(dt.UTC)).encode()


class CalDavProvider:
    def __init__(self, ctx: ProviderContext) -> None:
        if not ctx.url:
            raise ProviderUnavailable("a caldav calendar needs a url")
        self._ctx = ctx
        url = ctx.url if ctx.url.endswith("/") else ctx.url + "/"
        self._url = httpx.URL(url)
        user = ctx.credentials.get("username")
        self._auth = (
            httpx.BasicAuth(str(user), str(ctx.credentials.get("password") or "")) if user else None
        )

    # -- plumbing ------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        ok: tuple[int, ...] = (),
    ) -> Answer:
        return await request(
            self._ctx.http,
            method,
            str(url),
            headers=headers,
            content=body,
            auth=self._auth,
            max_bytes=self._ctx.max_bytes,
            timeout_s=self._ctx.timeout_s,
            ok=ok,
        )

    def _abs(self, href: str) -> httpx.URL:
        return self._url.join(href)

    def _is_collection(self, href: str) -> bool:
        return unquote(self._abs(href).path).rstrip("/") == unquote(self._url.path).rstrip("/")

    # -- check ---------------------------------------------------------------------------

    async def _collection_props(self) -> Element:
        answer = await self._call(
            "PROPFIND", self._url, body=_PROPFIND_COLLECTION, headers={**XML, "Depth": "0"}
        )
        if answer.status != 207:
            raise ProviderDataError("the URL is not a CalDAV collection", status=answer.status)
        root = _xml(answer.body)
        prop = root.find(f"{D}response/{D}propstat/{D}prop")
        if prop is None:
            raise ProviderDataError("the CalDAV server sent no properties")
        # Properties may be split over several propstats (200 and 404 ones).
        merged = Element("prop")
        for ps in root.iter(f"{D}propstat"):
            if _status_code(ps.findtext(f"{D}status")) == 200:
                for p in ps.find(f"{D}prop") or []:
                    merged.append(p)
        return merged

    async def check(self) -> CheckResult:
        props = await self._collection_props()
        rtype = props.find(f"{D}resourcetype")
        if rtype is None or rtype.find(f"{C}calendar") is None:
            raise ProviderDataError("the URL is not a calendar collection")
        name = props.findtext(f"{D}displayname") or None
        tz_name = None
        tz_text = props.findtext(f"{C}calendar-timezone")
        if tz_text:
            for line in tz_text.splitlines():
                if line.upper().startswith("TZID:"):
                    tz_name = resolve_tzid(line[5:].strip())
                    break
        return CheckResult(name=name, timezone=tz_name)

    # -- reads ---------------------------------------------------------------------------

    def _supports_sync(self, props: Element) -> bool:
        reports = props.find(f"{D}supported-report-set")
        if reports is None:
            return props.find(f"{D}sync-token") is not None
        return any(el.tag == f"{D}sync-collection" for el in reports.iter())

    async def _sync_report(
        self, token: str | None
    ) -> tuple[dict[str, str | None], list[str], str | None]:
        """Members changed (href -> etag) and removed since ``token``, and the new token."""
        changed: dict[str, str | None] = {}
        removed: list[str] = []
        for _ in range(MAX_SYNC_ROUNDS):
            answer = await self._call(
                "REPORT",
                self._url,
                body=_sync_body(token),
                headers={**XML, "Depth": "0"},
                ok=(403, 409, 400),
            )
            if answer.status in (400, 403, 409):
                if token and b"valid-sync-token" in answer.body:
                    raise CursorExpired(
                        "the CalDAV sync token is no longer valid", status=answer.status
                    )
                raise ProviderUnavailable(
                    f"the CalDAV server refused sync-collection (HTTP {answer.status})",
                    status=answer.status,
                )
            root = _xml(answer.body)
            truncated = False
            for resp in root.findall(f"{D}response"):
                href = resp.findtext(f"{D}href")
                if not href:
                    continue
                status = _status_code(resp.findtext(f"{D}status"))
                if self._is_collection(href):
                    if status == 507:
                        truncated = True
                    continue
                if href.endswith("/"):
                    continue
                if status == 404:
                    removed.append(href)
                    changed.pop(href, None)
                    continue
                etag = resp.findtext(f"{D}propstat/{D}prop/{D}getetag")
                changed[href] = etag
                if href in removed:
                    removed.remove(href)
            token = root.findtext(f"{D}sync-token") or token
            if not truncated:
                return changed, removed, token
        raise ProviderUnavailable("the CalDAV server kept truncating sync-collection")

    async def _etags(self) -> dict[str, str | None]:
        answer = await self._call(
            "PROPFIND", self._url, body=_PROPFIND_ETAGS, headers={**XML, "Depth": "1"}
        )
        root = _xml(answer.body)
        found: dict[str, str | None] = {}
        for resp in root.findall(f"{D}response"):
            href = resp.findtext(f"{D}href")
            if not href or href.endswith("/") or self._is_collection(href):
                continue
            found[href] = resp.findtext(f"{D}propstat/{D}prop/{D}getetag")
        return found

    async def _multiget(
        self, hrefs: list[str], window: Window
    ) -> tuple[list[RemoteItem], list[str], list[str]]:
        items: list[RemoteItem] = []
        gone: list[str] = []
        notes: list[str] = []
        tz = self._ctx.calendar_tz or self._ctx.business_tz
        for i in range(0, len(hrefs), MULTIGET_BATCH):
            batch = hrefs[i : i + MULTIGET_BATCH]
            answer = await self._call(
                "REPORT", self._url, body=_multiget_body(batch), headers={**XML, "Depth": "1"}
            )
            root = _xml(answer.body)
            for resp in root.findall(f"{D}response"):
                href = resp.findtext(f"{D}href")
                if not href:
                    continue
                status = _status_code(resp.findtext(f"{D}status"))
                data = resp.findtext(f"{D}propstat/{C}calendar-data") or resp.findtext(
                    f"{D}propstat/{D}prop/{C}calendar-data"
                )
                if status == 404 or data is None:
                    gone.append(href)
                    continue
                etag = resp.findtext(f"{D}propstat/{D}prop/{D}getetag")
                try:
                    parsed = expand(
                        data, window, default_tz=tz, owner_emails=self._ctx.owner_emails
                    )
                except ProviderDataError as exc:
                    # One broken resource must not hide the rest; fail closed would need
                    # its times, which we cannot read.
                    notes.append(f"{unquote(href.rsplit('/', 1)[-1])}: {exc.message}")
                    continue
                own = next(
                    (s.own_booking_id for s in parsed.by_uid.values() if s.own_booking_id), None
                )
                periods = tuple(sorted(parsed.all_periods(), key=lambda p: (p.start, p.end)))
                items.append(
                    RemoteItem(external_id=href, busy=periods, etag=etag, own_booking_id=own)
                )
                notes.extend(n for n in parsed.notes if n not in notes)
        return items, gone, notes

    async def pull(self, cursor: str | None, window: Window) -> Pull:
        state: dict[str, Any] = json.loads(cursor) if cursor else {}
        if state.get("mode") == "sync":
            changed, removed, token = await self._sync_report(state.get("token"))
            items, gone, notes = await self._multiget(sorted(changed), window)
            return Pull(
                full=False,
                items=items,
                deleted=removed + gone,
                cursor=json.dumps({"mode": "sync", "token": token}),
                notes=notes,
            )
        if state.get("mode") == "ctag":
            props = await self._collection_props()
            ctag = props.findtext(f"{CS}getctag")
            if ctag and ctag == state.get("ctag"):
                return Pull(full=False, cursor=cursor)
            known: dict[str, str | None] = state.get("etags", {})
            now_etags = await self._etags()
            changed_hrefs = sorted(
                h for h, e in now_etags.items() if known.get(h) != e or e is None
            )
            removed = [h for h in known if h not in now_etags]
            items, gone, notes = await self._multiget(changed_hrefs, window)
            new_cursor = json.dumps({"mode": "ctag", "ctag": ctag, "etags": now_etags})
            return Pull(
                full=False, items=items, deleted=removed + gone, cursor=new_cursor, notes=notes
            )
        # Full copy.
        props = await self._collection_props()
        if self._supports_sync(props):
            changed, _, token = await self._sync_report(None)
            items, _, notes = await self._multiget(sorted(changed), window)
            return Pull(
                full=True,
                items=items,
                cursor=json.dumps({"mode": "sync", "token": token}),
                notes=notes,
            )
        ctag = props.findtext(f"{CS}getctag")
        etags = await self._etags()
        items, _, notes = await self._multiget(sorted(etags), window)
        return Pull(
            full=True,
            items=items,
            cursor=json.dumps({"mode": "ctag", "ctag": ctag, "etags": etags}),
            notes=notes,
        )

    # -- writes --------------------------------------------------------------------------

    def _href(self, ev: BookingEvent) -> httpx.URL:
        return self._url.join(f"{ev.booking_id}-{ev.generation}.ics")

    async def _etag_of(self, url: httpx.URL, answer: Answer) -> str | None:
        etag: str | None = answer.headers.get("ETag")
        if etag and not etag.startswith("W/"):
            return etag
        # RFC 4791 §5.3.4: no strong ETag when the server changed the data; ask for it.
        got = await self._call(
            "PROPFIND", url, body=_PROPFIND_ETAGS, headers={**XML, "Depth": "0"}, ok=(404,)
        )
        if got.status == 404:
            return None
        etag_text: str | None = _xml(got.body).findtext(
            f"{D}response/{D}propstat/{D}prop/{D}getetag"
        )
        return etag_text

    async def _read_marker(self, url: httpx.URL) -> tuple[str | None, str | None] | None:
        """(marker, etag) of the resource at ``url``, or None when there is none."""
        got = await self._call("GET", url, ok=(404, 410))
        if got.status in (404, 410):
            return None
        marker = None
        text = got.body.decode("utf-8", errors="replace").replace("\r\n ", "").replace("\n ", "")
        for line in text.splitlines():
            if line.upper().startswith(MARKER_PROPERTY + ":"):
                marker = line.split(":", 1)[1].strip()
                break
        return marker, got.headers.get("ETag")

    async def _put(self, url: httpx.URL, ev: BookingEvent, condition: dict[str, str]) -> Answer:
        return await self._call(
            "PUT",
            url,
            body=event_body(ev),
            headers={"Content-Type": "text/calendar; charset=utf-8", **condition},
            ok=(412,),
        )

    async def upsert_event(self, event: BookingEvent, existing: EventRef | None) -> EventRef:
        url = self._url.join(existing.remote_id) if existing else self._href(event)
        if existing is None:
            answer = await self._put(url, event, {"If-None-Match": "*"})
            if answer.status != 412:
                return EventRef(str(url.path), event.generation, await self._etag_of(url, answer))
            # It exists: a retry of a create whose response was lost. Adopt it if it is ours.
            found = await self._read_marker(url)
            if found is None:
                raise ProviderUnavailable("the CalDAV server refused the event", status=412)
            marker, etag = found
            if marker != event.booking_id:
                raise ProviderDataError("an event that slotguard did not write has this name")
            existing = EventRef(str(url.path), event.generation, etag)
        condition = {"If-Match": existing.etag} if existing.etag else {}
        answer = await self._put(url, event, condition)
        if answer.status == 412:
            found = await self._read_marker(url)
            if found is None:
                raise EventGone("the event was removed from the calendar")
            marker, etag = found
            if marker != event.booking_id:
                raise ProviderDataError("an event that slotguard did not write has this name")
            answer = await self._put(url, event, {"If-Match": etag} if etag else {})
            if answer.status == 412:
                raise ProviderUnavailable("the event keeps changing on the server", status=412)
        return EventRef(str(url.path), existing.generation, await self._etag_of(url, answer))

    async def delete_event(self, ref: EventRef) -> None:
        try:
            await self._call("DELETE", self._url.join(ref.remote_id), ok=(404, 410))
        except ProviderError:
            raise


SPEC = ProviderSpec(
    name="caldav",
    build=CalDavProvider,
    needs_url=True,
    secret_fields=("username", "password"),
)
