"""Finished top-level chains indexed by close time, for retention.

Retention takes the oldest finished families first, found from their top-level chains'
tips (see ``orchestrator.journal.families``). The index holds only those tips, so the open
runs' steps never write it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_CLOSED_TIP = (
    "parent_run_id IS NULL AND continued_to_run_id IS NULL AND retried_to_run_id IS NULL"
    " AND closed_at IS NOT NULL"
)


def upgrade() -> None:
    op.create_index(
        "ix_runs_closed_tips",
        "runs",
        ["closed_at", "run_id"],
        postgresql_where=sa.text(_CLOSED_TIP),
        sqlite_where=sa.text(_CLOSED_TIP),
    )


def downgrade() -> None:
    op.drop_index("ix_runs_closed_tips", table_name="runs")
