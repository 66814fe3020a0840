"""Retries of failed runs linked both ways, and the trace context a run is traced under.

A retry is a new run that keeps its failed original's history up to the failure: the
original names it in ``retried_to_run_id`` (so the chain's live tip skips the original) and
it names the original in ``retried_from_run_id``. ``trace_context`` holds the W3C trace
context (JSON) of the run's trace, so every process that steps the run adds to one trace.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("retried_from_run_id", sa.String(255)))
        batch.add_column(sa.Column("retried_to_run_id", sa.String(255)))
        batch.add_column(sa.Column("trace_context", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("trace_context")
        batch.drop_column("retried_to_run_id")
        batch.drop_column("retried_from_run_id")
