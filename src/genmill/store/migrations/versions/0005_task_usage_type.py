"""task usage type

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 01:00:00.000000

A task shows PiAPI's `meta.usage.type` of its catalog entry ("quota", "point" for Luma and Kling 3.0, "llm" for
LLM calls). It is kept with the task, as its price is, so every view of it (GET, history, events, webhooks)
says the same and an older task keeps what it was billed as.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("usage_type", sa.String(16), nullable=False, server_default="quota"))


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("usage_type")
