"""The slotguard MCP server: 13 tools over the public API (API.md §11).

Each tool is a thin adapter: it calls the HTTP API through ``AsyncClient`` with the caller's
key (``Backend.client()``), and turns the answer into a structured result, or a failure into
an ``isError`` result with ``{error, message, status, details, retryable, next_step, …}``.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import functools
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import httpx
import orjson
from mcp.server import MCPServer
from mcp.types import CallToolResult, TextContent, Tool, ToolAnnotations
from pydantic import BaseModel, Field

from slotguard.client import AsyncClient, SlotguardError
from slotguard.client._models import Booking as ClientBooking
from slotguard.domain.scopes import Scope
from slotguard.mcp import models as m
from slotguard.mcp.explain import summarize

INSTRUCTIONS = """\
slotguard books meetings without double-booking. Rules for agents:
1. Call get_context first: it gives the server's time, your scopes and, per business, its time
   zone, rules and meeting classes. Never guess or infer a time zone: present times in the
   business's zone (every result carries UTC and local times) or in a zone the person named.
2. Offer a person only times that find_slots (or check_slot) returned. Never invent a time.
3. To let a person decide, hold_slot, ask them, then confirm_hold before expires_in_seconds
   runs out; otherwise book directly. Confirm with the person before book, confirm_hold,
   cancel_booking or reschedule_booking: they email people.
4. Retries are safe: repeat the same call with the same idempotency_key (an identical call
   without one is recognised for 10 minutes). On conflict, call find_slots and offer real
   alternatives (next_available when given).
