"""Figures of the hand-rated fresh samples (``lab/eval/fresh_ratings.jsonl``), issue 9.

``python -m lab.fresh_eval [--data FILE]`` prints, for each sample (``tune``, ``holdout``,
``holdout2``, ``holdout3``, ``holdout4``; see ``lab/eval/fresh_sample.py``): the mean of the hand
ratings of the
summaries (1-5, the rubric of issue 9) and of the title alone, their spread, the share of
issues with prose in the body whose summary adds information over the title, and the topic
tags of the *current* tagger scored against the hand-annotated topics (precision, recall,
per tag with the counts).

The ratings were given once, by one rater (the author), to the summaries of the code at the
time of rating; the tune sample was read while tuning, ``holdout`` after a first round of
fixes and ``holdout2`` after a second (the failures of both were fixed afterwards), and
``holdout3`` once on the final code of the second round (see docs/model-card.md). In the
third round ``holdout3`` was re-rated with the composing summariser (``rating_after`` and
``adds_info_after``: a before/after on the same issues, no longer held out, since they were
read while tuning) and ``holdout4`` was drawn and rated once on its final code. In the fourth
round ``holdout4`` (tuning data since the third round's follow-up) was re-rated with the
summariser of that round, all 45 summaries read again next to their issues (``rating_after``,
``adds_info_after``; not held out). Re-running this script re-scores the topics only: the
ratings are data.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lab.evaluate import DATA, format_topics, join_rows, read_jsonl, topic_report
from pipelines.providers.topics import DEFAULT_TAXONOMY, TopicTagger

RATINGS = Path(__file__).resolve().parent / "eval" / "fresh_ratings.jsonl"
SAMPLES = (
    "tune",
    "holdout",
    "holdout2",
    "holdout3",
    "holdout4",
    "holdout5",
    "holdout6",
    "holdout7",
    "holdout8",
)
TAG_CHECKS = Path(__file__).resolve().parent / "eval" / "tag_checks.jsonl"
# Whose summaries ``rating_after`` rates, by sample.
RERATED_WITH = {
    "holdout3": "the third round's summariser",
    "holdout4": "the fourth round's summariser",
}


def sample_report(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Rating figures and topic scores of the rows of one sample."""
    ratings = [int(r["rating"]) for r in rows]
    titles = [int(r["title_rating"]) for r in rows]
    with_prose = [r for r in rows if r.get("adds_info") is not None]
    tagger = TopicTagger(DEFAULT_TAXONOMY)
    predicted = [tagger.tags(r["title"], r["body"]) for r in rows]
    report: dict[str, Any] = {
        "issues": len(rows),
        "rating_mean": statistics.mean(ratings),
        "rating_stdev": statistics.stdev(ratings) if len(ratings) > 1 else 0.0,
        "title_mean": statistics.mean(titles),
        "better_than_title": sum(s > t for s, t in zip(ratings, titles, strict=True)),
        "worse_than_title": sum(s < t for s, t in zip(ratings, titles, strict=True)),
        "distribution": {k: ratings.count(k) for k in range(1, 6)},
        "with_prose": len(with_prose),
        "adds_info": sum(bool(r["adds_info"]) for r in with_prose),
        "topics": topic_report([r.get("topics", []) for r in rows], predicted, DEFAULT_TAXONOMY),
    }
    paired = [r for r in rows if "rating_baseline" in r]
    if paired:
        report["baseline"] = paired[0]["baseline"]
        report["baseline_mean"] = statistics.mean(int(r["rating_baseline"]) for r in paired)
        report["baseline_of"] = len(paired)
        report["baseline_differs"] = sum(r["rating"] != r["rating_baseline"] for r in paired)
    references = [r for r in rows if "rating_reference" in r]
    if references:
        report["reference"] = references[0]["reference"]
        report["reference_mean"] = statistics.mean(int(r["rating_reference"]) for r in references)
        report["reference_of"] = len(references)
        prose = [r for r in references if r.get("adds_info_reference") is not None]
        report["reference_adds_info"] = sum(bool(r["adds_info_reference"]) for r in prose)
        report["reference_with_prose"] = len(prose)
    before = [int(r["rating_before"]) for r in rows if "rating_before" in r]
    if before:
        report["rating_before_mean"] = statistics.mean(before)
    after = [r for r in rows if "rating_after" in r]
    if after:
        report["rating_after_mean"] = statistics.mean(int(r["rating_after"]) for r in after)
        report["rating_after_of"] = len(after)
        prose_after = [r for r in after if r.get("adds_info_after") is not None]
        report["adds_info_after"] = sum(bool(r["adds_info_after"]) for r in prose_after)
        report["with_prose_after"] = len(prose_after)
    return report


