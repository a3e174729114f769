"""A local fake of Google Calendar API v3 and Google's OAuth endpoints.

Speaks the documented wire format (research note §1; the discovery document's parameter
lists; the errors guide's bodies) over an in-memory store:

* ``GET  /calendar/v3/calendars/{cid}/events``            events.list (singleEvents, window,
  pageToken/nextPageToken, syncToken/nextSyncToken, 410 fullSyncRequired, tombstones)
* ``GET  /calendar/v3/calendars/{cid}``                   calendars.get (the connect check)
* ``POST /calendar/v3/calendars/{cid}/events``            events.insert (client-chosen id)
* ``GET|PATCH|DELETE /calendar/v3/calendars/{cid}/events/{eid}``
* ``GET  /auth``   the consent screen: approves at once and redirects with a code
* ``POST /token``  authorization_code (with PKCE) and refresh_token grants

Routes for fault injection: ``list``, ``calendar``, ``insert``, ``get``, ``patch``,
``delete``, ``token``, ``auth`` (and ``*``).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import secrets
import urllib.parse
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.fakes.common import FakeBase, FakeClock, parse_rfc3339
from tests.leaks import secret

EVENT_ID = re.compile(r"^[a-v0-9]{5,1024}$")
LIST_PARAMS = frozenset(
    [
        "alwaysIncludeEmail",
        "calendarId",
        "eventTypes",
        "iCalUID",
        "maxAttendees",
        "maxResults",
        "orderBy",
        "pageToken",
        "privateExtendedProperty",
        "q",
        "sharedExtendedProperty",
        "showDeleted",
        "showHiddenInvitations",
        "singleEvents",
        "syncToken",
        "timeMax",
        "timeMin",
        "timeZone",
        "updatedMin",
    ]
)
NOT_WITH_SYNC_TOKEN = frozenset(
    [
        "iCalUID",
        "orderBy",
        "privateExtendedProperty",
        "q",
        "sharedExtendedProperty",
        "timeMin",
        "timeMax",
        "updatedMin",
    ]
)
INSERT_PARAMS = frozenset(
    [
        "conferenceDataVersion",
        "eventLabelVersion",
        "maxAttendees",
        "sendNotifications",
        "sendUpdates",
        "supportsAttachments",
    ]
)
PATCH_PARAMS = INSERT_PARAMS
DELETE_PARAMS = frozenset({"sendNotifications", "sendUpdates"})
SEND_UPDATES = frozenset({"all", "externalOnly", "none"})
SCOPE_EVENTS = "https://www.googleapis.com/auth/calendar.events"
SCOPE_CALENDAR = "https://www.googleapis.com/auth/calendar"


def google_error(
    status: int,
    reason: str,
    message: str,
    *,
    domain: str = "global",
    location: str | None = None,
    location_type: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The error body of the errors guide."""
    return JSONResponse(
        google_error_body(status, reason, message, domain, location, location_type),
        status,
        headers=headers,
    )


def google_error_body(
    status: int,
    reason: str,
    message: str,
    domain: str = "global",
    location: str | None = None,
    location_type: str | None = None,
) -> dict[str, Any]:
    err: dict[str, Any] = {"domain": domain, "reason": reason, "message": message}
    if location:
        err["location"] = location
        err["locationType"] = location_type or "parameter"
    return {"error": {"errors": [err], "code": status, "message": message}}


