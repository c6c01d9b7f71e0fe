"""Full-text search over issues' title and body, with each database's own engine.

- PostgreSQL: ``issues.search``, a generated ``tsvector`` column (title weighted A, body
  B, English stemming) with a GIN index; queries go through ``websearch_to_tsquery`` and
  are ranked by ``ts_rank``.
- SQLite: ``issues_fts``, an FTS5 external-content table over ``issues`` kept in sync by
  triggers (porter stemming); ranked by ``bm25`` with the title weighted 4 to 1.

Both are made by migration 0003 and are not ORM-mapped (they exist on one database each);
``is_search_object`` keeps Alembic's model comparison from proposing to drop them.

The query language is the web-search one on both: words (all must match), ``"a phrase"``,
``or`` between alternatives, ``-word`` to exclude. ``fts5_query`` writes it as an FTS5
expression in which every term is a quoted string, so no input is an FTS5 syntax error.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import ColumnElement, Double, Subquery, cast, func, literal_column, select, text
from sqlalchemy.sql.elements import ColumnClause

SEARCH_COLUMN = "search"
SEARCH_INDEX = "ix_issues_search"
FTS_TABLE = "issues_fts"
TEXT_SEARCH_CONFIG = "english"
# bm25 weights of the FTS5 columns (title, body).
FTS_WEIGHTS = (4.0, 1.0)

_TOKEN = re.compile(r'(-?)"([^"]*)"?|(\S+)')
_WORD = re.compile(r"\w")


def is_search_object(name: str | None, type_: str) -> bool:
    """Whether Alembic's comparison should leave this reflected object alone."""
    if name is None:
        return False
    if type_ == "table":
        return name == FTS_TABLE or name.startswith(f"{FTS_TABLE}_")
    if type_ == "column":
        return name == SEARCH_COLUMN
    if type_ == "index":
        return name == SEARCH_INDEX
    return False


def fts5_query(query: str) -> str | None:
    """The FTS5 expression for a web-search style query; None when it has no word to find."""
    groups: list[list[str]] = [[]]
    excluded: list[str] = []
    for match in _TOKEN.finditer(query):
        negated, phrase, word = match.group(1), match.group(2), match.group(3)
        if word is not None and word.lower() == "or":
            if groups[-1]:
                groups.append([])
            continue
        if word is not None and word.startswith("-") and len(word) > 1:
            negated, word = "-", word[1:]
        term = phrase if phrase is not None else word
        if not term or not _WORD.search(term):
            continue  # punctuation alone: no token to look for
        quoted = '"' + term.replace('"', '""') + '"'
        (excluded if negated else groups[-1]).append(quoted)
    alternatives = [" AND ".join(group) for group in groups if group]
    if not alternatives:
        return None
    expression = " OR ".join(f"({alternative})" for alternative in alternatives)
    if excluded:
        expression = f"({expression}) NOT ({' OR '.join(excluded)})"
    return expression


def matches(dialect: str, query: str) -> Subquery | None:
    """``(id, rank)`` of the issues matching ``query``; a higher rank is a better match.

    None when the query can match nothing (no word in it). The rank is a double on both
    databases, so a cursor can carry it exactly.
    """
    if dialect == "postgresql":
        tsquery = func.websearch_to_tsquery(
            literal_column(f"'{TEXT_SEARCH_CONFIG}'::regconfig"), query
        )
        column: ColumnClause[Any] = literal_column(f"issues.{SEARCH_COLUMN}")
        rank: ColumnElement[float] = cast(func.ts_rank(column, tsquery), Double())
        return (
            select(literal_column("issues.id").label("id"), rank.label("rank"))
            .select_from(text("issues"))
            .where(column.op("@@")(tsquery))
            .subquery("ranked")
        )
    if dialect == "sqlite":
        expression = fts5_query(query)
        if expression is None:
            return None
        # bm25 is lower for better matches: negate it so both databases sort rank DESC.
        bm25 = -func.bm25(literal_column(FTS_TABLE), *FTS_WEIGHTS)
        return (
            select(literal_column("rowid").label("id"), cast(bm25, Double()).label("rank"))
            .select_from(text(FTS_TABLE))
            .where(literal_column(FTS_TABLE).op("MATCH")(expression))
            .subquery("ranked")
        )
    raise NotImplementedError(f"full-text search on {dialect}")
