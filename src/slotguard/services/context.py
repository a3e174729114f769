"""Who is acting, for which request: passed to every service function."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from slotguard.domain.errors import Forbidden
from slotguard.domain.scopes import ALL_SCOPES, Scope


@dataclass(frozen=True, slots=True)
class Actor:
    account_id: str
    key_id: str | None
    agent_id: str | None = None
    scopes: frozenset[str] = field(default_factory=lambda: frozenset(ALL_SCOPES))
    # None = every business of the account
    allowed_business_ids: frozenset[str] | None = None
    default_meeting_class: str | None = None
    # A public booking page acting for its visitors (§12): only the scopes it is given, so
    # a visitor can never preempt a booking.
    page_id: str | None = None

    @property
    def is_admin(self) -> bool:
        if self.page_id is not None:
            return False
        return self.agent_id is None or "admin" in self.scopes

    def has_scope(self, scope: Scope) -> bool:
        if self.page_id is not None:
            return scope in self.scopes
        return self.agent_id is None or scope in self.scopes or "admin" in self.scopes

    def require_scope(self, scope: Scope) -> None:
        if not self.has_scope(scope):
            raise Forbidden(f"This key lacks the scope {scope!r}.", required_scope=scope)

    def require_business(self, business_id: str) -> None:
        if self.allowed_business_ids is not None and business_id not in self.allowed_business_ids:
            raise Forbidden("This key may not act on that business.", business_id=business_id)


@dataclass(frozen=True, slots=True)
class RequestContext:
    actor: Actor
    request_id: str | None
    now: dt.datetime
    # The sync interval of the app serving the request (its settings, not the process's):
    # staleness warnings are relative to it. None = the process-wide settings.
    calendar_sync_seconds: float | None = None

    @property
    def account_id(self) -> str:
        return self.actor.account_id
