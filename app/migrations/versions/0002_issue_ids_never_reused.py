"""Issue ids are never reused, on SQLite too (AUTOINCREMENT).

SQLite gives a new row ``max(id) + 1`` unless the table was created with AUTOINCREMENT:
deleting the newest issue made its id, and so its runs, belong to the next new issue.
The table is recreated (batch mode) with AUTOINCREMENT and the counter starts above every
id an issue or a run ever had. PostgreSQL's sequence never hands out an id twice; it is
only moved up when rows were written with explicit ids above it (a restore, say), so that
a run's issue id is never given to a new issue there either.

Recreating ``issues`` drops it, and with foreign keys on (they always are, app.db) that
deletes every ``issue_tags`` row by cascade: the tags are kept aside and put back.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Timestamp = sa.DateTime(timezone=True)


def _issues(*, autoincrement: bool) -> sa.Table:
    """The issues table as 0001 made it, with or without AUTOINCREMENT."""
    return sa.Table(
        "issues",
        sa.MetaData(),
        sa.Column("id", sa.Integer(), primary_key=True),
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
        sa.CheckConstraint("status IN ('open', 'closed')", name="ck_issues_status"),
        sa.Index("ix_issues_enrichment_status_id", "enrichment_status", "id"),
        sa.Index("ix_issues_status_id", "status", "id"),
        sqlite_autoincrement=autoincrement,
    )


def _recreate_issues(*, autoincrement: bool) -> None:
    op.execute("CREATE TEMPORARY TABLE issue_tags_kept AS SELECT * FROM issue_tags")
    with op.batch_alter_table(
        "issues",
        recreate="always",
        copy_from=_issues(autoincrement=autoincrement),
        table_kwargs={"sqlite_autoincrement": autoincrement},
    ):
        pass
    op.execute(
        "INSERT INTO issue_tags (issue_id, tag, position) "
        "SELECT issue_id, tag, position FROM issue_tags_kept"
    )
    op.execute("DROP TABLE issue_tags_kept")


# The highest id an issue or a run ever had.
_TOP_ID = (
    "SELECT max(top) FROM (SELECT max(id) AS top FROM issues"
    " UNION ALL SELECT max(issue_id) FROM enrichment_runs) AS ids"
)


def upgrade() -> None:
    if op.get_context().dialect.name != "sqlite":
        op.execute(
            "SELECT setval(pg_get_serial_sequence('issues', 'id'), top) "
            f"FROM ({_TOP_ID}) AS highest (top) WHERE top > (SELECT CASE WHEN is_called "
            "THEN last_value ELSE last_value - 1 END FROM issues_id_seq)"
        )
        return
    _recreate_issues(autoincrement=True)
    # Start above every id ever given out: a deleted issue's runs still carry its id.
    op.execute("DELETE FROM sqlite_sequence WHERE name = 'issues'")
    op.execute(f"INSERT INTO sqlite_sequence (name, seq) SELECT 'issues', coalesce(({_TOP_ID}), 0)")


def downgrade() -> None:
    if op.get_context().dialect.name != "sqlite":
        return
    _recreate_issues(autoincrement=False)
