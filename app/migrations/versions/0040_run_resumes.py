"""Stalled runs resumed: each stage's result kept, and how often a run was resumed.

Revision ID: 0040
Revises: 0030
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0040"
down_revision: str | None = "0030"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("enrichment_stages") as batch:
        batch.add_column(sa.Column("result", sa.JSON(), nullable=True))
    with op.batch_alter_table("enrichment_runs") as batch:
        batch.add_column(
            sa.Column("resumes", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch.add_column(sa.Column("resumed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("resumed_from", sa.String(length=32), nullable=True))
    # GET /metrics counts the resumed runs: only they have a resumed_at.
    op.create_index("ix_enrichment_runs_resumed_at", "enrichment_runs", ["resumed_at"])


def downgrade() -> None:
    op.drop_index("ix_enrichment_runs_resumed_at", table_name="enrichment_runs")
    with op.batch_alter_table("enrichment_runs") as batch:
        batch.drop_column("resumed_from")
        batch.drop_column("resumed_at")
        batch.drop_column("resumes")
    with op.batch_alter_table("enrichment_stages") as batch:
        batch.drop_column("result")
