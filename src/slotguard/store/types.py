"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator, TypeEngine

UTC = dt.UTC


class UTCDateTime(TypeDecorator[dt.datetime]):
    """An instant. `timestamptz` on PostgreSQL; naive UTC text on SQLite.

    SQLite has no time zone type, so values are normalised to UTC and written in the
    fixed-width text SQLAlchemy itself uses (`YYYY-MM-DD HH:MM:SS.ffffff`), which sorts and
    compares exactly like the instants. The text is read back with `datetime.fromisoformat`
    (C speed) rather than SQLAlchemy's generic string parser: availability reads thousands
    of instants a request.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String())
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            # `isoformat` pads the year to four digits (strftime's %Y does not before 1000),
            # so the text is fixed width and text order is time order.
            return value.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            return dt.datetime.fromisoformat(value).replace(tzinfo=UTC)
        assert isinstance(value, dt.datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        if value.tzinfo is UTC:
            return value
        return value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")