# Canned bodies of the errors guide, for fault injection: GOOGLE_ERRORS["rateLimitExceeded"].
GOOGLE_ERRORS: dict[str, tuple[int, dict[str, Any]]] = {
    "authError": (
        401,
        google_error_body(
            401,
            "authError",
            "Invalid Credentials",
            location="Authorization",
            location_type="header",
        ),
    ),
    "userRateLimitExceeded": (
        403,
        google_error_body(
            403, "userRateLimitExceeded", "User Rate Limit Exceeded", domain="usageLimits"
        ),
    ),
    "rateLimitExceeded403": (
        403,
        google_error_body(403, "rateLimitExceeded", "Rate Limit Exceeded", domain="usageLimits"),
    ),
    "quotaExceeded": (
        403,
        google_error_body(
            403, "quotaExceeded", "Calendar usage limits exceeded.", domain="usageLimits"
        ),
    ),
    "forbidden": (403, google_error_body(403, "forbidden", "Forbidden")),
    "rateLimitExceeded": (
        429,
        google_error_body(429, "rateLimitExceeded", "Rate Limit Exceeded", domain="usageLimits"),
    ),
    "backendError": (500, google_error_body(500, "backendError", "Backend Error")),
    "backendError503": (503, google_error_body(503, "backendError", "Backend Error")),
    "fullSyncRequired": (
        410,
        google_error_body(
            410,
            "fullSyncRequired",
            "Sync token is no longer valid, a full sync is required.",
            domain="calendar",
            location="syncToken",
        ),
    ),
    "updatedMinTooLongAgo": (
        410,
        google_error_body(
            410,
            "updatedMinTooLongAgo",
            "The requested minimum modification time lies too far in the past.",
            domain="calendar",
        ),
    ),
}


@dataclass
class GUser:
    email: str
    timezone: str
    calendars: set[str] = field(default_factory=set)


@dataclass
class GCalendar:
    id: str
    owner: str
    timezone: str
    summary: str
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    epoch: int = 0  # bumped to invalidate every sync token of this calendar


@dataclass
class _Page:
    calendar_id: str
    items: list[dict[str, Any]]
    next_sync_token: str | None
    fingerprint: tuple[tuple[str, str], ...]


@dataclass
class _Grant:
    client_id: str
    user: str
    scope: str
    redirect_uri: str
    challenge: str | None
    challenge_method: str | None
    offline: bool
    expires_at: dt.datetime


