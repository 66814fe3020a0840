"""Parent-close policy of child runs, and the per-node workflow version registry.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(
            sa.Column("parent_close_policy", sa.String(16), nullable=False, server_default="cancel")
        )
    op.create_table(
        "nodes",
        sa.Column("node_id", sa.String(255), primary_key=True),
        sa.Column("workflow", sa.String(255), primary_key=True),
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("heartbeat_at", sa.Float, nullable=False),
    )
    op.create_index("ix_nodes_workflow_version", "nodes", ["workflow", "version"])


def downgrade() -> None:
    op.drop_table("nodes")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("parent_close_policy")
