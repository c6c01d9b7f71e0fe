"""What each run cost and whether it could reuse an earlier result; every retry's reason.

Revision ID: 0030
Revises: 0001
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0030"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("enrichment_runs") as batch:
        batch.add_column(sa.Column("fingerprint", sa.String(length=64), nullable=True))
        batch.add_column(
            sa.Column("force", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    op.create_index(
        "ix_enrichment_runs_fingerprint", "enrichment_runs", ["fingerprint", "finished_at"]
    )
    # GET /metrics reads what ended since its last scrape.
    op.create_index("ix_enrichment_runs_finished_at", "enrichment_runs", ["finished_at"])
    op.create_index("ix_enrichment_stages_finished_at", "enrichment_stages", ["finished_at"])
    with op.batch_alter_table("enrichment_stages") as batch:
        batch.add_column(sa.Column("prompt_tokens", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("completion_tokens", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("cached", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    op.create_table(
        "enrichment_retries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["enrichment_runs.id"],
            name=op.f("fk_enrichment_retries_run_id_enrichment_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrichment_retries")),
    )
    op.create_index("ix_enrichment_retries_run_id", "enrichment_retries", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_enrichment_retries_run_id", table_name="enrichment_retries")
    op.drop_table("enrichment_retries")
    with op.batch_alter_table("enrichment_stages") as batch:
        batch.drop_column("cached")
        batch.drop_column("completion_tokens")
        batch.drop_column("prompt_tokens")
    op.drop_index("ix_enrichment_stages_finished_at", table_name="enrichment_stages")
    op.drop_index("ix_enrichment_runs_finished_at", table_name="enrichment_runs")
    op.drop_index("ix_enrichment_runs_fingerprint", table_name="enrichment_runs")
    with op.batch_alter_table("enrichment_runs") as batch:
        batch.drop_column("force")
        batch.drop_column("fingerprint")
