"""The I/O-free core shared by ``Client`` and ``AsyncClient``.

A public method builds a ``Call`` (method, path, query, JSON body, headers and a parser for
the response) once per invocation; an executor (``_sync.py`` / ``_async.py``) sends it,
asks ``Core.retry_delay`` whether and when to try again, and finally hands the response to
``Core.finish``, which decodes the envelope or raises the mapped ``SlotguardError``.
Everything that decides *what* is sent and *how* an answer is read lives here, so the two
executors cannot drift apart.

Idempotency (API.md §1.5, §10): the ``Idempotency-Key`` is chosen when the ``Call`` is
built — the caller's, or a fresh uuid4 for every POST/PATCH/DELETE — and every retry of that
call resends the same bytes with the same key, so a retry after a lost response is replayed
by the server instead of executed twice. A new method call gets a new key.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from ._errors import SlotguardConnectionError, SlotguardError, error_class_for
from ._models import ApiResponse, Booking, IfMatch

T = TypeVar("T")

DEFAULT_BASE_URL = "http://127.0.0.1:8000"

# Methods that get an automatic Idempotency-Key. PUT is idempotent by itself and GET is safe.
_KEYED_METHODS = frozenset({"POST", "PATCH", "DELETE"})

# Statuses worth another attempt: rate limited, or the server (or a proxy) failed. Safe to
# retry because every write carries its Idempotency-Key and the server stores only 2xx
# responses, committed with their effect: a failed attempt left nothing behind, a completed
# one is replayed. 501 and 505 would fail the same way again.
_NEVER_RETRY_5XX = frozenset({501, 505})


def _retryable_status(status: int) -> bool:
    return status == 429 or (status >= 500 and status not in _NEVER_RETRY_5XX)


# Transport failures worth retrying. Other httpx.TransportErrors (unsupported protocol, proxy
# misconfiguration, a malformed request) would fail the same way again.
_RETRY_EXCEPTIONS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,  # connect/read/write/pool timeouts
    httpx.NetworkError,  # connect/read/write/close errors
    httpx.RemoteProtocolError,  # server closed the connection mid-response, etc.
)


def _user_agent() -> str:
    try:
        version = metadata.version("slotguard")
    except metadata.PackageNotFoundError:  # pragma: no cover - source checkout
        version = "0"
    return f"slotguard-python/{version}"


# --- encoding -----------------------------------------------------------------------------


def format_datetime(value: dt.datetime, *, where: str = "value") -> str:
    """RFC 3339 with an offset (``Z`` for UTC). A naive datetime raises ``ValueError``."""
    offset = value.utcoffset()
    if offset is None:
        raise ValueError(
            f"{where}: naive datetime {value.isoformat()!r}; the API needs an offset "
            "(use e.g. datetime(..., tzinfo=ZoneInfo('Europe/Berlin')) or timezone.utc)"
        )
    if offset.total_seconds() % 60:
        # RFC 3339 offsets have no seconds (historic LMT zones do); send the UTC instant.
        value, offset = value.astimezone(dt.UTC), dt.timedelta(0)
    text = value.isoformat()
    return text[:-6] + "Z" if offset == dt.timedelta(0) else text


def encode_json_value(value: Any, *, where: str = "value") -> Any:
    """Make ``value`` JSON-ready: datetimes → RFC 3339, dates → ISO, times → HH:MM."""
    if isinstance(value, dt.datetime):
        return format_datetime(value, where=where)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        if value.tzinfo is not None:
            raise ValueError(f"{where}: rule times are wall-clock times without a zone")
        if value.second or value.microsecond:
            return value.isoformat()
        return value.strftime("%H:%M")
    if isinstance(value, Mapping):
        return {str(k): encode_json_value(v, where=f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode_json_value(v, where=f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def encode_query(params: Mapping[str, Any]) -> dict[str, str]:
    """Query parameters as strings; ``None`` is dropped, sequences are comma-joined."""
    out: dict[str, str] = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, str):
            out[key] = value
        elif isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, Sequence):
            out[key] = ",".join(_query_scalar(v, key) for v in value)
        else:
            out[key] = _query_scalar(value, key)
    return out


def _query_scalar(value: Any, where: str) -> str:
    encoded = encode_json_value(value, where=where)
    return encoded if isinstance(encoded, str) else str(encoded)


def encode_body(body: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON; built once per call so every retry sends identical bytes."""
    return json.dumps(
        encode_json_value(dict(body), where="body"),
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    ).encode()


def drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    """The entries whose value is not ``None`` (``None`` = "use the server's default")."""
    return {k: v for k, v in values.items() if v is not None}


def path_segment(value: str, *, what: str) -> str:
    """One URL path segment, percent-encoded; an empty id is refused client-side."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return quote(value, safe="")


def check_kwargs(func: str, kwargs: Mapping[str, Any], schema: Any) -> None:
    """Runtime twin of the ``Unpack[TypedDict]`` signatures: reject typos and missing keys."""
    allowed: frozenset[str] = schema.__required_keys__ | schema.__optional_keys__
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise TypeError(f"{func}() got unexpected keyword argument(s): {', '.join(unknown)}")
    missing = sorted(k for k in schema.__required_keys__ if k not in kwargs)
    if missing:
        raise TypeError(f"{func}() missing required keyword argument(s): {', '.join(missing)}")


def check_idempotency_key(key: str) -> str:
    """API.md §1.5: 1-255 printable ASCII characters."""
    if not isinstance(key, str) or not 1 <= len(key) <= 255:
        raise ValueError("idempotency_key must be a string of 1-255 characters")
    if any(not 0x20 <= ord(ch) <= 0x7E for ch in key):
        raise ValueError("idempotency_key must be printable ASCII")
    return key


def format_if_match(value: IfMatch) -> str:
    """An If-Match header value: ``3`` → ``"3"``; ``'"3"'``, ``'W/"3"'``, ``*`` pass through."""
    if isinstance(value, Booking):
        etag = value.etag
        if etag is None:
            raise ValueError("this booking has neither an ETag nor a version")
        return etag
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"if_match must be an int version or an ETag string, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"if_match version must be >= 1, got {value}")
        return f'"{value}"'
    text = value.strip()
    if text == "*":  # RFC 9110 "any version": an explicit opt-out of the check
        return text
    if text.isdigit():
        return f'"{text}"'
    tag = text[2:] if text.startswith("W/") else text
    if len(tag) >= 2 and tag[0] == tag[-1] == '"' and '"' not in tag[1:-1]:
        return text
    raise ValueError(f'if_match must look like 3, "3" or W/"3", got {value!r}')


# --- calls --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """Everything needed to send one API call (and its retries) and to read its answer."""

    method: str
    path: str
    parse: Callable[[ApiResponse], T]
    params: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # The response is not an envelope (the JSONL export): ``parse`` gets its text as data.
    raw_body: bool = False

    @property
    def idempotency_key(self) -> str | None:
        """The key every attempt of this call sends (None for reads)."""
        return self.headers.get("Idempotency-Key")


def make_call(
    method: str,
    path: str,
    parse: Callable[[ApiResponse], T],
    *,
    params: Mapping[str, Any] | None = None,
    body: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
    if_match: IfMatch | None = None,
    raw_body: bool = False,
) -> Call[T]:
    """Build a ``Call``; this is where a write gets its per-call Idempotency-Key."""
    method = method.upper()
    headers: dict[str, str] = {}
    content: bytes | None = None
    if body is not None:
        content = encode_body(body)
        headers["Content-Type"] = "application/json"
    if idempotency_key is not None:
        headers["Idempotency-Key"] = check_idempotency_key(idempotency_key)
    elif method in _KEYED_METHODS:
        headers["Idempotency-Key"] = str(uuid.uuid4())
    if if_match is not None:
        headers["If-Match"] = format_if_match(if_match)
    return Call(
        method=method,
        path=path,
        parse=parse,
        params=encode_query(params or {}),
        body=content,
        headers=headers,
        raw_body=raw_body,
    )


# --- responses ----------------------------------------------------------------------------


def _lower_headers(response: httpx.Response) -> dict[str, str]:
    return {k.lower(): v for k, v in response.headers.items()}


def _json_or_none(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return json.loads(response.content)
    except ValueError:  # also UnicodeDecodeError
        return None


def error_from_response(response: httpx.Response) -> SlotguardError:
    """The ``SlotguardError`` subclass for a non-2xx response (JSON or not)."""
    headers = _lower_headers(response)
    body = _json_or_none(response)
    status = response.status_code
    if isinstance(body, Mapping) and isinstance(body.get("error"), str):
        code: str = body["error"]
        message = body.get("message")
        details = body.get("details")
        request_id = body.get("request_id")
        return error_class_for(code, status)(
            message if isinstance(message, str) else code,
            status=status,
            code=code,
            details=details if isinstance(details, Mapping) else None,
            request_id=request_id if isinstance(request_id, str) else headers.get("x-request-id"),
            body=dict(body),
            headers=headers,
        )
    # Not our error body (a proxy's HTML page, an empty 502 …): still a SlotguardError,
    # with a synthetic code that cannot collide with the API's codes.
    text = response.text
    snippet = " ".join(text.split())[:200]
    message = response.reason_phrase or "HTTP error"
    if snippet:
        message = f"{message}: {snippet}"
    return error_class_for(None, status)(
        message,
        status=status,
        code=f"http_{status}",
        request_id=headers.get("x-request-id"),
        body=body if body is not None else text,
        headers=headers,
    )


def decode_response(response: httpx.Response) -> ApiResponse:
    """Decode a success envelope ``{data, meta}``; raise the mapped error otherwise."""
    if not 200 <= response.status_code < 300:
        raise error_from_response(response)
    headers = _lower_headers(response)
    if not response.content:  # e.g. 204 No Content
        return ApiResponse(status=response.status_code, data=None, headers=headers)
    body = _json_or_none(response)
    if not isinstance(body, Mapping) or "data" not in body:
        raise SlotguardError(
            "The server answered with a body that is not a slotguard envelope.",
            status=response.status_code,
            code="invalid_response",
            request_id=headers.get("x-request-id"),
            body=body if body is not None else response.text,
            headers=headers,
        )
    meta = body.get("meta")
    return ApiResponse(
        status=response.status_code,
        data=body["data"],
        meta=dict(meta) if isinstance(meta, Mapping) else {},
        headers=headers,
    )


def retry_after_seconds(response: httpx.Response) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or HTTP-date), if present and valid."""
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, when.timestamp() - time.time())


