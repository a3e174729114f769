"""Every string the API accepts fits the column it is stored in, on both stores.

The test walks every request body model of the API and, for each string field, the columns
it lands in: the model's table by field name, or the columns named in `STORED_AS`. The
bound of the field (its max_length, the longest literal or zone name, the email limit) must
fit the column as the migrations built it, reflected from a migrated database of each store.
A new request model must be placed in `MODEL_TABLES` or `NOT_STORED` before this passes.
"""

from __future__ import annotations

import inspect
import types
import typing
import zoneinfo
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from annotated_types import MaxLen
from email_validator.rfc_constants import EMAIL_MAX_LENGTH
from pydantic import AfterValidator, BaseModel, EmailStr, StringConstraints
from sqlalchemy import String
from sqlalchemy import inspect as sa_inspect

from slotguard.api import calendar_schemas, schemas, schemas_agents, webhook_schemas
from slotguard.domain.timezones import check_zone_name
from slotguard.store.db import Database
from slotguard.store.models import Base
from tests.conftest import Store

SCHEMA_MODULES = (schemas, schemas_agents, calendar_schemas, webhook_schemas)

# Request models whose fields are stored, by field name, in the columns of this table.
MODEL_TABLES: dict[str, str] = {
    "BusinessCreate": "businesses",
    "BusinessUpdate": "businesses",
    "MeetingClassCreate": "meeting_classes",
    "MeetingClassUpdate": "meeting_classes",
    "BusyCreate": "busy_intervals",
    "BookingCreate": "bookings",
    "BookingUpdate": "bookings",
    "BookingCancel": "bookings",
    "HoldConfirm": "bookings",
    "AgentCreate": "agents",
    "AgentUpdate": "agents",
    "ApiKeyCreate": "api_keys",
    "WebhookEndpointCreate": "webhook_endpoints",
    "WebhookEndpointUpdate": "webhook_endpoints",
    "CalendarCreate": "calendars",
    "CalendarUpdate": "calendars",
}
# (model, field) stored under other names, or in more places than its table's column.
STORED_AS: dict[tuple[str, str], tuple[str, ...]] = {
    ("BookingCancel", "reason"): ("bookings.cancellation_reason", "audit_log.reason"),
    ("CalendarCreate", "calendar_id"): ("calendars.provider_calendar_id",),
    # Credentials are stored encrypted together, in one unbounded text column.
    ("CalendarCreate", "username"): ("calendars.credentials",),
    ("CalendarCreate", "password"): ("calendars.credentials",),
    ("CalendarCreate", "refresh_token"): ("calendars.credentials",),
    ("CalendarUpdate", "username"): ("calendars.credentials",),
    ("CalendarUpdate", "password"): ("calendars.credentials",),
    ("CalendarUpdate", "refresh_token"): ("calendars.credentials",),
}
# Fields that are looked up (an unknown value is refused), never stored as sent.
LOOKUPS = {"business_id", "owner_email", "meeting_class"}
# Request models nested in a JSON column of their parent, or never stored.
NOT_STORED = {
    "Attendee",  # bookings.attendees (JSON)
    "Window",  # where a hold looks; the held slots are instants
    "HoldCreate",  # its fields are lookups, numbers and a window
    "BookingReschedule",  # instants only
    "RotateSecret",  # a number
}

ZONE_NAME_MAX = max(len(name) for name in zoneinfo.available_timezones())


def request_models() -> dict[str, type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}
    for module in SCHEMA_MODULES:
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseModel)
                and obj.__module__ == module.__name__
                and obj.model_config.get("extra") == "forbid"
                and not name.startswith("_")
                and obj.model_fields  # not a bare base class
            ):
                found[name] = obj
    return found


