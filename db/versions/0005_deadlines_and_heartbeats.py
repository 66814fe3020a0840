"""Execution deadlines of runs, and heartbeats of activity attempts.

A chain's execution deadline (``orc.start(..., timeout=)``) is kept on the run that began
it, indexed while it is set; the dispatcher clears it once it has acted on it. An attempt
keeps its heartbeat timeout, the deadline its next heartbeat must beat, and the details its
heartbeats recorded (which its retries read).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_has_deadline = sa.text("deadline_at IS NOT NULL")
_unfinished = sa.text("NOT finished")


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("deadline_at", sa.Float))
    op.create_index(
        "ix_runs_deadline_at",
        "runs",
        ["deadline_at"],
        postgresql_where=_has_deadline,
        sqlite_where=_has_deadline,
    )
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("heartbeat_timeout", sa.Float))
        batch.add_column(sa.Column("heartbeat_deadline_at", sa.Float))
        batch.add_column(sa.Column("heartbeat_details", sa.Text))
    op.create_index(
        "ix_tasks_unfinished_heartbeat",
        "tasks",
        ["heartbeat_deadline_at"],
        postgresql_where=_unfinished,
        sqlite_where=_unfinished,
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_unfinished_heartbeat", table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("heartbeat_details")
        batch.drop_column("heartbeat_deadline_at")
        batch.drop_column("heartbeat_timeout")
    op.drop_index("ix_runs_deadline_at", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("deadline_at")
