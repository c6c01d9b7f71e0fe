"""scripts/eval (lab.evaluate): JSONL reading, joining, topic scores, the whole report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.evaluate import join_rows, main, read_jsonl, topic_report


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), "utf-8")
    return path


def test_jsonl_is_split_on_newline_only(tmp_path: Path) -> None:
    """U+2028, U+0085 and form feeds inside strings are text, not line ends."""
    rows = [
        {"id": "1", "body": "first\u2028second\u0085third\x0cfourth\u2029end"},
        {"id": "2", "body": "plain"},
    ]
    path = write_jsonl(tmp_path / "odd.jsonl", rows)
    assert read_jsonl(path) == rows


def test_jsonl_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "1"}\n\n{"id": \n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl:3: not JSON"):
        read_jsonl(path)
    path.write_text("[1, 2]\n", encoding="utf-8")
    with pytest.raises(ValueError, match="expected a JSON object"):
        read_jsonl(path)


def test_join_by_repo_and_id() -> None:
    data = [
        {"repo": "a/x", "id": "1", "title": "T1", "body": None},
        {"repo": "b/y", "id": "1", "title": "T2", "body": "B2"},
    ]
    joined = join_rows([{"repo": "b/y", "id": "1", "label": "bug"}], data)
    assert joined == [{"repo": "b/y", "id": "1", "label": "bug", "title": "T2", "body": "B2"}]
    assert join_rows([{"repo": "a/x", "id": "1"}], data)[0]["body"] == ""
    with pytest.raises(KeyError, match="c/z 1"):
        join_rows([{"repo": "c/z", "id": "1"}], data)


def test_topic_precision_and_recall_per_tag() -> None:
    truth = [["crash"], ["crash", "ui"], [], ["build"]]
    predicted = [["crash"], ["ui", "tests"], ["crash"], []]
    report = topic_report(truth, predicted, ("crash", "ui", "build", "tests"))
    assert report["correct"] == 2
    assert report["predicted"] == 4
    assert report["annotated"] == 4
    assert report["precision"] == pytest.approx(0.5)
    assert report["recall"] == pytest.approx(0.5)
    crash = report["per_tag"]["crash"]
    assert (crash["precision"], crash["recall"]) == (pytest.approx(0.5), pytest.approx(0.5))
    assert report["per_tag"]["ui"]["precision"] == pytest.approx(1.0)
    assert report["per_tag"]["build"]["recall"] == 0.0
    assert report["per_tag"]["tests"]["annotated"] == 0


def test_whole_report_on_a_small_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_jsonl(
        tmp_path / "data.jsonl",
        [
            {
                "repo": "o/p",
                "id": "1",
                "label": "bug",
                "title": "Segmentation fault when opening a 2 GB file",
                "body": "Opening a 2 GB file crashes the viewer with SIGSEGV in "
                "load_tiles().\u2028It worked in 1.2.",
            },
            {
                "repo": "o/p",
                "id": "2",
                "label": "feature",
                "title": "Add a dark theme",
                "body": "It would be nice to have a dark theme for the settings dialog.",
            },
        ],
    )
    eval_set = write_jsonl(
        tmp_path / "eval.jsonl",
        [
            {"repo": "o/p", "id": "1", "label": "bug", "facts": ["SIGSEGV"], "topics": ["crash"]},
            {"repo": "o/p", "id": "2", "label": "feature", "facts": ["settings"], "topics": ["ui"]},
        ],
    )
    assert main(["--eval-set", str(eval_set), "--data", str(data), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["issues"] == 2
    assert report["topics"]["per_tag"]["crash"]["correct"] == 1
    assert report["topics"]["per_tag"]["ui"]["correct"] == 1
    assert report["summary"]["issues"] == 2
    assert report["summary"]["degenerate"]["empty"] == 0
    assert report["cpu_ms_per_issue"]["median"] > 0
    assert report["type_resubstitution_macro_f1"] == pytest.approx(1.0)

    assert main(["--eval-set", str(eval_set), "--data", str(data)]) == 0
    text = capsys.readouterr().out
    assert "topics: precision" in text
    assert "crash" in text


def test_missing_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--eval-set", str(tmp_path / "none.jsonl"), "--data", str(tmp_path / "d.jsonl")])
    assert exit_info.value.code == 2
    assert "no such file" in capsys.readouterr().err
