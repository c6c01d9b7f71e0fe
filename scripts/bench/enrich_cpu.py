"""CPU time of the offline enrichment per issue, this tree against a previous one, same run.

    python scripts/bench/enrich_cpu.py [--previous /tmp/prev] [--rounds 3] [--data FILE]

Each round runs one child process per variant (the previous source tree first, then this
one, alternating), which reads the NLBSE'24 training file, makes one warm-up pass (the type
model's per-word n-gram cache fills as a long-running worker's would) and then measures,
per issue, the CPU time of this thread (``time.thread_time``: one core, whatever else the
machine runs) for the summary alone and for summary + tags (type and topics), as the local
provider does them. Prints the median, p90 and max of every round, and the median over the
rounds with the spread, and the ratio of the medians. The previous tree is made with
``mkdir /tmp/prev && git archive <rev> app pipelines | tar -x -C /tmp/prev``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "nlbse24_train.jsonl"

_CHILD = """
import json, sys, time
from pipelines.providers.local import LocalProvider
rows = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8").read().split("\\n") if l.strip()]
provider = LocalProvider()
for row in rows:  # warm-up: the model is loaded, the n-gram cache filled
    provider.tag(row["title"], row["body"], provider.summarise(row["title"], row["body"]))
summary_ms, enrich_ms = [], []
for row in rows:
    t0 = time.thread_time()
    summary = provider.summarise(row["title"], row["body"])
    t1 = time.thread_time()
    provider.tag(row["title"], row["body"], summary)
    t2 = time.thread_time()
    summary_ms.append((t1 - t0) * 1000)
    enrich_ms.append((t2 - t0) * 1000)
json.dump({"summary": summary_ms, "enrich": enrich_ms}, sys.stdout)
"""


def _stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": statistics.median(ordered),
        "p90": ordered[int(0.9 * (len(ordered) - 1))],
        "max": ordered[-1],
    }


def run_variant(source: Path, data: Path) -> dict[str, dict[str, float]]:
    env = {**os.environ, "PYTHONPATH": str(source)}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(data)],
        capture_output=True,
        text=True,
        env=env,
        cwd=source,
        check=True,
    )
    timings = json.loads(done.stdout)
    return {key: _stats(values) for key, values in timings.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--previous", type=Path, help="source tree of the previous version")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    variants = {"this tree": ROOT}
    if args.previous:
        variants = {"previous": args.previous, **variants}
    medians: dict[str, dict[str, list[float]]] = {
        name: {"summary": [], "enrich": []} for name in variants
    }
    for round_no in range(1, args.rounds + 1):
        for name, source in variants.items():
            result = run_variant(source, args.data)
            for key in ("summary", "enrich"):
                medians[name][key].append(result[key]["median"])
            print(
                f"round {round_no} {name:>9}: summary median {result['summary']['median']:.3f} "
                f"p90 {result['summary']['p90']:.3f} max {result['summary']['max']:.1f} ms; "
                f"summary+tags median {result['enrich']['median']:.3f} "
                f"p90 {result['enrich']['p90']:.3f} max {result['enrich']['max']:.1f} ms"
            )
    for name in variants:
        for key in ("summary", "enrich"):
            values = medians[name][key]
            print(
                f"{name:>9} {key:>7}: median of round medians {statistics.median(values):.3f} ms "
                f"(min {min(values):.3f}, max {max(values):.3f})"
            )
    if args.previous:
        for key in ("summary", "enrich"):
            ratio = statistics.median(medians["this tree"][key]) / statistics.median(
                medians["previous"][key]
            )
            print(f"ratio this/previous, {key}: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
