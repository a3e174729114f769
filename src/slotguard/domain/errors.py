"""Domain errors. The API maps each to one HTTP status and `error` code in one place."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every expected failure. `code` is the stable `error` string of the API."""

    code: str = "domain_error"
    status: int = 400
    default_message: str = "The request could not be completed."

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or self.default_message
        self.details = details
        # Audit rows to write after the failed transaction is rolled back (rejections are
        # decisions too, and must be on record).
        self.audit: list[Any] = []
        # Top-level fields of the error body besides the standard ones (e.g. next_available).
        self.extra: dict[str, Any] = {}
        super().__init__(self.message)


class NotFound(DomainError):
    code, status, default_message = "not_found", 404, "The requested object does not exist."


class HoldNotFound(NotFound):
    code, default_message = "hold_not_found", "The hold does not exist."


class SlotConflict(DomainError):
    code, status = "conflict", 409
    default_message = "The requested time slot is no longer available."


class Conflict(DomainError):
    """A uniqueness or state conflict on an object other than a slot."""

    code, status, default_message = "conflict", 409, "The request conflicts with current state."


class NoSlotsAvailable(DomainError):
    code, status, default_message = "no_slots_available", 409, "No slot is available."


class BookingNotActive(DomainError):
    code, status, default_message = "booking_not_active", 409, "The booking is not active."


class HoldAlreadyConfirmed(DomainError):
    code, status, default_message = (
        "hold_already_confirmed",
        409,
        "The hold was already confirmed.",
    )


class HoldReleased(DomainError):
    code, status, default_message = "hold_released", 409, "The hold was released."


class HoldPreempted(DomainError):
    code, status, default_message = (
        "hold_preempted",
        409,
        "The hold was preempted by a higher-priority request.",
    )


class HoldExpired(DomainError):
    code, status, default_message = "hold_expired", 410, "The hold has expired."


class VersionConflict(DomainError):
    code, status, default_message = (
        "version_conflict",
        412,
        "The object was changed by someone else.",
    )


class ValidationFailed(DomainError):
    code, status, default_message = "validation_error", 422, "The request is not valid."


class WindowTooLarge(DomainError):
    code, status, default_message = "window_too_large", 422, "The window is too large."


class FieldImmutable(DomainError):
    code, status, default_message = "field_immutable", 422, "Some fields cannot be changed."


class SlotOutsideHold(DomainError):
    code, status, default_message = "slot_outside_hold", 422, "The slot is not part of the hold."


class Forbidden(DomainError):
    code, status, default_message = "forbidden", 403, "This key may not do that."


# -- calendars (§7) ----------------------------------------------------------------------


class CalendarAuthFailed(DomainError):
    code, status, default_message = (
        "calendar_auth_failed",
        422,
        "The calendar refused the credentials.",
    )


class CalendarUnreachable(DomainError):
    code, status, default_message = (
        "calendar_unreachable",
        422,
        "The calendar could not be reached or is not a usable calendar.",
    )


class SecretKeyRequired(DomainError):
    code, status, default_message = (
        "secret_key_required",
        422,
        "Storing calendar credentials needs SLOTGUARD_SECRET_KEY to be set on the server.",
    )