# --- the core -----------------------------------------------------------------------------


class Core:
    """Configuration plus the transport-free halves of sending: build, retry?, finish."""

    def __init__(
        self,
        api_key: str,
        base_url: str,
        *,
        max_retries: int,
        backoff_base: float,
        backoff_max: float,
        max_retry_after: float,
        deadline: float | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not isinstance(api_key, str) or not api_key:
            raise ValueError("api_key must be a non-empty string")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.base_url = base_url.rstrip("/")
        self.headers = {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
            "User-Agent": _user_agent(),
        }
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        if deadline is not None and deadline <= 0:
            raise ValueError("deadline must be > 0 seconds (or None)")
        self.deadline = deadline
        self._rng = rng or random.Random()

    def build_request(
        self,
        http: httpx.Client | httpx.AsyncClient,
        call: Call[Any],
        *,
        elapsed: float = 0.0,
    ) -> httpx.Request:
        """The ``httpx.Request`` for one attempt of ``call``, ``elapsed`` seconds into it.

        With a ``deadline``, the attempt's timeouts are cut to the time left, so a server
        that hangs cannot stretch the call past its deadline by a whole ``timeout``.
        """
        timeout = http.timeout
        if self.deadline is not None:
            # A retry is only scheduled when its wait ends before the deadline; the floor
            # keeps an attempt that starts right at it from failing before it is sent.
            left = max(self.deadline - elapsed, 0.05)
            timeout = httpx.Timeout(
                connect=_at_most(timeout.connect, left),
                read=_at_most(timeout.read, left),
                write=_at_most(timeout.write, left),
                pool=_at_most(timeout.pool, left),
            )
        return http.build_request(
            call.method,
            call.path,
            params=call.params or None,
            content=call.body,
            headers=call.headers,
            timeout=timeout,
        )

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with "equal jitter": in [d/2, d], d = min(max, base·2^n)."""
        ceiling = min(self.backoff_max, self.backoff_base * (2.0**attempt))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def retry_delay(
        self,
        call: Call[Any],
        attempt: int,
        *,
        response: httpx.Response | None = None,
        error: Exception | None = None,
        elapsed: float = 0.0,
    ) -> float | None:
        """Seconds to wait before retrying after ``attempt`` (0-based), or None to stop.

        Retried: 409 ``idempotency_in_progress``, 429 ``rate_limited`` and 5xx (after
        ``Retry-After`` when the server sends one, else exponential backoff), and network
        failures. Never retried: any other 4xx, 501/505, transport errors that would fail the
        same way again, and any retry whose wait would end after the call's ``deadline``
        (``elapsed`` seconds are spent already). Every retried write carries the same
        Idempotency-Key as its first attempt, so a retry can never execute twice.
        """
        delay = self._delay(call, attempt, response=response, error=error)
        if delay is not None and self.deadline is not None and elapsed + delay > self.deadline:
            return None
        return delay

    def _delay(
        self,
        call: Call[Any],
        attempt: int,
        *,
        response: httpx.Response | None,
        error: Exception | None,
    ) -> float | None:
        if attempt >= self.max_retries:
            return None
        if error is not None:
            return self.backoff(attempt) if isinstance(error, _RETRY_EXCEPTIONS) else None
        if response is None:
            return None
        status = response.status_code
        retryable = _retryable_status(status)
        if status == 409 and call.idempotency_key is not None:
            body = _json_or_none(response)
            retryable = isinstance(body, Mapping) and body.get("error") == "idempotency_in_progress"
        if not retryable:
            return None
        after = retry_after_seconds(response)
        if after is None:
            return self.backoff(attempt)
        return min(after, self.max_retry_after)

    def finish(self, call: Call[T], response: httpx.Response) -> T:
        """Decode the final response of ``call`` (raising the mapped error on non-2xx)."""
        if call.raw_body:
            if not 200 <= response.status_code < 300:
                raise error_from_response(response)
            return call.parse(
                ApiResponse(
                    status=response.status_code,
                    data=response.text,
                    headers=_lower_headers(response),
                )
            )
        return call.parse(decode_response(response))

    def connection_error(self, call: Call[Any], error: Exception) -> SlotguardConnectionError:
        """Translate a transport exception that outlived the retries."""
        timeout = isinstance(error, httpx.TimeoutException)
        return SlotguardConnectionError(
            f"{call.method} {call.path} failed: {type(error).__name__}: {error}".rstrip(": "),
            code="timeout" if timeout else "connection_error",
        )


def _at_most(configured: float | None, left: float) -> float:
    return left if configured is None else min(configured, left)


def next_cursor(previous: str | None, page_cursor: str | None, has_more: bool) -> str | None:
    """The cursor of the following page, or None when the listing is complete."""
    if page_cursor is None or not has_more:
        return None
    if page_cursor == previous:
        raise SlotguardError(
            "The server returned the same cursor twice; stopping to avoid an endless loop.",
            code="invalid_response",
        )
    return page_cursor
