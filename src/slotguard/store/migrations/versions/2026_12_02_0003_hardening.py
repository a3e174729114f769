"""hardening: string limits that fit their columns; four-digit years in SQLite text

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Width of the SQLite instant text, `YYYY-MM-DD HH:MM:SS.ffffff`.
INSTANT_TEXT_WIDTH = 26


def upgrade() -> None:
    # The audit row of a cancellation carries the caller's reason, which may be 1000
    # characters long (§4.5).
    with op.batch_alter_table("audit_log") as batch_op:
        batch_op.alter_column(
            "reason",
            existing_type=sa.String(length=200),
            type_=sa.String(length=1000),
            existing_nullable=True,
        )
    if op.get_bind().dialect.name == "sqlite":
        # Busy time is the only instant a caller could send from before the year 1000 (it
        # may lie in the past); such rows were written with a short year and made every read
        # of their business fail. Pad them to the fixed width.
        for column in ("start_at", "end_at"):
            op.execute(
                f"UPDATE busy_intervals SET {column} = "
                f"substr('000' || {column}, -{INSTANT_TEXT_WIDTH}) "
                f"WHERE length({column}) < {INSTANT_TEXT_WIDTH}"
            )


def downgrade() -> None:
    op.execute("UPDATE audit_log SET reason = substr(reason, 1, 200) WHERE length(reason) > 200")
    with op.batch_alter_table("audit_log") as batch_op:
        batch_op.alter_column(
            "reason",
            existing_type=sa.String(length=1000),
            type_=sa.String(length=200),
            existing_nullable=True,
        )
