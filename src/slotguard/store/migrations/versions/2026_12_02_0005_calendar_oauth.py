"""calendar oauth: OAuth states and token refresh leases

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 10:00:00
"""

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _at(name: str, nullable: bool = True) -> sa.Column[dt.datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "oauth_states",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("business_id", sa.String(length=40), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("role", sa.String(length=8), nullable=False),
        sa.Column("provider_calendar_id", sa.String(length=500), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("redirect_uri", sa.String(length=2000), nullable=False),
        sa.Column("verifier", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(length=40), nullable=True),
        _at("created_at", nullable=False),
        _at("expires_at", nullable=False),
        _at("used_at"),
        sa.Column("calendar_id", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_oauth_states_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["business_id"], ["businesses.id"], name=op.f("fk_oauth_states_business_id_businesses")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_states")),
    )
    with op.batch_alter_table("oauth_states", schema=None) as batch_op:
        batch_op.create_index("ix_oauth_states_expires", ["expires_at"], unique=False)

    op.create_table(
        "calendar_oauth_tokens",
        sa.Column("calendar_id", sa.String(length=40), nullable=False),
        sa.Column("access_token", sa.Text(), nullable=True),
        _at("expires_at"),
        sa.Column("lease_owner", sa.String(length=40), nullable=True),
        _at("lease_until"),
        _at("refreshed_at"),
        sa.Column("refresh_count", sa.Integer(), nullable=False),
        sa.Column("refused_version", sa.Integer(), nullable=True),
        _at("updated_at", nullable=False),
        sa.ForeignKeyConstraint(
            ["calendar_id"],
            ["calendars.id"],
            name=op.f("fk_calendar_oauth_tokens_calendar_id_calendars"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("calendar_id", name=op.f("pk_calendar_oauth_tokens")),
    )


def downgrade() -> None:
    op.drop_table("calendar_oauth_tokens")
    op.drop_table("oauth_states")
