"""A local fake of Microsoft Graph (calendar part) and the Microsoft identity platform v2.

Speaks the documented wire format (research note §2) over an in-memory store:

* ``GET /v1.0/me/calendarView/delta`` and ``/v1.0/me/calendars/{id}/calendarView/delta``:
  absolute ``@odata.nextLink``/``@odata.deltaLink`` on the fake's own base URL with opaque
  server-side state, ``@removed`` items (also for changes outside the window), 410
  ``SyncStateNotFound``, ``Prefer: odata.maxpagesize`` and ``outlook.timezone``;
* recurring series as calendarView shows them: occurrences with ``seriesMasterId``, the
  ``seriesMaster`` itself never listed; a deleted series comes back as ``@removed`` for
  the master and each instance;
* ``GET /v1.0/me/calendar``, ``/v1.0/me/calendars/{id}`` (the connect check);
* ``POST /v1.0/me/events`` and ``/v1.0/me/calendars/{id}/events`` with ``transactionId``
  (a repeat returns the existing event unless ``transaction_dedupe`` is off) and
  ``singleValueExtendedProperties``; ``GET …/events?$filter=singleValueExtendedProperties/
  Any(ep: ep/id eq '…' and ep/value eq '…')``;
* ``GET|PATCH|DELETE /v1.0/me/events/{id}`` (404 ``ErrorItemNotFound`` once gone);
* ``GET /{tenant}/oauth2/v2.0/authorize`` (approves at once) and ``POST
  /{tenant}/oauth2/v2.0/token`` (authorization_code with PKCE, refresh_token with rotation:
  the old refresh token stops working);
* more than ``mailbox_concurrency`` requests in flight for one mailbox: 429
  ``ApplicationThrottled`` (MailboxConcurrency) with ``Retry-After``.

Routes for fault injection: ``delta``, ``calendar``, ``create``, ``find``, ``get``,
``patch``, ``delete``, ``token``, ``authorize`` (and ``*``).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import re
import secrets
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.fakes.common import FakeBase, FakeClock
from tests.leaks import secret

GRAPH = "/v1.0"
FILTER = re.compile(
    r"^singleValueExtendedProperties/Any\(ep:\s*ep/id eq '(?P<id>[^']*)' and "
    r"ep/value eq '(?P<value>[^']*)'\)$"
)
EXPAND = re.compile(r"^singleValueExtendedProperties\(\$filter=id eq '(?P<id>[^']*)'\)$")
SCOPE = "Calendars.ReadWrite"

# Windows zone names the fake writes as originalStartTimeZone, for the zones tests use.
WINDOWS_NAMES = {
    "UTC": "UTC",
    "Europe/Berlin": "W. Europe Standard Time",
    "Europe/Paris": "Romance Standard Time",
    "America/New_York": "Eastern Standard Time",
    "America/Los_Angeles": "Pacific Standard Time",
    "Pacific/Auckland": "New Zealand Standard Time",
    "Pacific/Kiritimati": "Line Islands Standard Time",
    "Asia/Tokyo": "Tokyo Standard Time",
}


def graph_error(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": str(uuid.uuid4()),
                "client-request-id": str(uuid.uuid4()),
            },
        }
    }
    return JSONResponse(body, status, headers=headers)


def graph_error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


GRAPH_ERRORS: dict[str, tuple[int, dict[str, Any]]] = {
    "InvalidAuthenticationToken": (
        401,
        graph_error_body(
            "InvalidAuthenticationToken", "Access token has expired or is not yet valid."
        ),
    ),
    "ApplicationThrottled": (
        429,
        graph_error_body(
            "ApplicationThrottled", "Application is over its MailboxConcurrency limit."
        ),
    ),
    "TooManyRequests": (
        429,
        graph_error_body("TooManyRequests", "Too many requests, please try again later."),
    ),
    "ServiceUnavailable": (503, graph_error_body("ServiceUnavailable", "Service unavailable.")),
    "SyncStateNotFound": (
        410,
        graph_error_body(
            "SyncStateNotFound",
            "The sync state generation is not found; generation=149;[highest=157]",
        ),
    ),
    "ErrorItemNotFound": (
        404,
        graph_error_body("ErrorItemNotFound", "The specified object was not found in the store."),
    ),
}


@dataclass
class MUser:
    upn: str
    timezone: str
    default_calendar: str
    calendars: dict[str, str] = field(default_factory=dict)  # id -> name


@dataclass
class _DeltaState:
    user: str
    calendar_id: str
    start: dt.datetime
    end: dt.datetime
    since: int  # changes after this sequence number
    epoch: int
    pending: list[dict[str, Any]] | None = None  # the rest of a round being paged
    next_since: int = 0


@dataclass
class _Grant:
    user: str
    scope: str
    redirect_uri: str
    challenge: str | None
    challenge_method: str | None
    expires_at: dt.datetime


class GraphFake(FakeBase):
    def __init__(
        self,
        *,
        client_id: str = "ms-client",
        client_secret: str = "ms-secret",
        clock: FakeClock | None = None,
    ) -> None:
        super().__init__(clock)
        self.client_id, self.client_secret = client_id, secret(client_secret)
        self.base_url = "http://graph.test"  # set to the server's URL when served
        self.users: dict[str, MUser] = {}
        self.events: dict[str, dict[str, Any]] = {}  # id -> resource + internals
        self.refresh_tokens: dict[str, str] = {}
        self.access_tokens: dict[str, tuple[str, dt.datetime]] = {}
        self.codes: dict[str, _Grant] = {}
        self.states: dict[str, _DeltaState] = {}
        self.seq = 0
        self.epoch = 0
        self.access_token_lifetime_s = 3599
        self.rotate_refresh_tokens = True
        self.transaction_dedupe = True
        self.mailbox_concurrency = 4
        # Time each mailbox request spends in flight (so concurrency becomes visible).
        self.mailbox_latency_s = 0.0
        self.retry_after_s = 1
        self.in_flight: dict[str, int] = {}
        self.max_in_flight: dict[str, int] = {}
        self.throttled = 0
        self.tenants_seen: list[str] = []
        self.consent_user: str | None = None
        self.app = self._build_app()

    # -- seeding and remote changes -----------------------------------------------------

    def add_user(self, upn: str, *, timezone: str = "UTC") -> str:
        with self.lock:
            cal = _graph_id()
            self.users[upn] = MUser(upn, timezone, cal, {cal: "Calendar"})
            return self.issue_refresh_token(upn)

    def issue_refresh_token(self, upn: str) -> str:
        token = secret("M.C5" + secrets.token_urlsafe(40))
        self.refresh_tokens[token] = upn
        return token

    def add_calendar(self, upn: str, name: str) -> str:
        with self.lock:
            cal = _graph_id()
            self.users[upn].calendars[cal] = name
            return cal

    def _touch(self, ev: dict[str, Any]) -> None:
        self.seq += 1
        ev["_seq"] = self.seq
        change = base64.b64encode(secrets.token_bytes(12)).decode()
        ev["changeKey"] = change
        ev["@odata.etag"] = f'W/"{change}"'
        ev["lastModifiedDateTime"] = self.clock.now().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"

    def add_event(
        self,
        upn: str,
        *,
        start: dt.datetime | dt.date,
        end: dt.datetime | dt.date,
        calendar_id: str | None = None,
        subject: str = "busy",
        show_as: str = "busy",
        is_cancelled: bool = False,
        response: str = "organizer",
        zone: str = "UTC",
        original_start_time_zone: str | None = None,
        series_master_id: str | None = None,
        event_type: str | None = None,
    ) -> dict[str, Any]:
        """A timed event (aware datetimes) or an all-day one (dates, in `zone`)."""
        with self.lock:
            user = self.users[upn]
            all_day = not isinstance(start, dt.datetime)
            ev: dict[str, Any] = {
                "id": _graph_id(),
                "createdDateTime": self.clock.now().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                "iCalUId": "040000008200E00074C5B7101A82E008" + secrets.token_hex(16).upper(),
                "subject": subject,
                "isAllDay": all_day,
                "isCancelled": is_cancelled,
                "isOrganizer": response == "organizer",
                "showAs": show_as,
                "type": event_type or ("occurrence" if series_master_id else "singleInstance"),
                "originalStartTimeZone": original_start_time_zone or WINDOWS_NAMES.get(zone, zone),
                "originalEndTimeZone": original_start_time_zone or WINDOWS_NAMES.get(zone, zone),
                "responseStatus": {"response": response, "time": "0001-01-01T00:00:00Z"},
                "_calendar": calendar_id or user.default_calendar,
                "_user": upn,
                "_zone": zone,
                "_start": start,
                "_end": end,
                "_props": {},
            }
            if series_master_id:
                ev["seriesMasterId"] = series_master_id
                assert isinstance(start, dt.datetime)
                ev["originalStart"] = start.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            self._touch(ev)
            self.events[ev["id"]] = ev
            return ev

    def add_series(
        self,
        upn: str,
        *,
        first_start: dt.datetime,
        duration: dt.timedelta,
        count: int,
        every: dt.timedelta = dt.timedelta(days=7),
        zone: str = "UTC",
        **kw: Any,
    ) -> tuple[str, list[dict[str, Any]]]:
        """A recurring series as calendarView shows it: a ``seriesMaster`` (which a
        calendarView never lists, only its instances) and ``count`` occurrences with
        ``seriesMasterId`` and ``originalStart``, the wall-clock time kept in ``zone``.
        Deleting the master deletes the series: the master and every instance then come
        back from ``calendarView/delta`` as ``@removed``."""
        tz = ZoneInfo(zone)
        local = first_start.astimezone(tz)
        with self.lock:
            master = self.add_event(
                upn,
                start=local,
                end=local + duration,
                zone=zone,
                event_type="seriesMaster",
                **kw,
            )
            master["_master"] = True
            master["recurrence"] = {
                "pattern": {"type": "daily", "interval": max(every.days, 1)},
                "range": {"type": "numbered", "numberOfOccurrences": count},
            }
            occurrences = []
            for i in range(count):
                wall = (local.replace(tzinfo=None) + every * i).replace(tzinfo=tz)
                occurrences.append(
                    self.add_event(
                        upn,
                        start=wall,
                        end=wall + duration,
                        zone=zone,
                        series_master_id=master["id"],
                        **kw,
                    )
                )
            return master["id"], occurrences

    def update_event(self, event_id: str, **fields: Any) -> dict[str, Any]:
        """Owner-side change. `start`/`end` (datetimes) move it; other keys are fields."""
        with self.lock:
            ev = self.events[event_id]
            for key in ("start", "end"):
                if key in fields:
                    ev[f"_{key}"] = fields.pop(key)
            ev.update(fields)
            self._touch(ev)
            return ev

    def delete_event(self, event_id: str) -> None:
        """Owner-side deletion; a series master takes its instances with it."""
        with self.lock:
            ev = self.events[event_id]
            ev["_deleted"] = True
            self._touch(ev)
            if ev.get("_master"):
                for other in self.events.values():
                    if other.get("seriesMasterId") == event_id and not other.get("_deleted"):
                        other["_deleted"] = True
                        self._touch(other)

    def invalidate_delta_tokens(self) -> None:
        with self.lock:
            self.epoch += 1

    def expire_access_tokens(self) -> None:
        with self.lock:
            self.access_tokens.clear()

    def revoke(self, refresh_token: str) -> None:
        with self.lock:
            self.refresh_tokens.pop(refresh_token, None)

    def live_events(self, upn: str) -> list[dict[str, Any]]:
        with self.lock:
            return [
                self._render(e, "UTC", expand=None)
                for e in self.events.values()
                if e["_user"] == upn and not e.get("_deleted") and not e.get("_master")
            ]

    # -- rendering ----------------------------------------------------------------------

    def _render(self, ev: dict[str, Any], tz_name: str, *, expand: str | None) -> dict[str, Any]:
        out = {k: v for k, v in ev.items() if not k.startswith("_")}
        out["@odata.type"] = "#microsoft.graph.event"
        if ev["isAllDay"]:
            # Midnight to midnight whatever the Prefer zone says (the documented trap).
            out["start"] = {
                "dateTime": f"{ev['_start'].isoformat()}T00:00:00.0000000",
                "timeZone": tz_name,
            }
            out["end"] = {
                "dateTime": f"{ev['_end'].isoformat()}T00:00:00.0000000",
                "timeZone": tz_name,
            }
        else:
            zone = ZoneInfo(tz_name)
            for key in ("start", "end"):
                local = ev[f"_{key}"].astimezone(zone).replace(tzinfo=None)
                out[key] = {
                    "dateTime": local.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0",
                    "timeZone": tz_name,
                }
        if expand is not None and expand in ev["_props"]:
            out["singleValueExtendedProperties"] = [{"id": expand, "value": ev["_props"][expand]}]
        return out

    def _span(self, ev: dict[str, Any]) -> tuple[dt.datetime, dt.datetime]:
        if ev["isAllDay"]:
            zone = ZoneInfo(ev["_zone"])
            return (
                dt.datetime.combine(ev["_start"], dt.time(0), tzinfo=zone).astimezone(dt.UTC),
                dt.datetime.combine(ev["_end"], dt.time(0), tzinfo=zone).astimezone(dt.UTC),
            )
        return ev["_start"].astimezone(dt.UTC), ev["_end"].astimezone(dt.UTC)

    # -- the app ------------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        return Starlette(
            routes=[
                Route(GRAPH + "/me/calendarView/delta", self._delta_route),
                Route(GRAPH + "/me/calendars/{cid}/calendarView/delta", self._delta_route),
                Route(GRAPH + "/me/calendar", self._calendar_route),
                Route(GRAPH + "/me/calendars/{cid}", self._calendar_route),
                Route(GRAPH + "/me/events", self._events_route, methods=["GET", "POST"]),
                Route(
                    GRAPH + "/me/calendars/{cid}/events",
                    self._events_route,
                    methods=["GET", "POST"],
                ),
                Route(
                    GRAPH + "/me/events/{eid}",
                    self._event_route,
                    methods=["GET", "PATCH", "DELETE"],
                ),
                Route("/{tenant}/oauth2/v2.0/authorize", self._authorize_route),
                Route("/{tenant}/oauth2/v2.0/token", self._token_route, methods=["POST"]),
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

    async def _mailbox(self, route: str, request: Request, work: Any) -> Response:
        """Auth, then the per-mailbox concurrency limit, then the route's work."""

        async def guarded() -> Response:
            user = self._user_for(request)
            if user is None:
                status, body = GRAPH_ERRORS["InvalidAuthenticationToken"]
                return JSONResponse(body, status, headers={"WWW-Authenticate": "Bearer"})
            with self.lock:
                self.in_flight[user] = self.in_flight.get(user, 0) + 1
                now = self.in_flight[user]
                self.max_in_flight[user] = max(self.max_in_flight.get(user, 0), now)
            try:
                if self.mailbox_latency_s:
                    await asyncio.sleep(self.mailbox_latency_s)
                if now > self.mailbox_concurrency:
                    self.throttled += 1
                    status, body = GRAPH_ERRORS["ApplicationThrottled"]
                    return JSONResponse(
                        body, status, headers={"Retry-After": str(self.retry_after_s)}
                    )
                response: Response = await work(user)
                return response
            finally:
                with self.lock:
                    self.in_flight[user] -= 1

        return await self.handle(route, request, guarded)

    def _calendar_of(self, request: Request, user: str) -> str | None:
        cid = request.path_params.get("cid")
        u = self.users[user]
        if cid is None:
            return u.default_calendar
        return cid if cid in u.calendars else None

    async def _calendar_route(self, request: Request) -> Response:
        async def work(user: str) -> Response:
            cid = self._calendar_of(request, user)
            if cid is None:
                return graph_error(
                    404, "ErrorItemNotFound", "The specified object was not found in the store."
                )
            u = self.users[user]
            return JSONResponse(
                {
                    "@odata.context": f"{self.base_url}{GRAPH}/$metadata#users('{user}')/calendar",
                    "id": cid,
                    "name": u.calendars[cid],
                    "canEdit": True,
                    "isDefaultCalendar": cid == u.default_calendar,
                    "owner": {"name": user, "address": user},
                }
            )

        return await self._mailbox("calendar", request, work)

    # -- delta --------------------------------------------------------------------------

    async def _delta_route(self, request: Request) -> Response:
        return await self._mailbox("delta", request, lambda user: self._delta(request, user))

    def _prefs(self, request: Request) -> dict[str, str]:
        prefs: dict[str, str] = {}
        for raw in request.headers.getlist("prefer"):
            for part in raw.split(","):
                name, _, value = part.strip().partition("=")
                if name:
                    prefs[name.strip()] = value.strip().strip('"')
        return prefs

    async def _delta(self, request: Request, user: str) -> Response:
        q = dict(request.query_params)
        prefs = self._prefs(request)
        tz_name = prefs.get("outlook.timezone", "UTC")
        try:
            ZoneInfo(tz_name)
        except (KeyError, ValueError):
            return graph_error(400, "ErrorInvalidTimeZone", "The time zone is not supported.")
        try:
            page_size = int(prefs.get("odata.maxpagesize", "10"))
        except ValueError:
            page_size = 10
        with self.lock:
            cid = self._calendar_of(request, user)
            if cid is None:
                return graph_error(
                    404, "ErrorItemNotFound", "The specified object was not found in the store."
                )
            token_names = {"$deltatoken", "$skiptoken"}
            if token_names & q.keys():
                if set(q) - token_names or len(q) != 1:
                    # Only the state token may be on a link; everything else is inside it.
                    return graph_error(
                        400,
                        "ErrorInvalidUrlQuery",
                        "The following parameters are not supported with change "
                        "tracking over the 'CalendarView' resource: "
                        + ", ".join(sorted(set(q) - token_names)),
                    )
                key = q.get("$deltatoken") or q.get("$skiptoken") or ""
                state = self.states.get(key)
                if state is None or state.epoch != self.epoch:
                    status, body = GRAPH_ERRORS["SyncStateNotFound"]
                    return JSONResponse(body, status)
                if state.calendar_id != cid or state.user != user:
                    return graph_error(
                        400, "ErrorInvalidUrlQuery", "The token is for another resource."
                    )
                if "$skiptoken" in q:
                    # A page link is good once; the state it names moves on.
                    del self.states[key]
                    return self._delta_page(request, state, tz_name, page_size)
                state = _DeltaState(user, cid, state.start, state.end, state.since, self.epoch)
                return self._delta_round(request, state, tz_name, page_size, initial=False)
            unknown = set(q) - {"startDateTime", "endDateTime", "$select"}
            if unknown:
                return graph_error(
                    400, "ErrorInvalidUrlQuery", f"Unsupported query option: {sorted(unknown)[0]}"
                )
            try:
                start = _iso(q["startDateTime"])
                end = _iso(q["endDateTime"])
            except (KeyError, ValueError):
                return graph_error(
                    400,
                    "ErrorInvalidParameter",
                    "This request requires a time window specified by the query "
                    "string parameters StartDateTime and EndDateTime.",
                )
            state = _DeltaState(user, cid, start, end, 0, self.epoch)
            return self._delta_round(request, state, tz_name, page_size, initial=True)

    def _delta_round(
        self, request: Request, state: _DeltaState, tz_name: str, page_size: int, *, initial: bool
    ) -> Response:
        items: list[dict[str, Any]] = []
        for ev in sorted(self.events.values(), key=lambda e: e["_seq"]):
            if ev["_user"] != state.user or ev["_calendar"] != state.calendar_id:
                continue
            if not initial and ev["_seq"] <= state.since:
                continue
            if ev.get("_master") and not ev.get("_deleted"):
                continue  # a calendarView lists a series' instances, never its master
            s, e = self._span(ev)
            inside = s < state.end and e > state.start
            if ev.get("_deleted") or not inside:
                if not initial:
                    # Deleted in the window, or changed anywhere outside it: both "removed".
                    items.append(
                        {
                            "@odata.type": "#microsoft.graph.event",
                            "id": ev["id"],
                            "@removed": {"reason": "deleted"},
                        }
                    )
                continue
            items.append(self._render(ev, tz_name, expand=None))
        state.pending = items
        state.next_since = self.seq
        return self._delta_page(request, state, tz_name, page_size)

    def _delta_page(
        self, request: Request, state: _DeltaState, tz_name: str, page_size: int
    ) -> Response:
        pending = state.pending or []
        now, rest = pending[:page_size], pending[page_size:]
        path = request.url.path
        body: dict[str, Any] = {
            "@odata.context": f"{self.base_url}{GRAPH}/$metadata#Collection(event)",
            "value": now,
        }
        key = secrets.token_urlsafe(24)
        if rest:
            self.states[key] = _DeltaState(
                state.user,
                state.calendar_id,
                state.start,
                state.end,
                state.since,
                self.epoch,
                rest,
                state.next_since,
            )
            body["@odata.nextLink"] = f"{self.base_url}{path}?$skiptoken={key}"
        else:
            self.states[key] = _DeltaState(
                state.user, state.calendar_id, state.start, state.end, state.next_since, self.epoch
            )
            body["@odata.deltaLink"] = f"{self.base_url}{path}?$deltatoken={key}"
        headers = {"Preference-Applied": f'outlook.timezone="{tz_name}"'}
        return JSONResponse(body, headers=headers)

    # -- events -------------------------------------------------------------------------

    async def _events_route(self, request: Request) -> Response:
        if request.method == "POST":
            return await self._mailbox("create", request, lambda u: self._create(request, u))
        return await self._mailbox("find", request, lambda u: self._find(request, u))

    async def _create(self, request: Request, user: str) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return graph_error(400, "BadRequest", "Unable to read JSON request payload.")
        with self.lock:
            cid = self._calendar_of(request, user)
            if cid is None:
                return graph_error(
                    404, "ErrorItemNotFound", "The specified object was not found in the store."
                )
            try:
                start = _wire_time(body["start"])
                end = _wire_time(body["end"])
            except (KeyError, TypeError, ValueError):
                return graph_error(
                    400,
                    "ErrorInvalidRequest",
                    "Your request can't be completed. start and end are required.",
                )
            txn = body.get("transactionId")
            if txn is not None and self.transaction_dedupe:
                for ev in self.events.values():
                    if (
                        ev.get("transactionId") == txn
                        and ev["_user"] == user
                        and not ev.get("_deleted")
                    ):
                        return JSONResponse(self._render(ev, "UTC", expand=None), 201)
            ev = self.add_event(
                user,
                start=start,
                end=end,
                calendar_id=cid,
                subject=body.get("subject", ""),
                show_as=body.get("showAs", "busy"),
            )
            if txn is not None:
                ev["transactionId"] = txn
            if "body" in body:
                ev["body"] = body["body"]
            for prop in body.get("singleValueExtendedProperties", []):
                ev["_props"][prop["id"]] = prop["value"]
            return JSONResponse(self._render(ev, "UTC", expand=None), 201)

    async def _find(self, request: Request, user: str) -> Response:
        q = request.query_params
        with self.lock:
            cid = self._calendar_of(request, user)
            if cid is None:
                return graph_error(
                    404, "ErrorItemNotFound", "The specified object was not found in the store."
                )
            match = FILTER.match(q.get("$filter", ""))
            if match is None:
                return graph_error(
                    400,
                    "ErrorInvalidUrlQueryFilter",
                    "The query filter contains one or more invalid nodes.",
                )
            expand_match = EXPAND.match(q.get("$expand", ""))
            expand = expand_match.group("id") if expand_match else None
            found = [
                self._render(ev, "UTC", expand=expand)
                for ev in self.events.values()
                if ev["_user"] == user
                and (request.path_params.get("cid") is None or ev["_calendar"] == cid)
                and not ev.get("_deleted")
                and ev["_props"].get(match.group("id")) == match.group("value")
            ]
            return JSONResponse({"@odata.context": "…", "value": found})

    async def _event_route(self, request: Request) -> Response:
        route = {"GET": "get", "PATCH": "patch", "DELETE": "delete"}[request.method]
        return await self._mailbox(route, request, lambda u: self._one(request, u))

    async def _one(self, request: Request, user: str) -> Response:
        body: dict[str, Any] = {}
        if request.method == "PATCH":
            try:
                body = await request.json()
            except ValueError:
                return graph_error(400, "BadRequest", "Unable to read JSON request payload.")
        with self.lock:
            ev = self.events.get(request.path_params["eid"])
            if ev is None or ev["_user"] != user or ev.get("_deleted"):
                return graph_error(
                    404, "ErrorItemNotFound", "The specified object was not found in the store."
                )
            if request.method == "GET":
                expand_match = EXPAND.match(request.query_params.get("$expand", ""))
                return JSONResponse(
                    self._render(
                        ev, "UTC", expand=expand_match.group("id") if expand_match else None
                    )
                )
            if request.method == "DELETE":
                ev["_deleted"] = True
                self._touch(ev)
                return Response(status_code=204)
            if_match = request.headers.get("if-match")
            if if_match is not None and if_match != ev["@odata.etag"]:
                return graph_error(
                    412,
                    "ErrorIrresolvableConflict",
                    "The send or update operation could not be performed because "
                    "the change key passed in the request does not match the "
                    "current change key for the item.",
                )
            try:
                if "start" in body:
                    ev["_start"] = _wire_time(body.pop("start"))
                if "end" in body:
                    ev["_end"] = _wire_time(body.pop("end"))
            except (KeyError, TypeError, ValueError):
                return graph_error(400, "ErrorInvalidRequest", "Invalid start or end.")
            if "transactionId" in body:
                return graph_error(400, "ErrorInvalidRequest", "transactionId cannot be changed.")
            for prop in body.pop("singleValueExtendedProperties", []):
                ev["_props"][prop["id"]] = prop["value"]
            ev.update(body)
            self._touch(ev)
            return JSONResponse(self._render(ev, "UTC", expand=None))

    # -- identity platform --------------------------------------------------------------

    async def _authorize_route(self, request: Request) -> Response:
        async def work() -> Response:
            q = request.query_params
            self.tenants_seen.append(request.path_params["tenant"])
            redirect = q.get("redirect_uri", "")
            if q.get("client_id") != self.client_id:
                return Response("AADSTS700016: Application not found", 400)
            if q.get("response_type") != "code" or not redirect:
                return Response("AADSTS900144: invalid request", 400)
            user = self.consent_user or next(iter(self.users))
            code = "0.A" + secrets.token_urlsafe(30)
            self.codes[code] = _Grant(
                user,
                q.get("scope", ""),
                redirect,
                q.get("code_challenge"),
                q.get("code_challenge_method"),
                self.clock.now() + dt.timedelta(minutes=10),
            )
            sep = "&" if "?" in redirect else "?"
            params = {"code": code, "state": q.get("state", ""), "session_state": str(uuid.uuid4())}
            return RedirectResponse(redirect + sep + urllib.parse.urlencode(params), 302)

        return await self.handle("authorize", request, work)

    async def _token_route(self, request: Request) -> Response:
        async def work() -> Response:
            self.tenants_seen.append(request.path_params["tenant"])
            form = await request.form()
            f = {k: str(v) for k, v in form.items()}
            if f.get("client_id") != self.client_id:
                return _aad_error(
                    400,
                    "unauthorized_client",
                    700016,
                    "AADSTS700016: Application with identifier was not found.",
                )
            if f.get("client_secret") != self.client_secret:
                return _aad_error(
                    401, "invalid_client", 7000215, "AADSTS7000215: Invalid client secret provided."
                )
            scope = f.get("scope", "")
            if SCOPE not in scope.split() and not any(
                s.endswith("/" + SCOPE) for s in scope.split()
            ):
                return _aad_error(
                    400,
                    "invalid_scope",
                    70011,
                    "AADSTS70011: The provided value for the input parameter 'scope' is not valid.",
                )
            grant = f.get("grant_type")
            with self.lock:
                if grant == "refresh_token":
                    user = self.refresh_tokens.get(f.get("refresh_token", ""))
                    if user is None:
                        return _aad_error(
                            400,
                            "invalid_grant",
                            700082,
                            "AADSTS700082: The refresh token has expired due to inactivity.",
                        )
                    if self.rotate_refresh_tokens:
                        del self.refresh_tokens[f["refresh_token"]]
                    return self._issue(
                        user, scope, rotate=self.rotate_refresh_tokens, old=f["refresh_token"]
                    )
                if grant == "authorization_code":
                    code = self.codes.pop(f.get("code", ""), None)
                    if code is None or code.expires_at <= self.clock.now():
                        return _aad_error(
                            400,
                            "invalid_grant",
                            70008,
                            "AADSTS70008: The provided authorization code or "
                            "refresh token has expired or been used.",
                        )
                    if f.get("redirect_uri") != code.redirect_uri:
                        return _aad_error(
                            400,
                            "invalid_grant",
                            50148,
                            "AADSTS50148: The redirect_uri does not match.",
                        )
                    if code.challenge is not None and (
                        code.challenge_method != "S256"
                        or _s256(f.get("code_verifier", "")) != code.challenge
                    ):
                        return _aad_error(
                            400,
                            "invalid_grant",
                            501481,
                            "AADSTS501481: The Code_Verifier does not match the "
                            "code_challenge supplied in the authorization request.",
                        )
                    return self._issue(code.user, code.scope, rotate=True, old=None)
            return _aad_error(
                400,
                "unsupported_grant_type",
                70003,
                "AADSTS70003: The app requested an unsupported grant type.",
            )

        return await self.handle("token", request, work)

    def _issue(self, user: str, scope: str, *, rotate: bool, old: str | None) -> JSONResponse:
        token = secret("EwB" + secrets.token_urlsafe(40))
        lifetime = self.access_token_lifetime_s
        self.access_tokens[token] = (user, self.clock.now() + dt.timedelta(seconds=lifetime))
        body: dict[str, Any] = {
            "token_type": "Bearer",
            # offline_access is never echoed in scope.
            "scope": " ".join(s for s in scope.split() if s != "offline_access"),
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": token,
        }
        if "offline_access" in scope.split():
            body["refresh_token"] = self.issue_refresh_token(user) if rotate or old is None else old
        return JSONResponse(body)


def _aad_error(status: int, error: str, code: int, description: str) -> JSONResponse:
    return JSONResponse(
        {
            "error": error,
            "error_description": description,
            "error_codes": [code],
            "timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
            "trace_id": str(uuid.uuid4()),
            "correlation_id": str(uuid.uuid4()),
            "error_uri": "https://login.microsoftonline.com/error?code=" + str(code),
        },
        status,
    )


def _graph_id() -> str:
    # Real ids are long base64 strings; '-' and '_' (and the '=' padding) must survive URLs.
    return "AAMkAG" + base64.urlsafe_b64encode(secrets.token_bytes(45)).decode() + "="


def _iso(value: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def _wire_time(value: dict[str, Any]) -> dt.datetime:
    """A dateTimeTimeZone from a request: offset-less local time in `timeZone`."""
    local = dt.datetime.fromisoformat(value["dateTime"])
    zone = value.get("timeZone") or "UTC"
    if local.tzinfo is not None:
        raise ValueError("dateTime carries an offset")
    return local.replace(tzinfo=ZoneInfo(zone)).astimezone(dt.UTC)


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
