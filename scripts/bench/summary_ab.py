"""CPU time of the summary per issue, this tree against a previous one, in one process.

    python scripts/bench/summary_ab.py --previous /tmp/prev [--passes 5] [--data FILE]

``enrich_cpu.py`` runs each tree in its own child process, one after the other: on a
machine that other jobs load unevenly, its rounds can differ by more than a change costs.
Here both summarisers are imported into one process (the previous tree's modules are
loaded first and then dropped from ``sys.modules``; its function keeps its own globals), and
each issue is summarised by both in alternation (which goes first alternates too), for
several passes; each issue's fastest time (``time.thread_time``) per tree is kept, so a
load spike costs both trees alike or neither. Prints the median and the mean per issue and
their ratios. The previous tree is made with ``mkdir /tmp/prev && git archive <rev> app
pipelines | tar -x -C /tmp/prev``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "nlbse24_train.jsonl"

Summarise = Callable[[str, str], str]


def load_summarise(source: Path) -> Summarise:
    """``summarise`` of the source tree at ``source``, imported afresh."""
    for name in [
        m for m in sys.modules if m in ("app", "pipelines") or m.startswith(("app.", "pipelines."))
    ]:
        del sys.modules[name]
    sys.path.insert(0, str(source))
    try:
        module = importlib.import_module("pipelines.providers.summary")
    finally:
        sys.path.remove(str(source))
    function: Summarise = module.summarise
    return function


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--previous", type=Path, required=True, help="the previous source tree")
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    text = args.data.read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.split("\n") if line.strip()]
    previous = load_summarise(args.previous)
    this = load_summarise(ROOT)
    for row in rows:  # warm-up
        previous(row["title"], row["body"])
        this(row["title"], row["body"])
    best = {"previous": [float("inf")] * len(rows), "this": [float("inf")] * len(rows)}
    for number in range(args.passes):
        for i, row in enumerate(rows):
            order = [("previous", previous), ("this", this)]
            for name, function in order if (i + number) % 2 else order[::-1]:
                started = time.thread_time()
                function(row["title"], row["body"])
                best[name][i] = min(best[name][i], time.thread_time() - started)
    medians = {name: statistics.median(times) * 1000 for name, times in best.items()}
    means = {name: statistics.fmean(times) * 1000 for name, times in best.items()}
    print(
        f"summary per issue, fastest of {args.passes} passes: median "
        f"{medians['previous']:.3f} -> {medians['this']:.3f} ms "
        f"(ratio {medians['this'] / medians['previous']:.3f}), mean "
        f"{means['previous']:.3f} -> {means['this']:.3f} ms "
        f"(ratio {means['this'] / means['previous']:.3f})"
    )


if __name__ == "__main__":
    main()
