"""Draw fresh samples outside the evaluation set, for hand rating (issue 9, second round).

``python -m lab.eval.fresh_sample [DATA]`` prints five samples of keys as JSONL, each
3 issues per (repo, label) cell (45 issues), none in ``eval_set.jsonl`` and none shared:
``tune`` (read while fixing the summariser and the tagger), ``holdout`` (rated once after
the first fixes; the failures it showed were then fixed too, so it became tuning data) and
``holdout2`` (drawn afterwards with seed 2027, rated once; its few failures were fixed
afterwards too), ``holdout3`` (seed 2028, rated once on the final code of the second round;
read since, so tuning data for the third round) and ``holdout4`` (seed 2029, drawn and rated
once on the final code of the third round, nothing changed after it) and ``holdout5``
(seed 2030, ``FIFTH_PER_CELL`` = 6 per cell, 90 issues: drawn and rated once on the final code
of the fourth round, by raters who had not read the code; read since, so tuning data for the
fifth round) and ``holdout6`` (seed 2031, 6 per cell, 90 issues: drawn and rated once on the
final code of the fifth round, by raters who had not read the code; read since, so tuning data
for the sixth round) and ``holdout7`` (seed 2032, 6 per cell, 90 issues: drawn and rated once on
the final code of the sixth round) and ``tagcheck7`` (seed 2033, ``TAGCHECK_PER_CELL`` = 20 per
cell, 300 issues: only the topic tags the tagger gives them are judged, right or wrong, for a
precision with a narrower spread than 90 issues give) and ``holdout8`` (seed 2034, 6 per cell,
90 issues: drawn and rated once on the final code of the seventh round, beside the sixth
round's summaries and a reference summary written by hand). Seed 2026 for the first two.
Only keys and hand ratings are committed (``fresh_ratings.jsonl``); the text stays in the
data file.
"""

from __future__ import annotations

import json
import random
import sys
from collections import defaultdict
from pathlib import Path

from lab.eval.sample import DATA, read_jsonl

SEED = 2026
SECOND_SEED = 2027
THIRD_SEED = 2028
FOURTH_SEED = 2029
FIFTH_SEED = 2030
SIXTH_SEED = 2031
SEVENTH_SEED = 2032
TAGCHECK_SEED = 2033
EIGHTH_SEED = 2034
PER_CELL = 3
FIFTH_PER_CELL = 6
TAGCHECK_PER_CELL = 20
EVAL_SET = Path(__file__).resolve().parent / "eval_set.jsonl"


def fresh_samples(rows: list[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    """Ten disjoint samples (``tune``, ``holdout``, ``holdout2``, ``holdout3``,
    ``holdout4``: PER_CELL per (repo, label) each; ``holdout5``, ``holdout6``, ``holdout7``:
    FIFTH_PER_CELL; ``tagcheck7``: TAGCHECK_PER_CELL; ``holdout8``: FIFTH_PER_CELL)."""
    taken = {(r["repo"], r["id"]) for r in read_jsonl(EVAL_SET)}
    cells: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        if (row["repo"], row["id"]) not in taken:
            cells[(row["repo"], row["label"])].append(row)
    rng = random.Random(SEED)
    # Each later sample from what the earlier ones left, with a seed of its own, drawn once
    # per cell in this order (so adding one never changes the ones before it).
    later = (
        ("holdout2", random.Random(SECOND_SEED), PER_CELL),
        ("holdout3", random.Random(THIRD_SEED), PER_CELL),
        ("holdout4", random.Random(FOURTH_SEED), PER_CELL),
        ("holdout5", random.Random(FIFTH_SEED), FIFTH_PER_CELL),
        ("holdout6", random.Random(SIXTH_SEED), FIFTH_PER_CELL),
        ("holdout7", random.Random(SEVENTH_SEED), FIFTH_PER_CELL),
        ("tagcheck7", random.Random(TAGCHECK_SEED), TAGCHECK_PER_CELL),
        ("holdout8", random.Random(EIGHTH_SEED), FIFTH_PER_CELL),
    )
    out: dict[str, list[dict[str, str]]] = {"tune": [], "holdout": []}
    out |= {name: [] for name, _, _ in later}
    for key in sorted(cells):
        members = sorted(cells[key], key=lambda r: r["id"])
        drawn = rng.sample(members, 2 * PER_CELL)
        out["tune"].extend(sorted(drawn[:PER_CELL], key=lambda r: r["id"]))
        out["holdout"].extend(sorted(drawn[PER_CELL:], key=lambda r: r["id"]))
        rest = [r for r in members if r not in drawn]
        for name, draw, count in later:
            drawn = draw.sample(rest, count)
            out[name].extend(sorted(drawn, key=lambda r: r["id"]))
            rest = [r for r in rest if r not in drawn]
    return out


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DATA
    for name, chosen in fresh_samples(read_jsonl(path)).items():
        for row in chosen:
            print(
                json.dumps(
                    {"sample": name, "repo": row["repo"], "id": row["id"], "label": row["label"]}
                )
            )
