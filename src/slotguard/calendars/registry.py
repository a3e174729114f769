"""The providers slotguard knows, by name (each module exposes ``SPEC: ProviderSpec``)."""

from __future__ import annotations

from slotguard.calendars import caldav, google, ics, microsoft
from slotguard.calendars.base import ProviderSpec

__all__ = ["PROVIDERS", "get_spec"]

PROVIDERS: dict[str, ProviderSpec] = {
    spec.name: spec for spec in (ics.SPEC, caldav.SPEC, google.SPEC, microsoft.SPEC)
}


def get_spec(name: str) -> ProviderSpec | None:
    return PROVIDERS.get(name)
