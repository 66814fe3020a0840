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
_limited = sa.text(
    "concurrency_key IS NOT NULL"
    " AND status IN ('queued', 'runnable', 'running', 'suspended', 'blocked')"
)
_has_deadline = sa.text("deadline_at IS NOT NULL")

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
    # A run under its workflow's concurrency limit (see orchestrator.model.limits).
    sa.Column("concurrency_key", sa.String(600)),
    sa.Column("concurrency_limit", sa.Integer),
    # A chain's execution deadline, on the run that began it; cleared once the dispatcher
    # acted on it, so its index holds the deadlines still to come.
    sa.Column("deadline_at", sa.Float),
    sa.Column("retried_from_run_id", _id),
    sa.Column("retried_to_run_id", _id),
    sa.Column("trace_context", sa.Text),
    sa.Index("ix_runs_active", "status", postgresql_where=_active, sqlite_where=_active),
    sa.Index("ix_runs_created_at", "created_at"),
    sa.Index("ix_runs_workflow_created_at", "workflow", "created_at"),
    sa.Index("ix_runs_parent_run_id", "parent_run_id"),
    sa.Index("ix_runs_correlation_id", "correlation_id"),
    # Admission counts a key's open runs and takes its oldest queued one: both read only the
    # key's runs that have not ended.
    sa.Index(
        "ix_runs_concurrency_open",
        "concurrency_key",
        "created_at",
        postgresql_where=_limited,
        sqlite_where=_limited,
    ),
    sa.Index(
        "ix_runs_deadline_at",
        "deadline_at",
        postgresql_where=_has_deadline,
        sqlite_where=_has_deadline,
    ),
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
    sa.Column("heartbeat_timeout", sa.Float),
    # The attempt's start or last heartbeat plus its heartbeat_timeout.
    sa.Column("heartbeat_deadline_at", sa.Float),
    sa.Column("heartbeat_details", sa.Text),
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
    sa.Index(
        "ix_tasks_unfinished_heartbeat",
        "heartbeat_deadline_at",
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

_unpaused = sa.text("NOT paused")

#: Schedules (see orchestrator.model.schedules): what each starts, when, and where it stands.
schedules = sa.Table(
    "schedules",
    metadata,
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
    sa.Index(
        "ix_schedules_due", "next_fire_at", postgresql_where=_unpaused, sqlite_where=_unpaused
    ),
)

#: The tips of finished top-level chains, oldest first: where retention finds the families it
#: prunes (see :mod:`orchestrator.journal.families`). Open runs, children and continued links
#: are not in it, so a step that leaves a run open never writes it. A retried run is not a tip:
#: its retry is (they share the chain's ``correlation_id``).
_closed_tip = sa.text(
    "parent_run_id IS NULL AND continued_to_run_id IS NULL AND retried_to_run_id IS NULL"
    " AND closed_at IS NOT NULL"
)
sa.Index(
    "ix_runs_closed_tips",
    runs.c.closed_at,
    runs.c.run_id,
    postgresql_where=_closed_tip,
    sqlite_where=_closed_tip,
)
