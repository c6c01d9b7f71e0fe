"""Draw the evaluation sample: 10 issues per (repo, label) of nlbse24_train.jsonl, seed 9.

``python lab/eval/sample.py [DATA]`` prints the chosen ``(repo, id, label)`` keys as JSONL.
The committed ``eval_set.jsonl`` holds these keys plus hand-written annotations only; the
issue text stays in the data file and is joined by ``(repo, id)`` at evaluation time.
"""

from __future__ import annotations

import json
import random
import sys
from collections import defaultdict
from pathlib import Path

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "nlbse24_train.jsonl"
SEED = 9
PER_CELL = 10


def read_jsonl(path: Path) -> list[dict[str, str]]:
    """JSON lines split on ``\\n`` only (issue text may hold U+2028)."""
    text = path.read_text(encoding="utf-8")
    return [json.loads(line) for line in text.split("\n") if line.strip()]


def sample(rows: list[dict[str, str]], seed: int = SEED, per_cell: int = PER_CELL) -> list[dict]:
    cells: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        cells[(row["repo"], row["label"])].append(row)
    rng = random.Random(seed)
    chosen: list[dict] = []
    for key in sorted(cells):
        members = sorted(cells[key], key=lambda r: r["id"])
        chosen.extend(sorted(rng.sample(members, per_cell), key=lambda r: r["id"]))
    return chosen


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DATA
    for row in sample(read_jsonl(path)):
        print(json.dumps({"repo": row["repo"], "id": row["id"], "label": row["label"]}))
