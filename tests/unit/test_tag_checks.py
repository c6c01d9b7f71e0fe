"""The tag-check figures (``lab.fresh_eval.tag_check_report``) and the checks ``--merge`` takes."""

from __future__ import annotations

import pytest

from lab.eval.rating_packet import _checked_tags
from lab.fresh_eval import tag_check_report

CHECKS = [
    {
        "given": ["build", "ui"],
        "by": {"current": ["build"], "old": ["build", "ui"]},
        "right": ["build"],
    },
    {"given": ["crash"], "by": {"current": ["crash"], "old": []}, "right": []},
    {"given": ["tests"], "by": {"current": [], "old": ["tests"]}, "right": ["tests"]},
]


def test_each_tagger_is_scored_on_its_own_tags() -> None:
    current, old = tag_check_report(CHECKS)
    assert current.startswith(
        "  current: 2 tagged issues, 1 of 2 tags judged right: precision 0.500"
    )
    assert "build 1/1, crash 0/1" in current
    assert old.startswith("  old: 2 tagged issues, 2 of 3 tags judged right: precision 0.667")
    assert "build 1/1, tests 1/1, ui 0/1" in old


def test_a_check_of_one_tagger_alone_counts_as_current() -> None:
    (line,) = tag_check_report([{"given": ["ui", "docs"], "right": ["docs"]}])
    assert "1 of 2 tags judged right: precision 0.500 (docs 1/1, ui 0/1)" in line


@pytest.mark.parametrize("right", [None, "build", ["build", "ui"]])
def test_an_answer_must_judge_a_subset_of_the_given_tags(right: object) -> None:
    with pytest.raises(SystemExit, match="subset"):
        _checked_tags({"id": "x", "given": ["build"], "right": right})


def test_the_rater_note_stays_with_the_packet() -> None:
    answer = _checked_tags({"id": "x", "given": ["build"], "right": [], "note": "a template"})
    assert "note" not in answer
    assert answer["right"] == []
