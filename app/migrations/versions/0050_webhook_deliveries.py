"""Webhook deliveries: the outbox of issue.enriched and run.failed events.

Revision ID: 0050
Revises: 0040
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0050"
down_revision: str | None = "0040"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("dispatched", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["enrichment_runs.id"],
            name=op.f("fk_webhook_deliveries_run_id_enrichment_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        # One delivery per run and event: a redelivered persist records nothing twice.
        sa.UniqueConstraint("run_id", "event", name="uq_webhook_deliveries_run_id_event"),
    )
    # GET /webhooks/deliveries?state=failed, newest first; and the list without a filter.
    op.create_index(
        "ix_webhook_deliveries_state_created_at",
        "webhook_deliveries",
        ["state", "created_at", "id"],
    )
    op.create_index("ix_webhook_deliveries_created_at", "webhook_deliveries", ["created_at", "id"])
    # The outbox sweeper looks for deliveries no task message carries.
    op.create_index("ix_webhook_deliveries_dispatched", "webhook_deliveries", ["dispatched"])


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_dispatched", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_created_at", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_state_created_at", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
