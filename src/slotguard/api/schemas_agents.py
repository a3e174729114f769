"""Response bodies of the agent-facing reads: the dry-run check (§3.4) and the caller (§3.5)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

from slotguard.api.schemas import Slot
from slotguard.domain.availability import RejectReason


class AvailabilityCheckRead(BaseModel):
    available: bool = Field(description="Would POST /v1/bookings with these fields succeed now")
    reason: RejectReason | None = Field(
        default=None, description="Absent when available; else a `conflict` details.reason"
    )
    next_available: Slot | None = Field(
        default=None,
        description="First free slot of the same length after start_time within 72 h; "
        "absent when there is none or the slot is available",
    )
    business_id: str
    meeting_class: str
    start_time: dt.datetime
    end_time: dt.datetime


class MeRead(BaseModel):
    account_id: str
    key_id: str | None
    agent_id: str | None = Field(default=None, description="Absent for account (admin) keys")
    scopes: list[str]
    allowed_business_ids: Literal["*"] | list[str] = Field(
        description='"*" for every business of the account, or a list of business ids'
    )
    now: dt.datetime = Field(description="The server's clock (UTC)")
