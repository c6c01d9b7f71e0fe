"""The hand-check figures of lab: tag checks (``lab.fresh_eval.tag_check_report``) and the
answers ``rating_packet --merge`` takes (A, B, ... summaries mapped back by the packet's key)."""

from __future__ import annotations

import pytest

from lab.eval.rating_packet import _checked, _checked_tags, _letters
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


KEY = {
    "baseline": "fifth",
    "reference": None,
    "shown": {
        "one": {"a": ["current"], "b": ["baseline"]},
        "two": {"a": ["baseline"], "b": ["current"]},
        "three": {"a": ["current", "baseline"]},
    },
}
THREE = {
    "baseline": "sixth",
    "reference": "by hand",
    "shown": {"four": {"a": ["reference"], "b": ["baseline", "current"]}},
}


def rated(issue: str, **fields: object) -> dict[str, object]:
    return {"id": issue, "title_rating": 3, "topics": [], "note": "", **fields}


@pytest.mark.parametrize(("issue", "ours", "theirs"), [("one", 5, 2), ("two", 2, 5)])
def test_two_summaries_rated_as_a_and_b_are_mapped_back_by_the_key(
    issue: str, ours: int, theirs: int
) -> None:
    answer = rated(issue, rating_a=5, adds_info_a=True, rating_b=2, adds_info_b=False)
    checked = _checked(answer, KEY)
    assert (checked["rating"], checked["rating_baseline"]) == (ours, theirs)
    assert checked["adds_info"] is (ours == 5)
    assert checked["baseline"] == "fifth"
    assert not {"rating_a", "rating_b", "adds_info_a", "adds_info_b"} & set(checked)


def test_one_summary_shown_is_both_revisions_rating() -> None:
    checked = _checked(rated("three", rating=4, adds_info=True), KEY)
    assert (checked["rating"], checked["rating_baseline"]) == (4, 4)
    assert checked["adds_info_baseline"] is True


def test_a_reference_rated_beside_a_shared_summary_is_mapped_to_its_own_fields() -> None:
    answer = rated("four", rating_a=5, adds_info_a=True, rating_b=3, adds_info_b=False)
    checked = _checked(answer, THREE)
    assert (checked["rating_reference"], checked["adds_info_reference"]) == (5, True)
    assert (checked["rating"], checked["rating_baseline"]) == (3, 3)
    assert (checked["baseline"], checked["reference"]) == ("sixth", "by hand")


def test_a_letter_left_unrated_is_refused() -> None:
    with pytest.raises(SystemExit, match="rating_b must be 1-5"):
        _checked(rated("four", rating_a=5, adds_info_a=True), THREE)


def test_an_a_b_answer_without_its_key_is_refused() -> None:
    with pytest.raises(SystemExit, match=r"key\.json"):
        _checked(rated("one", rating_a=5, adds_info_a=True, rating_b=2, adds_info_b=None))


def test_letters_follow_distinct_texts_in_an_order_fixed_per_issue() -> None:
    texts = {"current": "x", "baseline": "x", "reference": "y"}
    letters = _letters("issue-1", texts)
    assert sorted(map(sorted, letters.values())) == [["baseline", "current"], ["reference"]]
    assert _letters("issue-1", texts) == letters
    orders = {tuple(_letters(f"issue-{n}", texts)["a"]) for n in range(20)}
    assert orders == {("current", "baseline"), ("reference",)}