def tag_check_report(checks: Sequence[dict[str, Any]]) -> list[str]:
    """Precision of the judged tags of a tag-check sample (``rating_packet --tags``), per tag,
    for each tagger whose tags the packet joined (``by``: the tagger of the packet's time,
    ``current`` then, and an earlier one). The tags are data, like the ratings: they are not
    re-scored against today's tagger."""
    lines = []
    for name in sorted({n for c in checks for n in c.get("by", {"current": c["given"]})}):
        given: dict[str, int] = {}
        right: dict[str, int] = {}
        tagged = 0
        for check in checks:
            tags = check.get("by", {"current": check["given"]}).get(name, [])
            tagged += bool(tags)
            for tag in tags:
                given[tag] = given.get(tag, 0) + 1
                right[tag] = right.get(tag, 0) + (tag in check["right"])
        total, correct = sum(given.values()), sum(right.values())
        per_tag = ", ".join(f"{t} {right[t]}/{given[t]}" for t in sorted(given))
        lines.append(
            f"  {name}: {tagged} tagged issues, {correct} of {total} tags judged right: "
            f"precision {correct / max(total, 1):.3f} ({per_tag})"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.fresh_eval", description=__doc__)
    parser.add_argument("--data", type=Path, default=DATA, help="the NLBSE'24 training file")
    args = parser.parse_args(argv)
    rows = join_rows(read_jsonl(RATINGS), read_jsonl(args.data))
    for sample in SAMPLES:
        chosen = [r for r in rows if r["sample"] == sample]
        if not chosen:
            continue
        rep = sample_report(chosen)
        before = rep.get("rating_before_mean")
        print(
            f"{sample}: {rep['issues']} issues, summary rating mean {rep['rating_mean']:.2f} "
            f"(sd {rep['rating_stdev']:.2f}"
            + (f", before the fixes {before:.2f}" if before is not None else "")
            + f"), title alone {rep['title_mean']:.2f}; better than the title on "
            f"{rep['better_than_title']}, worse on {rep['worse_than_title']}; "
            f"adds information on {rep['adds_info']} of {rep['with_prose']} with prose "
            f"({rep['adds_info'] / max(rep['with_prose'], 1):.0%}); ratings {rep['distribution']}"
        )
        if "baseline_mean" in rep:
            print(
                f"  the same raters on {rep['baseline']}'s summaries ({rep['baseline_of']} "
                f"issues): mean {rep['baseline_mean']:.2f}; rated differently on "
                f"{rep['baseline_differs']}"
            )
        if "reference_mean" in rep:
            print(
                f"  the same raters on summaries written by {rep['reference']} "
                f"({rep['reference_of']} issues; a ceiling): mean {rep['reference_mean']:.2f}; "
                f"adds information on {rep['reference_adds_info']} of "
                f"{rep['reference_with_prose']} with prose"
            )
        if "rating_after_mean" in rep:
            print(
                f"  re-rated with {RERATED_WITH.get(sample, 'a later summariser')} "
                f"({rep['rating_after_of']} issues, "
                f"no longer held out): mean {rep['rating_after_mean']:.2f}; adds information "
                f"on {rep['adds_info_after']} of {rep['with_prose_after']} with prose "
                f"({rep['adds_info_after'] / max(rep['with_prose_after'], 1):.0%})"
            )
        print(format_topics(rep["topics"]))
    if TAG_CHECKS.exists():
        checks = read_jsonl(TAG_CHECKS)
        for sample in sorted({c["sample"] for c in checks}):
            print(f"{sample} (tag check, precision only):")
            print("\n".join(tag_check_report([c for c in checks if c["sample"] == sample])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
