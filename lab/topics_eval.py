"""Topic tags on every annotated issue, with the cue behind each tag (issue 9, item 2).

``python -m lab.topics_eval [--data FILE] [--no-summary] [--misses] [--cues] [--train]
[--fires TOPIC [--cue TEXT] [--limit N] [--seed N]]``

The annotated issues are the evaluation set (``lab/eval/eval_set.jsonl``, 150) and the
hand-rated fresh samples (``lab/eval/fresh_ratings.jsonl``, 405: ``tune``, ``holdout`` …
``holdout6``), 555 in all, joined with the data file by ``(repo, id)``. Tags are those of the
local provider: the summary is read as prose beside the title and body (``--no-summary``:
title and body only, as ``lab.fresh_eval`` scores them). It prints

- per tag: given, right, precision, annotated, recall, over the 555, then per source;
- every wrong tag: the issue's key (source, repo, id), the cue that fired (the rule's
  alternative, see :func:`pipelines.providers.topics.explain`), where it fired and the text
  it matched;
- ``--misses``: every annotated topic the tagger does not give;
- ``--cues``: for each cue that decided a tag on the 555, right / given;
- ``--train``: tags given on the whole data file (1,500 issues) per tag, and per cue on the
  issues nobody annotated;
- ``--fires TOPIC``: where TOPIC's cues fire on the unannotated issues (``--cue`` keeps the
  cues containing TEXT), a seeded random sample of ``--limit``, to read and judge.

Reads no new sample: only issues already annotated, and the data file.
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lab.evaluate import DATA, EVAL_SET, read_jsonl, topic_report
from lab.fresh_eval import RATINGS
from pipelines.providers.summary import summarise
from pipelines.providers.topics import DEFAULT_TAXONOMY, Evidence, TopicTagger, explain

Key = tuple[str, str]


def annotated_rows(data: dict[Key, dict[str, Any]]) -> list[dict[str, Any]]:
    """The 555 annotated issues: ``source`` (``eval`` or the sample), ``topics``, title, body."""
    rows: list[dict[str, Any]] = []
    for path, default in ((EVAL_SET, "eval"), (RATINGS, "")):
        for row in read_jsonl(path):
            issue = data[(row["repo"], row["id"])]
            rows.append(
                {
                    "source": row.get("sample") or default,
                    "repo": row["repo"],
                    "id": row["id"],
                    "topics": [t for t in row.get("topics", []) if t in DEFAULT_TAXONOMY],
                    "title": issue.get("title") or "",
                    "body": issue.get("body") or "",
                }
            )
    return rows


def tag_rows(rows: list[dict[str, Any]], *, with_summary: bool) -> None:
    """Adds ``summary``, ``given`` (tags) and ``evidence`` (topic -> Evidence) to each row."""
    tagger = TopicTagger(DEFAULT_TAXONOMY)
    for row in rows:
        summary = summarise(row["title"], row["body"]) if with_summary else ""
        given = tagger.tags(row["title"], row["body"], summary)
        evidence: dict[str, Evidence] = {}
        for topic in given:
            found = explain(topic, row["title"], row["body"], summary)
            assert found is not None, (topic, row["id"])  # explain() mirrors tags()
            evidence[topic] = found
        row.update(summary=summary, given=given, evidence=evidence)


def per_tag(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """given / right / annotated per tag, and ``all``: ``lab.evaluate.topic_report``'s counts."""
    report = topic_report([r["topics"] for r in rows], [r["given"] for r in rows], DEFAULT_TAXONOMY)
    counts = {**report["per_tag"], "all": report}
    return {
        tag: {"given": c["predicted"], "right": c["correct"], "annotated": c["annotated"]}
        for tag, c in counts.items()
    }


def _ratio(a: int, b: int) -> str:
    return f"{a / b:.3f}" if b else "  -  "


def format_table(table: dict[str, dict[str, int]]) -> str:
    lines = [f"  {'tag':<14}{'given':>6}{'right':>6}{'P':>7}{'annot':>7}{'R':>7}"]
    for tag, c in table.items():
        lines.append(
            f"  {tag:<14}{c['given']:>6}{c['right']:>6}{_ratio(c['right'], c['given']):>7}"
            f"{c['annotated']:>7}{_ratio(c['right'], c['annotated']):>7}"
        )
    return "\n".join(lines)


def _key(row: dict[str, Any]) -> str:
    return f"{row['source']} {row['repo']} {row['id']}"


def _cue(evidence: Evidence) -> str:
    """The cue's alternative without the word-boundary wrapping every alternative shares."""
    return evidence.cue.removeprefix(r"\b(?<![-./])(?:").removesuffix(r")(?![\w-]|\.(?-i:[a-z]))")


