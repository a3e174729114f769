"""agents and performance: audit filters, indexes

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 10:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # -- agents (issue 11): audit rows looked up by hold and by request (explain_decision)
    op.create_index("ix_audit_account_hold", "audit_log", ["account_id", "hold_id"])
    op.create_index("ix_audit_account_request", "audit_log", ["account_id", "request_id"])


def downgrade() -> None:
    # -- agents (issue 11)
    op.drop_index("ix_audit_account_request", table_name="audit_log")
    op.drop_index("ix_audit_account_hold", table_name="audit_log")
