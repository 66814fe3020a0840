"""Tasks indexed by run and task id, not by run alone.

Ending the task an outcome is for names both its id (the primary key) and its run. Before
the table's statistics are first gathered the planner may take either index for it, and by
run alone it read every task the run ever had: a step of a long run cost more the longer
the run. Either index now finds the task directly.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_tasks_run_id_task_id", "tasks", ["run_id", "task_id"])
    op.drop_index("ix_tasks_run_id", table_name="tasks")


def downgrade() -> None:
    op.create_index("ix_tasks_run_id", "tasks", ["run_id"])
    op.drop_index("ix_tasks_run_id_task_id", table_name="tasks")