def string_bound(annotation: Any, metadata: list[Any]) -> int | Literal["none"] | None:
    """The longest string a field accepts: an int, None (unbounded) or "none" (no string)."""
    bounds: list[int | None] = []

    def walk(tp: Any, meta: list[Any]) -> None:
        origin = get_origin(tp)
        if origin is Annotated:
            inner, *extra = get_args(tp)
            walk(inner, [*meta, *extra])
        elif origin in (Union, types.UnionType):
            for arg in get_args(tp):
                walk(arg, meta)
        elif origin is Literal:
            bounds.append(max(len(str(v)) for v in get_args(tp)))
        elif tp is EmailStr:
            bounds.append(EMAIL_MAX_LENGTH)
        elif tp is str:
            limits = [m.max_length for m in meta if isinstance(m, StringConstraints | MaxLen)]
            limits = [n for n in limits if n is not None]
            zone = any(isinstance(m, AfterValidator) and m.func is check_zone_name for m in meta)
            if zone:
                limits.append(ZONE_NAME_MAX)
            bounds.append(min(limits) if limits else None)
        elif tp is type(None) or origin in (list, dict) or inspect.isclass(tp):
            pass  # not a string (structured values go to JSON columns)
        elif isinstance(tp, typing.TypeAliasType):
            walk(tp.__value__, meta)

    walk(annotation, list(metadata))
    if not bounds:
        return "none"
    if None in bounds:
        return None
    return max(b for b in bounds if b is not None)


def planned_fits() -> list[tuple[str, str, int | None]]:
    """(model.field, table.column, field bound) for every stored string field."""
    models = request_models()
    unplaced = sorted(set(models) - set(MODEL_TABLES) - NOT_STORED)
    assert not unplaced, f"place these request models in MODEL_TABLES or NOT_STORED: {unplaced}"
    tables = Base.metadata.tables
    rows = []
    for name, table in MODEL_TABLES.items():
        model = models[name]
        for field, info in model.model_fields.items():
            bound = string_bound(info.annotation, info.metadata)
            if bound == "none" or field in LOOKUPS:
                continue
            targets = STORED_AS.get((name, field))
            if targets is None:
                assert field in tables[table].columns, (
                    f"{name}.{field}: no column {table}.{field}; add it to STORED_AS"
                )
                targets = (f"{table}.{field}",)
            for target in targets:
                rows.append((f"{name}.{field}", target, bound))
    return rows


def test_every_stored_string_field_is_placed() -> None:
    rows = planned_fits()
    assert ("BookingCancel.reason", "audit_log.reason") in {(r[0], r[1]) for r in rows}
    assert len(rows) > 20


async def column_lengths(db: Database) -> dict[str, int | None]:
    def reflect(conn: Any) -> dict[str, int | None]:
        inspector = sa_inspect(conn)
        lengths: dict[str, int | None] = {}
        for table in inspector.get_table_names():
            for column in inspector.get_columns(table):
                kind = column["type"]
                length = kind.length if isinstance(kind, String) else None
                lengths[f"{table}.{column['name']}"] = length
        return lengths

    async with db.read_engine.connect() as conn:
        return await conn.run_sync(reflect)


async def test_string_limits_fit_their_columns(store: Store) -> None:
    """On each store, reflected from the database the migrations built."""
    lengths = await column_lengths(store.db)
    misfits = []
    for field, target, bound in planned_fits():
        assert target in lengths, f"{field}: {target} is not in the migrated {store.name} schema"
        length = lengths[target]
        if length is None:
            continue  # TEXT, JSON: unbounded
        if bound is None or bound > length:
            misfits.append(f"{field} accepts {bound or 'any length'}; {target} holds {length}")
    assert not misfits, "\n".join(misfits)


async def test_migrations_build_the_declared_lengths(store: Store) -> None:
    """The tables the migrations build hold what the models declare (limits are one fact)."""
    lengths = await column_lengths(store.db)
    drift = []
    for table in Base.metadata.tables.values():
        for column in table.columns:
            if isinstance(column.type, String) and column.type.length is not None:
                name = f"{table.name}.{column.name}"
                if lengths.get(name) != column.type.length:
                    drift.append(
                        f"{name}: model {column.type.length}, database {lengths.get(name)}"
                    )
    assert not drift, "\n".join(drift)
