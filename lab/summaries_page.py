"""Write docs/summaries.md: 20 eval-set issues, title, previous and new summary side by side.

The previous summariser runs from a source tree of its own (its ``summary.py`` imports its
own ``text.py``), in a child process::

    mkdir /tmp/prev && git archive 037d1b4 app pipelines | tar -x -C /tmp/prev
    python -m lab.summaries_page /tmp/prev > docs/summaries.md

Only titles and summaries are quoted (no bodies); each title links to a GitHub search for
it in its repository (the data set carries no issue numbers).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

from lab.summary_eval import load_rows
from pipelines.providers.summary import summarise

ROOT = Path(__file__).resolve().parents[1]
PICKS = [0, 6, 12, 18, 30, 36, 42, 48, 60, 66, 72, 78, 90, 96, 102, 108, 120, 126, 132, 138]
PREVIOUS_COMMIT = "037d1b4"  # main before the third round of issue 9 (the composing summariser)

_CHILD = (
    "import json, sys\n"
    "from pipelines.providers.summary import summarise\n"
    "pairs = json.load(sys.stdin)\n"
    "json.dump([summarise(t, b) for t, b in pairs], sys.stdout)\n"
)


def previous_summaries(source: Path, pairs: list[tuple[str, str]]) -> list[str]:
    """Summaries of ``pairs`` (title, body) by the summariser of another source tree."""
    env = {**os.environ, "PYTHONPATH": str(source)}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD],
        input=json.dumps(pairs),
        capture_output=True,
        text=True,
        env=env,
        cwd=source,
        check=True,
    )
    result: list[str] = json.loads(done.stdout)
    return result


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip() or "(empty)"


def main(previous_source: str) -> None:
    rows = load_rows(
        str(ROOT / "lab/eval/eval_set.jsonl"),
        str(ROOT.parent / "shared/data/nlbse24_train.jsonl"),
    )
    picked = [rows[i] for i in PICKS]
    previous = previous_summaries(Path(previous_source), [(r["title"], r["body"]) for r in picked])
    print("# Summaries: before and after (issue 9, third to fifth rounds)\n")
    print(
        "Twenty issues of the evaluation set (`lab/eval/eval_set.jsonl`, four per project, "
        "the same picks every time), summarised by the offline summariser of main before "
        f"the third round of issue 9 (`{PREVIOUS_COMMIT}`) and by the current one "
        "(`pipelines/providers/summary.py`). Titles link to a search for the issue in its "
        "repository; only titles and summaries are quoted. Regenerate with "
        "`python -m lab.summaries_page` (see its docstring). Figures and hand ratings, "
        "including those on fresh samples outside this set: `docs/model-card.md`, "
        "section Summariser.\n"
    )
    print("| # | project | title | previous summary | new summary |")
    print("|---|---|---|---|---|")
    for n, (row, old) in enumerate(zip(picked, previous, strict=True), 1):
        title = row["title"]
        url = f"https://github.com/{row['repo']}/issues?q={quote(title[:200])}"
        print(
            f"| {n} | {row['repo']} | [{_cell(title)}]({url}) "
            f"| {_cell(old)} | {_cell(summarise(title, row['body']))} |"
        )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m lab.summaries_page PREVIOUS_SOURCE_TREE")
    main(sys.argv[1])
