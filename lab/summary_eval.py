"""Scoring of summaries against the annotated evaluation set (``lab/eval/eval_set.jsonl``).

``summary_report(rows, summaries)`` — ``rows`` are eval-set rows joined with the issue's
``title`` and ``body``; ``summaries[i]`` is the summary of ``rows[i]``. It measures what
issue 9 asks of a summary, without a judge:

- **fact coverage**: the share of annotated facts (verbatim key specifics, see
  ``lab/eval/ANNOTATION.md``) that the summary carries (case-insensitive substring);
  also for the title alone and for title + summary (what a maintainer sees);
- **adds information over the title**, on issues that have a body: the summary carries an
  annotated fact that the title does not (``adds_fact``), or at least
  ``NEW_TOKENS`` content words that the title does not (``adds_words``); ``adds_info`` is
  either of the two;
- **degenerate cases**: empty, the title alone (its words are all in the title), the
  title alone although the body has prose (a sentence of three or more words that is
  not code, a log line or template text), a dangling first sentence ("It crashes."),
  over :data:`SUMMARY_MAX`, a cut inside a word.

It is a proxy for the 1-5 rating of issue 9, not a replacement: read the outputs too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pipelines.providers.summary import SUMMARY_MAX, is_dangling, is_prose, tokens
from pipelines.providers.text import clean_issue_text, split_sentences

NEW_TOKENS = 4
_SPACE = re.compile(r"\s+")
_WORD_END = re.compile(r"(\w+)…$")


def _norm(text: str) -> str:
    return _SPACE.sub(" ", text.replace("`", "").lower()).strip()


def _has(text: str, fact: str) -> bool:
    return _norm(fact) in text


def _cut_mid_word(summary: str, source: str) -> bool:
    """A summary ending in "word…" where "word" is not a whole word of the issue."""
    match = _WORD_END.search(summary)
    if not match:
        return False
    word = match.group(1)
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", source) is None


def summary_report(rows: Sequence[dict[str, Any]], summaries: Sequence[str]) -> dict[str, Any]:
    if len(rows) != len(summaries):
        raise ValueError(f"{len(rows)} rows but {len(summaries)} summaries")
    if not rows:
        raise ValueError("no rows to score")
    facts_total = facts_summary = facts_title = facts_seen = 0
    new_facts_total = new_facts_summary = 0
    with_body = adds_fact = adds_words = adds_info = 0
    with_prose = title_only_with_prose = 0
    empty = title_only = dangling = too_long = mid_word = 0
    lengths: list[int] = []
    per_issue_coverage: list[float] = []
    examples: dict[str, list[str]] = {"title_only_with_prose": [], "dangling": [], "empty": []}
    for row, summary in zip(rows, summaries, strict=True):
        title = row.get("title") or ""
        body = row.get("body") or ""
        facts = list(row.get("facts") or [])
        s_norm, t_norm = _norm(summary), _norm(title)
        lengths.append(len(summary))
        in_summary = [f for f in facts if _has(s_norm, f)]
        in_title = [f for f in facts if _has(t_norm, f)]
        seen = [f for f in facts if _has(s_norm, f) or _has(t_norm, f)]
        new = [f for f in facts if not _has(t_norm, f)]
        facts_total += len(facts)
        facts_summary += len(in_summary)
        facts_title += len(in_title)
        facts_seen += len(seen)
        new_facts_total += len(new)
        new_facts_summary += sum(1 for f in new if _has(s_norm, f))
        if facts:
            per_issue_coverage.append(len(in_summary) / len(facts))

        title_tokens = set(tokens(title))
        summary_tokens = set(tokens(summary))
        is_title_only = bool(summary.strip()) and summary_tokens <= title_tokens
        prose = any(is_prose(s) for s in split_sentences(clean_issue_text("", body)[:20_000]))
        if not summary.strip():
            empty += 1
            examples["empty"].append(row.get("id", "?"))
        if is_title_only:
            title_only += 1
        if prose:
            with_prose += 1
            if is_title_only:
                title_only_with_prose += 1
                examples["title_only_with_prose"].append(row.get("id", "?"))
        sentences = split_sentences(summary)
        if sentences and is_dangling(sentences[0]):
            dangling += 1
            examples["dangling"].append(row.get("id", "?"))
        if len(summary) > SUMMARY_MAX:
            too_long += 1
        if _cut_mid_word(summary, f"{title}\n{body}"):
            mid_word += 1
        if body.strip():
            with_body += 1
            fact_added = any(_has(s_norm, f) for f in new)
            words_added = len(summary_tokens - title_tokens) >= NEW_TOKENS
            adds_fact += fact_added
            adds_words += words_added
            adds_info += fact_added or words_added

    n = len(rows)
    return {
        "issues": n,
        "with_body": with_body,
        "with_prose": with_prose,
        "fact_coverage": facts_summary / facts_total if facts_total else 0.0,
        "fact_coverage_mean_per_issue": (
            sum(per_issue_coverage) / len(per_issue_coverage) if per_issue_coverage else 0.0
        ),
        "fact_coverage_title": facts_title / facts_total if facts_total else 0.0,
        "fact_coverage_title_plus_summary": facts_seen / facts_total if facts_total else 0.0,
        "new_fact_coverage": new_facts_summary / new_facts_total if new_facts_total else 0.0,
        "adds_info": adds_info / with_body if with_body else 0.0,
        "adds_fact": adds_fact / with_body if with_body else 0.0,
        "adds_words": adds_words / with_body if with_body else 0.0,
        "degenerate": {
            "empty": empty,
            "title_only": title_only,
            "title_only_with_prose": title_only_with_prose,
            "dangling": dangling,
            "over_length": too_long,
            "cut_mid_word": mid_word,
        },
        "mean_chars": sum(lengths) / n,
        "examples": examples,
    }


def format_report(report: dict[str, Any]) -> str:
    """The report as aligned text lines (for ``scripts/eval``)."""
    d = report["degenerate"]
    lines = [
        f"summary: issues {report['issues']} (with body {report['with_body']}, "
        f"with prose {report['with_prose']}), mean {report['mean_chars']:.0f} chars",
        f"  fact coverage          {report['fact_coverage']:.3f} "
        f"(title alone {report['fact_coverage_title']:.3f}, title+summary "
        f"{report['fact_coverage_title_plus_summary']:.3f}, facts not in title "
        f"{report['new_fact_coverage']:.3f})",
        f"  adds info over title   {report['adds_info']:.3f} "
        f"(a new fact {report['adds_fact']:.3f}, >= {NEW_TOKENS} new words "
        f"{report['adds_words']:.3f})",
        f"  degenerate             empty {d['empty']}, title-only {d['title_only']} "
        f"(with prose in body {d['title_only_with_prose']}), dangling {d['dangling']}, "
        f"over length {d['over_length']}, cut mid-word {d['cut_mid_word']}",
    ]
    return "\n".join(lines)


def load_rows(eval_path: str, data_path: str) -> list[dict[str, Any]]:
    """Eval-set rows joined with title and body from the data file by (repo, id)."""
    import json
    from pathlib import Path

    def read(path: str) -> list[dict[str, Any]]:
        text = Path(path).read_text(encoding="utf-8")
        return [json.loads(line) for line in text.split("\n") if line.strip()]

    data = {(r["repo"], r["id"]): r for r in read(data_path)}
    rows = []
    for row in read(eval_path):
        issue = data.get((row["repo"], row["id"]))
        if issue is None:
            raise KeyError(f"{row['repo']} {row['id']} is not in {data_path}")
        rows.append({**row, "title": issue["title"], "body": issue["body"]})
    return rows


if __name__ == "__main__":
    import sys
    from pathlib import Path

    from pipelines.providers.summary import summarise

    root = Path(__file__).resolve().parents[1]
    eval_path = sys.argv[1] if len(sys.argv) > 1 else str(root / "lab/eval/eval_set.jsonl")
    data_path = (
        sys.argv[2] if len(sys.argv) > 2 else str(root.parent / "shared/data/nlbse24_train.jsonl")
    )
    rows = load_rows(eval_path, data_path)
    print(format_report(summary_report(rows, [summarise(r["title"], r["body"]) for r in rows])))
