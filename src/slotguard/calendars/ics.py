"""ICS feeds (read only): conditional GET plus a content hash.

The cursor keeps the validators (``ETag``, ``Last-Modified``) and the SHA-256 of the last
body. A 304, or a 200 whose body hashes the same (many servers ignore validators), changes
nothing. Because some servers answer 304 to anything, at least one unconditional GET is made
per ``UNCONDITIONAL_EVERY``. A changed feed is always a full copy (it is one document), so
events that vanished from it vanish from the local copy.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

import httpx

from slotguard.calendars.base import (
    BookingEvent,
    CheckResult,
    EventRef,
    ProviderContext,
    ProviderDataError,
    ProviderSpec,
    ProviderUnavailable,
    Pull,
    RemoteItem,
    Window,
)
from slotguard.calendars.http import request
from slotguard.calendars.recurrence import expand

__all__ = ["SPEC", "IcsProvider"]

UNCONDITIONAL_EVERY = dt.timedelta(hours=24)


def normalise_feed_url(url: str) -> str:
    if url.lower().startswith("webcal://"):
        return "https://" + url[len("webcal://") :]
    return url


class IcsProvider:
    def __init__(self, ctx: ProviderContext) -> None:
        if not ctx.url:
            raise ProviderUnavailable("an ics calendar needs a url")
        self._ctx = ctx
        self._url = normalise_feed_url(ctx.url)
        user = ctx.credentials.get("username")
        self._auth = (
            httpx.BasicAuth(str(user), str(ctx.credentials.get("password") or "")) if user else None
        )

    async def _get(self, headers: dict[str, str]) -> tuple[int, httpx.Headers, bytes]:
        answer = await request(
            self._ctx.http,
            "GET",
            self._url,
            headers={"Accept": "text/calendar, */*;q=0.5", **headers},
            auth=self._auth,
            max_bytes=self._ctx.max_bytes,
            timeout_s=self._ctx.timeout_s,
            follow_redirects=True,
            ok=(304,),
        )
        return answer.status, answer.headers, answer.body

    async def check(self) -> CheckResult:
        status, _, body = await self._get({})
        if status == 304:  # nothing was asked conditionally: a broken server
            raise ProviderUnavailable("the feed answered 304 to a plain GET", status=304)
        now = dt.datetime.now(dt.UTC)
        parsed = expand(body, Window(now, now), default_tz=self._ctx.business_tz)
        return CheckResult(timezone=parsed.calendar_tz)

    async def pull(self, cursor: str | None, window: Window) -> Pull:
        state: dict[str, Any] = {}
        if cursor:
            try:
                state = json.loads(cursor)
            except ValueError:
                state = {}
        now = dt.datetime.now(dt.UTC)
        headers: dict[str, str] = {}
        last_plain = state.get("unconditional_at")
        due_plain = (
            cursor is None
            or last_plain is None
            or now - dt.datetime.fromisoformat(last_plain) >= UNCONDITIONAL_EVERY
        )
        if not due_plain:
            if state.get("etag"):
                headers["If-None-Match"] = state["etag"]
            if state.get("last_modified"):
                headers["If-Modified-Since"] = state["last_modified"]
        status, resp_headers, body = await self._get(headers)
        if status == 304:
            if due_plain:
                raise ProviderUnavailable("the feed answered 304 to a plain GET", status=304)
            return Pull(full=False, cursor=cursor)
        digest = hashlib.sha256(body).hexdigest()
        new_state = {
            "etag": resp_headers.get("ETag"),
            "last_modified": resp_headers.get("Last-Modified"),
            "hash": digest,
            "unconditional_at": now.isoformat() if due_plain else last_plain,
        }
        new_cursor = json.dumps(new_state)
        if cursor is not None and state.get("hash") == digest:
            return Pull(full=False, cursor=new_cursor)
        if not body.strip():
            raise ProviderDataError("the feed is empty")
        parsed = expand(
            body,
            window,
            default_tz=self._ctx.calendar_tz or self._ctx.business_tz,
            owner_emails=self._ctx.owner_emails,
        )
        items = [
            RemoteItem(
                external_id=uid,
                busy=tuple(series.periods),
                own_booking_id=series.own_booking_id,
            )
            for uid, series in parsed.by_uid.items()
        ]
        return Pull(full=True, items=items, cursor=new_cursor, notes=parsed.notes)

    async def upsert_event(self, event: BookingEvent, existing: EventRef | None) -> EventRef:
        raise ProviderUnavailable("ics feeds are read only")

    async def delete_event(self, ref: EventRef) -> None:
        raise ProviderUnavailable("ics feeds are read only")


SPEC = ProviderSpec(
    name="ics",
    build=IcsProvider,
    read_only=True,
    needs_url=True,
    secret_fields=("username", "password"),
)
