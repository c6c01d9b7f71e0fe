"""Full-text search over issues' title and body (app/search.py).

PostgreSQL: a generated ``tsvector`` column with a GIN index. SQLite: an FTS5
external-content table kept in sync by triggers, filled from the existing issues.
A later migration that recreates ``issues`` on SQLite (batch mode) drops the triggers
with the table and must create them again.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SQLITE_UP = [
    "CREATE VIRTUAL TABLE issues_fts USING fts5("
    "title, body, content='issues', content_rowid='id', tokenize='porter unicode61')",
    "CREATE TRIGGER issues_fts_insert AFTER INSERT ON issues BEGIN "
    "INSERT INTO issues_fts (rowid, title, body) VALUES (new.id, new.title, new.body); END",
    "CREATE TRIGGER issues_fts_delete AFTER DELETE ON issues BEGIN "
    "INSERT INTO issues_fts (issues_fts, rowid, title, body) "
    "VALUES ('delete', old.id, old.title, old.body); END",
    # Only a change of the text re-indexes: the workers' result writes do not pay for it.
    "CREATE TRIGGER issues_fts_update AFTER UPDATE OF title, body ON issues BEGIN "
    "INSERT INTO issues_fts (issues_fts, rowid, title, body) "
    "VALUES ('delete', old.id, old.title, old.body); "
    "INSERT INTO issues_fts (rowid, title, body) VALUES (new.id, new.title, new.body); END",
    "INSERT INTO issues_fts (issues_fts) VALUES ('rebuild')",
]
_SQLITE_DOWN = [
    "DROP TRIGGER issues_fts_update",
    "DROP TRIGGER issues_fts_delete",
    "DROP TRIGGER issues_fts_insert",
    "DROP TABLE issues_fts",
]
_POSTGRES_UP = [
    "ALTER TABLE issues ADD COLUMN search tsvector GENERATED ALWAYS AS ("
    "setweight(to_tsvector('english'::regconfig, title), 'A') || "
    "setweight(to_tsvector('english'::regconfig, body), 'B')) STORED",
    "CREATE INDEX ix_issues_search ON issues USING gin (search)",
]
_POSTGRES_DOWN = [
    "DROP INDEX ix_issues_search",
    "ALTER TABLE issues DROP COLUMN search",
]


def upgrade() -> None:
    sqlite = op.get_context().dialect.name == "sqlite"
    for statement in _SQLITE_UP if sqlite else _POSTGRES_UP:
        op.execute(statement)


def downgrade() -> None:
    sqlite = op.get_context().dialect.name == "sqlite"
    for statement in _SQLITE_DOWN if sqlite else _POSTGRES_DOWN:
        op.execute(statement)
