"""The sync engine: keeps each calendar's local copy fresh. Provider-free.

One sync of one calendar:

1. take its lease (a conditional UPDATE in a short transaction; another worker holding it
   means this one skips the calendar), so two workers never sync one calendar at once;
2. outside any transaction, ask the provider for changes since the stored cursor, or for
   a full copy when there is no cursor, when the window has moved on by more than
   ``REBASE_AFTER`` (new occurrences of recurring events enter it), or when the provider
   says the cursor is dead (``CursorExpired``);
3. in one short transaction, and only if the lease is still held: merge the delta, or write
   the full copy as a new generation and switch to it, and store cursor, status and the
   next run time (interval with jitter).

A failure (provider down, bad data, wrong credentials) keeps the last good copy, records
``status`` and ``last_error`` and backs off; it never stops the loop or delays other
calendars. Availability reads only the local copy, so it never waits for any of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

import httpx
import structlog

from slotguard.calendars.base import (
    CalendarProvider,
    CursorExpired,
    ProviderAuthError,
    ProviderContext,
    ProviderError,
    ProviderRateLimited,
    ProviderSpec,
    Pull,
    Window,
    retry_delay,
)
from slotguard.calendars.credentials import CredentialError, SecretBox, secret_box
from slotguard.calendars.http import make_calendar_client
from slotguard.calendars.oauth import OAuthSetup
from slotguard.calendars.registry import get_spec
from slotguard.calendars.tokens import attach_tokens
from slotguard.config import Settings
from slotguard.domain.rules import RulesPatch, merge_rules
from slotguard.domain.timezones import zone
from slotguard.store import calendar_repo
from slotguard.store.calendar_repo import ItemRow
from slotguard.store.db import Database
from slotguard.store.models import Account, Business, Calendar

log = structlog.get_logger("slotguard.calendars")

Clock = Callable[[], dt.datetime]
Outcome = Literal["synced", "failed", "busy", "missing"]

WINDOW_BEFORE = dt.timedelta(days=1)
WINDOW_AFTER_MARGIN = dt.timedelta(days=1)
REBASE_AFTER = dt.timedelta(days=1)
AUTH_RETRY = dt.timedelta(hours=1)
MAX_BACKOFF = dt.timedelta(hours=1)
RATE_LIMITED_FLOOR_S = 5.0
# A Retry-After is obeyed up to this (the outbox's longest retry delay, too); past it, an
# absurd value would park the calendar for good.
MAX_RETRY_AFTER = dt.timedelta(hours=10)
JITTER = 0.10
POLL_S = 2.0
LEASE_MARGIN = dt.timedelta(seconds=60)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class SyncConfig:
    interval_s: float = 120.0
    request_timeout_s: float = 30.0
    sync_timeout_s: float = 300.0
    max_bytes: int = 10 * 1024 * 1024
    allow_private: bool = False
    secret_key: str | None = None
    concurrency: int = 4
    # Google/Microsoft: OAuth clients and base URLs (None: not configured).
    oauth: OAuthSetup | None = None

    @property
    def trusted_origins(self) -> frozenset[tuple[str, int]]:
        return self.oauth.trusted_origins if self.oauth is not None else frozenset()

    def client(self) -> httpx.AsyncClient:
        """The calendar HTTP client: guarded, except towards the operator's provider URLs."""
        return make_calendar_client(
            allow_private=self.allow_private,
            timeout=self.request_timeout_s,
            trusted=self.trusted_origins,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> SyncConfig:
        return cls(
            interval_s=settings.calendar_sync_seconds,
            request_timeout_s=settings.calendar_timeout_seconds,
            sync_timeout_s=settings.calendar_sync_timeout_seconds,
            max_bytes=settings.calendar_max_bytes,
            allow_private=settings.allow_private_calendars,
            secret_key=settings.secret_key,
            oauth=OAuthSetup.from_settings(settings),
        )


def copy_window(now: dt.datetime, max_advance_days: int) -> Window:
    """now - 1 day to now + the business's max_advance_days + 1 day (§7.2)."""
    return Window(
        now - WINDOW_BEFORE, now + dt.timedelta(days=max_advance_days) + WINDOW_AFTER_MARGIN
    )


def stale_after(interval_s: float) -> dt.timedelta:
    """A copy older than max(3 x the sync interval, 15 min) is stale (§7.2)."""
    return max(dt.timedelta(seconds=3 * interval_s), dt.timedelta(minutes=15))


class SyncState(Protocol):
    """What staleness depends on: a calendar row, or its state as a busy read found it."""

    @property
    def id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def last_synced_at(self) -> dt.datetime | None: ...


def is_stale(cal: SyncState, now: dt.datetime, interval_s: float) -> bool:
    if cal.status in ("error", "auth_failed") or cal.last_synced_at is None:
        return True
    return now - cal.last_synced_at > stale_after(interval_s)


def _error(exc: ProviderError | None, message: str, now: dt.datetime) -> dict[str, Any]:
    code = exc.code if exc is not None else "calendar_sync_failed"
    out: dict[str, Any] = {"code": code, "message": message[:500], "at": now.isoformat()}
    if exc is not None and exc.status is not None:
        out["status"] = exc.status
    return out


def build_context(
    cal: Calendar,
    business: Business,
    *,
    credentials: Mapping[str, Any],
    http: httpx.AsyncClient,
    config: SyncConfig,
    save_credentials: Callable[[Mapping[str, Any]], Awaitable[None]] | None = None,
    db: Database | None = None,
    new_grant: bool = False,
) -> ProviderContext:
    """The provider's context; Google/Microsoft also get the operator's base URL, the
    calendar's access tokens and the mailbox permits (``tokens.attach_tokens``: with
    ``db`` the stored grant, cached and refreshed under the lease; with ``new_grant`` or
    without ``db`` straight from the refresh token in ``credentials``, for a connect)."""
    owners = {e for e in (business.email, credentials.get("username")) if e and "@" in str(e)}
    ctx = ProviderContext(
        calendar_id=cal.id,
        provider=cal.provider,
        url=cal.url,
        settings=dict(cal.settings or {}),
        credentials=credentials,
        http=http,
        business_tz=zone(business.timezone),
        calendar_tz=ZoneInfo(cal.timezone) if cal.timezone else None,
        owner_emails=frozenset(str(e).lower() for e in owners),
        max_bytes=config.max_bytes,
        timeout_s=config.request_timeout_s,
        save_credentials=save_credentials,
    )
    if config.oauth is not None:
        ctx = attach_tokens(
            ctx,
            setup=config.oauth,
            db=db,
            box=secret_box(config.secret_key),
            new_grant=new_grant,
        )
    return ctx


def open_credentials(box: SecretBox | None, cal: Calendar) -> dict[str, Any]:
    if not cal.credentials:
        return {}
    if box is None:
        raise CredentialError("SLOTGUARD_SECRET_KEY is not set: stored credentials are unreadable")
    return box.open(cal.id, cal.credentials)


class CalendarSync:
    """Syncs due calendars; several may run at once, in one process or many."""

    def __init__(
        self,
        db: Database,
        *,
        config: SyncConfig,
        http: httpx.AsyncClient | None = None,
        clock: Clock = utcnow,
        rng: random.Random | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.db = db
        self.config = config
        self.clock = clock
        self.rng = rng or random.Random()
        self.worker_id = worker_id or f"cal_{uuid.uuid4().hex[:16]}"
        self._http = http
        self._box = secret_box(config.secret_key)
        self._running: dict[str, asyncio.Task[Outcome]] = {}

    # -- the loop ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        own = self._http is None
        if own:
            self._http = self.config.client()
        try:
            while not stop.is_set():
                try:
                    await self.start_due()
                except Exception:
                    log.exception("calendar_sync.loop_failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=POLL_S)
            if self._running:
                await asyncio.wait(list(self._running.values()), timeout=10.0)
            for task in self._running.values():
                task.cancel()
        finally:
            if own and self._http is not None:
                await self._http.aclose()
                self._http = None

    async def start_due(self) -> int:
        """Start syncs of due calendars, up to the concurrency limit; returns how many."""
        free = self.config.concurrency - len(self._running)
        if free <= 0:
            return 0
        async with self.db.read() as s:
            ids = await calendar_repo.due_calendar_ids(s, self.clock(), free + len(self._running))
        started = 0
        for cid in ids:
            if cid in self._running or started >= free:
                continue
            task = asyncio.create_task(self.sync_one(cid), name=f"calendar-sync:{cid}")
            self._running[cid] = task
            task.add_done_callback(self._forget(cid))
            started += 1
        return started

    def _forget(self, cid: str) -> Callable[[asyncio.Task[Outcome]], None]:
        def done(_task: asyncio.Task[Outcome]) -> None:
            self._running.pop(cid, None)

        return done

    # -- one calendar ----------------------------------------------------------------------

    async def sync_one(self, calendar_id: str) -> Outcome:
        """Sync one calendar now if nobody else is; never raises."""
        now = self.clock()
        until = now + dt.timedelta(seconds=self.config.sync_timeout_s) + LEASE_MARGIN
        try:
            async with self.db.write() as s:
                if not await calendar_repo.take_lease(
                    s, calendar_id, owner=self.worker_id, now=now, until=until
                ):
                    exists = await calendar_repo.calendar_by_id(s, calendar_id)
                    return "busy" if exists is not None else "missing"
        except Exception:
            log.exception("calendar_sync.lease_failed", calendar_id=calendar_id)
            return "failed"
        try:
            async with asyncio.timeout(self.config.sync_timeout_s):
                return await self._sync_leased(calendar_id)
        except TimeoutError:
            await self._record_failure(
                calendar_id,
                None,
                f"the sync did not finish within {self.config.sync_timeout_s:g} s",
            )
            return "failed"
        except Exception as exc:  # a bug must not stop the worker or keep the lease
            log.exception("calendar_sync.crashed", calendar_id=calendar_id)
            await self._record_failure(calendar_id, None, f"internal error: {type(exc).__name__}")
            return "failed"

    async def _sync_leased(self, calendar_id: str) -> Outcome:
        now = self.clock()
        async with self.db.read() as s:
            cal = await calendar_repo.calendar_by_id(s, calendar_id)
            if cal is None:
                return "missing"
            business = await s.get(Business, cal.business_id)
            account = await s.get(Account, cal.account_id)
        if business is None or account is None:
            return "missing"
        spec = get_spec(cal.provider)
        if spec is None:
            await self._record_failure(calendar_id, None, f"unknown provider {cal.provider!r}")
            return "failed"
        try:
            credentials = open_credentials(self._box, cal)
        except CredentialError as exc:
            await self._record_failure(calendar_id, None, str(exc))
            return "failed"
        rules, _ = merge_rules(
            RulesPatch.model_validate(account.rules or {}),
            RulesPatch.model_validate(business.rules or {}),
        )
        window = copy_window(now, rules.max_advance_days)
        full = (
            cal.cursor is None
            or cal.copy_generation == 0
            or cal.window_end is None
            or cal.window_end < window.end - REBASE_AFTER
        )
        http = self._http
        own_http = http is None
        if http is None:
            http = self.config.client()
        try:
            ctx = build_context(
                cal,
                business,
                credentials=credentials,
                http=http,
                config=self.config,
                save_credentials=self._saver(calendar_id),
                db=self.db,
            )
            provider = spec.build(ctx)
            if spec.learns_mailbox and not ctx.settings.get("mailbox"):
                provider = await self._learn_mailbox(spec, provider, ctx)
            try:
                pull = await provider.pull(None if full else cal.cursor, window)
            except CursorExpired:
                log.info("calendar_sync.cursor_expired", calendar_id=calendar_id)
                pull = await provider.pull(None, window)
        except ProviderError as exc:
            await self._record_failure(calendar_id, exc, exc.message)
            return "failed"
        finally:
            if own_http:
                await http.aclose()
        return await self._apply(calendar_id, pull, window, now)

    async def _learn_mailbox(
        self, spec: ProviderSpec, provider: CalendarProvider, ctx: ProviderContext
    ) -> CalendarProvider:
        """One check for a calendar connected before its mailbox was recorded, so its
        requests count with the other calendars of that mailbox from now on."""
        mailbox = (await provider.check()).mailbox
        if not mailbox:
            return provider
        async with self.db.write() as s:
            await calendar_repo.add_settings(s, ctx.calendar_id, {"mailbox": mailbox})
        return spec.build(replace(ctx, settings={**ctx.settings, "mailbox": mailbox}))

    def _saver(self, calendar_id: str) -> Callable[[Mapping[str, Any]], Awaitable[None]]:
        async def save(secrets: Mapping[str, Any]) -> None:
            if self._box is None:
                raise CredentialError("SLOTGUARD_SECRET_KEY is not set")
            token = self._box.seal(calendar_id, secrets)
            async with self.db.write() as s:
                await calendar_repo.set_credentials(s, calendar_id, token)

        return save

    def _jittered(self, seconds: float) -> float:
        return seconds * (1 + self.rng.uniform(-JITTER, JITTER))

    def _next_run(self, now: dt.datetime, seconds: float) -> dt.datetime:
        return now + dt.timedelta(seconds=self._jittered(seconds))

    async def _apply(
        self, calendar_id: str, pull: Pull, window: Window, now: dt.datetime
    ) -> Outcome:
        rows = [
            ItemRow(
                external_id=it.external_id,
                etag=it.etag,
                series_id=it.series_id,
                own_booking_id=it.own_booking_id,
                # Own events are never busy time, whatever the provider reported.
                periods=()
                if it.own_booking_id
                else [(p.start, p.end) for p in it.busy if p.end > p.start],
            )
            for it in pull.items
        ]
        async with self.db.write() as s:
            cal = await calendar_repo.holds_lease(s, calendar_id, self.worker_id)
            if cal is None:  # deleted meanwhile, or the lease ran out and was taken
                return "missing"
            if pull.full:
                await calendar_repo.replace_copy(s, cal, rows)
                cal.window_start, cal.window_end = window.start, window.end
                cal.last_full_sync_at = now
            else:
                await calendar_repo.merge_delta(s, cal, rows, pull.deleted)
            if pull.cursor is not None:
                cal.cursor = pull.cursor
            cal.status = "active"
            cal.last_synced_at = now
            cal.failures = 0
            cal.last_error = (
                {
                    "code": "calendar_data_warning",
                    "message": "; ".join(pull.notes)[:500],
                    "at": now.isoformat(),
                }
                if pull.notes
                else None
            )
            await calendar_repo.refresh_summary(s, cal)
            cal.next_sync_at = self._next_run(now, self.config.interval_s)
            cal.lease_owner = None
            cal.lease_until = None
            cal.updated_at = now
        log.info(
            "calendar_sync.done",
            calendar_id=calendar_id,
            full=pull.full,
            items=len(pull.items),
            deleted=len(pull.deleted),
        )
        return "synced"

    async def _record_failure(
        self, calendar_id: str, exc: ProviderError | None, message: str
    ) -> None:
        now = self.clock()
        try:
            async with self.db.write() as s:
                cal = await calendar_repo.holds_lease(s, calendar_id, self.worker_id)
                if cal is None:
                    return
                cal.failures += 1
                if isinstance(exc, ProviderAuthError):
                    cal.status = "auth_failed"
                    cal.next_sync_at = now + AUTH_RETRY
                else:
                    cal.status = "error"
                    retry_after = exc.retry_after if exc is not None else None
                    if isinstance(exc, ProviderRateLimited) and retry_after is not None:
                        floor = RATE_LIMITED_FLOOR_S  # a 429's Retry-After replaces the backoff
                    else:
                        backoff = self.config.interval_s * 2 ** min(cal.failures - 1, 8)
                        floor = self._jittered(min(backoff, MAX_BACKOFF.total_seconds()))
                    delay = retry_delay(
                        retry_after,
                        floor=floor,
                        cap=MAX_RETRY_AFTER.total_seconds(),
                        rng=self.rng,
                    )
                    cal.next_sync_at = now + dt.timedelta(seconds=delay)
                cal.last_error = _error(exc, message, now)
                cal.lease_owner = None
                cal.lease_until = None
                cal.updated_at = now
        except Exception:
            log.exception("calendar_sync.record_failed", calendar_id=calendar_id)
            return
        log.warning(
            "calendar_sync.failed",
            calendar_id=calendar_id,
            code=exc.code if exc else "calendar_sync_failed",
            error=message,
        )