5. When a request was refused, explain_decision tells you why, in words you can repeat.
"""

# The caller of the current MCP request over HTTP: set by the /mcp endpoint (mcp/http.py).
current_key: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "slotguard_mcp_key", default=None
)
current_scopes: contextvars.ContextVar[frozenset[str] | None] = contextvars.ContextVar(
    "slotguard_mcp_scopes", default=None
)

# A derived idempotency key is the same for identical calls within one such window.
IDEMPOTENCY_WINDOW_SECONDS = 600


def _ann(
    *, read_only: bool, destructive: bool = False, idempotent: bool = True, open_world: bool = False
) -> ToolAnnotations:
    return ToolAnnotations(
        read_only_hint=read_only,
        destructive_hint=destructive,
        idempotent_hint=idempotent,
        open_world_hint=open_world,
    )


READ = _ann(read_only=True)

# Which scope each tool needs (None: any valid key); `admin` grants every tool.
TOOL_SCOPES: Mapping[str, Scope | None] = {
    "get_context": None,
    "find_slots": "availability:read",
    "check_slot": "availability:read",
    "hold_slot": "holds:write",
    "get_hold": "holds:write",
    "release_hold": "holds:write",
    "confirm_hold": "bookings:write",
    "book": "bookings:write",
    "list_bookings": "bookings:read",
    "get_booking": "bookings:read",
    "cancel_booking": "bookings:write",
    "reschedule_booking": "bookings:write",
    "explain_decision": "audit:read",
}


def allowed_tools(scopes: frozenset[str]) -> list[str]:
    return [
        name
        for name, scope in TOOL_SCOPES.items()
        if scope is None or "admin" in scopes or scope in scopes
    ]


@dataclass
class Backend:
    """How tools reach the HTTP API, and as whom.

    ``api_key`` fixes the caller (stdio: one key per process); otherwise the key of the
    current HTTP request is used (``current_key``). ``transport`` lets ``serve`` call its own
    app in-process (``httpx.ASGITransport``) instead of over the network.
    """

    base_url: str
    api_key: str | None = None
    transport: Callable[[], httpx.AsyncBaseTransport] | None = None
    _clients: dict[str, AsyncClient] = field(default_factory=dict)
    _scopes: dict[str, tuple[frozenset[str], float]] = field(default_factory=dict)
    _zones: dict[tuple[str, str], tuple[str, float]] = field(default_factory=dict)
    # Derived idempotency keys handed out recently: call fingerprint → (key, until).
    _recent_keys: dict[str, tuple[str, float]] = field(default_factory=dict)
    clock: Callable[[], float] = time.time

    def key(self) -> str:
        key = self.api_key or current_key.get()
        if not key:
            raise SlotguardError("No API key for this call.", status=401, code="unauthorized")
        return key

    def client(self) -> AsyncClient:
        key = self.key()
        found = self._clients.get(key)
        if found is None:
            if len(self._clients) >= 1000:  # bounded: keys come and go
                self._clients.clear()
            found = AsyncClient(
                key,
                self.base_url,
                transport=self.transport() if self.transport else None,
                max_retries=3,
                deadline=30.0,
            )
            self._clients[key] = found
        return found

    def idempotency_key(
        self, tool: str, arguments: Mapping[str, Any], *, seed: str | None = None
    ) -> str:
        """The derived key of a call that brought none (``derive_key``), kept for 10 min.

        The 10-minute bucket alone would give a retry that crosses a bucket boundary a new
        key, and the retry would act twice; so this process remembers each key it handed out
        for a full window after first use. Another process (several ``serve`` processes
        behind one address) falls back to the bucket.
        """
        base = seed if seed is not None else self.key()
        now = self.clock()
        canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=str)
        fingerprint = hashlib.sha256(f"{base}|{tool}|{canonical}".encode()).hexdigest()
        hit = self._recent_keys.get(fingerprint)
        if hit is not None and hit[1] > now:
            return hit[0]
        if len(self._recent_keys) >= 10_000:
            self._recent_keys = {k: v for k, v in self._recent_keys.items() if v[1] > now}
            if len(self._recent_keys) >= 10_000:
                self._recent_keys.clear()
        key = derive_key(base, tool, arguments, now=now)
        self._recent_keys[fingerprint] = (key, now + IDEMPOTENCY_WINDOW_SECONDS)
        return key

    async def scopes(self) -> frozenset[str]:
        given = None if self.api_key else current_scopes.get()
        if given is not None:
            return given
        key = self.key()
        # Cached for a minute: a changed agent (PATCH scopes) shows in the list soon; the API
        # checks every call's scope itself in any case.
        hit = self._scopes.get(key)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        scopes = frozenset((await self.client().me()).scopes)
        if len(self._scopes) >= 1000:
            self._scopes.clear()
        self._scopes[key] = (scopes, time.monotonic() + 60)
        return scopes

    async def zone(self, business_id: str) -> str:
        """The business's IANA zone, as an API answer gave it to this caller within a minute.

        Only when none did, one ``GET /v1/businesses/{id}``: it counts against the key's
        rate limit like any call, so answers that carry the zone (get_context, find_slots)
        are remembered instead of asking again.
        """
        hit = self._zones.get(self._zone_key(business_id))
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        tz = (await self.client().businesses.get(business_id)).timezone
        self.remember_zone(business_id, tz)
        return tz

    def remember_zone(self, business_id: str, tz: str) -> None:
        if len(self._zones) >= 10_000:
            self._zones.clear()
        self._zones[self._zone_key(business_id)] = (tz, time.monotonic() + 60)

    def _zone_key(self, business_id: str) -> tuple[str, str]:
        return hashlib.sha256(self.key().encode()).hexdigest(), business_id

    async def aclose(self) -> None:
        for c in self._clients.values():
            await c.aclose()
        self._clients.clear()


# --- helpers ------------------------------------------------------------------------------


def _parse(value: str | dt.datetime) -> dt.datetime:
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)


def _utc(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


@functools.lru_cache(maxsize=1024)
def _tzinfo(tz: str) -> dt.tzinfo:
    return ZoneInfo(tz)


def instant_data(value: str | dt.datetime, tz: str) -> dict[str, str]:
    """An ``m.Instant`` as JSON data: the instant in UTC and in the zone ``tz``."""
    if isinstance(value, str) and len(value) == 20 and value[-1] == "Z":
        # The API's own UTC form (2026-04-01T09:00:00Z) is already the `utc` text.
        if tz == "UTC":
            return {"utc": value, "local": value}
        t, utc = dt.datetime.fromisoformat(value), value
    else:
        t = _parse(value)
        utc = _utc(t)
    local = t.astimezone(_tzinfo(tz)).isoformat()
    return {"utc": utc, "local": local.replace("+00:00", "Z")}


def range_data(start: Any, end: Any, tz: str) -> dict[str, dict[str, str]]:
    """An ``m.TimeRange`` as JSON data."""
    return {"start": instant_data(start, tz), "end": instant_data(end, tz)}


def instant(value: str | dt.datetime, tz: str) -> m.Instant:
    return m.Instant(**instant_data(value, tz))


def time_range(start: Any, end: Any, tz: str) -> m.TimeRange:
    return m.TimeRange(start=instant(start, tz), end=instant(end, tz))


def derive_key(
    api_key: str, tool: str, arguments: Mapping[str, Any], *, now: float | None = None
) -> str:
    """The idempotency key of a call that brought none: identical calls share it for 10 min.

    Bound to the caller's key (hashed), the tool and the canonical JSON of its arguments, so
    two agents never share one and a retried call replays instead of acting twice.
    """
    bucket = int((time.time() if now is None else now) // IDEMPOTENCY_WINDOW_SECONDS)
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=str)
    raw = f"{hashlib.sha256(api_key.encode()).hexdigest()}|{tool}|{canonical}|{bucket}"
    return "mcp_" + hashlib.sha256(raw.encode()).hexdigest()[:40]


def _text(data: Mapping[str, Any]) -> list[TextContent]:
    """The structured content again as compact JSON text, for clients that read only text.

    orjson writes the stdlib's compact form (UTF-8, nothing escaped that need not be)
    several times faster; what it refuses (integers beyond 64 bits) goes through the stdlib.
    """
    try:
        text = orjson.dumps(data).decode()
    except TypeError:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return [TextContent(type="text", text=text)]


def ok(result: BaseModel | dict[str, Any]) -> CallToolResult:
    """A result: a model, or JSON data shaped as the tool's output model.

    The SDK checks the structured content against the tool's output model before sending
    it, so data built without the model still cannot leave in another shape.
    """
    data = result.model_dump(mode="json") if isinstance(result, BaseModel) else result
    return CallToolResult(content=_text(data), structured_content=data)


_NEXT_STEPS: Mapping[str, str] = {
    "conflict": "The time is taken or not allowed; call find_slots and offer only times "
    "it returns.",
    "no_slots_available": "Nothing is free in that window; offer next_available if given, "
    "or call find_slots with a later or wider window.",
    "forbidden": "This key may not do that (see details); do not retry, ask the operator for "
    "a key with that scope or business.",
    "unauthorized": "The API key is missing, unknown or revoked; ask the operator for a valid key.",
    "not_found": "No such object for this key; check the id with get_context or list_bookings.",
    "hold_not_found": "No such hold; call hold_slot to take a new one.",
    "hold_expired": "The hold expired; call hold_slot again and confirm before it runs out.",
    "hold_released": "The hold was released; call hold_slot again.",
    "hold_preempted": "A higher-priority request took the slot; call find_slots for another time.",
    "booking_not_active": "The booking is no longer active; book a new time instead.",
    "version_conflict": "The booking changed meanwhile; call get_booking and retry with its "
    "current version.",
    "idempotency_key_conflict": "That idempotency_key was used for a different request; use a "
    "new key for a new request.",
    "idempotency_in_progress": "The same request is still running; retry the same call with "
    "the same idempotency_key in a second.",
    "rate_limited": "Too many requests; wait details.retry_after_seconds, then retry the "
    "same call.",
    "validation_error": "An argument is invalid (see details.fields); fix it and call again.",
    "window_too_large": "The window is too long; ask for at most 90 days.",
    "slot_outside_hold": "That start is not one of the hold's slots; use a start from the hold.",
    "field_immutable": "Those fields cannot be changed; use reschedule_booking to move a booking.",
}
_RETRYABLE = frozenset({"idempotency_in_progress", "rate_limited"})


def failure(
    err: SlotguardError, *, tz: str | None = None, next_step: str | None = None
) -> CallToolResult:
    """A failed API call as an ``isError`` result the agent can act on."""
    status = err.status
    retryable = err.code in _RETRYABLE or status is None or status >= 500
    step = (
        next_step
        or _NEXT_STEPS.get(err.code)
        or (
            "A temporary failure; retry the same call with the same idempotency_key."
            if retryable
            else "The request failed; read message and details before trying anything else."
        )
    )
    details = dict(err.details)
    if err.code == "rate_limited":
        after = err.headers.get("retry-after")
        if after is not None:
            details.setdefault("retry_after_seconds", after)
    nxt = None
    body = err.body if isinstance(err.body, Mapping) else {}
    raw_next = body.get("next_available") or details.pop("_next_available", None)
    if isinstance(raw_next, Mapping) and raw_next.get("start"):
        nxt = time_range(raw_next["start"], raw_next["end"], tz or "UTC")
    payload = m.ToolFailure(
        error=err.code,
        message=err.message,
        status=status,
        details=details,
        retryable=retryable,
        next_step=step,
        next_available=nxt,
        request_id=err.request_id,
    )
    # §11: `status` is always there (null when no response came); the optional fields are
    # absent rather than null.
    data = payload.model_dump(mode="json")
    for optional in ("next_available", "request_id"):
        if data.get(optional) is None:
            data.pop(optional, None)
    return CallToolResult(content=_text(data), structured_content=data, is_error=True)


async def booking_result(backend: Backend, b: Mapping[str, Any], **extra: Any) -> m.BookingResult:
    tz = await backend.zone(str(b["business_id"]))
    return m.BookingResult(
        booking_id=str(b["id"]),
        business_id=str(b["business_id"]),
        status=b["status"],
        start=instant(b["start_time"], tz),
        end=instant(b["end_time"], tz),
        timezone=tz,
        meeting_class=str(b["meeting_class"]),
        title=b.get("title"),
        customer_email=b.get("customer_email"),
        customer_name=b.get("customer_name"),
        attendees=list(b.get("attendees") or []),
        version=int(b["version"]),
        hold_id=b.get("hold_id"),
        calendar_sync_status=str(b.get("calendar_sync_status", "not_applicable")),
        cancellation_reason=b.get("cancellation_reason"),
        **({"request_id": getattr(b, "request_id", None)} | extra),
    )


def seconds_left(
    expires_at: str, status: str, answered: Any, clock: Callable[[], float] = time.time
) -> int:
    """Whole seconds until ``expires_at`` by the API's clock when it ``answered``.

    That clock is the answer's ``Date`` header, never this process's, which may be off from
    the server's (``slotguard mcp`` runs on the agent's machine). The header has whole
    seconds, so the server's clock was up to one second later: counting from the end of
    that second, the figure is never more than what is left. An answer without the header
    came from the API in this process (``serve``'s ``/mcp``), on this process's ``clock``.
    """
    if status != "active":
        return 0
    date = getattr(answered, "server_time", None)
    now = clock() if date is None else date.timestamp() + 1
    return max(0, int(_parse(expires_at).timestamp() - now))


Tz = Annotated[str, Field(description="RFC 3339 instant with offset, e.g. 2026-04-01T09:00:00Z")]
IdemKey = Annotated[
    str | None,
    Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Reuse the same value when retrying this call; derived for you when omitted",
    ),
]
BusinessId = Annotated[str | None, Field(description="The business (biz_…); or owner_email")]
OwnerEmail = Annotated[
    str | None, Field(description="The business's email, instead of business_id")
]
MeetingClassArg = Annotated[
    str | None,
    Field(description="Meeting class name (see get_context); sets duration and priority"),
]


Attendees = Annotated[
    list[dict[str, str]] | None,
    Field(description="[{email, display_name?}] invited besides the customer"),
]
Metadata = Annotated[dict[str, str] | None, Field(description="Your own string key/values")]


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with each ``$ref`` into its ``$defs`` replaced by the definition itself.

    The same constraints, but a client checks a result against it without resolving a
    reference per nested object: for find_slots' 50 slots that halves the SDK client's
    validation. A recursive definition (none of the tools has one) keeps the schema as is.
    """
    defs: dict[str, Any] = schema.get("$defs", {})

    def walk(node: Any, active: tuple[str, ...]) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                name = ref.removeprefix("#/$defs/")
                if name in active:
                    raise RecursionError(name)
                siblings = {k: v for k, v in node.items() if k != "$ref"}
                return walk({**defs[name], **siblings}, (*active, name))
            return {k: walk(v, active) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [walk(v, active) for v in node]
        return node

    try:
        flat: dict[str, Any] = walk(schema, ())
    except RecursionError:
        return schema
    return flat


class SlotguardMCP(MCPServer):
    """``MCPServer`` whose tool list depends on the caller's scopes (§11)."""

    def __init__(self, backend: Backend, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.backend = backend
        self._flat_schemas: dict[str, dict[str, Any]] = {}

    async def list_tools(self) -> list[Tool]:
        tools = await super().list_tools()
        try:
            scopes = await self.backend.scopes()
        except SlotguardError:
            # Bad key or no server: only get_context, whose answer says which (as a §11
            # failure), instead of an empty list that explains nothing.
            scopes = frozenset()
        allowed = set(allowed_tools(scopes))
        listed = [t for t in tools if t.name in allowed]
        for t in listed:
            if t.output_schema is not None:
                flat = self._flat_schemas.get(t.name)
                if flat is None:
                    flat = self._flat_schemas[t.name] = inline_refs(t.output_schema)
                t.output_schema = flat
        return listed


def build_server(backend: Backend, *, version: str = "0.1.0") -> SlotguardMCP:
    """A fresh server (one per app: its HTTP session manager can run only once)."""
    mcp = SlotguardMCP(backend, name="slotguard", version=version, instructions=INSTRUCTIONS)

    async def guarded(
        run: Callable[[AsyncClient], Awaitable[CallToolResult]],
    ) -> CallToolResult:
        try:
            return await run(backend.client())
        except SlotguardError as err:
            return failure(err)

    # -- context -------------------------------------------------------------------------

    @mcp.tool(title="Get context (call first)", annotations=READ)
    async def get_context(
        business_id: Annotated[str | None, Field(description="Only this business")] = None,
    ) -> Annotated[CallToolResult, m.Context]:
        """Server time, this key's scopes and businesses, and per business its time zone,
        effective rules and the meeting classes. Call this before anything else."""

        async def run(c: AsyncClient) -> CallToolResult:
            me = await c.me()
            if business_id:
                businesses = [await c.businesses.get(business_id)]
            else:
                businesses = []
                async for b in c.businesses.list_all(limit=50):
                    businesses.append(b)
                    if len(businesses) >= 50:
                        break
            out = []
            for b in businesses:
                backend.remember_zone(b.id, b.timezone)
                rules = await c.businesses.effective_rules(b.id)
                out.append(
                    m.BusinessContext(
                        business_id=b.id,
                        name=b.name,
                        timezone=b.timezone,
                        rules=dict(rules.get("rules") or {}),
                        rule_sources=dict(rules.get("sources") or {}),
                    )
                )
            classes = [
                m.MeetingClassInfo(
                    name=x.name,
                    display_name=x.display_name,
                    duration_minutes=x.duration_minutes,
                    priority=x.priority,
                )
                async for x in c.meeting_classes.list_all(limit=200)
            ]
            return ok(
                m.Context(
                    now=instant(me["now"], "UTC"),
                    account_id=me.account_id,
                    key_id=me.key_id,
                    agent_id=me.agent_id,
                    scopes=list(me.scopes),
                    allowed_business_ids=me["allowed_business_ids"],
                    businesses=out,
                    meeting_classes=classes,
                    tools=allowed_tools(frozenset(me.scopes)),
                )
            )

        return await guarded(run)

    # -- availability --------------------------------------------------------------------

    @mcp.tool(title="Find free slots", annotations=READ)
    async def find_slots(
        business_id: BusinessId = None,
        owner_email: OwnerEmail = None,
        start: Annotated[
            str | None, Field(description="Window start (RFC 3339); default now")
        ] = None,
        end: Annotated[str | None, Field(description="Window end; default start + 14 days")] = None,
        duration_minutes: Annotated[int | None, Field(ge=1, le=1440)] = None,
        meeting_class: MeetingClassArg = None,
        limit: Annotated[int, Field(ge=1, le=500)] = 50,
    ) -> Annotated[CallToolResult, m.Slots]:
        """Bookable slots for one business, earliest first. Nothing is reserved: use
        hold_slot or book to take one. Offer people only times from this list."""

        async def run(c: AsyncClient) -> CallToolResult:
            res = await c.availability.get_slots(
                business_id=business_id,
                owner_email=owner_email,
                start=start,
                end=end,
                duration_minutes=duration_minutes,
                meeting_class=meeting_class,
                limit=limit,
            )
            tz = str(res["timezone"])
            backend.remember_zone(str(res["business_id"]), tz)  # no `timezone` asked: its own
            slots = [range_data(s["start"], s["end"], tz) for s in res["slots"]]
            # m.Slots as data: up to 500 slots need no model round trip each.
            return ok(
                {
                    "business_id": str(res["business_id"]),
                    "timezone": tz,
                    "duration_minutes": int(res["duration_minutes"]),
                    "slots": slots,
                    "computed_at": str(res["computed_at"]),
                    "limit_reached": len(slots) >= limit,
                    "warnings": list(res.get("warnings") or []),
                }
            )

        return await guarded(run)

    @mcp.tool(title="Check one exact time", annotations=READ)
    async def check_slot(
        start: Tz,
        business_id: BusinessId = None,
        owner_email: OwnerEmail = None,
        end: Annotated[str | None, Field(description="Default: start + duration")] = None,
        duration_minutes: Annotated[int | None, Field(ge=1, le=1440)] = None,
        meeting_class: MeetingClassArg = None,
    ) -> Annotated[CallToolResult, m.SlotCheck]:
        """Would booking exactly this time succeed now? Runs the booking's own check as a dry
        run (nothing is written); when not, gives the reason and the next free time."""

        async def run(c: AsyncClient) -> CallToolResult:
            finish = end
            if finish is None and duration_minutes is not None:
                finish = _utc(_parse(start) + dt.timedelta(minutes=duration_minutes))
            res = await c.availability.check(
                business_id=business_id,
                owner_email=owner_email,
                start_time=start,
                end_time=finish,
                meeting_class=meeting_class,
            )
            tz = await backend.zone(str(res["business_id"]))
            nxt = res.get("next_available")
            if res["available"]:
                step = "Free now: book it (or hold_slot) after the person agrees."
            elif nxt:
                step = "Not bookable; offer next_available or call find_slots for other times."
            else:
                step = "Not bookable; call find_slots with a later or wider window."
            return ok(
                m.SlotCheck(
                    available=bool(res["available"]),
                    reason=res.get("reason"),
                    start=instant(res["start_time"], tz),
                    end=instant(res["end_time"], tz),
                    timezone=tz,
                    meeting_class=str(res["meeting_class"]),
                    next_available=time_range(nxt["start"], nxt["end"], tz) if nxt else None,
                    next_step=step,
                )
            )

        return await guarded(run)

    # -- holds ---------------------------------------------------------------------------

    async def hold_result(
        c: AsyncClient,
        hold: Mapping[str, Any],
        *,
        current: Mapping[str, Any] | None = None,
        answered: Any = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """The hold as it is now, as ``m.HoldResult`` data: ``current`` when the caller has
        it (from the API's answer ``answered``, default ``current`` itself), else read again.
        """
        if current is None:
            current = await c.holds.get(str(hold["hold_id"]))
        business_id = str(current["business_id"])
        tz = await backend.zone(business_id)
        status = str(current["status"])
        expires_at = str(current["expires_at"])
        left = seconds_left(
            expires_at, status, answered if answered is not None else current, backend.clock
        )
        data = {
            "hold_id": str(current["hold_id"]),
            "business_id": business_id,
            "status": status,
            "slots": [range_data(s["start"], s["end"], tz) for s in current["slots"]],
            "timezone": tz,
            "expires_at": instant_data(expires_at, tz),
            "expires_in_seconds": left,
            "meeting_class": str(current["meeting_class"]),
            "decision": hold.get("decision"),
            "preempted_holds": list(hold.get("preempted_holds") or []),
            "booking_id": current.get("booking_id"),
            "replayed": False,
            "request_id": getattr(hold, "request_id", None),
            "warnings": list(hold.get("warnings") or []),
        }
        data.update(extra)
        return data

    @mcp.tool(
        title="Hold a slot",
        annotations=_ann(read_only=False, destructive=False, idempotent=True),
    )
    async def hold_slot(
        window_start: Tz,
        window_end: Tz,
        business_id: BusinessId = None,
        owner_email: OwnerEmail = None,
        duration_minutes: Annotated[int | None, Field(ge=1, le=1440)] = None,
        meeting_class: MeetingClassArg = None,
        max_slots: Annotated[int, Field(ge=1, le=10)] = 1,
        ttl_seconds: Annotated[int | None, Field(ge=30, le=3600)] = None,
        idempotency_key: IdemKey = None,
    ) -> Annotated[CallToolResult, m.HoldResult]:
        """Reserve the earliest free slot(s) in the window for a short time, so nobody else
        can take them while a person decides; confirm_hold turns the hold into a booking.
        A hold at higher priority may replace lower-priority holds (never bookings)."""
        args = {
            "window_start": window_start,
            "window_end": window_end,
            "business_id": business_id,
            "owner_email": owner_email,
            "duration_minutes": duration_minutes,
            "meeting_class": meeting_class,
            "max_slots": max_slots,
            "ttl_seconds": ttl_seconds,
        }
        key = idempotency_key or backend.idempotency_key("hold_slot", args)

        async def take(c: AsyncClient, with_key: str) -> Any:
            return await c.availability.hold(
                business_id=business_id,
                owner_email=owner_email,
                window_start=window_start,
                window_end=window_end,
                duration_minutes=duration_minutes,
                meeting_class=meeting_class,
                max_slots=max_slots,
                ttl_seconds=ttl_seconds,
                idempotency_key=with_key,
            )

        async def run(c: AsyncClient) -> CallToolResult:
            try:
                held = await take(c, key)
                # A hold made just now is active; only a replay needs a fresh look (it may
                # have been confirmed, released or have expired since).
                fresh = None
                if not held.replayed and business_id:
                    fresh = {**held, "status": "active", "business_id": business_id}
                result = await hold_result(
                    c, held, current=fresh, answered=held, replayed=held.replayed
                )
                # A replay must not hand back a dead hold as if it were live: take a new one
                # under a key derived from the dead hold, so a retry replays that one (and if
                # it died too, the next link of the chain). Bounded: each link is a new hold.
                for _ in range(5):
                    if not (held.replayed and result["status"] != "active"):
                        break
                    held = await take(
                        c,
                        backend.idempotency_key(
                            "hold_slot:reissue", {"hold": result["hold_id"]}, seed=key
                        ),
                    )
                    result = await hold_result(c, held, replayed=held.replayed)
                return ok(result)
            except SlotguardError as err:
                tz = await _zone_or_utc(business_id)
                return failure(err, tz=tz)

        return await guarded(run)

    async def _zone_or_utc(business_id: str | None) -> str:
        if not business_id:
            return "UTC"
        try:
            return await backend.zone(business_id)
        except SlotguardError:
            return "UTC"

    @mcp.tool(title="Get a hold", annotations=READ)
    async def get_hold(
        hold_id: Annotated[str, Field(description="hld_…")],
    ) -> Annotated[CallToolResult, m.HoldResult]:
        """A hold's status, slots and time left (expires_in_seconds)."""

        async def run(c: AsyncClient) -> CallToolResult:
            return ok(await hold_result(c, {"hold_id": hold_id}))

        return await guarded(run)

    @mcp.tool(
        title="Release a hold",
        annotations=_ann(read_only=False, destructive=True, idempotent=True),
    )
    async def release_hold(
        hold_id: Annotated[str, Field(description="hld_…")],
    ) -> Annotated[CallToolResult, m.HoldResult]:
        """Give a held slot back at once (releasing twice is fine)."""

        async def run(c: AsyncClient) -> CallToolResult:
            released = await c.holds.release(hold_id)
            return ok(await hold_result(c, released, current=released))

        return await guarded(run)

    # -- bookings ------------------------------------------------------------------------

    async def current_booking(
        c: AsyncClient, booking: ClientBooking, **extra: Any
    ) -> m.BookingResult:
        """After a replay, report the booking as it is now (it may have changed since)."""
        if booking.replayed:
            now = await c.bookings.get(booking.id)
            return await booking_result(
                backend, now, replayed=True, **({"request_id": booking.request_id} | extra)
            )
        return await booking_result(backend, booking, **extra)

    @mcp.tool(
        title="Confirm a hold",
        annotations=_ann(read_only=False, destructive=False, idempotent=True, open_world=True),
    )
    async def confirm_hold(
        hold_id: Annotated[str, Field(description="hld_… from hold_slot")],
        start: Annotated[
            str | None, Field(description="Which held slot; default the first")
        ] = None,
        customer_email: str | None = None,
        customer_name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        attendees: Attendees = None,
        metadata: Metadata = None,
        idempotency_key: IdemKey = None,
    ) -> Annotated[CallToolResult, m.BookingResult]:
        """Turn a hold into a confirmed booking (calendar entry and emails follow). Confirming
        an already confirmed hold returns that booking with already_confirmed: true."""
        fields: dict[str, Any] = {
            "start": start,
            "customer_email": customer_email,
            "customer_name": customer_name,
            "title": title,
            "description": description,
            "attendees": attendees,
            "metadata": metadata,
        }
        key = idempotency_key or backend.idempotency_key(
            "confirm_hold", {"hold_id": hold_id, **fields}
        )

        async def run(c: AsyncClient) -> CallToolResult:
            try:
                conf = await c.bookings.confirm(hold_id, idempotency_key=key, **fields)
            except SlotguardError as err:
                booking_id = err.details.get("booking_id")
                if err.code == "hold_already_confirmed" and isinstance(booking_id, str):
                    existing = await c.bookings.get(booking_id)
                    return ok(await booking_result(backend, existing, already_confirmed=True))
                raise
            booking = conf.booking
            booking.replayed = conf.replayed
            booking.request_id = conf.request_id
            return ok(await current_booking(c, booking))

        return await guarded(run)

    @mcp.tool(
        title="Book a time",
        annotations=_ann(read_only=False, destructive=False, idempotent=True, open_world=True),
    )
    async def book(
        start: Tz,
        business_id: BusinessId = None,
        owner_email: OwnerEmail = None,
        end: Annotated[str | None, Field(description="Default: the meeting class's length")] = None,
        meeting_class: MeetingClassArg = None,
        customer_email: str | None = None,
        customer_name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        attendees: Attendees = None,
        metadata: Metadata = None,
        idempotency_key: IdemKey = None,
    ) -> Annotated[CallToolResult, m.BookingResult]:
        """Book exactly this time in one step (calendar entry and emails follow). The time is
        re-checked atomically; if it is taken you get a conflict with the next free time."""
        fields: dict[str, Any] = {
            "business_id": business_id,
            "owner_email": owner_email,
            "start_time": start,
            "end_time": end,
            "meeting_class": meeting_class,
            "customer_email": customer_email,
            "customer_name": customer_name,
            "title": title,
            "description": description,
            "attendees": attendees,
            "metadata": metadata,
        }
        key = idempotency_key or backend.idempotency_key("book", fields)

        async def run(c: AsyncClient) -> CallToolResult:
            try:
                booking = await c.bookings.create(idempotency_key=key, **fields)
            except SlotguardError as err:
                if err.code != "conflict":
                    raise
                return await conflict_with_alternative(
                    c, err, business_id, owner_email, start, end, meeting_class
                )
            return ok(await current_booking(c, booking))

        return await guarded(run)

    async def conflict_with_alternative(
        c: AsyncClient,
        err: SlotguardError,
        business_id: str | None,
        owner_email: str | None,
        start: str,
        end: str | None,
        meeting_class: str | None,
    ) -> CallToolResult:
        """A refused time, with the next free one from the dry-run check when there is one."""
        tz = "UTC"
        try:
            res = await c.availability.check(
                business_id=business_id,
                owner_email=owner_email,
                start_time=start,
                end_time=end,
                meeting_class=meeting_class,
            )
            tz = await backend.zone(str(res["business_id"]))
            if res.get("next_available"):
                err.details["_next_available"] = res["next_available"]
        except SlotguardError:
            pass  # no availability:read scope, or the business is gone: no alternative
        return failure(err, tz=tz)

    @mcp.tool(title="List bookings", annotations=READ)
    async def list_bookings(
        business_id: Annotated[str | None, Field(description="Only this business")] = None,
        start: Annotated[str | None, Field(description="Bookings starting at or after")] = None,
        end: Annotated[str | None, Field(description="Bookings starting before")] = None,
        status: Annotated[
            list[Literal["confirmed", "cancelled", "preempted"]] | None,
            Field(description="Default: every status"),
        ] = None,
        customer_email: str | None = None,
        updated_since: str | None = None,
        limit: Annotated[int, Field(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, Field(description="next_cursor of the previous page")] = None,
    ) -> Annotated[CallToolResult, m.BookingList]:
        """Bookings, sorted by start. Follow next_cursor while has_more is true before you
        conclude that something is absent."""

        async def run(c: AsyncClient) -> CallToolResult:
            page = await c.bookings.list(
                business_id=business_id,
                start=start,
                end=end,
                status=status,
                customer_email=customer_email,
                updated_since=updated_since,
                limit=limit,
                cursor=cursor,
            )
            items = [await booking_result(backend, b) for b in page.items]
            return ok(
                m.BookingList(bookings=items, next_cursor=page.next_cursor, has_more=page.has_more)
            )

        return await guarded(run)

    @mcp.tool(title="Get a booking", annotations=READ)
    async def get_booking(
        booking_id: Annotated[str, Field(description="bk_…")],
    ) -> Annotated[CallToolResult, m.BookingResult]:
        """One booking, with its version (pass it as expected_version when changing it)."""

        async def run(c: AsyncClient) -> CallToolResult:
            return ok(await booking_result(backend, await c.bookings.get(booking_id)))

        return await guarded(run)

    @mcp.tool(
        title="Cancel a booking",
        annotations=_ann(read_only=False, destructive=True, idempotent=True, open_world=True),
    )
    async def cancel_booking(
        booking_id: Annotated[str, Field(description="bk_…")],
        reason: str | None = None,
        expected_version: Annotated[
            int | None, Field(ge=1, description="Fail if the booking changed since this version")
        ] = None,
        idempotency_key: IdemKey = None,
    ) -> Annotated[CallToolResult, m.BookingResult]:
        """Cancel a booking and free its time at once (people are emailed). Cancelling a
        cancelled booking returns it unchanged."""
        key = idempotency_key or backend.idempotency_key(
            "cancel_booking",
            {"booking_id": booking_id, "reason": reason, "expected_version": expected_version},
        )

        async def run(c: AsyncClient) -> CallToolResult:
            booking = await c.bookings.cancel(
                booking_id, reason=reason, if_match=expected_version, idempotency_key=key
            )
            return ok(await current_booking(c, booking))

        return await guarded(run)

    @mcp.tool(
        title="Move a booking",
        annotations=_ann(read_only=False, destructive=True, idempotent=True, open_world=True),
    )
    async def reschedule_booking(
        booking_id: Annotated[str, Field(description="bk_…")],
        start: Tz,
        end: Annotated[str | None, Field(description="Default: keep the length")] = None,
        expected_version: Annotated[
            int | None, Field(ge=1, description="Fail if the booking changed since this version")
        ] = None,
        idempotency_key: IdemKey = None,
    ) -> Annotated[CallToolResult, m.BookingResult]:
        """Move a booking to a new time (same id, version + 1; people are emailed). If the new
        time is taken, the booking stays as it was and you get the conflict."""
        key = idempotency_key or backend.idempotency_key(
            "reschedule_booking",
            {"booking_id": booking_id, "start": start, "end": end, "v": expected_version},
        )

        async def run(c: AsyncClient) -> CallToolResult:
            try:
                booking = await c.bookings.reschedule(
                    booking_id,
                    start_time=start,
                    end_time=end,
                    if_match=expected_version,
                    idempotency_key=key,
                )
            except SlotguardError as err:
                if err.code != "conflict":
                    raise
                current = await c.bookings.get(booking_id)
                length = _parse(str(current["end_time"])) - _parse(str(current["start_time"]))
                finish = end or _utc(_parse(start) + length)
                return await conflict_with_alternative(
                    c, err, current.business_id, None, start, finish, current.meeting_class
                )
            return ok(await current_booking(c, booking))

        return await guarded(run)

    # -- why -----------------------------------------------------------------------------

    @mcp.tool(title="Explain a decision", annotations=READ)
    async def explain_decision(
        booking_id: Annotated[str | None, Field(description="bk_…")] = None,
        hold_id: Annotated[str | None, Field(description="hld_…")] = None,
        request_id: Annotated[
            str | None, Field(description="req_… from a result or a failure")
        ] = None,
    ) -> Annotated[CallToolResult, m.Explanation]:
        """Why something was accepted or refused: the audit records of one booking, hold or
        request, oldest first, and a short summary you can repeat to a person."""
        given = {"booking_id": booking_id, "hold_id": hold_id, "request_id": request_id}
        chosen = {k: v for k, v in given.items() if v}
        if len(chosen) != 1:
            return failure(
                SlotguardError(
                    "Give exactly one of booking_id, hold_id, request_id.",
                    status=422,
                    code="validation_error",
                    details={
                        "fields": [{"field": k, "message": "give exactly one"} for k in given]
                    },
                )
            )

        async def run(c: AsyncClient) -> CallToolResult:
            rows: list[m.AuditRow] = []
            async for a in c.audit_log.list_all(limit=200, **chosen):
                actor = a.get("actor") or {}
                rows.append(
                    m.AuditRow(
                        id=a.id,
                        at=str(a["at"]),
                        action=a.action,
                        decision=a.decision,
                        reason=a.reason,
                        business_id=a.business_id,
                        hold_id=a.hold_id,
                        booking_id=a.booking_id,
                        meeting_class=a.meeting_class,
                        agent_id=actor.get("agent_id"),
                        request_id=a.get("request_id"),
                        details=dict(a.details or {}),
                    )
                )
                if len(rows) >= 500:
                    break
            raw = [r.model_dump() for r in rows]
            blockers = await _blockers(c, rows)
            return ok(m.Explanation(summary=summarize(raw, blockers), rows=rows))

        return await guarded(run)

    async def _blockers(c: AsyncClient, rows: list[m.AuditRow]) -> list[str]:
        """For the last refusal over a booking: which bookings (class, priority) were there."""
        refused = [r for r in rows if r.decision == "reject" and r.reason == "overlaps_booking"]
        if not refused or not refused[-1].business_id:
            return []
        last = refused[-1]
        start, end = last.details.get("start_time"), last.details.get("end_time")
        if not (start and end):
            return []
        try:
            classes = {x.name: x.priority async for x in c.meeting_classes.list_all(limit=200)}
            page = await c.bookings.list(
                business_id=last.business_id,
                status="confirmed",
                start=_utc(_parse(start) - dt.timedelta(days=1)),
                end=end,
                limit=200,
            )
        except SlotguardError:
            return []  # e.g. no bookings:read scope: the summary stays without names
        s, e = _parse(start), _parse(end)
        mine = classes.get(last.meeting_class or "default")
        out = []
        for b in page.items:
            if _parse(str(b["start_time"])) < e and _parse(str(b["end_time"])) > s:
                p = classes.get(b.meeting_class)
                out.append(
                    f"booking {b.id} ({b.meeting_class}, priority {p}"
                    + (f" vs. yours {mine}" if mine is not None else "")
                    + ")"
                )
        return out

    return mcp
