"""A rating packet: what a rater reads to rate a fresh sample's summaries by hand (issue 9).

``python -m lab.eval.rating_packet holdout5 --part 1/2 --out DIR`` writes ``DIR/packet.md``
(each issue of that part of the sample: its key, repository, title, body and the summary the
offline provider writes for it now) and ``DIR/answers.jsonl`` (one line per issue with the key
filled in and the rater's fields empty). The rater needs nothing else: not the code, not the
type label, not the tagger's topics (the topics are annotated blind, with
``lab/eval/ANNOTATION.md``). ``--merge DIR...`` appends the raters' answers to
``fresh_ratings.jsonl`` after checking every field.

``--baseline NAME TREE`` (an earlier revision's ``app`` and ``pipelines``, from ``git archive``)
adds that revision's summary, and ``--reference NAME FILE`` a summary written by hand (JSONL:
``id``, ``summary``; what the best summary within the same limits would say, for a ceiling).
Each distinct summary of an issue is shown once, as A, B, ... in an order fixed per issue;
who wrote which goes to ``DIR/key.json`` (not for the rater), and ``--merge`` stores the
ratings as ``rating`` (the current summariser), ``rating_baseline`` and ``rating_reference``:
the same raters on the same held-out issues, none knowing which summary is whose.

``--tags`` writes a tag-check packet instead (for ``tagcheck7``): only the issues of the part to
which the tagger gives topic tags, each with those tags; the rater marks which of them are right
(``right``), following ``lab/eval/ANNOTATION.md``. It measures precision only, on more tags than a
90-issue sample gives; ``--merge`` appends such answers to ``tag_checks.jsonl``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lab.eval.fresh_sample import fresh_samples
from lab.eval.sample import DATA, read_jsonl
from pipelines.providers.local import LocalProvider
from pipelines.providers.summary import SUMMARY_MAX
from pipelines.providers.topics import DEFAULT_TAXONOMY, TopicTagger

RATINGS = Path(__file__).resolve().parent / "fresh_ratings.jsonl"
TAG_CHECKS = Path(__file__).resolve().parent / "tag_checks.jsonl"
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


TAG_RUBRIC = """\
For each issue, the tagger gave the topic tags listed under it. Mark which of them truly
apply to the issue (`right`: a subset of `given`), following lab/eval/ANNOTATION.md: a tag
is right when the issue is about that topic, never because of template, checklist or
system-information text. `note`: one line on why, for any tag you leave out.
"""


SEVERAL_SUMMARIES = """\
Where an issue shows several summaries (A, B, ...), rate each on its own with the same rubric
(`rating_a`, `rating_b`, ...; `adds_info_a`, `adds_info_b`, ...); their order says nothing.
"""

# Who wrote a summary, and the suffix of its fields in ``fresh_ratings.jsonl``.
FIELD_SUFFIX = {"current": "", "baseline": "_baseline", "reference": "_reference"}


def _part(rows: list[dict[str, Any]], part: str) -> list[dict[str, Any]]:
    index, _, count = part.partition("/")
    k, n = int(index), int(count)
    if not 1 <= k <= n:
        raise SystemExit(f"--part {part}: expected K/N with 1 <= K <= N")
    return rows[k - 1 :: n]


def _shown(n: int, row: dict[str, Any]) -> list[str]:
    """An issue as the packet shows it: its key, title and body (cut at ``BODY_SHOWN``)."""
    body = row["body"] or ""
    cut = ""
    if len(body) > BODY_SHOWN:
        cut = f"\n[... {len(body) - BODY_SHOWN} more characters cut]"
    return [
        f"## {n}. {row['id']} ({row['repo']})",
        "",
        f"**Title:** {row['title']}",
        "",
        "**Body:**",
        "",
        "~~~~text",
        body[:BODY_SHOWN] + cut,
        "~~~~",
        "",
    ]


def _letters(issue_id: str, texts: dict[str, str]) -> dict[str, list[str]]:
    """The distinct summaries of one issue as letters (``a``, ``b``, ...), each with the writers
    who gave that text, in an order fixed per issue and unknowable to the rater."""
    by_text: dict[str, list[str]] = {}
    for writer, text in texts.items():
        by_text.setdefault(text, []).append(writer)
    groups = sorted(
        by_text.values(),
        key=lambda writers: hashlib.sha256(f"{issue_id}/{writers[0]}".encode()).digest(),
    )
    return {"abcdefgh"[n]: writers for n, writers in enumerate(groups)}


def read_references(path: Path) -> dict[str, str]:
    """Reference summaries written by hand (JSONL: ``id``, ``summary``), checked against the
    limits the summariser keeps (non-empty, at most ``SUMMARY_MAX`` characters)."""
    references = {}
    for row in read_jsonl(path):
        text = str(row.get("summary") or "").strip()
        if not text or len(text) > SUMMARY_MAX:
            raise SystemExit(f"{path}: {row.get('id')}: a summary of 1-{SUMMARY_MAX} characters")
        references[str(row["id"])] = text
    return references


def write_packet(
    sample: str,
    part: str,
    out: Path,
    data: Path,
    baseline: tuple[str, Path] | None = None,
    reference: tuple[str, Path] | None = None,
) -> int:
    """With a ``baseline`` (an earlier revision's tree) or a ``reference`` (summaries written by
    hand), an issue whose summaries differ shows each distinct one as A, B, ... in an order
    fixed per issue; who wrote which goes to ``key.json``, which the rater does not read, and
    ``--merge`` maps the ratings back."""
    texts = {(r["repo"], r["id"]): r for r in read_jsonl(data)}
    chosen = _part(fresh_samples(list(texts.values()))[sample], part)
    rows = [texts[(k["repo"], k["id"])] for k in chosen]
    provider = LocalProvider()
    written: dict[str, list[str]] = {
        "current": [provider.summarise(r["title"], r["body"] or "") for r in rows]
    }
    if baseline:
        written["baseline"] = baseline_outputs(baseline[1], rows, "summary")
    if reference:
        by_id = read_references(reference[1])
        missing = [r["id"] for r in rows if r["id"] not in by_id]
        if missing:
            raise SystemExit(f"{reference[1]}: no reference summary for {missing[:5]}")
        written["reference"] = [by_id[r["id"]] for r in rows]
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# Rating packet: {sample}, part {part} ({len(chosen)} issues)", ""]
    lines += [RUBRIC.format(taxonomy=", ".join(DEFAULT_TAXONOMY)), ""]
    if len(written) > 1:
        lines += [SEVERAL_SUMMARIES, ""]
    answers = []
    shown: dict[str, dict[str, list[str]]] = {}
    for n, (sampled, row) in enumerate(zip(chosen, rows, strict=True), 1):
        lines += _shown(n, row)
        answer: dict[str, Any] = {
            "sample": sample,
            "repo": row["repo"],
            "id": row["id"],
            "label": sampled["label"],
        }
        letters = _letters(row["id"], {writer: given[n - 1] for writer, given in written.items()})
        shown[row["id"]] = letters
        if len(letters) == 1:
            lines += [f"**Summary:** {written['current'][n - 1]}", ""]
            answer |= {"rating": None, "adds_info": None}
        else:
            for letter, writers in letters.items():
                lines += [f"**Summary {letter.upper()}:** {written[writers[0]][n - 1]}", ""]
                answer |= {f"rating_{letter}": None, f"adds_info_{letter}": None}
        answers.append(answer | {"title_rating": None, "topics": [], "note": ""})
    (out / "packet.md").write_text("\n".join(lines), encoding="utf-8")
    (out / "answers.jsonl").write_text(
        "".join(json.dumps(a, ensure_ascii=False) + "\n" for a in answers), encoding="utf-8"
    )
    if len(written) > 1:
        key = {
            "baseline": baseline[0] if baseline else None,
            "reference": reference[0] if reference else None,
            "shown": shown,
        }
        (out / "key.json").write_text(json.dumps(key, indent=1))
    return len(chosen)


BASELINE = """\
import json, sys
from pipelines.providers.local import LocalProvider
from pipelines.providers.summary import SUMMARY_MAX
from pipelines.providers.topics import DEFAULT_TAXONOMY, TopicTagger
provider, tagger = LocalProvider(), TopicTagger(DEFAULT_TAXONOMY)
for line in sys.stdin.read().split("\\n"):
    if line:
        issue = json.loads(line)
        if sys.argv[1] == "tags":
            print(json.dumps(tagger.tags(issue["title"], issue["body"])))
        else:
            print(json.dumps(provider.summarise(issue["title"], issue["body"])))
