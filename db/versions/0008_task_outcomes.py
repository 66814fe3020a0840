"""Each ended activity attempt keeps how it ended and when.

The metrics endpoint counts attempts per task and outcome and draws their durations from
the tasks table alone, one aggregate query, instead of joining every outcome event to the
task it ended.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("outcome", sa.String(16)))
    op.add_column("tasks", sa.Column("finished_at", sa.Float))


def downgrade() -> None:
    op.drop_column("tasks", "finished_at")
    op.drop_column("tasks", "outcome")
