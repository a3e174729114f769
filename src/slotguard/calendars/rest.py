"""The HTTP layer the Google and Microsoft providers share: bearer tokens, one refresh on
401, throttling, bounded retries, and every failure translated into a provider error.

Throttling (§7.5, research note §1.6 and §2.5):

* 429, and the 403s a provider uses for rate limits (``classify`` says which), wait for
  ``Retry-After`` (or an exponential backoff when there is none), plus jitter, and retry.
* A wait longer than ``max_wait_s`` is not slept inside the request: it raises
  ``ProviderRateLimited(retry_after)`` and the caller (the sync engine, the outbox)
  reschedules that calendar. So a throttled calendar holds no worker slot and never
  starves the others.
* ``limiter`` caps the requests in flight per mailbox (Microsoft allows 4; the permits
  are counted in the database, ``calendars/permits.py``); the permit is held only while a
  request is on the wire, never while waiting out a Retry-After.

5xx, timeouts and connection failures are retried with backoff a few times when the
request is safe to repeat (``retry_unsafe=False`` is for a create whose outcome must be
checked first), then raised as ``ProviderUnavailable``. A body that is not JSON where JSON
was due is ``ProviderUnavailable`` as well.
"""

from __future__ import annotations

import asyncio
import random
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from slotguard.calendars.base import (
    AccessTokens,
    Limiter,
    ProviderAuthError,
    ProviderRateLimited,
    ProviderUnavailable,
)
from slotguard.calendars.oauth import retry_after_seconds

Verdict = Literal["throttled", "auth", None]
Classifier = Callable[[httpx.Response], Verdict]
Sleep = Callable[[float], Awaitable[None]]

MAILBOX_CONCURRENCY = 4


class MailboxLimits:
    """One semaphore per mailbox key, shared by every provider object of the process: the
    first gate of ``permits.MailboxPermits`` (so a process's own requests queue here
    instead of polling the database), and the only one where no database is at hand.
    Keys vanish with their users."""

    def __init__(self, per_mailbox: int = MAILBOX_CONCURRENCY) -> None:
        self.per_mailbox = per_mailbox
        self._sems: weakref.WeakValueDictionary[str, asyncio.Semaphore] = (
            weakref.WeakValueDictionary()
        )

    def get(self, key: str) -> asyncio.Semaphore:
        sem = self._sems.get(key)
        if sem is None:
            sem = asyncio.Semaphore(self.per_mailbox)
            self._sems[key] = sem
        return sem


MAILBOXES = MailboxLimits()


@dataclass
class RetryPolicy:
    attempts: int = 4
    base_s: float = 0.5
    cap_s: float = 30.0
    max_wait_s: float = 30.0
    jitter: float = 0.25  # up to +25 % on every wait
    rng: random.Random = field(default_factory=random.Random)

    def backoff(self, attempt: int) -> float:
        return float(min(self.cap_s, self.base_s * (2**attempt)))

    def wait(self, attempt: int, retry_after: float | None) -> float:
        base = max(retry_after or 0.0, self.backoff(attempt) if retry_after is None else 0.0)
        return base * (1 + self.rng.uniform(0, self.jitter)) + self.rng.uniform(0, 0.05)


