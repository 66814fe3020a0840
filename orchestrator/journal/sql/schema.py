"""The declared schema: one portable definition for Postgres and SQLite.

The Alembic migrations under ``db/`` must produce exactly this schema; a test applies them to
one database and compares the result with these tables. Times are epoch seconds (``Float``)
so that comparisons mean the same thing on both backends. Partial indexes keep the
dispatcher's queries proportional to the work waiting, not to the number of runs.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

#: Statuses that may need a replay (the dispatcher's partial index covers only these).
ACTIVE_STATUSES = ("runnable", "running", "blocked")

_id = sa.String(255)
_active = sa.text("status IN ('runnable', 'running', 'blocked')")

runs = sa.Table(
    "runs",
    metadata,
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
    sa.Column("parent_close_policy", sa.String(16), nullable=False, server_default="cancel"),
    sa.Index("ix_runs_active", "status", postgresql_where=_active, sqlite_where=_active),
    sa.Index("ix_runs_created_at", "created_at"),
    sa.Index("ix_runs_workflow_created_at", "workflow", "created_at"),
    sa.Index("ix_runs_parent_run_id", "parent_run_id"),
    sa.Index("ix_runs_correlation_id", "correlation_id"),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("run_id", _id, primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("command_id", sa.Integer),
    sa.Column("attempt", sa.Integer),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
)

_pending = sa.text("NOT absorbed")

inbox = sa.Table(
    "inbox",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("run_id", _id, nullable=False),
    sa.Column("dedupe_key", sa.String(255), nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("command_id", sa.Integer),
    sa.Column("attempt", sa.Integer),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    # Absorbed rows stay until the run ends: they keep their dedupe key taken.
    sa.Column("absorbed", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.UniqueConstraint("run_id", "dedupe_key", name="uq_inbox_run_dedupe"),
    sa.Index("ix_inbox_pending", "run_id", "id", postgresql_where=_pending, sqlite_where=_pending),
)

_unfinished = sa.text("NOT finished")

tasks = sa.Table(
    "tasks",
    metadata,
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
    # How an ended attempt ended (completed, failed, timed_out) and when, for the metrics.
    sa.Column("outcome", sa.String(16)),
    sa.Column("finished_at", sa.Float),
    # By run and id: ending an awaited task names both, and either index then finds it.
    sa.Index("ix_tasks_run_id_task_id", "run_id", "task_id"),
    sa.Index(
        "ix_tasks_unfinished_available",
        "available_at",
        postgresql_where=_unfinished,
        sqlite_where=_unfinished,
    ),
    sa.Index(
        "ix_tasks_unfinished_deadline",
        "deadline_at",
        postgresql_where=_unfinished,
        sqlite_where=_unfinished,
    ),
)

timers = sa.Table(
    "timers",
    metadata,
    sa.Column("run_id", _id, primary_key=True),
    sa.Column("command_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("fire_at", sa.Float, nullable=False),
    sa.Index("ix_timers_fire_at", "fire_at"),
)

nodes = sa.Table(
    "nodes",
    metadata,
    sa.Column("node_id", sa.String(255), primary_key=True),
    sa.Column("workflow", sa.String(255), primary_key=True),
    sa.Column("version", sa.String(64), primary_key=True),
    sa.Column("heartbeat_at", sa.Float, nullable=False),
    sa.Index("ix_nodes_workflow_version", "workflow", "version"),
)