"""


def baseline_outputs(tree: Path, issues: list[dict[str, Any]], what: str) -> list[Any]:
    """What an earlier revision's offline provider gives ``issues`` (``what``: ``tags``, its
    topic tags, or ``summary``): ``tree`` holds that revision's ``pipelines`` (``git archive
    REV pipelines | tar -x -C TREE``), run in a process of its own so that its modules never
    mix with the current ones."""
    lines = "".join(
        json.dumps({"title": i["title"], "body": i["body"] or ""}) + "\n" for i in issues
    )
    out = subprocess.run(
        [sys.executable, "-c", BASELINE, what],
        input=lines,
        capture_output=True,
        text=True,
        check=True,
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
    ).stdout
    return [json.loads(line) for line in out.split("\n") if line]


def write_tag_packet(
    sample: str, part: str, out: Path, data: Path, baseline: tuple[str, Path] | None = None
) -> int:
    """Only the issues to which the tagger (or the baseline's) gives topics, each with the
    union of the tags given: the rater cannot tell which tagger gave which."""
    texts = {(r["repo"], r["id"]): r for r in read_jsonl(data)}
    chosen = [
        texts[(k["repo"], k["id"])]
        for k in _part(fresh_samples(list(texts.values()))[sample], part)
    ]
    tagger = TopicTagger(DEFAULT_TAXONOMY)
    by: dict[str, list[list[str]]] = {
        "current": [tagger.tags(r["title"], r["body"] or "") for r in chosen]
    }
    if baseline:
        by[baseline[0]] = baseline_outputs(baseline[1], chosen, "tags")
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# Tag-check packet: {sample}, part {part}", "", TAG_RUBRIC, ""]
    answers: list[dict[str, Any]] = []
    for n, row in enumerate(chosen):
        given = sorted({t for tags in by.values() for t in tags[n]})
        if not given:
            continue
        lines += [*_shown(len(answers) + 1, row), f"**Tags given:** {', '.join(given)}", ""]
        answers.append(
            {
                "sample": sample,
                "repo": row["repo"],
                "id": row["id"],
                "given": given,
                "by": {name: tags[n] for name, tags in by.items()},
                "right": None,
            }
        )
    lines[0] += f" ({len(answers)} tagged issues of {len(chosen)})"
    (out / "packet.md").write_text("\n".join(lines), encoding="utf-8")
    (out / "answers.jsonl").write_text(
        "".join(json.dumps(a, ensure_ascii=False) + "\n" for a in answers), encoding="utf-8"
    )
    return len(answers)


def _checked_tags(answer: dict[str, Any]) -> dict[str, Any]:
    right = answer.get("right")
    if not isinstance(right, list) or not set(right) <= set(answer["given"]):
        raise SystemExit(f"{answer.get('id')}: right must be a list, a subset of {answer['given']}")
    answer.pop("note", None)
    return answer


def _rating(answer: dict[str, Any], field: str) -> None:
    if answer.get(field) not in (1, 2, 3, 4, 5):
        raise SystemExit(f"{answer.get('id')}: {field} must be 1-5, not {answer.get(field)!r}")


def _adds_info(answer: dict[str, Any], field: str) -> None:
    if answer.get(field) not in (True, False, None):
        raise SystemExit(f"{answer.get('id')}: {field} must be true, false or null")


def _checked(answer: dict[str, Any], key: dict[str, Any] | None = None) -> dict[str, Any]:
    """A rater's answer, checked; with the packet's ``key`` (a packet with a baseline or a
    reference), each letter's rating mapped back to its writers: ``rating`` (the current
    summariser), ``rating_baseline``, ``rating_reference`` (and ``adds_info`` alike)."""
    _rating(answer, "title_rating")
    lettered = any(re.fullmatch(r"rating_[a-h]", field) for field in answer)
    if lettered and (key is None or answer["id"] not in key["shown"]):
        raise SystemExit(f"{answer['id']}: several summaries rated but no key.json says whose")
    if key is None:
        _rating(answer, "rating")
        _adds_info(answer, "adds_info")
    else:
        groups = key["shown"][answer["id"]]
        for letter, writers in groups.items():
            field = f"_{letter}" if len(groups) > 1 else ""
            _rating(answer, f"rating{field}")
            _adds_info(answer, f"adds_info{field}")
            rating, adds_info = answer.pop(f"rating{field}"), answer.pop(f"adds_info{field}")
            for writer in writers:
                answer[f"rating{FIELD_SUFFIX[writer]}"] = rating
                answer[f"adds_info{FIELD_SUFFIX[writer]}"] = adds_info
        for role in ("baseline", "reference"):
            if key.get(role):
                answer[role] = key[role]
    unknown = set(answer.get("topics", [])) - set(DEFAULT_TAXONOMY)
    if unknown:
        raise SystemExit(f"{answer['id']}: unknown topics {sorted(unknown)}")
    answer.pop("note", None)  # the notes stay with the packet; the ratings file holds figures
    return answer


def merge(dirs: Sequence[Path]) -> int:
    new = []
    for d in dirs:
        key = json.loads((d / "key.json").read_text()) if (d / "key.json").exists() else None
        for answer in read_jsonl(d / "answers.jsonl"):
            new.append(_checked_tags(answer) if "given" in answer else _checked(answer, key))
    tags = bool(new) and "given" in new[0]
    target = TAG_CHECKS if tags else RATINGS
    taken = {(r["sample"], r["id"]) for r in read_jsonl(target)} if target.exists() else set()
    again = [a["id"] for a in new if (a["sample"], a["id"]) in taken]
    if again:
        raise SystemExit(f"already in {target.name}: {again[:5]}")
    with target.open("a", encoding="utf-8") as f:
        for answer in new:
            f.write(json.dumps(answer, ensure_ascii=False) + "\n")
    return len(new)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.eval.rating_packet", description=__doc__)
    parser.add_argument("sample", nargs="?", default="holdout5")
    parser.add_argument("--part", default="1/1", help="K/N: every N-th issue from the K-th")
    parser.add_argument("--out", type=Path, help="the packet's directory")
    parser.add_argument("--merge", type=Path, nargs="+", help="answers to add to the ratings")
    parser.add_argument("--tags", action="store_true", help="a tag-check packet (precision)")
    parser.add_argument(
        "--baseline",
        nargs=2,
        metavar=("NAME", "TREE"),
        help="also an earlier revision's summaries (or with --tags, its tags); its pipelines/ "
        "is in TREE",
    )
    parser.add_argument(
        "--reference",
        nargs=2,
        metavar=("NAME", "FILE"),
        help="also summaries written by hand (JSONL: id, summary), rated blind beside the others",
    )
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args(argv)
    if args.merge:
        print(f"{merge(args.merge)} answers added")
        return 0
    if args.out is None:
        parser.error("--out DIR (or --merge DIR...)")
    if args.tags:
        baseline = (args.baseline[0], Path(args.baseline[1])) if args.baseline else None
        count = write_tag_packet(args.sample, args.part, args.out, args.data, baseline)
    else:
        baseline = (args.baseline[0], Path(args.baseline[1])) if args.baseline else None
        reference = (args.reference[0], Path(args.reference[1])) if args.reference else None
        count = write_packet(args.sample, args.part, args.out, args.data, baseline, reference)
    print(f"{count} issues: {args.out / 'packet.md'}, answers in {args.out / 'answers.jsonl'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
