"""operator tokens and idempotent top-ups

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 02:00:00.000000

The admin API authenticates operators with their own hashed, revocable tokens (never an account's API key), and
records each top-up made through it under its Idempotency-Key, so a payment webhook that retries a top-up credits
the account once.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "operator_tokens",
        sa.Column("token_id", sa.String(36), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("token_id", name=op.f("pk_operator_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_operator_tokens_token_hash")),
    )
    op.create_table(
        "topups",
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("account_id", sa.String(36), nullable=False),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.Column("operator_token_id", sa.String(36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.account_id"], name=op.f("fk_topups_account_id_accounts")),
        sa.PrimaryKeyConstraint("idempotency_key", name=op.f("pk_topups")),
    )


def downgrade() -> None:
    op.drop_table("topups")
    op.drop_table("operator_tokens")
