"""The journal: runs, events, inbox, outbox tasks and timers.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_id = sa.String(255)
_active = sa.text("status IN ('runnable', 'running', 'blocked')")
_pending = sa.text("NOT absorbed")
_unfinished = sa.text("NOT finished")


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("run_id", _id, primary_key=True),
        sa.Column("workflow", sa.String(255), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("args", sa.Text, nullable=False),
        sa.Column("result", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("reason", sa.Text),
        sa.Column("parent_run_id", _id),
        sa.Column("parent_command_id", sa.Integer),
        sa.Column("correlation_id", _id, nullable=False),
        sa.Column("continued_from_run_id", _id),
        sa.Column("continued_to_run_id", _id),
        sa.Column("lease_owner", sa.String(255)),
        sa.Column("lease_token", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("lease_expires_at", sa.Float),
        sa.Column("last_seq", sa.Integer, nullable=False, server_default="0"),
        sa.Column("dispatched_at", sa.Float),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("closed_at", sa.Float),
    )
    op.create_index(
        "ix_runs_active", "runs", ["status"], postgresql_where=_active, sqlite_where=_active
    )
    op.create_index("ix_runs_created_at", "runs", ["created_at"])
    op.create_index("ix_runs_workflow_created_at", "runs", ["workflow", "created_at"])
    op.create_index("ix_runs_parent_run_id", "runs", ["parent_run_id"])
    op.create_index("ix_runs_correlation_id", "runs", ["correlation_id"])

    op.create_table(
        "events",
        sa.Column("run_id", _id, primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("command_id", sa.Integer),
        sa.Column("attempt", sa.Integer),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )

    op.create_table(
        "inbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("run_id", _id, nullable=False),
        sa.Column("dedupe_key", sa.String(255), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("command_id", sa.Integer),
        sa.Column("attempt", sa.Integer),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("absorbed", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.UniqueConstraint("run_id", "dedupe_key", name="uq_inbox_run_dedupe"),
    )
    op.create_index(
        "ix_inbox_pending",
        "inbox",
        ["run_id", "id"],
        postgresql_where=_pending,
        sqlite_where=_pending,
    )

    op.create_table(
        "tasks",
        sa.Column("task_id", sa.String(512), primary_key=True),
        sa.Column("run_id", _id, nullable=False),
        sa.Column("command_id", sa.Integer, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("task_name", sa.String(255), nullable=False),
        sa.Column("args", sa.Text, nullable=False),
        sa.Column("kwargs", sa.Text, nullable=False),
        sa.Column("queue", sa.String(255)),
        sa.Column("timeout_seconds", sa.Float),
        sa.Column("target_activity_id", sa.Integer),
        sa.Column("available_at", sa.Float, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("published_at", sa.Float),
        sa.Column("started_at", sa.Float),
        sa.Column("deadline_at", sa.Float),
        sa.Column("finished", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_tasks_run_id", "tasks", ["run_id"])
    op.create_index(
        "ix_tasks_unfinished_available",
        "tasks",
        ["available_at"],
        postgresql_where=_unfinished,
        sqlite_where=_unfinished,
    )
    op.create_index(
        "ix_tasks_unfinished_deadline",
        "tasks",
        ["deadline_at"],
        postgresql_where=_unfinished,
        sqlite_where=_unfinished,
    )

    op.create_table(
        "timers",
        sa.Column("run_id", _id, primary_key=True),
        sa.Column("command_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("fire_at", sa.Float, nullable=False),
    )
    op.create_index("ix_timers_fire_at", "timers", ["fire_at"])


def downgrade() -> None:
    for table in ("timers", "tasks", "inbox", "events", "runs"):
        op.drop_table(table)