def _describe(evidence: Evidence) -> str:
    return f"{evidence.where}: cue {_cue(evidence)!r} matched {evidence.matched!r}"


def cue_name(evidence: Evidence) -> str:
    """A cue's short name: topic, where (title / body) and the alternative."""
    where = "title" if evidence.where == "title" else "body"
    return f"{evidence.topic} [{where}] {_cue(evidence)!r}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.topics_eval", description=__doc__)
    parser.add_argument("--data", type=Path, default=DATA, help="the NLBSE'24 training file")
    parser.add_argument("--no-summary", action="store_true", help="title and body only")
    parser.add_argument("--misses", action="store_true", help="list annotated topics not given")
    parser.add_argument("--cues", action="store_true", help="right / given per deciding cue")
    parser.add_argument("--train", action="store_true", help="tags on the whole data file")
    parser.add_argument("--fires", metavar="TOPIC", help="firings on unannotated issues")
    parser.add_argument("--cue", default="", help="with --fires: cues containing this text")
    parser.add_argument("--limit", type=int, default=25, help="with --fires: how many")
    parser.add_argument("--seed", type=int, default=1, help="with --fires: sample seed")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        parser.error(f"no such file: {args.data}")

    data = {(r["repo"], r["id"]): r for r in read_jsonl(args.data)}
    rows = annotated_rows(data)
    tag_rows(rows, with_summary=not args.no_summary)
    print(
        f"{len(rows)} annotated issues, tags read from the title, the body"
        + ("" if args.no_summary else " and the summary")
    )
    print(format_table(per_tag(rows)))
    sources = list(dict.fromkeys(r["source"] for r in rows))
    print("per source (right / given / annotated; P / R):")
    for source in sources:
        c = per_tag([r for r in rows if r["source"] == source])["all"]
        print(
            f"  {source:<9} {c['right']}/{c['given']}/{c['annotated']}  "
            f"{_ratio(c['right'], c['given'])} / {_ratio(c['right'], c['annotated'])}"
        )
    print("wrong tags:")
    for row in rows:
        for topic in row["given"]:
            if topic not in row["topics"]:
                print(f"  {topic:<13} {_key(row)}  {_describe(row['evidence'][topic])}")
                print(f"  {'':<13} title: {row['title'][:110]!r}")
    if args.misses:
        print("missed (annotated, not given):")
        for row in rows:
            for topic in row["topics"]:
                if topic not in row["given"]:
                    print(f"  {topic:<13} {_key(row)}  {row['title'][:100]!r}")
    if args.cues:
        cues: dict[str, Counter[str]] = {}
        for row in rows:
            for topic, evidence in row["evidence"].items():
                c = cues.setdefault(cue_name(evidence), Counter())
                c["given"] += 1
                c["right"] += topic in row["topics"]
        print("deciding cues on the annotated issues (right / given):")
        for name, c in sorted(
            cues.items(), key=lambda kv: (kv[1]["right"] - kv[1]["given"], kv[0])
        ):
            print(f"  {c['right']:>3} / {c['given']:<3} {name}")

    if args.train or args.fires:
        annotated = {(r["repo"], r["id"]) for r in rows}
        train = [
            {
                "source": "train",
                "repo": r["repo"],
                "id": r["id"],
                "topics": [],
                "title": r.get("title") or "",
                "body": r.get("body") or "",
            }
            for r in data.values()
        ]
        tag_rows(train, with_summary=not args.no_summary)
        rest = [r for r in train if (r["repo"], r["id"]) not in annotated]
        if args.train:
            counts = Counter(t for r in train for t in r["given"])
            print(
                f"tags given on the {len(train)} issues of {args.data.name}: "
                f"{sum(counts.values())} ("
                + ", ".join(f"{t} {counts[t]}" for t in DEFAULT_TAXONOMY)
                + ")"
            )
            fired = Counter(cue_name(e) for r in rest for e in r["evidence"].values())
            print(f"deciding cues on the {len(rest)} unannotated issues:")
            for name, n in fired.most_common():
                print(f"  {n:>4} {name}")
        if args.fires:
            hits = [
                r
                for r in rest
                if args.fires in r["evidence"] and args.cue in cue_name(r["evidence"][args.fires])
            ]
            random.Random(args.seed).shuffle(hits)
            print(
                f"{args.fires} fires on {len(hits)} unannotated issues; "
                f"{min(len(hits), args.limit)} shown:"
            )
            for row in hits[: args.limit]:
                e = row["evidence"][args.fires]
                print(f"- {row['repo']} {row['id']}  {_describe(e)}")
                print(f"  title: {row['title'][:150]!r}")
                if e.where != "title":
                    text = row["summary"] + "\n" + row["body"]
                    at = text.find(e.matched)
                    if at >= 0:
                        print(f"  context: {text[max(0, at - 200) : at + 200]!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
