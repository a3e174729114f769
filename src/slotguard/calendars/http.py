"""HTTP for the iCalendar providers: the guarded client, size limits, error translation."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import httpx

from slotguard.calendars.base import (
    ProviderAuthError,
    ProviderDataError,
    ProviderError,
    ProviderRateLimited,
    ProviderUnavailable,
    parse_retry_after,
)
from slotguard.effects.netguard import WebhookTargetError, make_webhook_client

__all__ = ["Answer", "make_calendar_client", "request", "split_userinfo"]

USER_AGENT = "slotguard-calendars/1"
MAX_REDIRECTS = 3


def make_calendar_client(
    *, allow_private: bool, timeout: float, trusted: Iterable[tuple[str, int]] = ()
) -> httpx.AsyncClient:
    """A client whose every connection passes the address guard (also after redirects and
    DNS changes): calendar URLs are user-supplied, like webhook URLs. ``trusted`` origins,
    ``(host, port)``, are the operator's provider base URLs (§7.5): not guarded."""
    client = make_webhook_client(allow_private=allow_private, timeout=timeout, trusted=trusted)
    client.headers["User-Agent"] = USER_AGENT
    return client


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """``url`` without its user-info part, plus the user name and password it carried."""
    parsed = httpx.URL(url)
    username = parsed.username or None
    password = parsed.password or None
    if parsed.userinfo:
        parsed = parsed.copy_with(username=None, password=None)
    return str(parsed), username, password


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: httpx.Headers
    body: bytes
    url: httpx.URL


async def request(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    content: bytes | None = None,
    auth: httpx.Auth | None = None,
    max_bytes: int,
    timeout_s: float,
    follow_redirects: bool = False,
    ok: tuple[int, ...] = (),
) -> Answer:
    """One request, bounded in time and size, with failures translated.

    Statuses in ``ok`` are returned as they are; otherwise 401/403 raise
    ``ProviderAuthError``, 429 ``ProviderRateLimited``, other non-2xx ``ProviderUnavailable``
    (with the status); a 429's or a 503's ``Retry-After`` is the error's ``retry_after``.
    The body is read up to ``max_bytes`` (after decompression, so a gzip bomb is cut off
    too); more is ``ProviderDataError``.
    """
    target = url
    for _ in range(MAX_REDIRECTS + 1):
        try:
            async with asyncio.timeout(timeout_s):
                req = http.build_request(method, target, headers=headers, content=content)
                resp = await http.send(req, auth=auth, stream=True)
                try:
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in resp.aiter_bytes():
                        size += len(chunk)
                        if size > max_bytes:
                            raise ProviderDataError(
                                f"the calendar answered with more than {max_bytes} bytes"
                            )
                        chunks.append(chunk)
                finally:
                    await resp.aclose()
        except TimeoutError:
            raise ProviderUnavailable(
                f"the calendar did not answer within {timeout_s:g} s"
            ) from None
        except WebhookTargetError as exc:
            raise ProviderUnavailable(str(exc).replace("webhook", "calendar")) from None
        except ProviderError:
            raise
        except httpx.HTTPError as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, WebhookTargetError):
                raise ProviderUnavailable(str(cause).replace("webhook", "calendar")) from None
            raise ProviderUnavailable(
                f"could not reach the calendar: {type(exc).__name__}"
            ) from None
        body = b"".join(chunks)
        if follow_redirects and resp.status_code in (301, 302, 303, 307, 308):
            location = resp.headers.get("Location")
            if not location:
                raise ProviderUnavailable("redirect without a location", status=resp.status_code)
            next_url = resp.url.join(location)
            if next_url.scheme not in ("http", "https"):
                raise ProviderUnavailable("redirect to a non-HTTP URL", status=resp.status_code)
            target = str(next_url)
            continue
        status = resp.status_code
        if status in ok or 200 <= status < 300:
            return Answer(status, resp.headers, body, resp.url)
        if status in (401, 403):
            raise ProviderAuthError("the calendar refused the credentials", status=status)
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        if status == 429:
            raise ProviderRateLimited("the calendar asks to slow down", retry_after=retry_after)
        # A 503 with Retry-After says when to come back (maintenance, overload): carried,
        # so the next sync or write-back attempt is not made before it.
        raise ProviderUnavailable(
            f"the calendar answered HTTP {status}",
            status=status,
            retry_after=retry_after if status == 503 else None,
        )
    raise ProviderUnavailable("too many redirects")
