"""Building the Google and Microsoft providers against the fakes, without the engine."""

from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

import httpx

from slotguard.calendars import google, microsoft, oauth
from slotguard.calendars.base import BookingEvent, ProviderContext, Window
from slotguard.calendars.rest import RetryPolicy
from slotguard.calendars.tokens import RefreshTokenGrant
from slotguard.config import Settings
from tests.oauth.conftest import GOOGLE, GRAPH, LOGIN

NOW = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
WINDOW = Window(NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=61))


def test_settings(**extra: object) -> Settings:
    return Settings(
        google_client_id="google-client",
        google_client_secret="google-secret",
        google_api_url=f"{GOOGLE}/calendar/v3",
        google_auth_url=f"{GOOGLE}/auth",
        google_token_url=f"{GOOGLE}/token",
        microsoft_client_id="ms-client",
        microsoft_client_secret="ms-secret",
        microsoft_graph_url=f"{GRAPH}/v1.0",
        microsoft_login_url=LOGIN,
        **extra,
    )


class Sleeps:
    """A sleep that records what it was asked to wait and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def context(
    provider: str,
    http: httpx.AsyncClient,
    refresh_token: str,
    *,
    calendar_id: str | None = None,
    business_tz: str = "UTC",
    cal_id: str = "cal_test",
) -> ProviderContext:
    settings = test_settings()
    client = oauth.oauth_client(settings, provider)  # type: ignore[arg-type]
    assert client is not None
    api = settings.google_api_url if provider == "google" else settings.microsoft_graph_url
    plain: dict[str, str] = {"api_url": api}
    if calendar_id:
        plain["calendar_id"] = calendar_id
    return ProviderContext(
        calendar_id=cal_id,
        provider=provider,
        url=None,
        settings=plain,
        credentials={},
        http=http,
        business_tz=ZoneInfo(business_tz),
        timeout_s=2.0,
        tokens=RefreshTokenGrant(http, client, refresh_token=refresh_token),
    )


def google_provider(
    http: httpx.AsyncClient, refresh_token: str, **kw: object
) -> tuple[google.GoogleCalendar, Sleeps]:
    p = google.build(context("google", http, refresh_token, **kw))  # type: ignore[arg-type]
    sleeps = Sleeps()
    p.rest.sleep = sleeps
    p.rest.policy = RetryPolicy(rng=random.Random(7))
    return p, sleeps


def graph_provider(
    http: httpx.AsyncClient, refresh_token: str, **kw: object
) -> tuple[microsoft.MicrosoftCalendar, Sleeps]:
    p = microsoft.build(context("microsoft", http, refresh_token, **kw))  # type: ignore[arg-type]
    sleeps = Sleeps()
    p.rest.sleep = sleeps
    p.rest.policy = RetryPolicy(rng=random.Random(7))
    return p, sleeps


def booking_event(
    booking_id: str = "bk_01jtest", generation: int = 1, **kw: object
) -> BookingEvent:
    start = kw.pop("start", NOW + dt.timedelta(days=2))
    assert isinstance(start, dt.datetime)
    fields: dict[str, object] = {
        "booking_id": booking_id,
        "generation": generation,
        "title": "Consultation",
        "description": "Booked with slotguard",
        "start": start,
        "end": start + dt.timedelta(minutes=30),
        "timezone": "Europe/Paris",
    }
    fields.update(kw)
    return BookingEvent(**fields)  # type: ignore[arg-type]
