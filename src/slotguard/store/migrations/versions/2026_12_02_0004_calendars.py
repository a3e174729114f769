"""calendars: connected calendars, local busy copy, write-back state

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 10:00:00
"""

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _at(name: str, nullable: bool = True) -> sa.Column[dt.datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "calendars",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("business_id", sa.String(length=40), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("role", sa.String(length=8), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("url", sa.String(length=2000), nullable=True),
        sa.Column("provider_calendar_id", sa.String(length=500), nullable=True),
        sa.Column("settings", JSON, nullable=False),
        sa.Column("credentials", sa.Text(), nullable=True),
        sa.Column("credentials_version", sa.Integer(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        _at("last_synced_at"),
        sa.Column("last_error", JSON, nullable=True),
        sa.Column("busy_count", sa.Integer(), nullable=False),
        sa.Column("copy_generation", sa.Integer(), nullable=False),
        sa.Column("busy_packed", sa.Text(), nullable=True),
        sa.Column("cursor", sa.Text(), nullable=True),
        _at("window_start"),
        _at("window_end"),
        _at("last_full_sync_at"),
        _at("next_sync_at", nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=40), nullable=True),
        _at("lease_until"),
        _at("created_at", nullable=False),
        _at("updated_at", nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_calendars_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["business_id"], ["businesses.id"], name=op.f("fk_calendars_business_id_businesses")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calendars")),
    )
    with op.batch_alter_table("calendars", schema=None) as batch_op:
        batch_op.create_index("ix_calendars_business", ["business_id", "id"], unique=False)
        batch_op.create_index("ix_calendars_due", ["next_sync_at"], unique=False)
        batch_op.create_index(
            "uq_calendars_one_write_per_business",
            ["business_id"],
            unique=True,
            sqlite_where=sa.text("role IN ('write', 'both')"),
            postgresql_where=sa.text("role IN ('write', 'both')"),
        )

    op.create_table(
        "calendar_items",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("calendar_id", sa.String(length=40), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=1000), nullable=False),
        sa.Column("etag", sa.String(length=500), nullable=True),
        sa.Column("series_id", sa.String(length=1000), nullable=True),
        sa.Column("own_booking_id", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(
            ["calendar_id"], ["calendars.id"], name=op.f("fk_calendar_items_calendar_id_calendars")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calendar_items")),
        sa.UniqueConstraint(
            "calendar_id",
            "generation",
            "external_id",
            name=op.f("uq_calendar_items_calendar_id_generation_external_id"),
        ),
    )
    with op.batch_alter_table("calendar_items", schema=None) as batch_op:
        batch_op.create_index(
            "ix_calendar_items_series", ["calendar_id", "generation", "series_id"], unique=False
        )

    op.create_table(
        "calendar_busy",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("calendar_id", sa.String(length=40), nullable=False),
        sa.Column("business_id", sa.String(length=40), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        _at("start_at", nullable=False),
        _at("end_at", nullable=False),
        sa.ForeignKeyConstraint(
            ["calendar_id"], ["calendars.id"], name=op.f("fk_calendar_busy_calendar_id_calendars")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calendar_busy")),
    )
    with op.batch_alter_table("calendar_busy", schema=None) as batch_op:
        batch_op.create_index(
            "ix_calendar_busy_business_time", ["business_id", "start_at", "end_at"], unique=False
        )
        batch_op.create_index("ix_calendar_busy_item", ["item_id"], unique=False)
        batch_op.create_index(
            "ix_calendar_busy_calendar_gen", ["calendar_id", "generation"], unique=False
        )

    op.create_table(
        "calendar_event_links",
        sa.Column("booking_id", sa.String(length=40), nullable=False),
        sa.Column("calendar_id", sa.String(length=40), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("remote_id", sa.String(length=1000), nullable=True),
        sa.Column("etag", sa.String(length=500), nullable=True),
        sa.Column("state", sa.String(length=12), nullable=False),
        _at("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("booking_id", name=op.f("pk_calendar_event_links")),
    )
    with op.batch_alter_table("calendar_event_links", schema=None) as batch_op:
        batch_op.create_index("ix_calendar_event_links_calendar", ["calendar_id"], unique=False)


def downgrade() -> None:
    op.drop_table("calendar_event_links")
    op.drop_table("calendar_busy")
    op.drop_table("calendar_items")
    op.drop_table("calendars")
