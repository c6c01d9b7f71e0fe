"""Evaluate the offline provider on the annotated evaluation set (``scripts/eval``).

``python -m lab.evaluate [--eval-set FILE] [--data FILE] [--cv] [--json]`` joins
``lab/eval/eval_set.jsonl`` with the data file by ``(repo, id)``, runs the local provider
(summarise, then tag) on every issue and prints:

- the summary report of :func:`lab.summary_eval.summary_report` (fact coverage, share of
  summaries adding information over the title, degenerate cases);
- topic precision and recall per tag, with the counts they rest on, and micro-averaged;
- the type on the evaluation set (resubstitution: these issues are in the training file,
  so this is optimistic) and, with ``--cv``, the honest figures: the NLBSE'24 metric by
  stratified 5-fold cross-validation and leave-one-repository-out macro-F1, both refitting
  on the data file;
- model load time, the process's resident-memory growth while loading, and the CPU time of
  summarise + tag per issue (this thread's CPU time: one core, whatever else the machine
  runs).

JSONL is split on ``"\\n"`` only: issue text holds U+2028 and other characters that
``str.splitlines`` treats as line ends.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sklearn.metrics import f1_score, precision_recall_fscore_support
from sklearn.preprocessing import MultiLabelBinarizer

from lab.summary_eval import format_report, summary_report
from pipelines.providers.classifier import LABELS, get_model
from pipelines.providers.local import LocalProvider
from pipelines.providers.topics import DEFAULT_TAXONOMY

ROOT = Path(__file__).resolve().parents[1]
EVAL_SET = ROOT / "lab" / "eval" / "eval_set.jsonl"
DATA = ROOT.parent / "shared" / "data" / "nlbse24_train.jsonl"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """One JSON object per line, lines split on ``\\n`` only (never ``str.splitlines``)."""
    rows: list[dict[str, Any]] = []
    text = path.read_text(encoding="utf-8")
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{number}: expected a JSON object")
        rows.append(row)
    return rows


def join_rows(
    eval_rows: Sequence[dict[str, Any]], data_rows: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Eval-set rows with ``title`` and ``body`` from the data rows, matched by (repo, id)."""
    data = {(r.get("repo"), r.get("id")): r for r in data_rows}
    joined: list[dict[str, Any]] = []
    for row in eval_rows:
        issue = data.get((row.get("repo"), row.get("id")))
        if issue is None:
            raise KeyError(f"{row.get('repo')} {row.get('id')} is not in the data file")
        joined.append({**row, "title": issue.get("title") or "", "body": issue.get("body") or ""})
    return joined


def topic_report(
    truth: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]], taxonomy: Sequence[str]
) -> dict[str, Any]:
    """Precision, recall and the counts behind them, per tag and micro-averaged."""
    binarizer = MultiLabelBinarizer(classes=list(taxonomy))
    y_true = binarizer.fit_transform([[t for t in row if t in taxonomy] for row in truth])
    y_pred = binarizer.transform([[t for t in row if t in taxonomy] for row in predicted])
    precision, recall, _, support = precision_recall_fscore_support(
        y_true, y_pred, average=None, zero_division=0
    )
    per_tag: dict[str, dict[str, float | int]] = {}
    for i, tag in enumerate(taxonomy):
        per_tag[tag] = {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "annotated": int(support[i]),
            "predicted": int(y_pred[:, i].sum()),
            "correct": int((y_true[:, i] & y_pred[:, i]).sum()),
        }
    micro_p, micro_r, _, _ = precision_recall_fscore_support(
        y_true, y_pred, average="micro", zero_division=0
    )
    return {
        "precision": float(micro_p),
        "recall": float(micro_r),
        "predicted": int(y_pred.sum()),
        "annotated": int(y_true.sum()),
        "correct": int((y_true & y_pred).sum()),
        "per_tag": per_tag,
    }


