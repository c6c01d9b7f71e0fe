"""The web-search query language written as FTS5 expressions (SQLite's search)."""

from __future__ import annotations

import sqlite3

import pytest

from app.search import fts5_query, is_search_object


@pytest.mark.parametrize(
    ("query", "expression"),
    [
        ("crash", '("crash")'),
        ("crash on save", '("crash" AND "on" AND "save")'),
        ('"dark mode" flicker', '("dark mode" AND "flicker")'),
        ("dark or light", '("dark") OR ("light")'),
        ("dark OR light theme", '("dark") OR ("light" AND "theme")'),
        ("mode -dark", '(("mode")) NOT ("dark")'),
        ('mode -"dark theme"', '(("mode")) NOT ("dark theme")'),
        ('say "hi', '("say" AND "hi")'),
        ('a"b', '("a""b")'),
        ("foo-bar", '("foo-bar")'),
    ],
)
def test_web_search_syntax_becomes_quoted_fts5_terms(query: str, expression: str) -> None:
    assert fts5_query(query) == expression


@pytest.mark.parametrize("query", ["", "   ", "!!!", '"', "or", "-", "-dark", "or or"])
def test_a_query_without_a_word_to_find_is_none(query: str) -> None:
    assert fts5_query(query) is None


@pytest.mark.parametrize(
    "query",
    ['"', "NEAR(a b)", "a AND", "(", "*", "title:x", "^a", 'x" OR "y', "a + b", "-a -b c"],
)
def test_every_expression_is_valid_fts5(query: str) -> None:
    expression = fts5_query(query)
    connection = sqlite3.connect(":memory:")
    try:
        connection.execute("CREATE VIRTUAL TABLE t USING fts5(title, body)")
        connection.execute("INSERT INTO t VALUES ('a b c', 'x y title')")
        if expression is not None:
            connection.execute("SELECT rowid FROM t WHERE t MATCH ?", (expression,)).fetchall()
    finally:
        connection.close()


def test_only_the_search_objects_are_left_out_of_model_comparison() -> None:
    assert is_search_object("issues_fts", "table")
    assert is_search_object("issues_fts_data", "table")
    assert is_search_object("search", "column")
    assert is_search_object("ix_issues_search", "index")
    assert not is_search_object("issues", "table")
    assert not is_search_object("title", "column")
    assert not is_search_object("ix_issues_status_id", "index")
