"""booking pages, manage tokens, dashboard sessions

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 10:00:00
"""

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _at(name: str, nullable: bool = True) -> sa.Column[dt.datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "booking_pages",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("business_id", sa.String(length=40), nullable=False),
        sa.Column("meeting_class", sa.String(length=64), nullable=True),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("duration_minutes", sa.Integer(), nullable=True),
        sa.Column("days_ahead", sa.Integer(), nullable=False),
        _at("created_at", nullable=False),
        _at("updated_at", nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_booking_pages_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["business_id"],
            ["businesses.id"],
            name=op.f("fk_booking_pages_business_id_businesses"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_booking_pages")),
        sa.UniqueConstraint("slug", name=op.f("uq_booking_pages_slug")),
    )
    op.create_index(
        "ix_booking_pages_account_id", "booking_pages", ["account_id", "id"], unique=False
    )
    # Which visitor (and client address) holds what from a public page: the abuse limits
    # (one live hold per visitor per page, a cap per address) are counted from these rows.
    op.create_table(
        "page_holds",
        sa.Column("hold_id", sa.String(length=40), nullable=False),
        sa.Column("page_id", sa.String(length=40), nullable=False),
        sa.Column("visitor", sa.String(length=64), nullable=False),
        sa.Column("client_addr", sa.String(length=64), nullable=False),
        _at("expires_at", nullable=False),
        _at("created_at", nullable=False),
        sa.PrimaryKeyConstraint("hold_id", name=op.f("pk_page_holds")),
    )
    op.create_index("ix_page_holds_visitor", "page_holds", ["page_id", "visitor", "expires_at"])
    op.create_index("ix_page_holds_addr", "page_holds", ["client_addr", "expires_at"])
    op.create_table(
        "manage_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("booking_id", sa.String(length=40), nullable=False),
        sa.Column("page_id", sa.String(length=40), nullable=True),
        _at("created_at", nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_manage_tokens")),
    )
    op.create_index("ix_manage_tokens_booking", "manage_tokens", ["booking_id"])
    # One-time login links and the sessions they open, both stored as hashes.
    op.create_table(
        "dashboard_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),  # login | session
        sa.Column("account_id", sa.String(length=40), nullable=False),
        _at("expires_at", nullable=False),
        _at("used_at"),
        _at("created_at", nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_dashboard_tokens")),
    )


def downgrade() -> None:
    op.drop_table("dashboard_tokens")
    op.drop_index("ix_manage_tokens_booking", table_name="manage_tokens")
    op.drop_table("manage_tokens")
    op.drop_index("ix_page_holds_addr", table_name="page_holds")
    op.drop_index("ix_page_holds_visitor", table_name="page_holds")
    op.drop_table("page_holds")
    op.drop_index("ix_booking_pages_account_id", table_name="booking_pages")
    op.drop_table("booking_pages")