def _rss_mb() -> float:
    """Resident memory of this process now, MB (``/proc/self/statm``; 0 where there is none)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * resource.getpagesize() / 2**20


def evaluate(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Run the local provider on the joined rows and score everything the set annotates."""
    rss_before = _rss_mb()
    started = time.perf_counter()
    get_model.cache_clear()
    get_model()
    load_ms = (time.perf_counter() - started) * 1000
    rss_growth = _rss_mb() - rss_before

    provider = LocalProvider()
    summaries: list[str] = []
    topics: list[list[str]] = []
    types: list[str] = []
    timings: list[float] = []
    for row in rows:
        t0 = time.thread_time()  # CPU time of this thread: one core, whatever else runs
        summary = provider.summarise(row["title"], row["body"])
        tags = provider.tag(row["title"], row["body"], summary)
        timings.append((time.thread_time() - t0) * 1000)
        summaries.append(summary)
        types.append(tags[0])
        topics.append(tags[1:])

    truth_types = [str(row["label"]) for row in rows]
    ms = sorted(timings)
    return {
        "issues": len(rows),
        "summary": summary_report(list(rows), summaries),
        "topics": topic_report([row.get("topics", []) for row in rows], topics, DEFAULT_TAXONOMY),
        "type_resubstitution_macro_f1": float(
            f1_score(
                truth_types,
                types,
                labels=[label for label in LABELS if label in {*truth_types, *types}],
                average="macro",
                zero_division=0,
            )
        ),
        "model_load_ms": load_ms,
        "model_rss_growth_mb": rss_growth,
        "cpu_ms_per_issue": {
            "median": statistics.median(ms),
            "p90": ms[int(0.9 * (len(ms) - 1))],
            "max": ms[-1],
        },
    }


def format_topics(report: dict[str, Any]) -> str:
    lines = [
        f"topics: precision {report['precision']:.3f} recall {report['recall']:.3f} "
        f"({report['correct']} right of {report['predicted']} given, "
        f"{report['annotated']} annotated)"
    ]
    for tag, s in report["per_tag"].items():
        lines.append(
            f"  {tag:<14} P={s['precision']:.3f} R={s['recall']:.3f} "
            f"(right {s['correct']} / given {s['predicted']} / annotated {s['annotated']})"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/eval", description=__doc__.split("\n")[0])
    parser.add_argument("--eval-set", type=Path, default=EVAL_SET)
    parser.add_argument("--data", type=Path, default=DATA, help="the NLBSE'24 training file")
    parser.add_argument("--cv", action="store_true", help="also type CV and leave-one-repo-out")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    for path in (args.eval_set, args.data):
        if not path.is_file():
            parser.error(f"no such file: {path}")
    rows = join_rows(read_jsonl(args.eval_set), read_jsonl(args.data))
    if not rows:
        parser.error(f"{args.eval_set} has no rows")
    report = evaluate(rows)
    if args.cv:
        from lab.training import cross_validate, leave_one_repo_out

        report["type_cv"] = cross_validate(args.data)
        report["type_loro"] = leave_one_repo_out(args.data)

    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
        return 0
    print(f"issues {report['issues']} ({args.eval_set.name} joined with {args.data.name})")
    print(format_report(report["summary"]))
    print(format_topics(report["topics"]))
    print(
        f"type: macro-F1 {report['type_resubstitution_macro_f1']:.3f} on the set "
        "(resubstitution, optimistic: the set is inside the training file)"
    )
    for key, title in (
        ("type_cv", "type: stratified 5-fold CV, macro-F1 per repo (NLBSE'24 metric)"),
        ("type_loro", "type: leave-one-repo-out macro-F1"),
    ):
        if key in report:
            print(title)
            for name, value in report[key].items():
                print(f"  {name:<28} {value:.4f}")
    t = report["cpu_ms_per_issue"]
    print(
        f"time: model load {report['model_load_ms']:.0f} ms (+{report['model_rss_growth_mb']:.0f}"
        f" MB resident); summarise + tag, CPU per issue: median {t['median']:.2f} ms, "
        f"p90 {t['p90']:.2f} ms, max {t['max']:.2f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
