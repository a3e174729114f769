"""The client's exception hierarchy and the one table that maps API error codes onto it.

Every failure the client reports is a `SlotguardError`: HTTP errors carry the fields of the
error body (API.md §1.1), transport failures that outlived the retries become
`SlotguardConnectionError`. Raw `httpx` exceptions never escape the client.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class SlotguardError(Exception):
    """An error reported by the slotguard API (or by the transport, see subclasses).

    Attributes:
        status: HTTP status code; ``None`` when no response was received.
        code: the stable lower_snake ``error`` code of the body (§9); branch on this.
        message: the human-readable message.
        details: the code-specific ``details`` object (empty dict when absent).
        request_id: the server's request id (body ``request_id`` or ``X-Request-Id``).
        body: the decoded JSON body, or the raw text when the body was not JSON.
        headers: the response headers (empty when no response was received).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "unknown_error",
        details: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details: dict[str, Any] = dict(details or {})
        self.request_id = request_id
        self.body = body
        self.headers: dict[str, str] = dict(headers or {})

    def __str__(self) -> str:
        where = f"{self.status} " if self.status is not None else ""
        rid = f" (request_id={self.request_id})" if self.request_id else ""
        return f"{where}{self.code}: {self.message}{rid}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r}, request_id={self.request_id!r})"
        )


class SlotguardConnectionError(SlotguardError):
    """No usable response: connect error, timeout or broken connection, after all retries."""


class AuthError(SlotguardError):
    """401 ``unauthorized``: missing, unknown or revoked API key."""


class ForbiddenError(AuthError):
    """403 ``forbidden``: the key lacks a scope (``details.required_scope``) or business."""


class NotFoundError(SlotguardError):
    """404 ``not_found`` / ``hold_not_found`` (also for another account's objects)."""


class ConflictError(SlotguardError):
    """409 ``conflict`` (slot taken; ``reason``) or ``no_slots_available`` (``next_available``)."""

    @property
    def reason(self) -> str | None:
        """``details.reason`` of a ``conflict`` (e.g. ``overlaps_booking``), if any."""
        value = self.details.get("reason")
        return value if isinstance(value, str) else None

    @property
    def next_available(self) -> dict[str, Any] | None:
        """Top-level ``next_available`` ``{start, end}`` of ``no_slots_available``, if any."""
        if isinstance(self.body, Mapping):
            value = self.body.get("next_available")
            if isinstance(value, Mapping):
                return dict(value)
        return None


class StateError(SlotguardError):
    """The hold or booking is not in a state that allows the operation.

    Codes: ``hold_already_confirmed`` (``details.booking_id``), ``hold_released``,
    ``hold_preempted``, ``hold_expired`` (410), ``booking_not_active``.
    """


class IdempotencyError(SlotguardError):
    """Idempotency-Key problems: ``idempotency_key_conflict`` (same key, other request),
    ``idempotency_in_progress`` (still running after all retries),
    ``missing_idempotency_key`` / ``invalid_idempotency_key``."""


class PreconditionError(SlotguardError):
    """If-Match problems: ``missing_if_match`` (428) or ``invalid_if_match`` (400)."""


class VersionConflictError(PreconditionError):
    """412 ``version_conflict``: the If-Match version is stale."""

    @property
    def current_version(self) -> int | None:
        """The booking's current version, from ``details``, if the server sent it."""
        for key in ("current_version", "version"):
            value = self.details.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        return None


class ValidationError(SlotguardError):
    """422 ``validation_error`` and friends (``window_too_large``, ``field_immutable``,
    ``slot_outside_hold``) and 413 ``payload_too_large``."""

    @property
    def fields(self) -> Any:
        """``details.fields``: which fields were rejected (shape is code-specific)."""
        return self.details.get("fields")


class RateLimitedError(SlotguardError):
    """429 ``rate_limited`` that outlived the retries (or whose wait would pass the deadline)."""

    @property
    def retry_after(self) -> float | None:
        """Seconds from the ``Retry-After`` header, if it was a number."""
        raw = {k.lower(): v for k, v in self.headers.items()}.get("retry-after")
        try:
            return float(raw) if raw is not None else None
        except ValueError:
            return None


class ServerError(SlotguardError):
    """5xx: ``internal_error`` or a gateway error that outlived the retries."""


# The one mapping from the API's `error` codes (API.md §9) to exception classes.
ERRORS_BY_CODE: Mapping[str, type[SlotguardError]] = {
    "unauthorized": AuthError,
    "forbidden": ForbiddenError,
    "not_found": NotFoundError,
    "hold_not_found": NotFoundError,
    "conflict": ConflictError,
    "no_slots_available": ConflictError,
    "hold_already_confirmed": StateError,
    "hold_released": StateError,
    "hold_preempted": StateError,
    "hold_expired": StateError,
    "booking_not_active": StateError,
    "idempotency_key_conflict": IdempotencyError,
    "idempotency_in_progress": IdempotencyError,
    "missing_idempotency_key": IdempotencyError,
    "invalid_idempotency_key": IdempotencyError,
    "missing_if_match": PreconditionError,
    "invalid_if_match": PreconditionError,
    "version_conflict": VersionConflictError,
    "validation_error": ValidationError,
    "window_too_large": ValidationError,
    "field_immutable": ValidationError,
    "slot_outside_hold": ValidationError,
    "payload_too_large": ValidationError,
    "rate_limited": RateLimitedError,
    "internal_error": ServerError,
}

# Fallback when the body has no (known) code, e.g. an HTML page from a proxy.
_ERRORS_BY_STATUS: Mapping[int, type[SlotguardError]] = {
    401: AuthError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    410: StateError,
    412: VersionConflictError,
    413: ValidationError,
    422: ValidationError,
    428: PreconditionError,
    429: RateLimitedError,
}


def error_class_for(code: str | None, status: int | None) -> type[SlotguardError]:
    """The exception class for an ``error`` code, falling back on the HTTP status."""
    if code is not None and code in ERRORS_BY_CODE:
        return ERRORS_BY_CODE[code]
    if status is not None:
        if status in _ERRORS_BY_STATUS:
            return _ERRORS_BY_STATUS[status]
        if status >= 500:
            return ServerError
    return SlotguardError
