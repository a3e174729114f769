"""Audit rows → a short account a person can be told (``explain_decision``). Pure: no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

REASONS: Mapping[str, str] = {
    "overlaps_booking": "it overlaps a confirmed booking",
    "overlaps_hold": "another live hold (of equal or higher priority) covers it",
    "overlaps_busy_time": "the calendar shows busy time then",
    "buffer": "it is too close to another meeting (the buffer rule)",
    "outside_working_hours": "it is outside the working hours",
    "too_soon": "it starts sooner than the minimum notice allows",
    "too_far": "it is further ahead than bookings may be made",
    "daily_limit": "that day's meeting limit is reached",
    "off_grid": "it does not start on the slot grid",
    "no_slots_available": "no slot was free in the requested window",
}

_DONE: Mapping[str, str] = {
    "hold_created": "held",
    "hold_released": "released the hold",
    "hold_expired": "the hold expired unconfirmed",
    "hold_preempted": "the hold was taken over by a higher-priority request",
    "booking_created": "booked",
    "booking_confirmed": "confirmed the hold as a booking",
    "booking_cancelled": "cancelled the booking",
    "booking_rescheduled": "moved the booking",
    "booking_updated": "updated the booking's details",
    "booking_preempted": "the booking was displaced by a higher-priority booking",
    "calendar_write_failed": "writing the booking to the calendar failed",
}


def _when(details: Mapping[str, Any]) -> str:
    start = details.get("start_time")
    end = details.get("end_time")
    state = details.get("state")
    if not start and isinstance(state, Mapping):
        start, end = state.get("start_time"), state.get("end_time")
    slots = details.get("slots")
    if not start and isinstance(slots, list) and slots and isinstance(slots[0], Mapping):
        start, end = slots[0].get("start"), slots[0].get("end")
    if not start:
        window = details.get("window")
        if isinstance(window, Mapping):
            return f" in the window {window.get('start')} to {window.get('end')}"
        return ""
    return f" {start} to {end}" if end else f" at {start}"


def sentence(row: Mapping[str, Any], blockers: Sequence[str] = ()) -> str:
    """One sentence for one audit row; `blockers` describes what blocked a refusal."""
    action = str(row.get("action", ""))
    details = row.get("details") or {}
    who = row.get("agent_id") or "an admin key"
    cls = row.get("meeting_class")
    of_class = f" ({cls})" if cls else ""
    if row.get("decision") == "reject" or action.endswith("_rejected"):
        reason = str(row.get("reason") or "")
        why = REASONS.get(reason, reason or "a rule refused it")
        what = "a hold" if action.startswith("hold") else "a booking"
        asked = f"{row.get('at')}: {who} asked for {what}{of_class}{_when(details)}"
        text = f"{asked}; refused because {why}"
        if blockers:
            text += " — blocked by " + "; ".join(blockers)
        return text + "."
    done = _DONE.get(action, action.replace("_", " "))
    target = row.get("booking_id") or row.get("hold_id") or ""
    text = f"{row.get('at')}: {who} {done}{of_class} {target}".rstrip()
    text += _when(details)
    if row.get("decision") == "preempt":
        text += ", displacing lower-priority reservations"
    preempted = details.get("preempted_holds") or []
    if preempted:
        text += f" (took over holds {', '.join(preempted)})"
    if row.get("reason") and action.endswith("cancelled"):
        text += f" (reason: {row['reason']})"
    return text + "."


def summarize(rows: Sequence[Mapping[str, Any]], blockers: Sequence[str] = ()) -> str:
    """The whole story, oldest first; the last refusal gets the blockers named."""
    if not rows:
        return "No audit records match; the id may be wrong or belong to another account."
    last_reject = max(
        (i for i, r in enumerate(rows) if r.get("decision") == "reject"), default=None
    )
    return " ".join(sentence(r, blockers if i == last_reject else ()) for i, r in enumerate(rows))