class GoogleFake(FakeBase):
    def __init__(
        self,
        *,
        client_id: str = "google-client",
        client_secret: str = "google-secret",
        clock: FakeClock | None = None,
    ) -> None:
        super().__init__(clock)
        self.client_id, self.client_secret = client_id, secret(client_secret)
        self.users: dict[str, GUser] = {}
        self.calendars: dict[str, GCalendar] = {}
        self.refresh_tokens: dict[str, str] = {}  # token -> user email
        self.access_tokens: dict[str, tuple[str, dt.datetime]] = {}
        self.codes: dict[str, _Grant] = {}
        self.sync_tokens: dict[str, tuple[str, int, int]] = {}  # token -> (cal, seq, epoch)
        self.pages: dict[str, _Page] = {}
        self.seq = 0
        self.etag_counter = 3181161784712000
        self.access_token_lifetime_s = 3599
        self.max_page_size: int | None = None  # a cap below maxResults (short pages)
        self.empty_page_first = False  # the first page of a listing is empty (with a token)
        self.series_delete_style = "master"  # "master" | "instances": how a series dies
        self.consent_user: str | None = None
        self.deny_consent = False
        self.app = self._build_app()

    # -- seeding and remote changes (what the owner does in Google Calendar) ------------

    def add_user(self, email: str, *, timezone: str = "UTC") -> str:
        """A Google account with its primary calendar; returns a refresh token for it."""
        with self.lock:
            self.users[email] = GUser(email, timezone)
            self.add_calendar(email, email, timezone=timezone, summary=email)
            return self.issue_refresh_token(email)

    def issue_refresh_token(self, email: str) -> str:
        token = secret("1//" + secrets.token_urlsafe(32))
        self.refresh_tokens[token] = email
        return token

    def add_calendar(
        self, email: str, calendar_id: str, *, timezone: str = "UTC", summary: str = ""
    ) -> GCalendar:
        with self.lock:
            cal = GCalendar(calendar_id, email, timezone, summary or calendar_id)
            self.calendars[calendar_id] = cal
            self.users[email].calendars.add(calendar_id)
            return cal

    def _calendar(self, calendar_id: str) -> GCalendar:
        return self.calendars[calendar_id]

    def _touch(self, ev: dict[str, Any]) -> None:
        self.seq += 1
        self.etag_counter += 1000
        ev["_seq"] = self.seq
        ev["etag"] = f'"{self.etag_counter}"'
        ev["updated"] = self.clock.now().strftime("%Y-%m-%dT%H:%M:%S.000Z")

    def add_event(
        self,
        calendar_id: str,
        *,
        start: dt.datetime | dt.date,
        end: dt.datetime | dt.date,
        id: str | None = None,
        summary: str = "busy",
        status: str = "confirmed",
        transparency: str | None = None,
        event_type: str = "default",
        self_response: str | None = None,
        time_zone: str | None = None,
        recurring_event_id: str | None = None,
        original_start: dt.datetime | None = None,
        private: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        with self.lock:
            cal = self._calendar(calendar_id)
            event_id = id or secrets.token_hex(13)
            ev: dict[str, Any] = {
                "kind": "calendar#event",
                "id": event_id,
                "status": status,
                "htmlLink": f"https://www.google.com/calendar/event?eid={event_id}",
                "created": self.clock.now().strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "summary": summary,
                "creator": {"email": cal.owner, "self": True},
                "organizer": {"email": cal.owner, "self": True},
                "start": _gtime(start, time_zone),
                "end": _gtime(end, time_zone),
                "iCalUID": f"{event_id}@google.com",
                "sequence": 0,
                "eventType": event_type,
                "reminders": {"useDefault": True},
            }
            if transparency:
                ev["transparency"] = transparency
            if self_response:
                ev["organizer"] = {"email": "someone@example.com"}
                ev["attendees"] = [
                    {
                        "email": "someone@example.com",
                        "organizer": True,
                        "responseStatus": "accepted",
                    },
                    {"email": cal.owner, "self": True, "responseStatus": self_response},
                ]
            if recurring_event_id:
                ev["recurringEventId"] = recurring_event_id
                ev["originalStartTime"] = _gtime(original_start or start, time_zone)
            if private:
                ev["extendedProperties"] = {"private": dict(private)}
            self._touch(ev)
            cal.events[event_id] = ev
            return ev

    def add_series(
        self,
        calendar_id: str,
        *,
        first_start: dt.datetime,
        duration: dt.timedelta,
        count: int,
        every: dt.timedelta = dt.timedelta(days=7),
        master_id: str | None = None,
        time_zone: str = "UTC",
        **kw: Any,
    ) -> tuple[str, list[dict[str, Any]]]:
        """A recurring series, stored as Google expands it with singleEvents=true: instance
        ids `<master>_<UTC start>`, each with recurringEventId and originalStartTime. The
        wall-clock time is kept in `time_zone` across DST, as Google expands it."""
        with self.lock:
            master = master_id or secrets.token_hex(13)
            tz = ZoneInfo(time_zone)
            local = first_start.astimezone(tz)
            instances = []
            for i in range(count):
                wall = (local.replace(tzinfo=None) + every * i).replace(tzinfo=tz)
                start = wall.astimezone(dt.UTC)
                iid = f"{master}_{start.strftime('%Y%m%dT%H%M%SZ').lower()}"
                instances.append(
                    self.add_event(
                        calendar_id,
                        start=wall,
                        end=wall + duration,
                        id=iid,
                        recurring_event_id=master,
                        time_zone=time_zone,
                        **kw,
                    )
                )
            # The master exists (and is what a series deletion kills) but is never listed
            # with singleEvents=true.
            cal = self._calendar(calendar_id)
            mev = {
                "kind": "calendar#event",
                "id": master,
                "status": "confirmed",
                "_master": True,
                "start": _gtime(local, time_zone),
                "end": _gtime(local + duration, time_zone),
                "recurrence": [f"RRULE:FREQ=DAILY;INTERVAL={every.days};COUNT={count}"],
            }
            self._touch(mev)
            cal.events[master] = mev
            return master, instances

    def update_event(self, calendar_id: str, event_id: str, **fields: Any) -> dict[str, Any]:
        """Change an event as the owner would; `start`/`end` may be datetimes or dates."""
        with self.lock:
            ev = self._calendar(calendar_id).events[event_id]
            for key in ("start", "end"):
                if key in fields and not isinstance(fields[key], dict):
                    fields[key] = _gtime(fields[key], ev[key].get("timeZone"))
            ev.update(fields)
            ev["sequence"] = ev.get("sequence", 0) + 1
            self._touch(ev)
            return ev

    def cancel_instance(self, calendar_id: str, instance_id: str) -> None:
        """One occurrence of a live series cancelled (an exception, not a deletion)."""
        self.update_event(calendar_id, instance_id, status="cancelled")

    def delete_event(self, calendar_id: str, event_id: str) -> None:
        with self.lock:
            cal = self._calendar(calendar_id)
            ev = cal.events[event_id]
            ev["_deleted"] = True
            ev["status"] = "cancelled"
            self._touch(ev)
            if ev.get("_master"):
                for other in cal.events.values():
                    if other.get("recurringEventId") == event_id and not other.get("_deleted"):
                        other["_deleted"] = True
                        other["status"] = "cancelled"
                        if self.series_delete_style == "instances":
                            self._touch(other)

    def invalidate_sync_tokens(self, calendar_id: str) -> None:
        with self.lock:
            self._calendar(calendar_id).epoch += 1

    def expire_access_tokens(self) -> None:
        with self.lock:
            self.access_tokens.clear()

    def revoke(self, refresh_token: str) -> None:
        with self.lock:
            self.refresh_tokens.pop(refresh_token, None)

    def live_events(self, calendar_id: str) -> list[dict[str, Any]]:
        """The events a user would see (not deleted, not masters)."""
        with self.lock:
            return [
                _public(e)
                for e in self._calendar(calendar_id).events.values()
                if not e.get("_deleted") and not e.get("_master")
            ]

    # -- the app ------------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        base = "/calendar/v3/calendars/{cid:path}"
        return Starlette(
            routes=[
                Route(
                    base + "/events/{eid}",
                    self._event_route,
                    methods=["GET", "PATCH", "PUT", "DELETE"],
                ),
                Route(base + "/events", self._events_route, methods=["GET", "POST"]),
                Route(base, self._calendar_route, methods=["GET"]),
                Route("/auth", self._auth_route, methods=["GET"]),
                Route("/token", self._token_route, methods=["POST"]),
            ]
        )

    def _user_for(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            return None
        entry = self.access_tokens.get(header[7:])
        if entry is None or entry[1] <= self.clock.now():
            return None
        return entry[0]

    def _auth_failed(self) -> JSONResponse:
        return google_error(
            401,
            "authError",
            "Invalid Credentials",
            location="Authorization",
            location_type="header",
            headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
        )

    def _resolve(self, request: Request, user: str) -> GCalendar | None:
        cid = urllib.parse.unquote(request.path_params["cid"])
        if cid == "primary":
            cid = user
        cal = self.calendars.get(cid)
        if cal is None or cid not in self.users[user].calendars:
            return None
        return cal

    async def _calendar_route(self, request: Request) -> Response:
        async def work() -> Response:
            user = self._user_for(request)
            if user is None:
                return self._auth_failed()
            cal = self._resolve(request, user)
            if cal is None:
                return google_error(404, "notFound", "Not Found")
            return JSONResponse(
                {
                    "kind": "calendar#calendar",
                    "etag": '"1"',
                    "id": cal.id,
                    "summary": cal.summary,
                    "timeZone": cal.timezone,
                }
            )

        return await self.handle("calendar", request, work)

    async def _events_route(self, request: Request) -> Response:
        if request.method == "GET":
            return await self.handle("list", request, lambda: self._list(request))
        return await self.handle("insert", request, lambda: self._insert(request))

    async def _event_route(self, request: Request) -> Response:
        route = {"GET": "get", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}
        return await self.handle(route[request.method], request, lambda: self._one_event(request))

    # -- events.list --------------------------------------------------------------------

    async def _list(self, request: Request) -> Response:
        user = self._user_for(request)
        if user is None:
            return self._auth_failed()
        q = request.query_params
        unknown = set(q.keys()) - LIST_PARAMS
        if unknown:
            name = sorted(unknown)[0]
            return google_error(400, "badRequest", f"Unknown parameter: {name}", location=name)
        with self.lock:
            cal = self._resolve(request, user)
            if cal is None:
                return google_error(404, "notFound", "Not Found")
            if q.get("singleEvents") != "true":
                # Not a Google rule: this fake only expands series (as slotguard asks).
                return google_error(400, "badRequest", "the fake supports singleEvents=true")
            if "syncToken" in q:
                bad = sorted(set(q.keys()) & NOT_WITH_SYNC_TOKEN)
                if bad:
                    return google_error(
                        400,
                        "invalid",
                        f"Invalid request: {bad[0]} is not allowed together with syncToken.",
                        location=bad[0],
                    )
            try:
                max_results = int(q.get("maxResults", "250"))
            except ValueError:
                return google_error(400, "invalid", "Invalid value for maxResults")
            if not 1 <= max_results <= 2500:
                return google_error(
                    400, "invalid", "Invalid value for maxResults", location="maxResults"
                )
            page_size = min(max_results, self.max_page_size or max_results)
            fingerprint = tuple(sorted((k, v) for k, v in q.items() if k != "pageToken"))
            if "pageToken" in q:
                page = self.pages.pop(q["pageToken"], None)
                if page is None or page.calendar_id != cal.id or page.fingerprint != fingerprint:
                    return google_error(
                        400, "invalid", "Invalid page token value.", location="pageToken"
                    )
                return self._page(cal, page, page_size, first=False)
            if "syncToken" in q:
                entry = self.sync_tokens.get(q["syncToken"])
                if entry is None or entry[0] != cal.id or entry[2] != cal.epoch:
                    status, body = GOOGLE_ERRORS["fullSyncRequired"]
                    return JSONResponse(body, status)
                items = [
                    _render(e)
                    for e in sorted(cal.events.values(), key=lambda e: e["_seq"])
                    if e["_seq"] > entry[1] and self._changed_visible(e)
                ]
            else:
                lo = _param_time(q.get("timeMin"))
                hi = _param_time(q.get("timeMax"))
                if lo is False or hi is False:
                    return google_error(400, "badRequest", "Bad Request")
                if isinstance(lo, dt.datetime) and isinstance(hi, dt.datetime) and lo >= hi:
                    return google_error(
                        400,
                        "timeRangeEmpty",
                        "The specified time range is empty.",
                        domain="calendar",
                        location="timeMax",
                    )
                show_deleted = q.get("showDeleted") == "true"
                prop = q.get("privateExtendedProperty")
                items = []
                for e in sorted(cal.events.values(), key=_sort_key):
                    if e.get("_master"):
                        continue
                    if e.get("_deleted") and not show_deleted:
                        continue
                    if prop is not None:
                        k, _, v = prop.partition("=")
                        if e.get("extendedProperties", {}).get("private", {}).get(k) != v:
                            continue
                    if not _overlaps(e, cal.timezone, lo, hi):
                        continue
                    items.append(_render(e))
            token = "C" + secrets.token_urlsafe(18)
            self.sync_tokens[token] = (cal.id, self.seq, cal.epoch)
            page = _Page(cal.id, items, token, fingerprint)
            return self._page(cal, page, page_size, first=True)

    def _changed_visible(self, e: dict[str, Any]) -> bool:
        # A deleted master shows as its tombstone ("master" style) or through its
        # instances' own tombstones ("instances" style); live masters never show.
        if e.get("_master"):
            return bool(e.get("_deleted")) and self.series_delete_style == "master"
        return True

    def _page(self, cal: GCalendar, page: _Page, size: int, *, first: bool) -> Response:
        take = 0 if (first and self.empty_page_first and page.items) else size
        now, rest = page.items[:take], page.items[take:]
        body: dict[str, Any] = {
            "kind": "calendar#events",
            "etag": f'"p{self.seq}"',
            "summary": cal.summary,
            "description": "",
            "updated": self.clock.now().strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "timeZone": cal.timezone,
            "accessRole": "owner",
            "defaultReminders": [],
            "items": now,
        }
        if rest or (take == 0 and page.items):
            token = "E" + secrets.token_urlsafe(18)
            self.pages[token] = _Page(cal.id, rest, page.next_sync_token, page.fingerprint)
            body["nextPageToken"] = token
        else:
            body["nextSyncToken"] = page.next_sync_token
        return JSONResponse(body)

    # -- writes -------------------------------------------------------------------------

    async def _insert(self, request: Request) -> Response:
        user = self._user_for(request)
        if user is None:
            return self._auth_failed()
        q = request.query_params
        if set(q.keys()) - INSERT_PARAMS:
            return google_error(400, "badRequest", "Unknown parameter")
        if "sendUpdates" in q and q["sendUpdates"] not in SEND_UPDATES:
            return google_error(400, "invalid", "Invalid value for sendUpdates")
        try:
            body = await request.json()
        except ValueError:
            return google_error(400, "parseError", "Parse Error")
        with self.lock:
            cal = self._resolve(request, user)
            if cal is None:
                return google_error(404, "notFound", "Not Found")
            for key in ("start", "end"):
                problem = _check_time(body.get(key))
                if problem:
                    return google_error(
                        400,
                        "required" if problem == "missing" else "invalid",
                        f"Missing {key} time." if problem == "missing" else f"Invalid {key} time.",
                    )
            if "id" in body and "iCalUID" in body:
                return google_error(400, "invalid", "Specify either id or iCalUID, not both.")
            event_id = body.get("id") or secrets.token_hex(13)
            if not isinstance(event_id, str) or not EVENT_ID.match(event_id):
                return google_error(400, "invalid", "Invalid resource id value.")
            if event_id in cal.events:
                return google_error(409, "duplicate", "The requested identifier already exists.")
            ev = {k: v for k, v in body.items() if not k.startswith("_")}
            ev.update(
                {
                    "kind": "calendar#event",
                    "id": event_id,
                    "status": body.get("status", "confirmed"),
                    "htmlLink": f"https://www.google.com/calendar/event?eid={event_id}",
                    "created": self.clock.now().strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                    "creator": {"email": cal.owner, "self": True},
                    "organizer": {"email": cal.owner, "self": True},
                    "iCalUID": f"{event_id}@google.com",
                    "sequence": 0,
                    "eventType": body.get("eventType", "default"),
                }
            )
            self._touch(ev)
            cal.events[event_id] = ev
            return JSONResponse(_public(ev))

    async def _one_event(self, request: Request) -> Response:
        user = self._user_for(request)
        if user is None:
            return self._auth_failed()
        q = request.query_params
        allowed = {
            "GET": {"maxAttendees", "timeZone", "alwaysIncludeEmail"},
            "PATCH": PATCH_PARAMS,
            "PUT": PATCH_PARAMS,
            "DELETE": DELETE_PARAMS,
        }
        if set(q.keys()) - allowed[request.method]:
            return google_error(400, "badRequest", "Unknown parameter")
        body: dict[str, Any] = {}
        if request.method in ("PATCH", "PUT"):
            try:
                body = await request.json()
            except ValueError:
                return google_error(400, "parseError", "Parse Error")
        with self.lock:
            cal = self._resolve(request, user)
            if cal is None:
                return google_error(404, "notFound", "Not Found")
            ev = cal.events.get(request.path_params["eid"])
            if ev is None or ev.get("_master"):
                return google_error(404, "notFound", "Not Found")
            if request.method == "GET":
                return JSONResponse(_public(ev))
            if ev.get("_deleted"):
                return google_error(410, "deleted", "Resource has been deleted")
            if request.method == "DELETE":
                ev["_deleted"] = True
                ev["status"] = "cancelled"
                self._touch(ev)
                return Response(status_code=204)
            if_match = request.headers.get("if-match")
            if if_match is not None and if_match != ev["etag"]:
                return google_error(
                    412,
                    "conditionNotMet",
                    "Precondition Failed",
                    location="If-Match",
                    location_type="header",
                )
            for key in ("start", "end"):
                if key in body:
                    problem = _check_time(body[key])
                    if problem:
                        return google_error(400, "invalid", f"Invalid {key} time.")
            if request.method == "PUT":
                keep = {
                    k: ev[k]
                    for k in ev
                    if k.startswith("_")
                    or k in ("kind", "id", "htmlLink", "created", "creator", "organizer", "iCalUID")
                }
                ev.clear()
                ev.update(keep | body)
            else:
                _merge(ev, body)
            ev["sequence"] = ev.get("sequence", 0) + 1
            self._touch(ev)
            return JSONResponse(_public(ev))

    # -- OAuth --------------------------------------------------------------------------

    async def _auth_route(self, request: Request) -> Response:
        async def work() -> Response:
            q = request.query_params
            redirect = q.get("redirect_uri", "")
            if q.get("client_id") != self.client_id:
                return Response("Error 401: invalid_client", 401)
            if q.get("response_type") != "code" or not redirect.startswith(("http://", "https://")):
                return Response("Error 400: invalid_request", 400)
            scopes = set(q.get("scope", "").split())
            if not scopes & {SCOPE_EVENTS, SCOPE_CALENDAR}:
                return Response("Error 400: invalid_scope", 400)
            sep = "&" if "?" in redirect else "?"
            if self.deny_consent:
                target = (
                    redirect
                    + sep
                    + urllib.parse.urlencode(
                        {"error": "access_denied", "state": q.get("state", "")}
                    )
                )
                return RedirectResponse(target, 302)
            user = self.consent_user or next(iter(self.users))
            code = "4/" + secrets.token_urlsafe(24)
            self.codes[code] = _Grant(
                client_id=self.client_id,
                user=user,
                scope=q.get("scope", ""),
                redirect_uri=redirect,
                challenge=q.get("code_challenge"),
                challenge_method=q.get("code_challenge_method"),
                offline=q.get("access_type") == "offline",
                expires_at=self.clock.now() + dt.timedelta(minutes=10),
            )
            target = (
                redirect
                + sep
                + urllib.parse.urlencode(
                    {"state": q.get("state", ""), "code": code, "scope": q.get("scope", "")}
                )
            )
            return RedirectResponse(target, 302)

        return await self.handle("auth", request, work)

    async def _token_route(self, request: Request) -> Response:
        async def work() -> Response:
            form = await request.form()
            f = {k: str(v) for k, v in form.items()}
            client_id, client_secret = f.get("client_id"), f.get("client_secret")
            basic = request.headers.get("authorization", "")
            if basic.startswith("Basic "):
                client_id, _, client_secret = base64.b64decode(basic[6:]).decode().partition(":")
            if client_id != self.client_id or client_secret != self.client_secret:
                return JSONResponse(
                    {
                        "error": "invalid_client",
                        "error_description": "The OAuth client was not found.",
                    },
                    401,
                )
            grant = f.get("grant_type")
            with self.lock:
                if grant == "refresh_token":
                    user = self.refresh_tokens.get(f.get("refresh_token", ""))
                    if user is None:
                        return _invalid_grant("Token has been expired or revoked.")
                    return self._issue(user, scope=SCOPE_EVENTS, refresh=None)
                if grant == "authorization_code":
                    code = self.codes.pop(f.get("code", ""), None)
                    if code is None or code.expires_at <= self.clock.now():
                        return _invalid_grant("Malformed auth code.")
                    if f.get("redirect_uri") != code.redirect_uri:
                        return JSONResponse(
                            {"error": "redirect_uri_mismatch", "error_description": "Bad Request"},
                            400,
                        )
                    if code.challenge is not None:
                        verifier = f.get("code_verifier", "")
                        if code.challenge_method != "S256" or _s256(verifier) != code.challenge:
                            return _invalid_grant("Invalid code verifier.")
                    refresh = self.issue_refresh_token(code.user) if code.offline else None
                    return self._issue(code.user, scope=code.scope, refresh=refresh)
            return JSONResponse(
                {
                    "error": "unsupported_grant_type",
                    "error_description": "Invalid grant_type: " + str(grant),
                },
                400,
            )

        return await self.handle("token", request, work)

    def _issue(self, user: str, *, scope: str, refresh: str | None) -> JSONResponse:
        token = secret("ya29." + secrets.token_urlsafe(32))
        lifetime = self.access_token_lifetime_s
        self.access_tokens[token] = (user, self.clock.now() + dt.timedelta(seconds=lifetime))
        body: dict[str, Any] = {
            "access_token": token,
            "expires_in": lifetime,
            "scope": scope,
            "token_type": "Bearer",
        }
        if refresh:
            body["refresh_token"] = refresh
        return JSONResponse(body, headers={"Cache-Control": "no-store"})


def _invalid_grant(description: str) -> JSONResponse:
    return JSONResponse({"error": "invalid_grant", "error_description": description}, 400)


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _gtime(value: dt.datetime | dt.date, zone: str | None) -> dict[str, str]:
    if isinstance(value, dt.datetime):
        out = {"dateTime": value.isoformat().replace("+00:00", "Z")}
        if zone:
            out["timeZone"] = zone
        return out
    return {"date": value.isoformat()}


def _check_time(value: Any) -> str | None:
    if not isinstance(value, dict) or not ({"date", "dateTime"} & value.keys()):
        return "missing"
    if "dateTime" in value:
        raw = value["dateTime"]
        if not isinstance(raw, str):
            return "invalid"
        try:
            parsed = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            return "invalid"
        if parsed.tzinfo is None and not value.get("timeZone"):
            return "invalid"
    if "timeZone" in value:
        try:
            ZoneInfo(value["timeZone"])
        except (KeyError, ValueError):
            return "invalid"
    return None


def _param_time(value: str | None) -> dt.datetime | bool | None:
    if value is None:
        return None
    parsed = parse_rfc3339(value)
    return False if parsed is None else parsed


def _span(ev: dict[str, Any], zone: str) -> tuple[dt.datetime, dt.datetime]:
    def one(t: dict[str, Any]) -> dt.datetime:
        if "dateTime" in t:
            parsed = dt.datetime.fromisoformat(t["dateTime"].replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=ZoneInfo(t["timeZone"]))
            return parsed.astimezone(dt.UTC)
        day = dt.date.fromisoformat(t["date"])
        return dt.datetime.combine(day, dt.time(0), tzinfo=ZoneInfo(zone)).astimezone(dt.UTC)

    if "start" in ev:
        return one(ev["start"]), one(ev["end"])
    start = one(ev["originalStartTime"])
    return start, start


def _sort_key(ev: dict[str, Any]) -> tuple[str, str]:
    t = ev.get("start") or ev.get("originalStartTime") or {}
    return (t.get("dateTime") or t.get("date") or "", ev["id"])


def _overlaps(
    ev: dict[str, Any], zone: str, lo: dt.datetime | bool | None, hi: dt.datetime | bool | None
) -> bool:
    # timeMin bounds the end (exclusive), timeMax the start (exclusive), per the docs.
    start, end = _span(ev, zone)
    if isinstance(lo, dt.datetime) and end <= lo:
        return False
    return not (isinstance(hi, dt.datetime) and start >= hi)


def _public(ev: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in ev.items() if not k.startswith("_")}


def _render(ev: dict[str, Any]) -> dict[str, Any]:
    if ev.get("_deleted"):
        # "Deleted events are only guaranteed to have the id field populated."
        out = {"kind": "calendar#event", "etag": ev["etag"], "id": ev["id"], "status": "cancelled"}
        if "recurringEventId" in ev:
            out["recurringEventId"] = ev["recurringEventId"]
            out["originalStartTime"] = ev["originalStartTime"]
        return out
    if ev.get("status") == "cancelled" and "recurringEventId" in ev:
        # A cancelled instance of a live series: id, recurringEventId, originalStartTime.
        return {
            "kind": "calendar#event",
            "etag": ev["etag"],
            "id": ev["id"],
            "status": "cancelled",
            "recurringEventId": ev["recurringEventId"],
            "originalStartTime": ev["originalStartTime"],
        }
    return _public(ev)


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """Patch semantics: objects merge field by field, anything else is replaced."""
    for key, value in patch.items():
        if (
            isinstance(value, dict)
            and isinstance(target.get(key), dict)
            and key not in ("start", "end")
        ):
            _merge(target[key], value)
        else:
            target[key] = value
