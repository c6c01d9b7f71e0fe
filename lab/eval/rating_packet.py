"""A rating packet: what a rater reads to rate a fresh sample's summaries by hand (issue 9).

``python -m lab.eval.rating_packet holdout5 --part 1/2 --out DIR`` writes ``DIR/packet.md``
(each issue of that part of the sample: its key, repository, title, body and the summary the
offline provider writes for it now) and ``DIR/answers.jsonl`` (one line per issue with the key
filled in and the rater's fields empty). The rater needs nothing else: not the code, not the
type label, not the tagger's topics (the topics are annotated blind, with
``lab/eval/ANNOTATION.md``). ``--merge DIR...`` appends the raters' answers to
``fresh_ratings.jsonl`` after checking every field.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lab.eval.fresh_sample import fresh_samples
from lab.eval.sample import DATA, read_jsonl
from pipelines.providers.local import LocalProvider
from pipelines.providers.topics import DEFAULT_TAXONOMY

RATINGS = Path(__file__).resolve().parent / "fresh_ratings.jsonl"
BODY_SHOWN = 8_000  # characters of a body in the packet; the rest is said to be cut

RUBRIC = """\
Rate each summary 1-5 for how useful it is to a maintainer skimming a triage queue:
5 says what the issue is about and its key specifics; 4 clear, with some specifics;
3 the gist, about what the title gives; 2 vague, you must open the issue; 1 misleading
or empty. Rate the title alone the same way (`title_rating`). `adds_info`: does the
summary tell something the title does not (true/false; null when the body has no prose
at all). `topics`: the topic tags that truly apply to the issue, from
{taxonomy}, following lab/eval/ANNOTATION.md (never from template, checklist or
system-information text). `note`: one line on why, for any rating below 4.
"""


def _part(rows: list[dict[str, Any]], part: str) -> list[dict[str, Any]]:
    index, _, count = part.partition("/")
    k, n = int(index), int(count)
    if not 1 <= k <= n:
        raise SystemExit(f"--part {part}: expected K/N with 1 <= K <= N")
    return rows[k - 1 :: n]


def write_packet(sample: str, part: str, out: Path, data: Path) -> int:
    texts = {(r["repo"], r["id"]): r for r in read_jsonl(data)}
    chosen = _part(fresh_samples(list(texts.values()))[sample], part)
    provider = LocalProvider()
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# Rating packet: {sample}, part {part} ({len(chosen)} issues)", ""]
    lines += [RUBRIC.format(taxonomy=", ".join(DEFAULT_TAXONOMY)), ""]
    answers = []
    for n, key in enumerate(chosen, 1):
        row = texts[(key["repo"], key["id"])]
        body = row["body"] or ""
        cut = ""
        if len(body) > BODY_SHOWN:
            cut = f"\n[... {len(body) - BODY_SHOWN} more characters cut]"
        shown = body[:BODY_SHOWN]
        summary = provider.summarise(row["title"], body)
        lines += [
            f"## {n}. {key['id']} ({key['repo']})",
            "",
            f"**Title:** {row['title']}",
            "",
            "**Body:**",
            "",
            "~~~~text",
            shown + cut,
            "~~~~",
            "",
            f"**Summary:** {summary}",
            "",
        ]
        answers.append(
            {
                "sample": sample,
                "repo": key["repo"],
                "id": key["id"],
                "label": key["label"],
                "rating": None,
                "title_rating": None,
                "adds_info": None,
                "topics": [],
                "note": "",
            }
        )
    (out / "packet.md").write_text("\n".join(lines), encoding="utf-8")
    (out / "answers.jsonl").write_text(
        "".join(json.dumps(a, ensure_ascii=False) + "\n" for a in answers), encoding="utf-8"
    )
    return len(chosen)


def _checked(answer: dict[str, Any]) -> dict[str, Any]:
    where = f"{answer.get('id')}"
    for field in ("rating", "title_rating"):
        if answer.get(field) not in (1, 2, 3, 4, 5):
            raise SystemExit(f"{where}: {field} must be 1-5, not {answer.get(field)!r}")
    if answer.get("adds_info") not in (True, False, None):
        raise SystemExit(f"{where}: adds_info must be true, false or null")
    unknown = set(answer.get("topics", [])) - set(DEFAULT_TAXONOMY)
    if unknown:
        raise SystemExit(f"{where}: unknown topics {sorted(unknown)}")
    answer.pop("note", None)  # the notes stay with the packet; the ratings file holds figures
    return answer


def merge(dirs: Sequence[Path]) -> int:
    taken = {(r["sample"], r["id"]) for r in read_jsonl(RATINGS)}
    new = [_checked(a) for d in dirs for a in read_jsonl(d / "answers.jsonl")]
    again = [a["id"] for a in new if (a["sample"], a["id"]) in taken]
    if again:
        raise SystemExit(f"already in {RATINGS.name}: {again[:5]}")
    with RATINGS.open("a", encoding="utf-8") as f:
        for answer in new:
            f.write(json.dumps(answer, ensure_ascii=False) + "\n")
    return len(new)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.eval.rating_packet", description=__doc__)
    parser.add_argument("sample", nargs="?", default="holdout5")
    parser.add_argument("--part", default="1/1", help="K/N: every N-th issue from the K-th")
    parser.add_argument("--out", type=Path, help="the packet's directory")
    parser.add_argument("--merge", type=Path, nargs="+", help="answers to add to the ratings")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args(argv)
    if args.merge:
        print(f"{merge(args.merge)} ratings added to {RATINGS}")
        return 0
    if args.out is None:
        parser.error("--out DIR (or --merge DIR...)")
    count = write_packet(args.sample, args.part, args.out, args.data)
    print(f"{count} issues: {args.out / 'packet.md'}, answers in {args.out / 'answers.jsonl'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