class RestSession:
    """Authorised JSON requests to one provider account."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        label: str,
        tokens: AccessTokens | None,
        classify: Classifier,
        timeout_s: float,
        limiter: Limiter | None = None,
        policy: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        default_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.http = http
        self.label = label
        self.tokens = tokens
        self.classify = classify
        self.timeout_s = timeout_s
        self.limiter = limiter
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.default_headers = dict(default_headers or {})
        self.requests = 0

    async def _token(self, rejected: str | None = None) -> str:
        if self.tokens is None:
            raise ProviderAuthError(f"{self.label}: no OAuth credentials for this calendar")
        return await self.tokens.get(rejected=rejected)

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        ok: tuple[int, ...] = (200, 201, 204),
        passthrough: tuple[int, ...] = (),
        retry_unsafe: bool = True,
    ) -> httpx.Response:
        """Send until an answer in `ok` or `passthrough` (returned), or raise a provider
        error. `passthrough` statuses (404, 409, 410, 412…) are the caller's to interpret."""
        token = await self._token()
        refreshed = False
        policy = self.policy
        attempt = 0
        while True:
            send_headers = {
                **self.default_headers,
                **(headers or {}),
                "Authorization": f"Bearer {token}",
            }
            try:
                response = await self._send(method, url, params, json, send_headers)
            except httpx.TimeoutException:
                failure: ProviderUnavailable = ProviderUnavailable(f"{self.label} timed out")
                if not retry_unsafe or attempt + 1 >= policy.attempts:
                    raise failure from None
                await self.sleep(policy.wait(attempt, None))
                attempt += 1
                continue
            except httpx.HTTPError as exc:
                failure = ProviderUnavailable(f"{self.label} unreachable: {type(exc).__name__}")
                if not retry_unsafe or attempt + 1 >= policy.attempts:
                    raise failure from None
                await self.sleep(policy.wait(attempt, None))
                attempt += 1
                continue
            status = response.status_code
            if status in ok or status in passthrough:
                return response
            verdict = self.classify(response)
            if status == 401 or verdict == "auth":
                if refreshed:
                    raise ProviderAuthError(f"{self.label} refused the access token", status=status)
                # One refresh and one retry (the token may have been revoked or expired
                # early); a second 401 means the grant itself is no good.
                token = await self._token(rejected=token)
                refreshed = True
                continue
            if status == 429 or verdict == "throttled":
                retry_after = retry_after_seconds(response)
                wait = policy.wait(attempt, retry_after)
                if wait > policy.max_wait_s or attempt + 1 >= policy.attempts:
                    raise ProviderRateLimited(
                        f"{self.label} is rate limiting (HTTP {status})",
                        retry_after=max(wait, retry_after or 0.0),
                        status=status,
                    )
                await self.sleep(wait)
                attempt += 1
                continue
            if status >= 500:
                if not retry_unsafe or attempt + 1 >= policy.attempts:
                    raise ProviderUnavailable(
                        f"{self.label} answered {status}",
                        status=status,
                        retry_after=retry_after_seconds(response),
                    )
                await self.sleep(policy.wait(attempt, retry_after_seconds(response)))
                attempt += 1
                continue
            if status == 403:
                raise ProviderAuthError(f"{self.label} refused access (HTTP 403)", status=403)
            raise ProviderUnavailable(
                f"{self.label} answered {status}{_reason(response)}", status=status
            )

    async def _send(
        self,
        method: str,
        url: str,
        params: Mapping[str, str] | None,
        json: Any,
        headers: dict[str, str],
    ) -> httpx.Response:
        self.requests += 1
        if self.limiter is None:
            return await self.http.request(
                method, url, params=params, json=json, headers=headers, timeout=self.timeout_s
            )
        async with self.limiter():
            return await self.http.request(
                method, url, params=params, json=json, headers=headers, timeout=self.timeout_s
            )

    def json(self, response: httpx.Response) -> dict[str, Any]:
        """The body as a JSON object, or `ProviderUnavailable` (malformed answer)."""
        try:
            data = response.json()
        except ValueError:
            raise ProviderUnavailable(
                f"{self.label} answered something that is not JSON", status=response.status_code
            ) from None
        if not isinstance(data, dict):
            raise ProviderUnavailable(
                f"{self.label} answered JSON that is not an object", status=response.status_code
            )
        return data


def _reason(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return ""
    if not isinstance(data, dict):
        return ""
    err = data.get("error")
    if isinstance(err, dict):
        errors = err.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            reason = errors[0].get("reason")
            if reason:
                return f" ({str(reason)[:80]})"
        code = err.get("code")
        if isinstance(code, str):
            return f" ({code[:80]})"
    return ""


def google_reason(response: httpx.Response) -> str | None:
    try:
        data = response.json()
    except ValueError:
        return None
    err = data.get("error") if isinstance(data, dict) else None
    if not isinstance(err, dict):
        return None
    errors = err.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        reason = errors[0].get("reason")
        return str(reason) if reason else None
    return None


def graph_code(response: httpx.Response) -> str | None:
    try:
        data = response.json()
    except ValueError:
        return None
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict) and isinstance(err.get("code"), str):
        return str(err["code"])
    return None


GOOGLE_THROTTLE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded"})


def classify_google(response: httpx.Response) -> Verdict:
    if response.status_code == 403 and google_reason(response) in GOOGLE_THROTTLE_REASONS:
        return "throttled"
    return None


def classify_graph(response: httpx.Response) -> Verdict:
    if response.status_code == 503 and response.headers.get("retry-after"):
        return "throttled"  # Graph's service-side throttling says so with Retry-After
    return None
