"""Evaluate the local provider on a labelled JSONL file (``title``, ``body``, ``label``).

``python -m lab.evaluate FILE [--cv]`` prints the model load time,
accuracy, macro-F1, per-label precision/recall/F1, time per issue (summarise + tag) and
the summary proxy score (ROUGE-1 F of the summary of the body alone against the title).
With ``--cv`` it also prints the stratified 5-fold (NLBSE'24 metric) and
leave-one-repository-out estimates, which retrain on FILE.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipelines.providers import classifier
from pipelines.providers.classifier import LABELS, MODEL_DIR, MODEL_STEM
from pipelines.providers.local import LocalProvider

_ROUGE_TOKEN = re.compile(r"\w+", re.UNICODE)


def rouge1_f(candidate: str, reference: str) -> float:
    """ROUGE-1 F-measure over lower-cased word tokens."""
    cand = Counter(_ROUGE_TOKEN.findall(candidate.lower()))
    ref = Counter(_ROUGE_TOKEN.findall(reference.lower()))
    overlap = sum((cand & ref).values())
    if not overlap:
        return 0.0
    precision = overlap / sum(cand.values())
    recall = overlap / sum(ref.values())
    return 2 * precision * recall / (precision + recall)


def per_label_scores(
    truth: Sequence[str], pred: Sequence[str]
) -> dict[str, tuple[float, float, float]]:
    scores: dict[str, tuple[float, float, float]] = {}
    for label in LABELS:
        tp = sum(1 for t, p in zip(truth, pred, strict=True) if t == label and p == label)
        fp = sum(1 for t, p in zip(truth, pred, strict=True) if t != label and p == label)
        fn = sum(1 for t, p in zip(truth, pred, strict=True) if t == label and p != label)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores[label] = (precision, recall, f1)
    return scores


def evaluate(path: Path) -> dict[str, float]:
    rows = [
        json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    started = time.perf_counter()
    classifier.get_model()
    load_seconds = time.perf_counter() - started
    provider = LocalProvider()

    truth: list[str] = []
    pred: list[str] = []
    timings: list[float] = []
    rouge: list[float] = []
    for row in rows:
        title, body = row.get("title") or "", row.get("body") or ""
        t0 = time.perf_counter()
        summary = provider.summarise(title, body)
        tags = provider.tag(title, body, summary)
        timings.append(time.perf_counter() - t0)
        truth.append(row["label"])
        pred.append(tags[0])
        rouge.append(rouge1_f(provider.summarise("", body), title))

    per_label = per_label_scores(truth, pred)
    accuracy = sum(t == p for t, p in zip(truth, pred, strict=True)) / len(rows)
    macro = float(np.mean([f for _, _, f in per_label.values()]))
    ms = np.array(timings) * 1000
    size = sum(p.stat().st_size for p in MODEL_DIR.glob(f"{MODEL_STEM}.*"))

    print(f"issues                 {len(rows)}")
    print(f"model load             {load_seconds * 1000:.0f} ms")
    print(f"model size on disk     {size / 1e6:.2f} MB")
    print(f"accuracy               {accuracy:.4f}")
    print(f"macro-F1               {macro:.4f}")
    for label, (p, r, f) in per_label.items():
        print(f"  {label:<9} P={p:.4f} R={r:.4f} F1={f:.4f}")
    print(f"ms per issue           mean={ms.mean():.3f} p99={np.percentile(ms, 99):.3f}")
    print(f"ROUGE-1 F (body->title) {float(np.mean(rouge)):.4f}")
    return {
        "accuracy": accuracy,
        "macro_f1": macro,
        "ms_mean": float(ms.mean()),
        "ms_p99": float(np.percentile(ms, 99)),
        "rouge1": float(np.mean(rouge)),
        "load_ms": load_seconds * 1000,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/eval")
    parser.add_argument("file", type=Path)
    parser.add_argument("--cv", action="store_true", help="also run CV and leave-one-repo-out")
    args = parser.parse_args(argv)
    evaluate(args.file)
    if args.cv:
        from lab.training import cross_validate, leave_one_repo_out

        print("stratified 5-fold CV, macro-F1 per repo (NLBSE'24 metric)")
        for key, value in cross_validate(args.file).items():
            print(f"  {key:<28} {value:.4f}")
        print("leave-one-repo-out macro-F1")
        for key, value in leave_one_repo_out(args.file).items():
            print(f"  {key:<28} {value:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
