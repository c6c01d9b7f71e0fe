"""Write docs/summaries.md: 20 eval-set issues, title, previous and new summary side by side.

    git show 4e8db53:pipelines/providers/summary.py > /tmp/old_summary.py
    python -m lab.summaries_page /tmp/old_summary.py > docs/summaries.md

Only titles and summaries are quoted (no bodies); each title links to a GitHub search for
it in its repository (the data set carries no issue numbers).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from urllib.parse import quote

from lab.summary_eval import load_rows
from pipelines.providers.summary import summarise

ROOT = Path(__file__).resolve().parents[1]
PICKS = [0, 6, 12, 18, 30, 36, 42, 48, 60, 66, 72, 78, 90, 96, 102, 108, 120, 126, 132, 138]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip() or "(empty)"


def main(old_path: str) -> None:
    spec = importlib.util.spec_from_file_location("old_summary", old_path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {old_path}")
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    rows = load_rows(
        str(ROOT / "lab/eval/eval_set.jsonl"),
        str(ROOT.parent / "shared/data/nlbse24_train.jsonl"),
    )
    print("# Summaries: before and after (issue 9)\n")
    print(
        "Twenty issues of the evaluation set (`lab/eval/eval_set.jsonl`, four per project, "
        "the same picks every time), summarised by the previous offline summariser "
        "(main before issue 9) and by the new one (`pipelines/providers/summary.py`). "
        "Titles link to a search for the issue in its repository; only titles and "
        "summaries are quoted. Regenerate with `python -m lab.summaries_page`. "
        "Figures and ratings: `docs/model-card.md`, section Summariser.\n"
    )
    print("| # | project | title | previous summary | new summary |")
    print("|---|---|---|---|---|")
    for n, i in enumerate(PICKS, 1):
        row = rows[i]
        title = row["title"]
        url = f"https://github.com/{row['repo']}/issues?q={quote(title[:200])}"
        print(
            f"| {n} | {row['repo']} | [{_cell(title)}]({url}) "
            f"| {_cell(old.summarise(title, row['body']))} "
            f"| {_cell(summarise(title, row['body']))} |"
        )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/old_summary.py")
