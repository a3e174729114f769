"""Process configuration, read from the environment (and a `.env` file)."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///./slotguard.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        validation_alias=AliasChoices("DATABASE_URL", "SLOTGUARD_DATABASE_URL"),
    )
    bootstrap_api_key: str | None = Field(
        default=None, validation_alias="SLOTGUARD_BOOTSTRAP_API_KEY"
    )
    smtp_url: str | None = Field(default=None, validation_alias="SLOTGUARD_SMTP_URL")
    email_from: str = Field(default="slotguard@localhost", validation_alias="SLOTGUARD_EMAIL_FROM")
    secret_key: str | None = Field(default=None, validation_alias="SLOTGUARD_SECRET_KEY")
    log_level: str = Field(default="INFO", validation_alias="SLOTGUARD_LOG_LEVEL")
    # auto: JSON lines unless stdout is a terminal (then a readable console format).
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", validation_alias="SLOTGUARD_LOG_FORMAT"
    )
    # Bearer token that /metrics requires; unset = /metrics answers without a key.
    metrics_token: SecretStr | None = Field(
        default=None, validation_alias="SLOTGUARD_METRICS_TOKEN"
    )
    allow_private_webhooks: bool = Field(
        default=False, validation_alias="SLOTGUARD_ALLOW_PRIVATE_WEBHOOKS"
    )
    # Seconds an SQLite writer waits for the database lock before giving up.
    sqlite_busy_timeout_s: float = Field(
        default=30.0, validation_alias="SLOTGUARD_SQLITE_BUSY_TIMEOUT"
    )
    # Connections per process; a booking uses up to three in turn, so with fewer than the
    # concurrent requests the pool keeps opening and closing overflow connections.
    db_pool_size: int = Field(default=20, validation_alias="SLOTGUARD_DB_POOL_SIZE")
    # Requests per API key, in `limits` notation ("600/minute"); unset = no limit. Counted
    # per server process.
    rate_limit: str | None = Field(default=None, validation_alias="SLOTGUARD_RATE_LIMIT")
    # Calendars (§7): user-supplied CalDAV/ICS URLs pass the webhook address guard unless
    # this is set (a LAN CalDAV server, tests).
    allow_private_calendars: bool = Field(
        default=False, validation_alias="SLOTGUARD_ALLOW_PRIVATE_CALENDARS"
    )
    # Seconds between two syncs of one calendar (each run is jittered by up to ±10 %).
    calendar_sync_seconds: float = Field(
        default=120.0, ge=5.0, validation_alias="SLOTGUARD_CALENDAR_SYNC_SECONDS"
    )
    # One request to a calendar provider, and one whole sync, may take this long.
    calendar_timeout_seconds: float = Field(
        default=30.0, gt=0, validation_alias="SLOTGUARD_CALENDAR_TIMEOUT_SECONDS"
    )
    calendar_sync_timeout_seconds: float = Field(
        default=300.0, gt=0, validation_alias="SLOTGUARD_CALENDAR_SYNC_TIMEOUT_SECONDS"
    )
    # Largest answer read from a provider (a feed, one CalDAV response), after decompression.
    calendar_max_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1024, validation_alias="SLOTGUARD_CALENDAR_MAX_BYTES"
    )
    # Run the background worker (hold-expiry sweeper, outbox) inside `serve`.
    embedded_worker: bool = Field(default=True, validation_alias="SLOTGUARD_EMBEDDED_WORKER")
    # Serve the MCP server at /mcp (needs the `mcp` extra; off when it is not installed).
    mcp_enabled: bool = Field(default=True, validation_alias="SLOTGUARD_MCP")

    # -- Google Calendar and Microsoft 365 (§7.5). Base URLs are settings so tests and
    # sovereign clouds can point elsewhere; the address guard does not apply to them.
    google_client_id: str | None = Field(
        default=None, validation_alias="SLOTGUARD_GOOGLE_CLIENT_ID"
    )
    google_client_secret: str | None = Field(
        default=None, validation_alias="SLOTGUARD_GOOGLE_CLIENT_SECRET"
    )
    google_api_url: str = Field(
        default="https://www.googleapis.com/calendar/v3",
        validation_alias="SLOTGUARD_GOOGLE_API_URL",
    )
    google_auth_url: str = Field(
        default="https://accounts.google.com/o/oauth2/v2/auth",
        validation_alias="SLOTGUARD_GOOGLE_AUTH_URL",
    )
    google_token_url: str = Field(
        default="https://oauth2.googleapis.com/token", validation_alias="SLOTGUARD_GOOGLE_TOKEN_URL"
    )
    microsoft_client_id: str | None = Field(
        default=None, validation_alias="SLOTGUARD_MICROSOFT_CLIENT_ID"
    )
    microsoft_client_secret: str | None = Field(
        default=None, validation_alias="SLOTGUARD_MICROSOFT_CLIENT_SECRET"
    )
    microsoft_tenant: str = Field(default="common", validation_alias="SLOTGUARD_MICROSOFT_TENANT")
    microsoft_graph_url: str = Field(
        default="https://graph.microsoft.com/v1.0", validation_alias="SLOTGUARD_MICROSOFT_GRAPH_URL"
    )
    microsoft_login_url: str = Field(
        default="https://login.microsoftonline.com",
        validation_alias="SLOTGUARD_MICROSOFT_LOGIN_URL",
    )
    # The base of the OAuth redirect URI ({public_url}/v1/oauth/{provider}/callback); unset =
    # the base URL of the request that starts the flow.
    public_url: str | None = Field(default=None, validation_alias="SLOTGUARD_PUBLIC_URL")
    # Booking pages (§12): how long a visitor's pick is held, and how many live holds one
    # client address may have across all pages (the address is the TCP peer's).
    public_hold_seconds: int = Field(
        default=300, ge=30, le=3600, validation_alias="SLOTGUARD_PUBLIC_HOLD_SECONDS"
    )
    public_holds_per_address: int = Field(
        default=5, ge=1, validation_alias="SLOTGUARD_PUBLIC_HOLDS_PER_ADDRESS"
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
