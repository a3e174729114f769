"""What every page shares: templates, the visitor cookie and CSRF, headers, time display."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import secrets
import zoneinfo
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute

from slotguard.config import Settings
from slotguard.domain.availability import Interval
from slotguard.domain.errors import DomainError
from slotguard.domain.timezones import check_zone_name, zone

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
VISITOR_COOKIE = "sg_visitor"
SESSION_COOKIE = "sg_session"

# Everything a page loads comes from slotguard itself; nothing from elsewhere, ever.
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # Manage and login links carry tokens: never hand them on in a Referer.
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["zones"] = zone_names()
    return env


@functools.cache
def static_version() -> str:
    """A digest of the static files, so their URLs change when they do (long caching)."""
    digest = hashlib.sha256()
    for path in sorted(STATIC.iterdir()):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:12]


@functools.cache
def zone_names() -> tuple[str, ...]:
    """The zones a visitor can pick: region/city names and UTC, not the legacy aliases."""
    legacy = ("Etc/", "SystemV/", "US/", "posix", "right/", "Canada/", "Mexico/", "Brazil/")
    names = {
        name
        for name in zoneinfo.available_timezones()
        if "/" in name and not name.startswith(legacy)
    }
    return ("UTC", *sorted(names))


def render(
    request: Request,
    template: str,
    *,
    status: int = 200,
    visitor: str | None = None,
    **values: Any,
) -> HTMLResponse:
    visitor = visitor or visitor_id(request)
    html = (
        environment()
        .get_template(template)
        .render(csrf=csrf_token(visitor), static=f"/static/pages/{static_version()}", **values)
    )
    response = HTMLResponse(html, status_code=status, headers=dict(SECURITY_HEADERS))
    set_visitor(request, response, visitor)
    return response


def redirect(url: str, request: Request | None = None, visitor: str | None = None) -> Response:
    response = RedirectResponse(url, status_code=303, headers=dict(SECURITY_HEADERS))
    if request is not None and visitor is not None:
        set_visitor(request, response, visitor)
    return response


# -- visitor and CSRF --------------------------------------------------------------------


def visitor_id(request: Request) -> str:
    """The visitor's random id (an HttpOnly cookie); a new one for a first visit."""
    raw = request.cookies.get(VISITOR_COOKIE, "")
    if 20 <= len(raw) <= 64 and raw.replace("-", "").replace("_", "").isalnum():
        return raw
    return secrets.token_urlsafe(24)


def csrf_token(visitor: str) -> str:
    # Bound to the HttpOnly visitor cookie, which another site can neither read nor (with
    # SameSite) send along: a forged form post cannot carry a matching token.
    return hashlib.sha256(b"slotguard-csrf\0" + visitor.encode()).hexdigest()[:32]


def csrf_ok(request: Request, form: Mapping[str, Any]) -> bool:
    raw = request.cookies.get(VISITOR_COOKIE)
    sent = form.get("csrf")
    if not raw or not isinstance(sent, str):
        return False
    return secrets.compare_digest(sent, csrf_token(raw))


def secure_cookies(request: Request) -> bool:
    settings: Settings = request.app.state.settings
    return request.url.scheme == "https" or (settings.public_url or "").startswith("https:")


def set_visitor(request: Request, response: Response, visitor: str) -> None:
    if request.cookies.get(VISITOR_COOKIE) == visitor:
        return
    response.set_cookie(
        VISITOR_COOKIE,
        visitor,
        max_age=30 * 24 * 3600,
        httponly=True,
        samesite="lax",
        secure=secure_cookies(request),
        path="/",
    )


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def public_base(request: Request) -> str:
    settings: Settings = request.app.state.settings
    return (settings.public_url or str(request.base_url)).rstrip("/")


def request_id(request: Request) -> str | None:
    rid: str | None = request.scope.get("state", {}).get("request_id")
    return rid


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- time display ------------------------------------------------------------------------


def pick_zone(raw: object, default: str) -> tuple[str, bool]:
    """The visitor's zone from a query or form value: (name, whether `raw` was usable)."""
    if not isinstance(raw, str) or not raw:
        return default, True
    try:
        return check_zone_name(raw), True
    except ValueError:
        return default, False


def parse_instant(raw: object) -> dt.datetime | None:
    if not isinstance(raw, str) or len(raw) > 40:
        return None
    try:
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is None:
        return None
    return value.astimezone(dt.UTC)


def utc_text(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def day_label(d: dt.date) -> str:
    return f"{d:%A} {d.day} {d:%B %Y}"


def short_day(d: dt.date) -> str:
    return f"{d:%a} {d.day} {d:%b}"


def when_text(start: dt.datetime, end: dt.datetime, zone_name: str) -> str:
    """'Tuesday 8 December 2026, 09:00-09:30 (Europe/Berlin, CET)'."""
    tz = zone(zone_name)
    a, b = start.astimezone(tz), end.astimezone(tz)
    span = (
        f"{a:%H:%M}-{b:%H:%M}"
        if a.date() == b.date()
        else f"{a:%H:%M} - {day_label(b.date())} {b:%H:%M}"
    )
    return f"{day_label(a.date())}, {span} ({zone_name}, {a:%Z})"


def moment(t: dt.datetime, zone_name: str) -> str:
    """'Tuesday 8 December 2026, 09:00 (Europe/Berlin)'."""
    local = t.astimezone(zone(zone_name))
    return f"{day_label(local.date())}, {local:%H:%M} ({zone_name})"


@dataclass(frozen=True, slots=True)
class SlotButton:
    value: str  # UTC instant, the form value
    time: str  # "09:00", the visible label
    abbr: str  # "CET"
    date: str  # "Tuesday 8 December 2026", part of the accessible name


@dataclass(frozen=True, slots=True)
class Day:
    iso: str
    label: str
    short: str
    count: int


def group_days(
    slots: Iterable[Interval], zone_name: str
) -> tuple[list[Day], dict[str, list[SlotButton]]]:
    """Slots by the visitor's local date: the days with free time, and each day's buttons."""
    tz = zone(zone_name)
    by_day: dict[str, list[SlotButton]] = {}
    labels: dict[str, tuple[str, str]] = {}
    for slot in slots:
        local = slot.start.astimezone(tz)
        key = local.date().isoformat()
        if key not in labels:
            labels[key] = (day_label(local.date()), short_day(local.date()))
        by_day.setdefault(key, []).append(
            SlotButton(
                value=utc_text(slot.start),
                time=f"{local:%H:%M}",
                abbr=f"{local:%Z}",
                date=labels[key][0],
            )
        )
    days = [Day(k, labels[k][0], labels[k][1], len(v)) for k, v in by_day.items()]
    return days, by_day


def query(**params: str | None) -> str:
    return urlencode({k: v for k, v in params.items() if v})


def tz_of(zone_name: str) -> dt.tzinfo:
    return zone(zone_name)


class PageRoute(APIRoute):
    """Routes of the HTML pages: an expected failure the handler did not turn into a page
    itself (say, the page's meeting class was deleted) is an HTML page too, never JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except DomainError as exc:
                status = exc.status if 400 <= exc.status < 500 else 409
                return render(
                    request,
                    "message.html",
                    status=status,
                    heading="Not available right now",
                    message=exc.message,
                )

        return handler
