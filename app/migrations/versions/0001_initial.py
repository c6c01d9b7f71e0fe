"""Issues, their tags, enrichment runs and their stages.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "issues",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("ai_summary", sa.Text(), nullable=True),
        sa.Column("enrichment_status", sa.String(length=16), nullable=False),
        sa.Column("enrichment_task_id", sa.String(length=64), nullable=True),
        sa.Column("enrichment_error", sa.Text(), nullable=True),
        sa.Column("enriched_at", Timestamp, nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.CheckConstraint("status IN ('open', 'closed')", name=op.f("ck_issues_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_issues")),
    )
    op.create_index("ix_issues_enrichment_status_id", "issues", ["enrichment_status", "id"])
    op.create_index("ix_issues_status_id", "issues", ["status", "id"])

    op.create_table(
        "issue_tags",
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["issue_id"],
            ["issues.id"],
            name=op.f("fk_issue_tags_issue_id_issues"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("issue_id", "tag", name=op.f("pk_issue_tags")),
    )
    op.create_index("ix_issue_tags_tag_issue_id", "issue_tags", ["tag", "issue_id"])

    op.create_table(
        "enrichment_runs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("dispatched", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("dispatch_error", sa.Text(), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("finished_at", Timestamp, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrichment_runs")),
    )
    op.create_index("ix_enrichment_runs_created_at", "enrichment_runs", ["created_at", "id"])
    op.create_index("ix_enrichment_runs_dispatched", "enrichment_runs", ["dispatched"])
    op.create_index("ix_enrichment_runs_issue_id", "enrichment_runs", ["issue_id"])
    op.create_index(
        "ix_enrichment_runs_state_created_at", "enrichment_runs", ["state", "created_at", "id"]
    )

    op.create_table(
        "enrichment_stages",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("queue", sa.String(length=32), nullable=False),
        sa.Column("task_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("retries", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", Timestamp, nullable=True),
        sa.Column("finished_at", Timestamp, nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["enrichment_runs.id"],
            name=op.f("fk_enrichment_stages_run_id_enrichment_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "position", name=op.f("pk_enrichment_stages")),
        sa.UniqueConstraint("task_id", name=op.f("uq_enrichment_stages_task_id")),
    )


def downgrade() -> None:
    op.drop_table("enrichment_stages")
    op.drop_index("ix_enrichment_runs_state_created_at", table_name="enrichment_runs")
    op.drop_index("ix_enrichment_runs_issue_id", table_name="enrichment_runs")
    op.drop_index("ix_enrichment_runs_dispatched", table_name="enrichment_runs")
    op.drop_index("ix_enrichment_runs_created_at", table_name="enrichment_runs")
    op.drop_table("enrichment_runs")
    op.drop_index("ix_issue_tags_tag_issue_id", table_name="issue_tags")
    op.drop_table("issue_tags")
    op.drop_index("ix_issues_status_id", table_name="issues")
    op.drop_index("ix_issues_enrichment_status_id", table_name="issues")
    op.drop_table("issues")
