"""The lab's topic report: counts per tag, and the cue it names for each tag."""

from __future__ import annotations

from typing import Any

from lab.topics_eval import cue_name, per_tag, tag_rows


def _row(title: str, body: str, topics: list[str]) -> dict[str, Any]:
    return {
        "source": "t",
        "repo": "o/r",
        "id": title,
        "topics": topics,
        "title": title,
        "body": body,
    }


def test_per_tag_counts_given_right_and_annotated() -> None:
    rows = [
        _row("Segfault on start", "", ["crash"]),  # right
        _row("Slow startup", "", []),  # wrong: performance not annotated
        _row("Docs are wrong", "", ["documentation", "tests"]),  # tests missed
    ]
    tag_rows(rows, with_summary=False)
    table = per_tag(rows)
    assert table["crash"] == {"given": 1, "right": 1, "annotated": 1}
    assert table["performance"] == {"given": 1, "right": 0, "annotated": 0}
    assert table["tests"] == {"given": 0, "right": 0, "annotated": 1}
    assert table["all"] == {"given": 3, "right": 2, "annotated": 3}


def test_each_tag_names_the_cue_that_gave_it() -> None:
    rows = [_row("Slow startup", "", [])]
    tag_rows(rows, with_summary=False)
    assert rows[0]["given"] == ["performance"]
    name = cue_name(rows[0]["evidence"]["performance"])
    assert name.startswith("performance [title] 'slow")
