"""Schedules, and the concurrency key and limit of runs.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_limited = sa.text(
    "concurrency_key IS NOT NULL"
    " AND status IN ('queued', 'runnable', 'running', 'suspended', 'blocked')"
)
_unpaused = sa.text("NOT paused")


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("concurrency_key", sa.String(600)))
        batch.add_column(sa.Column("concurrency_limit", sa.Integer))
    op.create_index(
        "ix_runs_concurrency_open",
        "runs",
        ["concurrency_key", "created_at"],
        postgresql_where=_limited,
        sqlite_where=_limited,
    )
    op.create_table(
        "schedules",
        sa.Column("schedule_id", sa.String(255), primary_key=True),
        sa.Column("workflow", sa.String(255), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("args", sa.Text, nullable=False),
        sa.Column("cron", sa.String(255)),
        sa.Column("every", sa.Float),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("overlap", sa.String(16), nullable=False),
        sa.Column("catchup_window", sa.Float, nullable=False),
        sa.Column("concurrency_key", sa.String(600)),
        sa.Column("concurrency_limit", sa.Integer),
        sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("next_fire_at", sa.Float, nullable=False),
        sa.Column("last_slot_at", sa.Float),
        sa.Column("last_run_id", sa.String(255)),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index(
        "ix_schedules_due",
        "schedules",
        ["next_fire_at"],
        postgresql_where=_unpaused,
        sqlite_where=_unpaused,
    )


def downgrade() -> None:
    op.drop_table("schedules")
    op.drop_index("ix_runs_concurrency_open", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("concurrency_limit")
        batch.drop_column("concurrency_key")
