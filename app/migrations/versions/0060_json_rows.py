"""issueflow_rows(json): a JSON list's elements, one row each, that the planner takes for
one row (PostgreSQL).

The mark buffer's flush (``pipelines.marks``) updates the rows its JSON lists name.
Joined straight to ``json_to_recordset``, which the planner always takes for 100 rows,
those UPDATEs were hash joins over a sequential scan of ``issues`` and of every
``enrichment_stages`` row, in the generic plan of a statement prepared once per
connection: one flush cost 1.5-2 ms of the server's CPU with 1,500 runs in the tables,
and more as they grew. Through this function the planner takes a list for one row and
looks each one up by its primary key, whatever the tables' size and statistics. STRICT
keeps it from being inlined (an inlined body would be 100 rows again). SQLite has no
such statement: nothing to do there.

Revision ID: 0060
Revises: 0050
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0060"
down_revision: str | None = "0050"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute(
        "CREATE FUNCTION issueflow_rows(list json) RETURNS SETOF json "
        "LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE ROWS 1 "
        "AS 'SELECT json_array_elements(list)'"
    )


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION issueflow_rows(json)")
